"""The event log: every registry change, numbered, kept for a while for watchers.

Ids continue across restarts (the last id is journaled with each batch), so a
watcher that reconnects with ``Last-Event-ID`` either gets exactly what it
missed, in order, or (when that is no longer retained, or was before a
restart) is told to resync. Events keep the frozen record they are about and
are rendered to JSON once: when appended if they show values derived from
elsewhere (a runtime's module count, as of that moment), else when first sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Iterator

from .effects import Event
from .explain import Explainer
from .model import ModuleStatus, Runtime, compact_json, iso
from .registry import Registry

__all__ = ["EventLog", "StoredEvent", "Gap", "event_renderer"]


@dataclass(slots=True)
class StoredEvent:
    id: int
    type: str
    time: float
    event: Event
    _json: bytes | None = field(default=None, repr=False)


class Gap(Exception):
    """The events after the asked id are no longer all retained: resync."""

    def __init__(self, oldest: int, latest: int) -> None:
        super().__init__(oldest, latest)
        self.oldest, self.latest = oldest, latest


class EventLog:
    """The most recent events: at least ``keep`` of them, and all of the last
    ``keep_seconds``, but never more than ``hard_cap`` (memory stays bounded)."""

    def __init__(self, render: Callable[[StoredEvent], bytes], *, keep: int = 10_000,
                 keep_seconds: float = 900.0, hard_cap: int = 50_000,
                 latest: int = 0, eager: Callable[[Event], bool] = lambda e: True) -> None:
        self._render = render
        #: which events to render at once: those showing values that change later
        #: (others, rendered when first sent, take no memory while nobody watches)
        self.eager = eager
        self.keep, self.keep_seconds, self.hard_cap = keep, keep_seconds, max(hard_cap, keep)
        self._events: deque[StoredEvent] = deque()
        self.latest = latest                   # id of the newest event ever appended
        self.listeners: list[Callable[[], None]] = []

    @property
    def oldest(self) -> int:
        """Id of the oldest retained event (latest + 1 when none is retained)."""
        return self._events[0].id if self._events else self.latest + 1

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event_id: int, event: Event, now: float) -> StoredEvent:
        if event_id != self.latest + 1:
            # ids jumped (e.g. a batch's events were never emitted): what lies
            # between is unknown, so nobody may resume across it
            self._events.clear()
        stored = StoredEvent(event_id, event.type, now, event)
        if self.eager(event):
            stored._json = self._render(stored)     # now, while derived values are current
        self._events.append(stored)
        self.latest = event_id
        self._trim(now)
        for listener in self.listeners:
            listener()
        return stored

    def _trim(self, now: float) -> None:
        events = self._events
        while len(events) > self.hard_cap or (
                len(events) > self.keep and now - events[0].time > self.keep_seconds):
            events.popleft()

    def after(self, last_id: int) -> Iterator[StoredEvent]:
        """The events with id > last_id, in order; raises Gap if some are gone."""
        if last_id > self.latest or last_id < self.oldest - 1:
            raise Gap(self.oldest, self.latest)
        return islice(self._events, last_id - self.oldest + 1, None)

    def json(self, stored: StoredEvent) -> bytes:
        if stored._json is None:
            stored._json = self._render(stored)
        return stored._json


def event_renderer(registry: Registry, last_seen: Callable[[str], float | None]
                   ) -> Callable[[StoredEvent], bytes]:
    """How an event looks on the wire: its id, type, time and the object's detail
    (a runtime's module count and last-seen time as of rendering)."""
    explainer = Explainer(registry)
    waiting = (ModuleStatus.QUEUED, ModuleStatus.KILLED)

    def render(stored: StoredEvent) -> bytes:
        record = stored.event.record
        body: dict[str, Any] = {"id": stored.id, "type": stored.type, "time": iso(stored.time)}
        if isinstance(record, Runtime):
            body["runtime"] = record.detail(nmodules=registry.nalive(record.uuid),
                                            last_seen=last_seen(record.uuid), children=None)
        else:
            body["module"] = record.detail()
            if record.status in waiting:
                body["module"]["waiting"] = explainer.why(record)
        if stored.event.extra:
            body.update(stored.event.extra)
        return compact_json(body).encode()
    return render
