"""One policy for every state machine's transition table: an unlisted move is an error.

Each machine in the project (device links and sessions under drivers/, the alarm
states, the OTA lifecycle) is an enum plus a table of (state, event) -> state.
Before this module they disagreed about a pair the table does not list: two raised
(different errors), three ignored it. The shared policy is:

* `TransitionTable.next(state, event)` returns the listed target or raises
  `UnknownTransition`; nothing ever guesses a state for an unlisted pair.
* A machine fed by the outside world (a stray serial frame, an alarm input that
  means nothing in the current state) asks `table.accepts(state, event)` first and
  drops the input itself, where the reader sees it (documented there).

Raising is the policy because it is the one the others can be built on without
changing behaviour: "ignore" is `accepts` + `next`, with no exception on the hot
path, while a table that silently ignores could never tell a caller that it fired
an event its own code should not produce (a wireless link and the OTA agent drive
themselves, so an unlisted move there is a bug that must surface).

Part of appliance/core/, the ground floor: it imports only within it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from appliance.core.errors import BedsideError

__all__ = ["TransitionTable", "UnknownTransition"]

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class UnknownTransition(BedsideError, RuntimeError, ValueError):
    """A (state, event) pair the machine's table does not list: a bug, not bad input
    (machines fed by the outside world ask `accepts()` first), so it exits 1.

    RuntimeError and ValueError keep the callers that caught the machines' earlier
    errors working (a device link raised RuntimeError, the OTA lifecycle ValueError).
    """

    def __init__(self, machine: str, state: enum.Enum, event: enum.Enum) -> None:
        super().__init__(f"{machine}: no transition from {state.value} on {event.value}")
        self.machine = machine
        self.state = state
        self.event = event


class TransitionTable(Mapping[tuple[S, E], S], Generic[S, E]):
    """An immutable (state, event) -> state table with the one unknown-pair policy.

    It is a read-only mapping, so `table[(s, e)]`, `in`, `.items()` and `.values()`
    work as they did on the plain dicts the machines used before.
    """

    __slots__ = ("_moves", "machine")

    def __init__(self, machine: str, moves: Mapping[tuple[S, E], S]) -> None:
        self.machine = machine
        self._moves: dict[tuple[S, E], S] = dict(moves)  # a copy: the table cannot change under a machine

    def next(self, state: S, event: E) -> S:
        """The listed target of `event` in `state`; `UnknownTransition` if none is listed."""
        try:
            return self._moves[(state, event)]
        except KeyError:
            raise UnknownTransition(self.machine, state, event) from None

    def accepts(self, state: S, event: E) -> bool:
        """Whether `event` means anything in `state` (for machines that drop the rest)."""
        return (state, event) in self._moves

    def __getitem__(self, key: tuple[S, E]) -> S:
        return self._moves[key]

    def __iter__(self) -> Iterator[tuple[S, E]]:
        return iter(self._moves)

    def __len__(self) -> int:
        return len(self._moves)

    def __repr__(self) -> str:
        return f"TransitionTable({self.machine!r}, {len(self._moves)} moves)"
