"""Dräger MEDIBUS: fact-sheet vectors, parser edge cases, data formats, the session against
the simulated ventilator on a fixed clock, fuzzing."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock, MonotonicUTC
from appliance.core.model import Reading, TechnicalEvent
from drivers.codec import SessionCodec
from drivers.medibus.codec import TRANSITIONS, MedibusCodec, MedibusState, MedibusTiming, Trigger
from drivers.medibus.data import parse_alarms, parse_datetime, parse_identity, parse_measured
from drivers.medibus.frame import Control, MedibusParser, Message, checksum, command, response
from hil.medibus_sim import DraegerSim
from hil.scenarios import Vitals

WALL = datetime(2026, 10, 3, 9, 15, 0)


# -- vectors from the protocol definition (fact sheet §10; the printed errata excluded) --
def test_checksum_vectors():
    assert command(0x30) == b"\x1b04B\r"  # NOP: printed "46" is an erratum, the sum is 0x4B
    assert command(0x51) == b"\x1bQ6C\r"  # ICC
    assert response(0x52, b"0161'My PC'01.00:03.00")[-3:] == b"FC\r"  # the PC device-ID example
    assert response(0x24, b"EB 98 ")[-3:] == b"5D\r"  # example 3: printed "7A" is an erratum
    assert checksum(b"\x01\x52") == b"53"


def test_parser_embedded_command_realtime_bytes_and_controls():
    outer = response(0x24, b"EB 98 ")
    embedded = outer[:4] + command(0x52) + outer[4:]
    noisy = embedded[:2] + b"\xd1\x83\xa5" + embedded[2:] + b"\x11\x13"
    parser = MedibusParser()
    assert parser.feed(noisy) == [
        Message("command", 0x52, b""),
        Message("response", 0x24, b"EB 98 "),
        Control("suspend"),
        Control("resume"),
    ]
    assert parser.stats.realtime_bytes == 3


def test_bad_checksum_is_counted_and_a_bad_command_asks_for_a_nak():
    parser = MedibusParser()
    assert parser.feed(b"\x1bQ6D\r" + command(0x30)) == [Message("command", 0x30, b"")]
    assert parser.stats.messages_bad == 1 and parser.bad_commands == [0x51]


def test_cancel_drops_the_message_in_progress():
    parser = MedibusParser()
    full = response(0x24, b"EB 98 ")
    assert parser.feed(full[:5] + b"\x18" + full) == [Control("cancel"), Message("response", 0x24, b"EB 98 ")]


def test_measured_values_twins_and_absent_values():
    data = b"EB 98 E1 72 B9 7.4" + b"82 .45" + b"88 450" + b"78  -2"
    assert parse_measured(data) == [("EB", 98.0), ("E1", 72.0), ("B8", 7.4), ("82", 0.45), ("82", 0.45), ("78", -2.0)]


def test_alarms_with_priorities_and_abbreviations():
    alarms = parse_alarms(b"N10" + b'PAW "#'.ljust(12) + b"707" + b"SPO2 $&".ljust(12), 1)
    assert [(a.priority, a.code, a.phrase) for a in alarms] == [(30, "10", "PAW HIGH"), (7, "07", "SPO2 LOW")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"09:15:00" + b"03-OKT-26", datetime(2026, 10, 3, 9, 15)),
        (b"23:59:59" + b"31-DEZ-99", datetime(1999, 12, 31, 23, 59, 59)),
        (b"12:00:00" + b"15-MAI-04", datetime(2004, 5, 15, 12, 0)),
        (b" 8:06:05" + b" 4-MAR 2", datetime(2002, 3, 4, 8, 6, 5)),  # PM 8040 spaces
        (b"12:00:00" + b"15-FOO-04", None),
    ],
)
def test_german_dates_and_two_digit_years(text, expected):
    assert parse_datetime(text) == expected


def test_device_identity():
    ident = parse_identity(b"8240'Evita 4'04.00:04.00")
    assert ident is not None and (ident.device_id, ident.name, ident.revision) == ("8240", "Evita 4", "04.00:04.00")


# -- the session ---------------------------------------------------------------------
class Cable:
    def __init__(self, model="evita4", vitals=None, timing=None, realtime=True):
        vitals = vitals or Vitals(97, 72, 3.0)
        self.clock = FixedClock(datetime(2026, 10, 3, tzinfo=UTC))
        self.codec = MedibusCodec("evita", self.clock, timing)
        self.sim = DraegerSim(model, lambda t: vitals, lambda: WALL, realtime=realtime)
        self.events = []
        self.t = 0.0
        self.cut = False  # cable cut: nothing crosses

    def run(self, seconds):
        for _ in range(round(seconds / 0.1)):
            out = self.codec.data_to_send()
            back = b"" if self.cut else self.sim.feed(out, self.t) + self.sim.poll(self.t)
            self.events += self.codec.feed(back)
            self.clock.advance(0.1)
            self.t += 0.1
            self.events += self.codec.tick()

    def readings(self):
        return [e for e in self.events if isinstance(e, Reading)]

    def lost(self):
        return [e.active for e in self.events if isinstance(e, TechnicalEvent) and e.kind == "session_lost"]


def state(c: Cable) -> MedibusState:
    """Through a call, so mypy does not narrow the attribute across feeds."""
    return c.codec.state


def test_table_and_protocol():
    assert isinstance(MedibusCodec("x", MonotonicUTC()), SessionCodec)
    assert TRANSITIONS[(MedibusState.ACTIVE, Trigger.LINK_TIMEOUT)] is MedibusState.INITIALIZING
    assert TRANSITIONS[(MedibusState.ACTIVE, Trigger.SHUTDOWN)] is MedibusState.STOPPED


def test_initialisation_identity_polling_and_realtime_bytes_ignored():
    c = Cable()
    c.events += c.codec.opened()
    c.run(6)
    assert state(c) is MedibusState.ACTIVE
    assert c.sim.host_identity == b"0161'Bedside Gateway'01.00:04.03"  # answered, not empty
    assert c.codec.identity is not None and c.codec.identity.name == "Evita 4"
    values = {r.label: r.value for r in c.readings()}
    assert values["CP1_EB"] == 97.0 and values["CP1_E1"] == 72.0 and values["CP1_B8"] == 7.4
    assert c.codec.stats.frames_bad == 0 and c.codec.timeouts == 0
    # The Evita 4 has no clock request: its empty response leaves device time unset.
    assert c.readings()[-1].device_time is None


def test_clock_from_a_device_that_answers_it():
    c = Cable(model="evitaxl")
    c.events += c.codec.opened()
    c.run(4)
    stamp = c.readings()[-1].device_time
    assert stamp is not None and WALL <= stamp < WALL.replace(second=10)


def test_device_alarms_with_their_priority_band():
    c = Cable(vitals=Vitals(85, 130, 3.0))
    c.events += c.codec.opened()
    c.run(8)
    assert {"alarm_low_cp1_07", "alarm_high_cp1_1e"} <= c.readings()[-1].flags


def test_idle_nop_and_device_nop_answered():
    c = Cable(timing=MedibusTiming(poll_period_s=60))
    c.events += c.codec.opened()
    c.run(10)
    assert c.sim.requests.count(0x30) >= 2  # our NOPs keep the link up while nothing is polled
    assert state(c) is MedibusState.ACTIVE and c.lost() == []


def test_silence_reinitialises_once_reported_then_recovers():
    c = Cable()
    c.events += c.codec.opened()
    c.run(3)
    c.cut = True
    c.run(4)
    assert state(c) is MedibusState.INITIALIZING and c.lost() == [True]
    c.run(4)
    assert c.lost() == [True]  # ICC repeats every 3 s without reporting again
    c.cut = False
    c.run(5)
    assert state(c) is MedibusState.ACTIVE and c.lost() == [True, False]


def test_dc1_holds_our_transmission_until_dc3_and_a_missing_dc3_reinitialises():
    c = Cable()
    c.events += c.codec.opened()
    c.run(3)
    c.events += c.codec.feed(c.sim.pause_host(c.t, 1.0))
    c.codec.tick()
    assert c.codec.data_to_send() == b""  # suspended: held back
    c.run(2)
    assert state(c) is MedibusState.ACTIVE and c.lost() == []
    c.events += c.codec.feed(b"\x11")  # suspend, never resumed
    c.sim.feed(b"", c.t)
    c.clock.advance(3.5)
    c.events += c.codec.tick()
    assert state(c) is MedibusState.INITIALIZING and c.lost() == [True]


def test_corrupt_device_command_gets_a_nak_and_shutdown_sends_stop():
    c = Cable()
    c.events += c.codec.opened()
    c.run(3)
    c.codec.data_to_send()
    c.events += c.codec.feed(b"\x1b0FF\r")
    assert c.codec.data_to_send() == response(0x15)
    c.codec.closing()
    assert c.codec.data_to_send() == command(0x55)
    c.sim.feed(command(0x55), c.t)
    assert c.sim.stopped == 1


def test_byte_at_a_time_equals_one_read():
    stream = response(0x24, b"EB 97 E1 71 ") * 2 + command(0x30)
    one, two = MedibusCodec("a", MonotonicUTC()), MedibusCodec("a", MonotonicUTC())
    whole = one.feed(stream)
    split = [e for b in stream for e in two.feed(bytes([b]))]
    assert whole == split and len(whole) == 4
    assert one.data_to_send() == two.data_to_send() == response(0x30)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_garbage_then_a_good_response(garbage):
    codec = MedibusCodec("f", MonotonicUTC())
    codec.feed(garbage)
    codec.feed(b"\r")  # end whatever the garbage left open
    after = [e for e in codec.feed(response(0x24, b"EB 96 ")) if isinstance(e, Reading)]
    assert [(r.label, r.value) for r in after] == [("CP1_EB", 96.0)]
