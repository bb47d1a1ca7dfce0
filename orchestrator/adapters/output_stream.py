"""``GET /api/modules/{q}/logs?follow=1``: a module's output as Server-Sent Events.

Like ``/api/events`` (sse.py): each follower is a position in the module's
kept lines, not a buffer; lines are written at most once per 10 ms window; a
follower whose connection is full is paused by Twisted and catches up when
resumed; one that missed lines that are no longer kept first gets
``event: truncated``. It resumes with ``Last-Event-ID`` (the last line id).
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from ..core.model import compact_json
from ..core.output import ModuleOutput, OutputLine

__all__ = ["OutputStreams", "ndjson"]

log = Logger()


def ndjson(lines: list[OutputLine]) -> bytes:
    """JSON lines: one ``{"id", "time", "stream", "text"}`` object per line."""
    return b"".join(compact_json(line.to_json()).encode() + b"\n" for line in lines)


def _frame(line: OutputLine) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (line.id, compact_json(line.to_json()).encode())


@implementer(IPushProducer)
class _Follower:
    def __init__(self, streams: "OutputStreams", request: Request, key: str,
                 cursor: int) -> None:
        self.streams = streams
        self.request = request
        self.key = key
        self.cursor = cursor
        self.paused = False
        self.closed = False

    def pump(self) -> None:
        if self.paused or self.closed:
            return
        lines, truncated = self.streams.output.lines(self.key, self.cursor)
        chunks = []
        if truncated:
            chunks.append(b"event: truncated\ndata: %s\n\n" % json.dumps(
                {"after": self.cursor, "oldest": lines[0].id if lines else None}).encode())
        chunks.extend(_frame(line) for line in lines)
        if lines:
            self.cursor = lines[-1].id
        elif truncated:
            self.cursor = self.streams.output.latest
        if chunks:
            self.request.write(b"".join(chunks))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.streams.wake(self.key)

    def stopProducing(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.streams.forget(self)
            self.request.unregisterProducer()


class OutputStreams:
    """Every open follow of a module's output."""

    def __init__(self, reactor: IReactorTime, output: ModuleOutput, heartbeat: float = 15.0,
                 coalesce: float = 0.01) -> None:
        self._reactor = reactor
        self.output = output
        self.followers: dict[str, set[_Follower]] = {}
        self._due: set[str] = set()
        self._call: IDelayedCall | None = None
        self._coalesce = coalesce
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._heartbeat_every = heartbeat
        output.listeners.append(lambda key, lines: self.wake(key))

    def start(self) -> None:
        self._beat.start(self._heartbeat_every, now=False)

    def stop(self) -> None:
        if self._beat.running:
            self._beat.stop()
        for follower in [f for group in self.followers.values() for f in group]:
            follower.close()
            follower.request.finish()

    def wake(self, key: str) -> None:
        if key not in self.followers:
            return
        self._due.add(key)
        if self._call is None:
            self._call = self._reactor.callLater(self._coalesce, self._flush)

    def _flush(self) -> None:
        self._call = None
        due, self._due = self._due, set()
        for key in due:
            for follower in list(self.followers.get(key, ())):
                try:
                    follower.pump()
                except Exception:
                    log.failure("module output stream write failed; closing it")
                    follower.close()

    def _heartbeat(self) -> None:
        for group in self.followers.values():
            for follower in group:
                if not follower.paused and not follower.closed:
                    follower.request.write(b": ping\n\n")

    def forget(self, follower: _Follower) -> None:
        group = self.followers.get(follower.key)
        if group is not None:
            group.discard(follower)
            if not group:
                del self.followers[follower.key]

    def attach(self, request: Request, module: str, after: int) -> Deferred[None]:
        """Stream ``module``'s lines after id ``after``, then each new one."""
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        key = self.output.key(module)
        follower = _Follower(self, request, key, after)
        self.followers.setdefault(key, set()).add(follower)
        request.registerProducer(follower, True)
        request.notifyFinish().addBoth(lambda _: follower.close())
        request.write(b"retry: 2000\n: connected\n\n")
        self.wake(key)
        return Deferred()      # never fires: the follower lives until the client goes
