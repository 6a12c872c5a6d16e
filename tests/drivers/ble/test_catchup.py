"""The stored-record catch-up decisions, sans I/O: vectors for each situation the link
meets, and properties over random sequences of connections, records and answers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.catchup import CatchUp, Offer, Settled, racp_outcome
from drivers.ble.glucose import racp_report_after, racp_report_all

REPORT_ALL = bytes.fromhex("0101")
REPORT_AFTER_2 = bytes.fromhex("0103010300")  # report, >=, sequence-number filter, 3


def catch_up(unit: CatchUp, seqs, *, answered=True, refusal=""):
    """One catch-up: request, the records as they arrive (each delivered), the end."""
    request = unit.request()
    settled = [unit.delivered(s) if unit.offer(s) is Offer.DELIVER else None for s in seqs]
    return request, settled, unit.finish(answered=answered, refusal=refusal)


def test_a_device_never_seen_is_asked_for_everything():
    unit = CatchUp()
    unit.connected()
    request, settled, end = catch_up(unit, [1, 2, 3])
    assert request == REPORT_ALL == racp_report_all()
    assert settled == [Settled.HELD] * 3  # stored: the cursor moves only when the report ends
    assert (end.cursor, end.complete, end.abort, end.refusal) == (3, True, False, "")
    assert unit.cursor == unit.floor == 3 and not unit.catching_up


def test_a_known_device_is_asked_only_for_newer_records_and_old_ones_are_skipped():
    unit = CatchUp(cursor=2)
    unit.connected()
    request, settled, end = catch_up(unit, [2, 1, 3, 3, 4])
    assert request == REPORT_AFTER_2 == racp_report_after(2)
    assert settled == [None, None, Settled.HELD, None, Settled.HELD]
    assert unit.duplicates == 3 and end.cursor == 4


def test_a_record_sent_before_the_request_does_not_skip_the_gap():
    # A meter that sends its newest record as soon as notifications are on.
    unit = CatchUp()
    unit.connected()
    assert unit.offer(5) is Offer.DELIVER and unit.delivered(5) is Settled.HELD
    assert unit.cursor is None
    request, _, end = catch_up(unit, [1, 2, 3, 4, 5])
    assert request == REPORT_ALL  # not "after 5"
    assert unit.duplicates == 1 and end.cursor == 5


def test_a_complete_report_with_deleted_records_moves_past_them():
    unit = CatchUp(cursor=10)
    unit.connected()
    *_, end = catch_up(unit, [11, 13])  # 12 was deleted on the device
    assert end.complete and end.cursor == 13


def test_a_report_that_runs_out_of_time_stops_below_the_first_hole_and_aborts():
    unit = CatchUp(cursor=10)
    unit.connected()
    *_, end = catch_up(unit, [11, 12, 14], answered=False, refusal="late")
    assert (end.cursor, end.complete, end.abort, end.refusal) == (12, False, True, "")
    assert unit.request() == racp_report_after(12)  # the next one starts at the hole


def test_a_refused_report_keeps_the_contiguous_part_and_names_the_reason():
    unit = CatchUp(cursor=10)
    unit.connected()
    *_, end = catch_up(unit, [12], refusal="operand not supported")
    assert (end.cursor, end.complete, end.abort, end.refusal) == (10, False, False, "operand not supported")


def test_an_empty_store_leaves_no_cursor():
    unit = CatchUp()
    unit.connected()
    *_, end = catch_up(unit, [])
    assert end.cursor is None and unit.request() == REPORT_ALL


def test_live_records_move_the_cursor_one_by_one_and_a_jump_asks_for_the_gap():
    unit = CatchUp(cursor=5)
    unit.connected()
    catch_up(unit, [])
    assert unit.offer(6) is Offer.DELIVER and unit.delivered(6) is Settled.PERSIST
    assert unit.cursor == 6 and not unit.gap
    assert unit.offer(9) is Offer.DELIVER and unit.delivered(9) is Settled.GAP
    assert unit.cursor == 6 and unit.gap  # 7 and 8 were never sent
    request, settled, end = catch_up(unit, [6, 7, 8, 9])
    assert request == racp_report_after(5) and not unit.gap  # the floor: 6 comes again, skipped
    assert settled == [None, Settled.HELD, Settled.HELD, None]
    assert end.cursor == 9


def test_a_bad_frame_is_not_delivered_so_its_number_stays_missing():
    unit = CatchUp(cursor=1)
    unit.connected()
    unit.request()
    assert unit.offer(2) is Offer.DELIVER  # ... but decoding failed: `delivered` is not called
    assert unit.offer(3) is Offer.DELIVER and unit.delivered(3) is Settled.HELD
    assert unit.finish(answered=False).cursor == 1
    assert unit.offer(2) is Offer.DELIVER  # asked for again, not a duplicate


def test_a_stop_mid_catch_up_keeps_what_arrived_without_a_hole():
    unit = CatchUp(cursor=3)
    unit.connected()
    unit.request()
    for seq in (4, 5, 7):
        unit.delivered(seq)
    assert unit.stop() == 5
    unit.disconnected()
    assert unit.stop() == 5  # not catching up: nothing to settle


def test_nothing_offered_after_a_stop_is_delivered_until_the_next_connection():
    """What arrives while a stopping link disconnects would be past the persisted cursor:
    it is dropped (not counted as a duplicate) and asked for again on the next start."""
    unit = CatchUp(cursor=3)
    unit.connected()
    unit.request()
    unit.delivered(4)
    assert unit.stop() == 4
    assert unit.offer(5) is Offer.DROP and unit.duplicates == 0
    unit.disconnected()
    assert unit.offer(5) is Offer.DROP and unit.cursor == 4
    unit.connected()
    assert unit.offer(5) is Offer.DELIVER


def test_a_stop_while_streaming_changes_nothing():
    unit = CatchUp(cursor=3)
    unit.connected()
    catch_up(unit, [4])
    unit.delivered(6)  # live, behind a gap
    assert unit.stop() == 4


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        ("06000101", ""),  # response to report: success
        ("06000106", ""),  # no records found: nothing to send is a complete report
        ("06000102", "op code not supported"),
        ("05000300", None),  # a count answer does not end a report
        ("0500", "number of records"),  # ... a cut-short one is unreadable
        ("06", "record access control point"),  # unreadable: ends the wait as a refusal
        ("0101", "not a response"),
    ],
)
def test_racp_answers(data, outcome):
    result = racp_outcome(bytes.fromhex(data))
    if outcome:
        assert result is not None and outcome in result
    else:
        assert result == outcome


# -- properties ----------------------------------------------------------------------
# A run is a sequence of connections; on each the device may send a live record first,
# then answers a report with some of its records (in order, some lost on the air), in
# time or not, possibly refusing; live records follow; the gateway may stop at any point.

STORE = 40  # records 1..STORE exist, some deleted on the device

connection = st.fixed_dictionaries(
    {
        "early": st.lists(st.integers(1, STORE), max_size=2),
        "lost": st.sets(st.integers(1, STORE), max_size=8),  # never arrive in the report
        "answered": st.booleans(),
        "refused": st.booleans(),
        "live": st.lists(st.integers(1, STORE + 5), max_size=6),
        "stop_during": st.sampled_from(["no", "report", "live"]),
    }
)


def run(deleted, connections, start):
    """Drive CatchUp as the link does and check the invariants after every step."""
    unit = CatchUp(cursor=start)
    absent = set(deleted)  # what a complete report may skip
    delivered: set[int] = set(range(1, (start or 0) + 1))
    cursors = [start or 0]

    def check():
        cursor = unit.cursor or 0
        assert cursor >= cursors[-1], "the cursor never goes back"
        cursors.append(cursor)
        missing = [n for n in range(1, cursor + 1) if n not in delivered and n not in absent]
        assert not missing, f"cursor {cursor} passed records never delivered: {missing}"
        assert unit.floor is None or unit.floor <= cursor, "a request never starts past the cursor"

    def arrive(seq, on_connection):
        if unit.offer(seq) is Offer.DELIVER:
            assert seq not in on_connection, "delivered twice on one connection"
            on_connection.add(seq)
            delivered.add(seq)
            unit.delivered(seq)
        check()

    for conn in connections:
        unit.connected()
        on_connection: set[int] = set()
        for seq in conn["early"]:
            if seq not in deleted:  # a record deleted on the device is never sent
                arrive(seq, on_connection)
        floor = unit.floor or 0
        unit.request()
        for seq in range(floor + 1, STORE + 1):
            if seq not in deleted and seq not in conn["lost"]:
                arrive(seq, on_connection)
        if conn["stop_during"] == "report":
            unit.stop()
            check()
            return unit
        answered = conn["answered"]
        unit.finish(answered=answered, refusal="refused" if answered and conn["refused"] else "")
        check()
        for seq in conn["live"]:
            if seq not in deleted:
                arrive(seq, on_connection)
        if conn["stop_during"] == "live":
            unit.stop()
            check()
            return unit
        unit.disconnected()
    return unit


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.integers(1, STORE), max_size=6),
    st.lists(connection, min_size=1, max_size=5),
    st.none() | st.integers(0, 10),
)
def test_the_cursor_never_passes_a_record_neither_delivered_nor_absent(deleted, connections, start):
    for conn in connections:
        if conn["answered"] and not conn["refused"]:
            # A complete report sends every record the device has after the cursor.
            conn["lost"] = set()
    run(deleted, connections, start)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, STORE), max_size=6), st.lists(connection, min_size=1, max_size=4))
def test_one_complete_report_brings_the_cursor_to_the_newest_record(deleted, connections):
    for conn in connections:
        conn.update(answered=True, refused=False, lost=set(), live=[], stop_during="no")
    unit = run(deleted, connections, None)
    newest = max(set(range(1, STORE + 1)) - deleted)
    assert unit.cursor == newest
