"""Reference consumer of the Bedside wire format (docs/wire.md): cbor2 + paho-mqtt only.

usage: consumer.py HOST PORT CA CERT KEY [TOPIC_FILTER [COUNT]]
Prints one JSON line per new record (observations and alarm/technical events),
deduplicated; exits after COUNT records if given. Times are epoch ms UTC.
"""

import json
import sys

import cbor2
import paho.mqtt.client as mqtt

QUALITY = ("valid", "questionable", "invalid")
seen: set[object] = set()  # a real consumer keeps this in its database, bounded
host, port, ca, cert, key = sys.argv[1:6]
topic = sys.argv[6] if len(sys.argv) > 6 else "bedside/v1/+/+"  # telemetry, quarantine and alarms
count = int(sys.argv[7]) if len(sys.argv) > 7 else 0


def records(envelope: dict) -> list[dict]:
    out = []
    for raw in envelope["batches"]:
        batch = cbor2.loads(raw)
        terms, sources, flag_sets = batch["d"]
        t = batch["b"]
        for oid, value, dt, drec, q, term, source, flags in batch["o"]:
            t += dt  # each row's time is a delta from the previous row's
            metric, code, unit = terms[term]
            device, bed, patient = sources[source]
            out.append({"type": "observation", "obs_id": oid.hex(), "metric": metric, "code": code,
                        "value": value, "unit": unit, "time": t, "received": t + drec, "quality": QUALITY[q & 3],
                        "quarantine": bool(q & 4), "device_id": device, "bed_id": bed, "patient_id": patient,
                        "flags": flag_sets[flags]})  # fmt: skip
        out.extend(batch["x"])  # alarm and technical events: already dicts
    return out


def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
    if getattr(msg.properties, "ContentType", "") != "application/cbor":
        return  # status and cmd/response are JSON: not records
    envelope = cbor2.loads(msg.payload)
    if envelope.get("v") not in (3, 4):  # 4 = 3 + the boot id
        raise SystemExit(f"unknown envelope version {envelope.get('v')!r}")
    for record in records(envelope):
        rid = record.get("obs_id") or (record.get("alarm_id"), record.get("state"), record.get("priority"))
        if record["type"] == "technical" or rid not in seen:  # technical events carry no id
            seen.add(rid)
            print(json.dumps(record, sort_keys=True), flush=True)
            if count and len(seen) >= count:
                client.disconnect()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)  # broker names it
client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
client.on_message = on_message
client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)  # again after a reconnect
client.on_subscribe = lambda *_: print("# subscribed", file=sys.stderr, flush=True)
client.connect(host, int(port))
client.loop_forever()
