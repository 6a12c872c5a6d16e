"""The alarm state machine (IEC 60601-1-8 semantics): the states (appliance.core.vocab), one table.

    INACTIVE --cond on--> PENDING --delay elapsed--> ACTIVE
    ACTIVE --ack--> ACKNOWLEDGED        ACTIVE --pause--> AUDIO_PAUSED --timer--> ACTIVE
    ACTIVE/AUDIO_PAUSED --cond off--> LATCHED (latching rule) or INACTIVE
    LATCHED --ack--> INACTIVE           LATCHED --cond on--> ACTIVE
    ACKNOWLEDGED --cond off--> INACTIVE

Escalation (medium -> high) is not a state: it changes the priority of an
ACTIVE or AUDIO_PAUSED alarm once, and is decided by the engine.
"""

from __future__ import annotations

import enum
from typing import Final

from appliance.core.transitions import TransitionTable
from appliance.core.vocab import AlarmState

__all__ = ["TRANSITIONS", "AlarmState", "Input", "next_state"]


class Input(enum.Enum):
    COND_ON = "cond_on"
    COND_OFF = "cond_off"  # condition ended, rule does not latch
    COND_OFF_LATCHING = "cond_off_latching"  # condition ended, rule latches
    DELAY_ELAPSED = "delay_elapsed"
    ACK = "ack"
    PAUSE = "pause"
    PAUSE_ELAPSED = "pause_elapsed"


S, In = AlarmState, Input
_MOVES: Final[dict[tuple[AlarmState, Input], AlarmState]] = {
    (S.INACTIVE, In.COND_ON): S.PENDING,
    (S.PENDING, In.COND_OFF): S.INACTIVE,
    (S.PENDING, In.COND_OFF_LATCHING): S.INACTIVE,  # never alarmed: nothing to latch
    (S.PENDING, In.DELAY_ELAPSED): S.ACTIVE,
    (S.ACTIVE, In.COND_OFF): S.INACTIVE,
    (S.ACTIVE, In.COND_OFF_LATCHING): S.LATCHED,
    (S.ACTIVE, In.ACK): S.ACKNOWLEDGED,
    (S.ACTIVE, In.PAUSE): S.AUDIO_PAUSED,
    (S.AUDIO_PAUSED, In.PAUSE_ELAPSED): S.ACTIVE,
    (S.AUDIO_PAUSED, In.ACK): S.ACKNOWLEDGED,
    (S.AUDIO_PAUSED, In.COND_OFF): S.INACTIVE,
    (S.AUDIO_PAUSED, In.COND_OFF_LATCHING): S.LATCHED,
    (S.ACKNOWLEDGED, In.COND_OFF): S.INACTIVE,
    (S.ACKNOWLEDGED, In.COND_OFF_LATCHING): S.INACTIVE,  # acknowledged is already seen
    (S.LATCHED, In.ACK): S.INACTIVE,
    (S.LATCHED, In.COND_ON): S.ACTIVE,
    (S.LATCHED, In.PAUSE): S.LATCHED,
}
TRANSITIONS: Final = TransitionTable("alarm", _MOVES)


def next_state(state: AlarmState, event: Input) -> AlarmState:
    """The table's answer; an input with no entry leaves the state unchanged.

    Conditions are re-evaluated on every observation, so most inputs repeat what the
    state already says (cond_on while active, ack with nothing to acknowledge): they
    are dropped here, on purpose, rather than listed as self-loops.
    """
    if not TRANSITIONS.accepts(state, event):
        return state
    return TRANSITIONS.next(state, event)
