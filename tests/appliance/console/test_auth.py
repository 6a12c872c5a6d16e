"""Sessions, idle expiry and failed-login limits (appliance/console/auth.py), on a fake clock."""

from appliance.console.auth import LOCKOUT_FAILURES, MAX_SESSIONS, Sessions


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_session_lives_while_used_and_dies_when_idle() -> None:
    clock = Clock()
    sessions = Sessions(60.0, clock)
    s = sessions.open("nurse")
    assert s.token != s.csrf and len(s.token) >= 32
    clock.t += 50
    assert sessions.get(s.token) is not None  # used: extended
    clock.t += 50
    assert sessions.get(s.token) is not None
    clock.t += 61
    assert sessions.get(s.token) is None
    assert sessions.get(None) is None and sessions.get("forged") is None


def test_logout_and_the_bound() -> None:
    sessions = Sessions(60.0, Clock())
    first = sessions.open("a")
    sessions.close(first.token)
    assert sessions.get(first.token) is None
    opened = [sessions.open(f"u{i}") for i in range(MAX_SESSIONS + 5)]
    assert sessions.get(opened[0].token) is None  # the oldest went
    assert sessions.get(opened[-1].token) is not None


def test_failed_logins_lock_an_address_for_the_window_only() -> None:
    clock = Clock()
    sessions = Sessions(60.0, clock)
    for _ in range(LOCKOUT_FAILURES - 1):
        sessions.failed("10.0.0.9")
    assert not sessions.locked("10.0.0.9")
    sessions.failed("10.0.0.9")
    assert sessions.locked("10.0.0.9")
    assert not sessions.locked("10.0.0.10")  # another address is not affected
    clock.t += 61
    assert not sessions.locked("10.0.0.9")


def test_parallel_guesses_cannot_pass_the_limit() -> None:
    # Attempts are counted before the slow password check: at most LOCKOUT_FAILURES get through.
    import threading

    sessions = Sessions(60.0, Clock())
    passed: list[bool] = []
    threads = [threading.Thread(target=lambda: passed.append(sessions.attempt("10.0.0.9"))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert passed.count(True) == LOCKOUT_FAILURES
    sessions2 = Sessions(60.0, Clock())
    assert sessions2.attempt("a")
    sessions2.succeeded("a")  # a good login does not count against the address
    for _ in range(LOCKOUT_FAILURES - 1):
        assert sessions2.attempt("a")
    assert not sessions2.locked("a")
