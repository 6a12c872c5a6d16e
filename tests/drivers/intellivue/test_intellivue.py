"""The IntelliVue session codec against the monitor simulator, in memory, on a fixed clock."""

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock
from appliance.core.model import Reading, TechnicalEvent
from drivers.codec import SessionCodec
from drivers.intellivue import wire
from drivers.intellivue.codec import TRANSITIONS, IntelliVueCodec, IntelliVueTiming, SessionState, Trigger
from drivers.intellivue.frame import FrameDecoder, encode_frame
from hil.intellivue_sim import MonitorSim
from hil.scenarios import Vitals, vitals_at

S = SessionState
WALL = datetime(2026, 3, 1, 8, 0, 0)


class Wire:
    """Codec and simulated monitor joined by a lossless cable; time only moves in `run`."""

    def __init__(self, scenario="steady", timing=None, vitals=None):
        self.clock = FixedClock(datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC))
        self.codec = IntelliVueCodec("mp70", self.clock, timing or IntelliVueTiming())
        self.sim = MonitorSim(vitals or (lambda t: vitals_at(scenario, t)), lambda: WALL)
        self.events = []
        self.to_monitor = bytearray()
        self.silent = False
        self.t = 0.0

    def start(self):
        self.events += self.codec.opened()

    def run(self, seconds, step=0.1):
        for _ in range(round(seconds / step)):
            out = self.codec.data_to_send()
            self.to_monitor += out
            back = b"" if self.silent else self.sim.feed(out, self.t)
            if back:
                self.events += self.codec.feed(back)
            self.clock.advance(step)
            self.t += step
            self.events += self.codec.tick()

    def readings(self):
        return [e for e in self.events if isinstance(e, Reading)]

    def technical(self, kind):
        return [(e.active, e.detail) for e in self.events if isinstance(e, TechnicalEvent) and e.kind == kind]

    def sent(self):
        frames = FrameDecoder().feed(bytes(self.to_monitor))
        return [wire.parse_message(p) if p[:1] != b"\x0d" else "assoc" for p in frames]


def state(w: Wire) -> SessionState:
    """Read through a call: mypy would otherwise narrow the attribute across feeds."""
    return w.codec.state


def test_is_a_session_codec_and_the_table_covers_every_path():
    codec = IntelliVueCodec("x", FixedClock(WALL.replace(tzinfo=UTC)))
    assert isinstance(codec, SessionCodec)
    assert TRANSITIONS[(S.CLOSED, Trigger.OPENED)] is S.ASSOCIATING
    for state in (S.ASSOCIATING, S.AWAIT_MDS, S.POLLING):
        assert TRANSITIONS[(state, Trigger.SILENCE)] is S.ASSOCIATING
        assert TRANSITIONS[(state, Trigger.SHUTDOWN)] is S.RELEASING
        assert TRANSITIONS[(state, Trigger.LOST)] is S.CLOSED
    assert (S.CLOSED, Trigger.SILENCE) not in TRANSITIONS  # a closed port has no session to lose


def test_association_mds_create_and_polling():
    w = Wire(vitals=lambda t: Vitals(97, 72, 3.5))
    w.start()
    w.run(5)
    assert [(a.value, t.value, b.value) for a, t, b in w.codec.transitions] == [
        ("closed", "opened", "associating"),
        ("associating", "accepted", "await_mds"),
        ("await_mds", "mds_create", "polling"),
    ]
    assert w.sim.associations == 1 and w.codec.associations == 1
    # The monitor's poll period (0.5 s) is shorter than ours (1 s): ours wins.
    assert 8 <= w.codec.polls_sent <= 12
    sent = w.sent()
    assert sent[0] == "assoc"
    assert any(isinstance(m, wire.OtherMessage) for m in sent)  # the MDS create result (a RORS from us)
    by_label = {r.label: r for r in w.readings()}
    assert by_label["0x4182"].value == 72.0 and by_label["0x4182"].unit == "/min"
    assert by_label["0x4BB8"].value == 97.0 and by_label["0x4BB8"].unit == "%"
    assert (by_label["0x4A05"].value, by_label["0x4A06"].value, by_label["0x4A07"].value) == (118.0, 76.0, 90.0)
    assert by_label["0x4B48"].value == 36.9 and by_label["0x4B48"].unit == "Cel"
    # Device time: the MDS create's absolute time plus the relative time elapsed since it.
    first = w.readings()[0].device_time
    assert first is not None and WALL <= first < WALL.replace(second=2)
    assert w.codec.stats.frames_bad == 0 and w.technical("session_lost") == []


def test_sensor_off_gives_nan_values_as_missing_with_measurement_flags_and_a_technical_alert():
    w = Wire(vitals=lambda t: Vitals(97, 72, 3.0, sensor_off=True))
    w.start()
    w.run(3)
    spo2 = [r for r in w.readings() if r.label == "0x4BB8"][-1]
    assert spo2.value is None
    assert {"missing", "float_nan", "invalid_measurement", "alarm_medium_tech_0x4bb8_0x0101"} <= spo2.flags


def test_device_alerts_ride_on_the_readings_with_their_priority():
    w = Wire(vitals=lambda t: Vitals(82, 130, 3.0))
    w.start()
    w.run(4)
    flags = w.readings()[-1].flags
    assert "alarm_high_phys_0x4bb8_0x0002" in flags and "alarm_medium_phys_0x4182_0x0004" in flags


