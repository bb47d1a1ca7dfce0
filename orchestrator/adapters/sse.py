"""Server-Sent Events for ``GET /api/events``: the event log, streamed to watchers.

Each watcher is a cursor into the shared event log, not a buffer of its own:
new events are written to every watcher once per 10 ms window (one write per
watcher, however many events), a watcher whose connection is full is paused
by Twisted (push producer) and catches up from the log when resumed, and one
that fell out of the retained window gets a ``resync`` event instead of a gap.
Memory is therefore bounded by the log, whatever the watchers do.
"""

from __future__ import annotations

import json
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from ..core.events import EventLog, Gap

__all__ = ["EventStreams", "EVENT_TYPES", "parse_types"]

log = Logger()

EVENT_TYPES = (
    "runtime.registered", "runtime.reregistered", "runtime.dead", "runtime.revived",
    "runtime.dropped", "runtime.drained", "runtime.undrained", "runtime.forgotten",
    "module.created", "module.queued", "module.started", "module.respawned",
    "module.rescheduled", "module.acked", "module.exiting", "module.exited",
    "module.killed", "module.revived", "module.deleted", "module.dropped", "module.failed",
)
#: events written to one watcher per turn at most (a far-behind watcher catches up in steps)
STEP = 1000


def parse_types(text: str | None) -> frozenset[str] | None:
    """``?types=runtime.dead,module`` -> the allowed types; a bare kind means all of its."""
    if text is None:
        return None
    wanted: set[str] = set()
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word in ("runtime", "module"):
            wanted.update(t for t in EVENT_TYPES if t.startswith(word + "."))
        elif word in EVENT_TYPES:
            wanted.add(word)
        else:
            raise ValueError(f"unknown event type {word!r}")
    if not wanted:
        raise ValueError("no event type given")
    return frozenset(wanted)


def _frame(event_id: int, data: bytes, kind: bytes | None = None) -> bytes:
    head = b"event: %s\n" % kind if kind else b""
    return head + b"id: %d\ndata: %s\n\n" % (event_id, data)


@implementer(IPushProducer)
class _Watcher:
    def __init__(self, streams: "EventStreams", request: Request, cursor: int,
                 types: frozenset[str] | None) -> None:
        self.streams = streams
        self.request = request
        self.cursor = cursor
        self.types = types
        self.paused = False
        self.closed: Deferred[None] = Deferred()

    def pump(self) -> bool:
        """Write what this watcher has not seen yet; True if more remains."""
        if self.paused or self.closed.called:
            return False
        log_ = self.streams.log
        chunks: list[bytes] = []
        try:
            events = log_.after(self.cursor)
        except Gap as gap:
            data = json.dumps({"type": "resync", "oldest": gap.oldest,
                               "latest": gap.latest}).encode()
            chunks.append(_frame(gap.latest, data, b"resync"))
            self.cursor = gap.latest
            events = iter(())
        count = 0
        for stored in events:
            if self.types is None or stored.type in self.types:
                chunks.append(_frame(stored.id, log_.json(stored)))
            self.cursor = stored.id
            count += 1
            if count == STEP:
                break
        if chunks:
            self.request.write(b"".join(chunks))
        return self.cursor < log_.latest

    def write(self, data: bytes) -> None:
        if not self.paused and not self.closed.called:
            self.request.write(data)

    # IPushProducer: Twisted pauses us while the connection's buffer is full
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.streams.wake()

    def stopProducing(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed.called:
            self.streams.watchers.discard(self)
            self.request.unregisterProducer()
            self.closed.callback(None)


class EventStreams:
    """Every open ``/api/events`` connection, fed from one event log."""

    def __init__(self, reactor: IReactorTime, events: EventLog, heartbeat: float = 15.0,
                 coalesce: float = 0.01) -> None:
        self._reactor = reactor
        self.log = events
        self.watchers: set[_Watcher] = set()
        self._call: IDelayedCall | None = None
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._heartbeat_every = heartbeat
        #: events are written to watchers at most this often: one write carries every
        #: event of the window (100 watchers at 1,000 changes/s: writes per turn cost
        #: 0.7 core; per 10 ms window, a fraction of that)
        self._coalesce = coalesce
        events.listeners.append(self.wake)

    def start(self) -> None:
        self._beat.start(self._heartbeat_every, now=False)

    def stop(self) -> None:
        if self._beat.running:
            self._beat.stop()
        for watcher in list(self.watchers):
            watcher.close()
            watcher.request.finish()    # the only finish: Klein's Deferred never fires

    def wake(self) -> None:
        """Something to send: do it once, at the end of the coalescing window."""
        if self._call is None:
            self._call = self._reactor.callLater(self._coalesce, self._flush)

    def _flush(self) -> None:
        self._call = None
        behind = False
        for watcher in list(self.watchers):
            try:
                behind |= watcher.pump()
            except Exception:
                log.failure("event stream write failed; closing it")
                watcher.close()
        if behind:
            self.wake()

    def _heartbeat(self) -> None:
        for watcher in list(self.watchers):
            watcher.write(b": ping\n\n")   # a comment: keeps proxies from timing out

    def attach(self, request: Request, last_id: int | None,
               types: frozenset[str] | None) -> Deferred[None]:
        """Stream to ``request`` from after ``last_id`` (None: from now on).

        The returned Deferred is for Klein and never fires; the watcher lives until
        the connection closes or ``stop()``.
        """
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        watcher = _Watcher(self, request, self.log.latest if last_id is None else last_id,
                           types)
        self.watchers.add(watcher)
        request.registerProducer(watcher, True)
        request.notifyFinish().addBoth(lambda _: watcher.close())
        request.write(b"retry: 2000\n: connected\n\n")
        self.wake()
        # Klein gets a Deferred that never fires: it cancels it when the client goes,
        # and on shutdown stop() finishes the request itself, exactly once
        return Deferred()
