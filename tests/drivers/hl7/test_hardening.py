"""Issue #14 (safety hardening), HL7 codec and parser: every bound is enforced with
a refusal naming it, framing is configured and never guessed, timestamps that
cannot be trusted are refused, ACKs cannot be used to inject fields, and no input
makes the codec raise. Costs are compared with a baseline measured in the same run."""

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.message import MAX_SEGMENTS, Delimiters, Hl7TimeError, parse, parse_ts, unescape
from drivers.hl7.mllp import MAX_BLOCK_BYTES, frame
from drivers.hl7.pcd import MAX_CONTAINMENT_DEPTH, Verdict, build_ack
from tests.timing import best_of

EXAMPLES = Path(__file__).parents[2] / "fixtures" / "hl7"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HEAD = "MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
ROW = "OBX|{i}|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|{where}|97|262688^MDC_DIM_PERCENT^MDC\r"


def codec(**kw: object) -> Hl7Codec:
    return Hl7Codec("hl7", FixedClock(NOW), **kw)  # type: ignore[arg-type]


def oru(rows: int = 1, where: Callable[[int], str] = lambda i: f"1.1.1.{i}", msg_id: str = "ID1") -> bytes:
    return (HEAD.format(id=msg_id) + "".join(ROW.format(i=i, where=where(i)) for i in range(1, rows + 1))).encode()


def acks(c: Hl7Codec) -> list[dict[str, list[str]]]:
    out = []
    for block in c.data_to_send().split(b"\x1c\r"):
        if block:
            msg = parse(block.lstrip(b"\x0b"))
            out.append({s.name: list(s.fields) for s in msg.segments})
    return out


def bad_details(events: list[DeviceEvent]) -> list[str]:
    return [e.detail for e in events if isinstance(e, TechnicalEvent) and e.kind == "bad_frame"]


# -- finding 1: bounds per message ---------------------------------------------------
@pytest.mark.parametrize("levels", [MAX_CONTAINMENT_DEPTH + 1, 3000])
def test_deep_obx4_is_refused_naming_the_bound(levels):
    c = codec()
    events = c.feed(frame(oru(where=lambda i: ".".join(["1"] * levels))))
    (ack,) = acks(c)
    assert ack["MSA"][1:3] == ["CE", "ID1"] and "deeper than 8 levels (bound)" in ack["ERR"][3]
    assert not any(isinstance(e, Reading) for e in events)
    assert "(bound)" in bad_details(events)[0]


def test_depth_within_the_bound_is_accepted():
    c = codec()
    events = c.feed(frame(oru(where=lambda i: ".".join(["1"] * MAX_CONTAINMENT_DEPTH))))
    assert c.acks == ["CA"] and sum(isinstance(e, Reading) for e in events) == 1


def test_too_many_segments_are_refused_naming_the_bound():
    c = codec()
    events = c.feed(frame(oru(rows=MAX_SEGMENTS)))  # + MSH + OBR
    (ack,) = acks(c)
    assert ack["MSA"][1] == "CR" and f"more than {MAX_SEGMENTS}" in ack["ERR"][3]
    assert not any(isinstance(e, Reading) for e in events)
    ok = codec()
    assert sum(isinstance(e, Reading) for e in ok.feed(frame(oru(rows=MAX_SEGMENTS - 2)))) == MAX_SEGMENTS - 2


def test_an_oversized_block_gets_a_reject_for_its_control_id_and_the_next_message_works():
    c = codec()
    big = oru(msg_id="BIG7") + b"NTE|1||" + b"x" * MAX_BLOCK_BYTES + b"\r"
    events = c.feed(frame(big))
    (ack,) = acks(c)
    assert ack["MSA"][1:3] == ["CR", "BIG7"] and f"longer than {MAX_BLOCK_BYTES} bytes (bound)" in ack["ERR"][3]
    assert "(bound)" in bad_details(events)[0]
    after = c.feed(frame(oru(msg_id="NEXT")))
    assert c.acks == ["CR", "CA"] and sum(isinstance(e, Reading) for e in after) == 1


def test_hostile_message_costs_no_more_than_a_few_normal_ones():
    """The tester's 40 KB OBX-4 took 7-13 s. Now any message within the bounds costs
    about what its segments cost; compared with a normal message in the same run."""
    normal = frame(oru(rows=20))
    deep = frame(oru(where=lambda i: ".".join(["1"] * 20000)))
    rows = frame(b"".join([oru(rows=1)] + [b"OBX|%d|NM|1^X^MDC|1.%d|1\r" % (i, i) for i in range(20000)]))
    base = best_of(lambda: codec().feed(normal))
    for hostile in (deep, rows):
        assert best_of(functools.partial(codec().feed, hostile), runs=1) < 40 * base + 0.005