def test_silent_monitor_means_keepalives_then_reassociation_once_reported():
    timing = IntelliVueTiming(keepalive_after_s=1.0, silence_timeout_s=3.0)
    w = Wire(timing=timing)
    w.start()
    w.run(3)
    w.silent = True
    w.to_monitor.clear()
    w.run(3.5)
    keepalives = [m for m in w.sent() if m != "assoc" and isinstance(m, wire.OtherMessage)]
    assert keepalives  # single MDS polls went out while the monitor was quiet
    assert state(w) is S.ASSOCIATING
    assert w.technical("session_lost") == [(True, "no frame from the monitor for 3 s")]
    w.run(10)  # still silent: association retried, loss not reported again
    assert w.sent().count("assoc") >= 2 and len(w.technical("session_lost")) == 1
    w.silent = False
    w.run(6)  # the next association retry (every 5 s) is answered
    assert state(w) is S.POLLING and w.technical("session_lost")[-1] == (False, "")
    assert w.sim.associations == 2


def test_monitor_reboot_mid_reply_drops_the_half_frame_and_reassociates():
    timing = IntelliVueTiming(keepalive_after_s=1.0, silence_timeout_s=2.0)
    w = Wire(timing=timing)
    w.start()
    w.run(2)
    before = len(w.readings())
    full = w.sim.feed(w.codec.data_to_send() or wire_poll(w), w.t)
    w.events += w.codec.feed(full[: len(full) // 2])  # the reboot cut this reply short
    w.sim.reboot()
    w.run(6)
    assert state(w) is S.POLLING and w.sim.associations == 2
    assert w.codec.stats.frames_bad >= 1  # the cut frame, counted when the next BOF arrived
    assert len(w.readings()) > before


def wire_poll(w):
    return encode_frame(wire.extended_poll(99, 99, wire.NOM_MOC_VMO_METRIC_NU))


def test_refusal_waits_before_asking_again_and_abort_reassociates_at_once():
    w = Wire(timing=IntelliVueTiming(refused_retry_s=4.0))
    w.start()
    w.events += w.codec.feed(encode_frame(b"\x0c\x00"))
    assert state(w) is S.ASSOCIATING and w.technical("session_lost")[0][0] is True
    w.to_monitor.clear()
    w.codec.data_to_send()
    w.silent = True
    w.run(3.5)
    assert w.sent() == []  # not hammering a monitor that said no
    w.run(1)
    assert w.sent() == ["assoc"]
    w.silent = False
    w.run(6)
    assert state(w) is S.POLLING
    w.events += w.codec.feed(encode_frame(b"\x19\x2e" + bytes(46)))
    assert state(w) is S.ASSOCIATING


def test_monitor_release_is_answered_and_shutdown_sends_a_release():
    w = Wire()
    w.start()
    w.run(2)
    w.to_monitor.clear()
    w.events += w.codec.feed(encode_frame(wire.release_request()))
    w.to_monitor += w.codec.data_to_send()
    assert w.sent()[:2] == [wire.ReleaseResponse(), "assoc"]
    w.run(2)
    w.codec.closing()
    assert state(w) is S.RELEASING
    assert FrameDecoder().feed(w.codec.data_to_send()) == [wire.release_request()]
    w.events += w.codec.feed(encode_frame(wire.release_response()))
    assert state(w) is S.CLOSED


def test_no_mds_create_after_accept_times_out():
    w = Wire(timing=IntelliVueTiming(mds_timeout_s=2.0))
    w.start()
    w.codec.data_to_send()
    w.events += w.codec.feed(encode_frame(bytes.fromhex("0e10") + bytes.fromhex("00010028 80000000 00000fa0")))
    assert state(w) is S.AWAIT_MDS
    w.silent = True
    w.run(2.5)
    assert state(w) is S.ASSOCIATING and "no MDS create" in w.technical("session_lost")[0][1]


def test_byte_at_a_time_and_one_big_read_give_the_same_readings():
    w = Wire()
    w.start()
    w.run(1)
    stream = w.sim.feed(wire_poll(w), 1.0) * 3
    one, two = IntelliVueCodec("a", w.clock), IntelliVueCodec("a", w.clock)
    whole = [e for e in one.feed(stream) if isinstance(e, Reading)]
    split = [e for b in stream for e in two.feed(bytes([b])) if isinstance(e, Reading)]
    assert whole == split and len(whole) == 3 * 13  # 7 single + 2 compound x 3 values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_corrupted_streams_never_raise_and_the_next_good_reply_decodes(data):
    w = Wire()
    w.start()
    w.run(1)
    good = w.sim.feed(wire_poll(w), 1.0)
    noisy = bytearray(good)
    for _ in range(data.draw(st.integers(1, 8))):
        noisy[data.draw(st.integers(0, len(noisy) - 1))] = data.draw(st.integers(0, 255))
    codec = IntelliVueCodec("f", w.clock)
    codec.feed(bytes(noisy) + data.draw(st.binary(max_size=64)))
    after = [e for e in codec.feed(b"\xc1" + good) if isinstance(e, Reading)]
    assert len(after) == 13
