"""The co-processor's decision core: which frames to accept and what to sound.

Pure: time comes in as milliseconds (`time.ticks_ms()` on the board, any int in
tests); the caller does the I/O. The machine is a state enum plus one transition
table, as on the gateway (appliance/core/transitions.py), written again here
because the firmware cannot import the gateway.

    arming    --heartbeat--> watching     (power-on: the gateway has not spoken yet)
    arming    --timeout----> failed       (nothing within the boot grace)
    watching  --heartbeat--> watching
    watching  --timeout----> failed       (no valid heartbeat for timeout_ms)
    failed    --heartbeat--> recovered    (still sounding: the failure is not over
    recovered --heartbeat--> recovered     until the gateway acknowledges it)
    recovered --ack--------> watching
    recovered --timeout----> failed

The UART is handed to the REPL (an update) only from `arming` or `watching` and only
after a VER in the same session (`repl_refusal`): never while the failure pattern
sounds, and never on a lone HELLO + REPL pair (a stray or replayed frame pair).
"""

ARMING = "arming"
WATCHING = "watching"
FAILED = "failed"
RECOVERED = "recovered"

HEARTBEAT = "heartbeat"
TIMEOUT = "timeout"
ACK = "ack"

TABLE = {
    (ARMING, HEARTBEAT): WATCHING,
    (ARMING, TIMEOUT): FAILED,
    (WATCHING, HEARTBEAT): WATCHING,
    (WATCHING, TIMEOUT): FAILED,
    (FAILED, HEARTBEAT): RECOVERED,
    (RECOVERED, HEARTBEAT): RECOVERED,
    (RECOVERED, ACK): WATCHING,
    (RECOVERED, TIMEOUT): FAILED,
}

PRIORITIES = ("-", "L", "M", "H")
HEX = "0123456789abcdefABCDEF"  # a session is 8 of these  # none, low, medium, high: the heartbeat's alarm state


class Watch:
    """Frame acceptance (CRC done by the caller; session and sequence here) and the timeout."""

    def __init__(self, now_ms: int, timeout_ms: int = 3000, boot_grace_ms: int = 120000, mirror: bool = True) -> None:
        self.state = ARMING
        self.timeout_ms = timeout_ms
        self.boot_grace_ms = boot_grace_ms
        self.mirror = mirror
        self.session = ""
        self.last_seq = -1
        self.last_hb_ms = now_ms
        self.started_ms = now_ms
        self.audible = "-"
        self.visual = "-"
        self.bad = 0  # corrupt frames (CRC, syntax, tag, length)
        self.replayed = 0  # valid frames of another session or not newer than the last
        self.failures = 0  # times the failure pattern started
        self.version_asked = False  # a VER was answered in this session (REPL needs one)

    def _step(self, event: str) -> bool:
        target = TABLE.get((self.state, event))
        if target is None:
            return False  # not an input this state takes: dropped
        if target == FAILED and self.state != FAILED:
            self.failures += 1
        self.state = target
        return True

    def accept(self, fields: list[str] | None) -> bool:
        """Session and sequence check of a decoded frame (None = corrupt); True = act on it."""
        if fields is None or len(fields) < 3:
            self.bad += 1
            return False
        session, seq_text, command = fields[0], fields[1], fields[2]
        if len(session) != 8 or not all(c in HEX for c in session) or not seq_text.isdigit():
            self.bad += 1
            return False
        seq = int(seq_text)
        if command == "HELLO" and session != self.session:
            self.session, self.last_seq = session, seq
            self.version_asked = False
            return True
        if session != self.session or seq <= self.last_seq:
            self.replayed += 1
            return False
        self.last_seq = seq
        return True

    def heartbeat(self, now_ms: int, audible: str, visual: str) -> None:
        self.last_hb_ms = now_ms
        self.audible = audible if audible in PRIORITIES else "-"
        self.visual = visual if visual in PRIORITIES else "-"
        self._step(HEARTBEAT)

    def ack(self) -> bool:
        return self._step(ACK)

    def tick(self, since_hb_ms: int) -> None:
        """Advance the timeout; the caller gives the ms since `last_hb_ms`."""
        limit = self.boot_grace_ms if self.state == ARMING else self.timeout_ms
        if since_hb_ms >= limit and self.state != FAILED:
            self._step(TIMEOUT)

    def repl_refusal(self) -> str:
        """Why the UART may not go to the REPL now ('' = it may): the state while the
        failure pattern sounds (giving up the UART would end it), 'VER' when this
        session has not asked the version first."""
        if self.state in (FAILED, RECOVERED):
            return self.state
        if not self.version_asked:
            return "VER"
        return ""

    def sounding(self) -> str:
        """What to play: 'failure', a mirrored priority 'H'/'M'/'L' pair as 'A:V', or ''."""
        if self.state in (FAILED, RECOVERED):
            return "failure"
        if self.state == WATCHING and self.mirror and (self.audible != "-" or self.visual != "-"):
            return self.audible + ":" + self.visual
        return ""

    def status(self) -> list[str]:
        return ["ST", self.state, "1" if self.mirror else "0", str(self.bad), str(self.replayed), str(self.failures)]