def test_one_read_of_tiny_blocks_is_spread_over_loop_turns():
    one = frame(b"MSH|^~\\&|S|F|||x||ORU^R01|1|P|2.6\r")
    c = codec(max_messages_per_feed=16)
    c.feed(one * 1000)
    assert c.stats.frames_bad == 16 and c.backlog == 1000 - 16
    turns = 1
    while c.backlog:
        events = c.feed(b"")
        assert len(bad_details(events)) <= 1  # one coalesced event per turn, never one per message
        turns += 1
    assert turns == -(-1000 // 16) and c.stats.frames_bad == 1000 and len(c.acks) <= 512


# -- finding 3: framing is configured, never guessed -----------------------------------
@pytest.mark.parametrize("junk", [b"MSH|not framed\r", b"hello", b"\x00\xff" * 100])
def test_a_first_byte_other_than_vt_is_skipped_not_a_mode_switch(junk):
    c = codec()
    events = c.feed(junk)
    assert bad_details(events) == ["bytes outside an MLLP block (no VT) skipped"]
    events = c.feed(frame(oru()))
    assert c.acks == ["CA"] and sum(isinstance(e, Reading) for e in events) == 1


def test_white_space_between_blocks_is_not_garbage():
    c = codec()
    events = c.feed(b"\r\n" + frame(oru()) + b"\n" + frame(oru(msg_id="ID2")))
    assert c.acks == ["CA", "CA"] and c.stats.frames_bad == 0 and not bad_details(events)


def test_unframed_accepts_bare_and_framed_messages_and_never_acks():
    c = codec(unframed=True)
    events = c.feed(oru(msg_id="A") + frame(oru(msg_id="B")) + b"\r\n" + oru(msg_id="C")) + c.finish()
    assert sum(isinstance(e, Reading) for e in events) == 3 and c.data_to_send() == b""


# -- finding 4: unframed input bounded and scanned once --------------------------------
def test_unframed_overlong_message_is_dropped_counted_and_memory_stays_bounded():
    c = codec(unframed=True)
    events = []
    for _ in range(3 * MAX_BLOCK_BYTES // 4096):
        events += c.feed(b"y" * 4096)
        assert len(c._bare) <= MAX_BLOCK_BYTES + 4096
    assert c.stats.frames_bad == 1 and "(bound)" in bad_details(events)[0]
    events = c.feed(b"\r" + oru(msg_id="after")) + c.finish()
    assert sum(isinstance(e, Reading) for e in events) == 1


@pytest.mark.parametrize("unframed", [False, True])
def test_cost_is_linear_in_input_size(unframed):
    """4x the input costs < 10x the time (the old unframed scan was quadratic: 16x)."""
    part = (oru(rows=3) if unframed else frame(oru(rows=3))).replace(b"ID1", b"X")

    def run(n: int) -> None:
        c = codec(unframed=unframed)
        data = part * n
        for i in range(0, len(data), 4096):
            c.feed(data[i : i + 4096])

    def run_junk(n: int) -> None:
        c = codec(unframed=unframed)
        for _ in range(n):
            c.feed(b"z" * 4096)

    for fn in (run, run_junk):
        small, large = best_of(functools.partial(fn, 64), 3), best_of(functools.partial(fn, 256), 3)
        assert large < 10 * small + 0.005  # quadratic would be 16x; 10x leaves room for a noisy machine


# -- finding 5: timestamps and "no exception escapes" ----------------------------------
@pytest.mark.parametrize("stamp", ["00010101000000+0100", "99991231235959-1200", "18000101", "30000101"])
@pytest.mark.parametrize("where", ["msh", "obx"])
def test_out_of_range_timestamps_are_refused_and_the_codec_goes_on(stamp, where):
    text = oru().decode()
    if where == "msh":
        text = text.replace("|20260101120000||ORU", f"|{stamp}||ORU")
    else:
        text = text.replace("262688^MDC_DIM_PERCENT^MDC\r", f"262688^MDC_DIM_PERCENT^MDC||||||||{stamp}\r")
    c = codec()
    events = c.feed(frame(text.encode()))
    (ack,) = acks(c)
    assert ack["MSA"][1] == "CE" and "outside the years" in ack["ERR"][3]
    assert not any(isinstance(e, Reading) for e in events)
    assert sum(isinstance(e, Reading) for e in c.feed(frame(oru(msg_id="ID2")))) == 1


def test_parse_ts_bounds():
    with pytest.raises(Hl7TimeError):
        parse_ts("00010101000000+0100")
    assert parse_ts("19000101") == datetime(1900, 1, 1) and parse_ts("29991231") == datetime(2999, 12, 31)
    assert parse_ts("junk") is None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), unframed=st.booleans(), chunk=st.integers(1, 64))
def test_arbitrary_bytes_never_raise(data, unframed, chunk):
    c = codec(unframed=unframed)
    for i in range(0, len(data), chunk):
        c.feed(data[i : i + chunk])
    c.finish()
    c.data_to_send()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_messages_never_raise(data):
    name = data.draw(st.sampled_from(sorted(p.name for p in EXAMPLES.glob("*.hl7"))))
    raw = bytearray((EXAMPLES / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 12))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if op == "set":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = data.draw(st.sampled_from([b"|", b"^", b"\\", b"\r", b".", b"99999999", b"\\X0D\\", b"~"]))
        elif len(raw) > 1:
            del raw[at]
    c = codec()
    c.feed(frame(bytes(raw)))
    c.feed(frame(bytes(raw)))


