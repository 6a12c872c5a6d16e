"""The public command line, run as a user would (subprocess) where exit codes matter."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hil.masimo_sim import masimo_line
from hil.nonin_sim import nonin_packet
from hil.scenarios import Vitals

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "masimo" / "lines.txt"
RAD8 = (
    b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
RADICAL5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"


def bedside(*args, stdin=b""):
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def observations(stdout: bytes):
    return [json.loads(line) for line in stdout.splitlines() if json.loads(line)["type"] == "observation"]


def test_decode_masimo_conformance_lines(tmp_path):
    capture = tmp_path / "lines.txt"
    capture.write_bytes(CONFORMANCE.read_bytes() if CONFORMANCE.exists() else RAD8 + RADICAL5)
    res = bedside("decode", "--protocol", "masimo", "--device-tz", "Europe/Berlin", str(capture))
    assert res.returncode == 0, res.stderr
    got = [(o["metric"], o["value"], o["unit"], o["quality"], o["time"]) for o in observations(res.stdout)]
    assert got == [
        ("MDC_PULS_OXIM_SAT_O2", 98.0, "%", "valid", "2016-02-22T21:47:45.000Z"),
        ("MDC_PULS_OXIM_PULS_RATE", 97.0, "/min", "valid", "2016-02-22T21:47:45.000Z"),
        ("MDC_PULS_OXIM_PERF_REL", 3.6, "%", "valid", "2016-02-22T21:47:45.000Z"),
        ("MDC_CONC_HB_CO_GEN", None, "%", "invalid", "2016-02-22T21:47:45.000Z"),
        ("MDC_CONC_HB_MET_GEN", None, "%", "invalid", "2016-02-22T21:47:45.000Z"),
        ("MDC_PULS_OXIM_SAT_O2", 97.0, "%", "valid", "2010-09-15T13:10:29.000Z"),
        ("MDC_PULS_OXIM_PULS_RATE", 64.0, "/min", "valid", "2010-09-15T13:10:29.000Z"),
        ("MDC_PULS_OXIM_PERF_REL", 11.82, "%", "valid", "2010-09-15T13:10:29.000Z"),
    ]
    first = observations(res.stdout)[0]
    assert first["code"] == 150456 and first["flags"] == ["masimo_set"] and first["device_id"] == "decode"
    assert b"frames ok 2, bad 0" in res.stderr


def test_decode_is_deterministic_in_ids(tmp_path):
    capture = tmp_path / "c.txt"
    capture.write_bytes(RAD8 + RADICAL5)
    ids = [
        [o["obs_id"] for o in observations(bedside("decode", "--protocol", "masimo", str(capture)).stdout)]
        for _ in range(2)
    ]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])


def test_decode_nonin_from_stdin_with_garbage():
    data = b"\xff\x00junk" + b"".join(nonin_packet(2, Vitals(93, 131, 2.0), pleth_phase=i) for i in range(3))
    res = bedside("decode", "--protocol", "nonin-2", "-", stdin=data)
    assert res.returncode == 0, res.stderr
    obs = observations(res.stdout)
    assert [o["value"] for o in obs if o["metric"] == "MDC_PULS_OXIM_PULS_RATE"] == [131.0] * 3
    assert [o["value"] for o in obs if o["metric"] == "MDC_PULS_OXIM_SAT_O2"] == [93.0] * 3
    assert b"frames ok 75, bad 1" in res.stderr
    tech = [json.loads(x) for x in res.stdout.splitlines() if json.loads(x)["type"] == "technical"]
    assert tech[0]["kind"] == "bad_frame"


def test_decode_intellivue_capture():
    capture = ROOT / "tests" / "fixtures" / "intellivue" / "MPRawoutput1.raw"
    res = bedside("decode", "--protocol", "intellivue", str(capture))
    assert res.returncode == 0, res.stderr
    assert b"frames ok 2887, bad 0; 5776 observations" in res.stderr
    hr = [o for o in observations(res.stdout) if o["metric"] == "MDC_ECG_HEART_RATE"]
    assert len(hr) == 361 and {o["value"] for o in hr} == {60.0}


def test_decode_datex_records_with_noise(tmp_path):
    from datetime import datetime

    from drivers.datex.frame import build_record, encode_frame
    from hil.datex_sim import phdb_subrecord

    frame = encode_frame(build_record(0, [(1, phdb_subrecord(Vitals(95, 88, 2.0), datetime(2026, 5, 4, 10, 30)))]))
    capture = tmp_path / "s5.bin"
    capture.write_bytes(b"\x00noise" + frame + frame[:-10] + frame)
    res = bedside("decode", "--protocol", "datex", "--device-tz", "Europe/Berlin", str(capture))
    assert res.returncode == 0, res.stderr
    assert b"frames ok 2, bad 1" in res.stderr
    obs = observations(res.stdout)
    spo2 = [o for o in obs if o["metric"] == "MDC_PULS_OXIM_SAT_O2"]
    assert [o["value"] for o in spo2] == [95.0, 95.0] and spo2[0]["time"] == "2026-05-04T08:30:00.000Z"


def test_decode_medibus_capture_with_realtime_bytes_and_a_corrupt_response():
    from drivers.medibus.frame import command, response
    from hil.medibus_sim import measured_response

    good = response(0x24, measured_response(Vitals(94, 101, 2.0)))
    corrupt = good[:-3] + b"00\r"
    data = command(0x51) + good[:5] + b"\xd1\x83\xa5" + good[5:] + corrupt + good
    res = bedside("decode", "--protocol", "medibus-evita4", "-", stdin=data)
    assert res.returncode == 0, res.stderr
    assert b"frames ok 3, bad 1" in res.stderr
    spo2 = [o["value"] for o in observations(res.stdout) if o["metric"] == "MDC_PULS_OXIM_SAT_O2"]
    peep = [o for o in observations(res.stdout) if o["metric"] == "MDC_VENT_PRESS_AWAY_END_EXP_POS"]
    assert spo2 == [94.0, 94.0] and peep[0]["unit"] == "cm[H2O]" and peep[0]["value"] == 5.1


def test_decode_every_masimo_variant_from_the_simulator(tmp_path):
    from datetime import datetime

    from hil.masimo_sim import VARIANTS

    data = b"".join(
        masimo_line(v, datetime(2026, 1, 1, 0, 0, i), Vitals(90 + i, 60 + i, 1.5)) for i, v in enumerate(VARIANTS)
    )
    res = bedside("decode", "--protocol", "masimo", "-", stdin=data)
    spo2 = [o["value"] for o in observations(res.stdout) if o["metric"] == "MDC_PULS_OXIM_SAT_O2"]
    assert spo2 == [90.0, 91.0, 92.0, 93.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("decode", "--protocol", "masimo", "/nonexistent/capture"), "/nonexistent/capture: cannot read"),
        (("decode", "--protocol", "masimo", "/"), "/: cannot read"),
        (("decode", "--protocol", "masimo", "--device-tz", "Nowhere/City", "-"), "--device-tz: unknown"),
        (("decode", "--protocol", "klingon", "-"), "invalid choice"),
        (("run", "--config", "/nonexistent.toml"), "/nonexistent.toml: cannot read"),
        (("devices", "list"), "give --config FILE or --registry PATH"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, message):
    res = bedside(*args)
    assert res.returncode == 2
    assert message.encode() in res.stderr
    assert b"Traceback" not in res.stderr


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text('[gateway]\nbed_id = "b"\n[[devices]]\nid = "x"\nprotocol = "masimo"\nport = "/p"\nbaud = 7\n')
    res = bedside("run", "--config", str(cfg))
    assert res.returncode == 2
    assert res.stderr.decode().strip() == f'bedside: {cfg}: devices["x"].baud: must be one of ' + (
        "1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400"
    )


def test_devices_pair_list_unpair(tmp_path):
    reg = str(tmp_path / "registry.json")
    assert bedside("devices", "--registry", reg, "pair", "m1", "--bed", "ICU-2", "--patient", "P9").returncode == 0
    listed = bedside("devices", "--registry", reg, "list")
    assert listed.stdout.decode().strip() == "m1\tbed=ICU-2\tpatient=P9"
    assert bedside("devices", "--registry", reg, "unpair", "m1").returncode == 0
    res = bedside("devices", "--registry", reg, "unpair", "m1")
    assert res.returncode == 2 and b"'m1' is not in" in res.stderr


def _run_config(tmp: Path, sections: str = "", device: str = "") -> Path:
    cfg = tmp / "g.toml"
    cfg.write_text(
        f'[gateway]\nbed_id = "b"\nregistry_path = "{tmp / "registry.json"}"\n{sections}\n'
        + (device or f'[[devices]]\nid = "m1"\nprotocol = "masimo"\nport = "{tmp / "m1"}"\n')
    )
    return cfg


def _held_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# Each of these started (READY) and then crash-looped with tracebacks, or deleted a file.
RUN_ERRORS = {
    "tick-nan": ("[alarms]\ntick_s = nan", "", "alarms.tick_s: must be a finite number, not nan"),
    "stale-nan": (
        "",
        'id = "m1"\nprotocol = "masimo"\nport = "{tmp}/m1"\nstale_after_s = nan',
        'devices["m1"].stale_after_s',
    ),
    "skew-inf": ("max_clock_skew_s = inf", "", "gateway.max_clock_skew_s: must be a finite number"),
    "socket-file": (
        '[alarms]\ncontrol_socket = "{tmp}/store.db"',
        "",
        "alarms.control_socket: {tmp}/store.db is a regular",
    ),
    "socket-long": ('[alarms]\ncontrol_socket = "{tmp}/' + "s" * 120 + '"', "", "alarms.control_socket: "),
    "queue-dir": ('[queue]\npath = "{tmp}/dir"\nkey_path = "{tmp}/k"', "", "queue.path: {tmp}/dir is a directory"),
    "registry-dir": ("", "", "gateway.registry_path: {tmp}/registry.json is a directory"),
    "events-dir": ('[alarms]\nevents_path = "{tmp}/dir"', "", "alarms.events_path: {tmp}/dir is a directory"),
    "same-port": (
        "",
        'id = "m1"\nprotocol = "masimo"\nport = "./m1"\n[[devices]]\nid = "m2"\nprotocol = "masimo"\nport = "m1"',
        "devices[\"m2\"].port: port 'm1' is already used by device 'm1'",
    ),
    "port-in-use": ("", 'id = "h"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:{port}"', "is already in use"),
    "tls-key-missing": (
        "",
        'id = "h"\nprotocol = "hl7"\nport = "tls://127.0.0.1:0"\ntls_cert_path = "{tmp}/c.pem"\n'
        'tls_key_path = "{tmp}/k.pem"\ntls_ca_path = "{tmp}/ca.pem"',
        'devices["h"].tls_cert_path: {tmp}/c.pem: no such file',
    ),
}


@pytest.mark.parametrize("case", sorted(RUN_ERRORS))
def test_run_refuses_bad_machine_state_before_ready_exit_2_one_line(tmp_path, case):
    sections, device, message = RUN_ERRORS[case]
    (tmp_path / "store.db").write_bytes(b"3661 records")
    (tmp_path / "dir").mkdir()
    if case == "registry-dir":
        (tmp_path / "registry.json").mkdir()
    with _held_port() as busy:
        fill = {"tmp": tmp_path, "port": busy.getsockname()[1]}
        cfg = _run_config(tmp_path, sections.format(**fill), device and "[[devices]]\n" + device.format(**fill) + "\n")
        res = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
            capture_output=True, timeout=30, check=False, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    lines = res.stderr.decode().splitlines()
    assert res.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"bedside: {cfg}: ") and message.format(**fill) in lines[0], lines
    assert (tmp_path / "store.db").read_bytes() == b"3661 records"
