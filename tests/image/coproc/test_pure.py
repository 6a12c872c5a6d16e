"""The firmware's pure modules under CPython: the same timing as the gateway's patterns,
the same frames as the gateway's codec, and the watch's transition table."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from appliance.core.vocab import Priority
from rules.outputs.coproc_wire import crc16, frame, parse_reply
from rules.patterns import PatternConfig, buzzer_on, led_on
from tests.image.coproc.conftest import firmware_module

pattern = firmware_module("bsc_pattern")
proto = firmware_module("bsc_proto")
watch = firmware_module("bsc_watch")
LETTER = {Priority.HIGH: "H", Priority.MEDIUM: "M", Priority.LOW: "L"}


def test_buzzer_timing_is_the_gateways_own_iec_pattern():
    cfg = PatternConfig()
    for priority, letter in LETTER.items():
        period = pattern.burst(letter)[1]
        for ms in range(0, 2 * period, 5):
            t = ms + 0.5  # between whole milliseconds: no float-edge ties
            assert pattern.buzzer_on(letter, int(t)) == buzzer_on(priority, t / 1000, cfg), (priority, ms)


def test_led_timing_is_the_gateways_own_iec_pattern():
    cfg = PatternConfig()
    for priority, letter in LETTER.items():
        for ms in range(0, 10_000, 7):
            theirs = led_on(priority, (ms + 0.5) / 1000, cfg)
            ours = dict(zip(("led_red", "led_yellow", "led_cyan"), pattern.leds_on(letter, ms), strict=True))
            # 0.6 Hz is 1666.7 ms; the board's integer 1667 ms may differ within 10 ms of an edge.
            near_edge = led_on(priority, (ms - 10) / 1000, cfg) != led_on(priority, (ms + 10) / 1000, cfg)
            assert near_edge or ours == theirs, (priority, ms)


def test_the_failure_pattern_flashes_red_and_yellow_together_and_no_priority_does():
    for ms in range(0, 5000, 10):
        red, yellow, cyan = pattern.leds_on("F", ms)
        assert red == yellow and not cyan
        for letter in "HML":
            r, y, _ = pattern.leds_on(letter, ms)
            assert not (r and y)


@given(st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", min_size=1, max_size=8), max_size=6))
def test_firmware_and_gateway_frames_are_the_same_bytes(args):
    ours = proto.encode(["0123abcd", "7", "HB", *args])
    assert ours == frame("0123abcd", 7, "HB", *args)
    assert proto.decode(ours.rstrip(b"\n")) == ["0123abcd", "7", "HB", *args]
    reply = parse_reply(ours.rstrip(b"\n"))
    assert reply is not None and (reply.seq, reply.kind, reply.args) == (7, "HB", tuple(args))


@given(st.binary(max_size=120))
def test_any_bytes_decode_or_are_refused_the_same_way_on_both_sides(data):
    line = data.replace(b"\n", b"")
    firmware = proto.decode(line)
    gateway = parse_reply(line)
    if firmware is not None and len(firmware) >= 3 and firmware[1].isdigit():
        assert gateway is not None
    if gateway is not None:
        assert firmware is not None


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == proto.crc16(b"123456789") == 0x29B1  # the catalogue check value


def test_line_splitter_bounds_and_counts_overlong_lines():
    s = proto.LineSplitter()
    out = s.feed(b"$a\n" + b"x" * 300 + b"\n$b\n")
    assert out == [b"$a", b"$b"] and s.overlong == 1
    out = [line for chunk in [b"x" * 50] * 4 + [b"\n$c\n"] for line in s.feed(chunk)]
    assert out == [b"$c"] and s.overlong == 2


def test_watch_table_every_state_reaches_silence_only_through_ack():
    states = (watch.ARMING, watch.WATCHING, watch.FAILED, watch.RECOVERED)
    events = (watch.HEARTBEAT, watch.TIMEOUT, watch.ACK)
    for state, event in itertools.product(states, events):
        target = watch.TABLE.get((state, event))
        if state in (watch.FAILED, watch.RECOVERED) and target == watch.WATCHING:
            assert (state, event) == (watch.RECOVERED, watch.ACK)
    w = watch.Watch(0, timeout_ms=1000, boot_grace_ms=5000)
    w.tick(4999)
    assert w.state == watch.ARMING
    w.tick(5000)
    assert w.state == watch.FAILED and w.sounding() == "failure"
    assert not w.ack()  # no heartbeat yet: the ack is not taken
    w.heartbeat(6000, "-", "-")
    assert w.state == watch.RECOVERED and w.sounding() == "failure"
    assert w.ack() and w.sounding() == ""
    w.heartbeat(7000, "H", "M")
    assert w.sounding() == "H:M"
    w.mirror = False
    assert w.sounding() == ""
    w.tick(999)
    assert w.state == watch.WATCHING
    w.tick(1000)
    assert w.state == watch.FAILED and w.failures == 2


def test_watch_takes_a_new_session_only_with_hello_and_only_newer_sequence_numbers():
    w = watch.Watch(0)
    assert not w.accept(["aaaaaaaa", "1", "HB", "-", "-"]) and w.replayed == 1
    assert w.accept(["aaaaaaaa", "5", "HELLO"])
    assert not w.accept(["aaaaaaaa", "5", "HB"]) and not w.accept(["aaaaaaaa", "4", "HB"])
    assert w.accept(["aaaaaaaa", "6", "HB"])
    assert not w.accept(["bbbbbbbb", "9", "HB"])
    assert w.replayed == 4
    assert not w.accept(None) and not w.accept(["short", "1", "HB"]) and not w.accept(["aaaaaaaa", "x", "HB"])
    assert w.bad == 3


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=",*"), min_size=8,
               max_size=8))  # fmt: skip
def test_watch_takes_only_hex_sessions(session):
    w = watch.Watch(0)
    taken = w.accept([session, "1", "HELLO"])
    assert taken == all(c in "0123456789abcdefABCDEF" for c in session)
    assert w.bad == (0 if taken else 1)


def test_watch_refuses_the_repl_while_sounding_and_without_a_ver_in_the_session():
    w = watch.Watch(0, timeout_ms=1000, boot_grace_ms=1000)
    assert w.accept(["0badcafe", "1", "HELLO"])
    assert w.repl_refusal() == "VER"
    w.version_asked = True
    assert w.repl_refusal() == ""  # arming, VER asked
    assert w.accept(["0badcafe", "2", "HELLO"]) and w.repl_refusal() == ""  # the same session goes on
    assert w.accept(["1badcafe", "1", "HELLO"]) and w.repl_refusal() == "VER"  # a new one starts without
    w.version_asked = True
    w.tick(1000)
    assert w.state == "failed" and w.repl_refusal() == "failed"
    w.heartbeat(1000, "-", "-")
    assert w.state == "recovered" and w.repl_refusal() == "recovered"
    assert w.ack() and w.repl_refusal() == ""
