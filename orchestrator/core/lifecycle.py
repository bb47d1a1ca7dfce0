"""Which status changes are legal, in one table (docs/protocol.md 7), and the one
function that applies them.

Every status write of the core goes through :func:`transition` (a new record
through :func:`born`), which refuses a change that is not in the table. An
illegal change is a bug, never bad input: it raises, the message's
transaction is rolled back, and the sender gets one ``Uncaught exception``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .model import Module, ModuleStatus as M, Runtime, RuntimeStatus as R, evolve

__all__ = ["MODULE_TRANSITIONS", "RUNTIME_TRANSITIONS", "IllegalTransition",
           "transition", "born"]

#: (from, to) -> what makes a module take it; ``None`` is "no record yet"
MODULE_TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, M.QUEUED): "a create, before it is placed",
    (M.QUEUED, M.ALIVE): "placed: the create is forwarded to its runtime",
    (M.QUEUED, M.QUEUED): "no room: it waits (for its runtime, or any)",
    (M.QUEUED, M.DEAD): "deleted while waiting, or its exit reported",
    (M.ALIVE, M.ALIVE): "moved to another runtime (failover, drain)",
    (M.ALIVE, M.EXITING): "a delete, forwarded to its runtime",
    (M.ALIVE, M.KILLED): "its runtime died and it could not be moved",
    (M.ALIVE, M.DEAD): "its runtime reported its exit",
    (M.EXITING, M.DEAD): "its exit confirmed, or its runtime died or was forgotten",
    (M.KILLED, M.ALIVE): "its runtime came back (respawned), or says it still runs it",
    (M.KILLED, M.QUEUED): "its runtime came back without room for it",
    (M.KILLED, M.DEAD): "deleted while killed, its exit reported, or its runtime forgotten",
    (None, M.ALIVE): "ARENA: already running on its runtime (a keepalive lists it, or a "
                     "request left to the runtime it names)",
    (M.ALIVE, M.FAILED): "ARENA: its runtime reported it could not start it",
}

#: (from, to) -> what makes a runtime take it
RUNTIME_TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, R.ALIVE): "its first registration",
    (R.ALIVE, R.ALIVE): "it registers again",
    (R.ALIVE, R.DEAD): "a delete, its last will, silence, or an operator's forget",
    (R.DEAD, R.ALIVE): "it registers again, or is heard again (revived)",
}

_TABLES: dict[type, dict[tuple[str | None, str], str]] = {
    Module: MODULE_TRANSITIONS, Runtime: RUNTIME_TRANSITIONS}

Rec = TypeVar("Rec", Runtime, Module)


class IllegalTransition(RuntimeError):
    """A status change the table does not allow (a bug in the core)."""


def _check(kind: type, old: str | None, new: str) -> None:
    if (old, new) not in _TABLES[kind]:
        raise IllegalTransition(f"{kind.__name__.lower()} {old} -> {new}")


def transition(record: Rec, status: str, now: float, **changes: Any) -> Rec:
    """``record`` in ``status`` (changed at ``now``, with ``changes``), if the table allows."""
    _check(type(record), record.status, status)
    return evolve(record, status=status, changed_at=now, **changes)


def born(record: Rec) -> Rec:
    """A new record, checked against the table's ``None`` rows."""
    _check(type(record), None, record.status)
    return record
