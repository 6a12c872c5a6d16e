"""The BLE link's lifecycle: one enum of states, one of inputs, one transition table.

searching --found--> connecting --connected--> setting_up --ready--> streaming
setting_up --catch_up--> catching_up --caught_up--> streaming --catch_up--> catching_up
any of those --failed/lost/not_found--> waiting --retry--> searching
"""

from __future__ import annotations

import enum
from typing import Final

from appliance.core.transitions import TransitionTable

__all__ = ["TRANSITIONS", "LinkInput", "LinkState", "step"]


class LinkState(enum.Enum):
    SEARCHING = "searching"
    CONNECTING = "connecting"
    SETTING_UP = "setting_up"
    CATCHING_UP = "catching_up"
    STREAMING = "streaming"
    WAITING = "waiting"  # backing off before the next search


class LinkInput(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    CONNECTED = "connected"
    FAILED = "failed"
    READY = "ready"
    CATCH_UP = "catch_up"
    CAUGHT_UP = "caught_up"
    LOST = "lost"
    RETRY = "retry"


_S, _E = LinkState, LinkInput
_MOVES: Final[dict[tuple[LinkState, LinkInput], LinkState]] = {
    (_S.SEARCHING, _E.FOUND): _S.CONNECTING,
    (_S.SEARCHING, _E.NOT_FOUND): _S.WAITING,
    (_S.CONNECTING, _E.CONNECTED): _S.SETTING_UP,
    (_S.CONNECTING, _E.FAILED): _S.WAITING,
    (_S.SETTING_UP, _E.READY): _S.STREAMING,
    (_S.SETTING_UP, _E.CATCH_UP): _S.CATCHING_UP,
    (_S.SETTING_UP, _E.FAILED): _S.WAITING,
    (_S.SETTING_UP, _E.LOST): _S.WAITING,
    (_S.CATCHING_UP, _E.CAUGHT_UP): _S.STREAMING,
    (_S.CATCHING_UP, _E.FAILED): _S.WAITING,
    (_S.CATCHING_UP, _E.LOST): _S.WAITING,
    (_S.STREAMING, _E.LOST): _S.WAITING,
    (_S.STREAMING, _E.FAILED): _S.WAITING,
    (_S.STREAMING, _E.CATCH_UP): _S.CATCHING_UP,  # a live record revealed a gap
    (_S.WAITING, _E.RETRY): _S.SEARCHING,
}
TRANSITIONS: Final = TransitionTable("BLE link", _MOVES)
del _S, _E


def step(state: LinkState, event: LinkInput) -> LinkState:
    """The link drives itself: an unlisted move is a bug (`UnknownTransition`, a RuntimeError)."""
    return TRANSITIONS.next(state, event)
