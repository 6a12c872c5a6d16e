"""The one policy every state machine's table follows for a pair it does not list."""

import enum

import pytest

from appliance.core.transitions import TransitionTable, UnknownTransition


class Door(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    LOCKED = "locked"


class Push(enum.Enum):
    CLOSE = "close"
    OPEN = "open"
    LOCK = "lock"
    UNLOCK = "unlock"


MOVES = {
    (Door.OPEN, Push.CLOSE): Door.CLOSED,
    (Door.CLOSED, Push.OPEN): Door.OPEN,
    (Door.CLOSED, Push.LOCK): Door.LOCKED,
    (Door.LOCKED, Push.UNLOCK): Door.CLOSED,
}
TABLE = TransitionTable("door", MOVES)


@pytest.mark.parametrize(("state", "event", "expected"), [(s, e, d) for (s, e), d in MOVES.items()])
def test_listed_pairs_move_to_their_target(state, event, expected):
    assert TABLE.next(state, event) is expected
    assert TABLE.accepts(state, event)


@pytest.mark.parametrize(("state", "event"), [(s, e) for s in Door for e in Push if (s, e) not in MOVES])
def test_every_unlisted_pair_raises_the_one_error(state, event):
    assert not TABLE.accepts(state, event)
    with pytest.raises(UnknownTransition, match=f"door: no transition from {state.value} on {event.value}") as info:
        TABLE.next(state, event)
    assert (info.value.machine, info.value.state, info.value.event) == ("door", state, event)


def test_the_error_is_what_the_machines_raised_before():
    # The BLE link raised RuntimeError and the OTA lifecycle ValueError: callers of either keep working.
    assert issubclass(UnknownTransition, RuntimeError)
    assert issubclass(UnknownTransition, ValueError)


def test_the_table_reads_like_the_dict_it_replaces_and_cannot_change():
    assert dict(TABLE) == MOVES
    assert len(TABLE) == len(MOVES)
    assert TABLE[(Door.OPEN, Push.CLOSE)] is Door.CLOSED
    assert (Door.OPEN, Push.LOCK) not in TABLE
    assert set(TABLE.values()) == {Door.CLOSED, Door.OPEN, Door.LOCKED}
    source = dict(MOVES)
    table = TransitionTable("door", source)
    source[(Door.OPEN, Push.LOCK)] = Door.LOCKED  # the source dict changing later changes nothing
    assert not table.accepts(Door.OPEN, Push.LOCK)
    with pytest.raises(TypeError):
        table[(Door.OPEN, Push.LOCK)] = Door.LOCKED  # type: ignore[index]
    assert "door" in repr(table)


def test_every_state_machine_in_the_project_uses_the_shared_table():
    from drivers.ble import link
    from drivers.intellivue import codec as intellivue
    from drivers.medibus import codec as medibus
    from ota import lifecycle
    from rules import states

    for module in (link, intellivue, medibus, lifecycle, states):
        assert isinstance(module.TRANSITIONS, TransitionTable), module.__name__


def test_machines_that_drop_meaningless_inputs_ask_first():
    from rules.states import AlarmState, Input, next_state

    # an alarm input that means nothing in the state leaves it as it is (no error)
    assert next_state(AlarmState.ACTIVE, Input.COND_ON) is AlarmState.ACTIVE
    assert next_state(AlarmState.INACTIVE, Input.ACK) is AlarmState.INACTIVE
