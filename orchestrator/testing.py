"""Test doubles and probes that ship with the orchestrator, for its tests and yours.

- :class:`CoreHarness` drives the pure core by hand: no reactor, no broker.
- :class:`MemoryJournal` is a :class:`~orchestrator.service.Journal` whose batches
  become durable only when the test says so (or fail when it says so).
- :class:`RecordingPublisher` keeps what would have gone to the broker.

With a ``task.Clock`` as the reactor these run the real glue
(:class:`~orchestrator.service.OrchestratorService`) without any I/O.
Nothing here is used by the running service.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

from .adapters.store import JournaledTables, LoadReport
from .config import Config
from .core.effects import Effect, Event, Publish
from .core.liveness import Liveness, allowed_silence
from .core.protocol import Orchestrator
from .core.registry import Key, Record, Registry

__all__ = ["CoreHarness", "MemoryJournal", "Batch", "RecordingPublisher", "silence_allowed"]


class CoreHarness:
    """An orchestrator with predictable ids (``id-1``, ``id-2``...) and a clock the test moves."""

    def __init__(self, **config: Any) -> None:
        ids = (f"id-{n}" for n in itertools.count(1))
        self.config = replace(Config(), **config)
        self.core = Orchestrator(self.config, new_id=lambda: next(ids))
        self.registry = self.core.registry
        self.topics = self.core.topics
        self.now = 1_000_000.0
        self.events: list[Event] = []

    def send(self, topic: str, msg: Any) -> list[Publish]:
        """Handle one message on ``realm/proc/<topic>``; return what would be published."""
        payload = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        return self._split(self.core.handle(f"realm/proc/{topic}", payload, self.now).effects)

    def sweep(self) -> list[Publish]:
        return self._split(self.core.sweep(self.now))

    def _split(self, effects: list[Effect]) -> list[Publish]:
        """The publishes as they go on the wire (through JSON: tuples become lists)."""
        self.events.extend(e for e in effects if isinstance(e, Event))
        self.core.take_changes()
        return [Publish(e.topic, json.loads(e.body()), e.kind, e.outbox)
                for e in effects if isinstance(e, Publish)]


@dataclass
class Batch:
    """One committed journal batch, and the Deferred the glue waits on."""

    changes: dict[Key, Record | None]
    next_serial: int
    meta: dict[str, Any] | None
    durable: Deferred[None]
    tail: bytes = b""                           # the delivery tables' delta (JSON members)


class MemoryJournal:
    """A journal in memory whose commits the test makes durable by hand.

    ``commit`` returns a Deferred that fires only on :meth:`fire` (in commit order,
    like a real group fsync) or fails on :meth:`fail`.
    """

    def __init__(self) -> None:
        self.path = "<memory>"
        self.seq = 0
        self.snapshot_seq: int | None = None
        self.batches: list[Batch] = []          # every batch committed, in order
        self.pending: list[Batch] = []          # those not durable yet
        self.snapshots: list[dict[str, Any]] = []
        self.closed = False
        self._flushes: list[Deferred[None]] = []

    # -- the Journal protocol --
    def load(self, registry: Registry, tables: JournaledTables | None = None) -> LoadReport:
        return LoadReport()

    def commit(self, changes: dict[Key, Record | None], next_serial: int,
               meta: dict[str, Any] | None = None, tail: bytes = b"") -> Deferred[None]:
        self.seq += 1
        batch = Batch(dict(changes), next_serial, meta, Deferred(), tail)
        self.batches.append(batch)
        self.pending.append(batch)
        return batch.durable

    def flush(self) -> Deferred[None]:
        if not self.pending:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._flushes.append(d)
        return d

    def snapshot(self, registry: Registry, meta: Callable[[], dict[str, Any]],
                 tables: JournaledTables | None = None) -> Deferred[None]:
        self.snapshots.append(meta())
        self.snapshot_seq = self.seq
        return succeed(None)

    def close(self) -> None:
        self.closed = True

    # -- what the test does --
    def fire(self, n: int | None = None) -> None:
        """Make the oldest ``n`` pending batches durable (all of them by default)."""
        count = len(self.pending) if n is None else n
        ready, self.pending = self.pending[:count], self.pending[count:]
        for batch in ready:
            batch.durable.callback(None)
        if not self.pending:
            flushes, self._flushes = self._flushes, []
            for d in flushes:
                d.callback(None)

    def fail(self, error: Exception | None = None) -> None:
        """Every pending batch fails to become durable (as a failed fsync does)."""
        failed, self.pending = self.pending, []
        for batch in failed:
            batch.durable.errback(error or OSError("fsync failed"))


class RecordingPublisher:
    """Keeps what would have been published, decoded, in order.

    While ``up`` is False it refuses tagged publishes (the outbox's), as a
    broker link that is down does; ``tags`` holds the tags it took."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self.tags: list[int] = []
        self.up = True

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        if tag is not None:
            if not self.up:
                return False
            self.tags.append(tag)
        self.published.append((topic, json.loads(payload)))
        return True

    def on(self, topic: str) -> list[Any]:
        """The payloads published to exactly ``topic``."""
        return [payload for t, payload in self.published if t == topic]


def silence_allowed(liveness: Liveness, uuid: str) -> float | None:
    """How long ``uuid`` may stay silent now, or None while it is judged by its will alone."""
    saved = liveness.dump().get(uuid)
    if saved is None:
        return None
    _, keepalives, gaps = saved
    if keepalives < 2:
        return None
    return allowed_silence(liveness.misses, liveness.ka_interval, gaps)