# -- finding 6: the ACK echoes re-encoded with our delimiters --------------------------
def test_ack_echo_cannot_inject_fields_or_segments():
    hostile = (
        "MSH#$%*@#APP|X$EVIL^1#FAC*X0D*ERR|inj###20260101120000##ORU$R01|Z#CTRL|99*X0D*MSA|AA#P#2.6###AL#NE\r"
        "OBR#1###x###20260101120000\r"
        "OBX#1#NM#150456$MDC_PULS_OXIM_SAT_O2$MDC#1.1.1.1#97#262688$MDC_DIM_PERCENT$MDC\r"
    )
    msg = parse(hostile.encode())
    ack = build_ack(msg, Verdict(), NOW, "GW1")
    assert ack is not None
    text = ack.decode()
    assert text.count("\r") == 2 and [line[:3] for line in text.split("\r") if line] == ["MSH", "MSA"]
    fields = {s.name: s for s in parse(ack).segments}
    ours = Delimiters()
    msh, msa = fields["MSH"], fields["MSA"]
    assert len(msh.fields) == 13 and len(msa.fields) == 3
    # Components survive as components; every delimiter inside a value is escaped.
    app = msh.fields[5].split("^")
    assert [unescape(c, ours) for c in app] == ["APP|X", "EVIL^1"]
    assert unescape(msh.fields[6], ours) == "FAC\rERR|inj"
    assert unescape(msa.fields[2], ours) == "CTRL|99\rMSA|AA"
    assert msh.fields[9] == "ACK^R01|Z^ACK".replace("R01|Z", "R01\\F\\Z")


def test_ack_err_text_is_escaped_and_bounded():
    msg = parse(oru())
    ack = build_ack(msg, Verdict("error", 102, "x|y^z\r" * 500), NOW, "GW1")
    assert ack is not None
    err = ack.decode().split("\r")[2]
    assert err.startswith("ERR|||102^") and len(err) < 1200 and err.count("|") == 4


# -- finding 3: the configuration field ------------------------------------------------
@pytest.mark.parametrize("unframed", [False, True])
def test_hl7_unframed_reaches_the_serial_codec(tmp_path, unframed):
    from appliance.config import parse_config
    from appliance.gateway import Gateway

    extra = "hl7_unframed = true\n" if unframed else ""
    config = parse_config(
        f'[gateway]\nbed_id = "B1"\nregistry_path = "{tmp_path / "reg.json"}"\n'
        f'[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "/dev/ttyUSB9"\n{extra}'
    )
    link = Gateway(config, outputs=[]).links["h"]
    assert isinstance(link.codec, Hl7Codec) and link.codec.unframed is unframed  # type: ignore[attr-defined]


pieces = st.lists(
    st.sampled_from(["bare", "framed", "junk", "crlf", "big"]).map(
        lambda kind: {
            "bare": oru(msg_id="B"),
            "framed": frame(oru(msg_id="F")),
            "junk": b"xx\x1c",
            "crlf": b"\r\n",
            "big": oru(msg_id="G") + b"NTE|1||" + b"n" * 3000 + b"\r",
        }[kind]
    ),
    max_size=12,
).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(pieces, st.integers(1, 97), st.booleans())
def test_byte_chunking_never_changes_what_is_decoded(data, chunk, unframed):
    def run(size: int) -> tuple[list[Reading], int, int, list[str]]:
        c = codec(unframed=unframed, max_message_bytes=2048)
        events = [e for i in range(0, len(data), size) for e in c.feed(data[i : i + size])] + c.finish()
        return [e for e in events if isinstance(e, Reading)], c.stats.frames_ok, c.stats.frames_bad, c.acks

    assert run(chunk) == run(max(1, len(data)))


@pytest.mark.parametrize("value", ["8&5", "85^1", "85~86", "\\X3835\\"])
def test_an_nm_value_with_components_repetitions_or_escapes_is_in_error(value):
    """The outside tester's 8&5 (read as a valid 8), 85^1, 85~86 and an escaped 85."""
    c = codec()
    row = "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|" + value + "|262688^MDC_DIM_PERCENT^MDC|||||R\r"
    head = "MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|NM1|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
    events = c.feed(frame((head + row).encode()))
    assert not [e for e in events if isinstance(e, Reading)] and c.acks == ["CE"]


def test_letters_or_digits_as_delimiters_are_refused():
    c = codec()
    c.feed(frame(b"MSH|8~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|D1|P|2.6\rOBR|1\rOBX|1|NM|1^X|1|85|%\r"))
    assert c.stats.frames_bad == 1 and c.stats.frames_ok == 0
