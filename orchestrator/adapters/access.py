"""HTTP access lines worth reading: failures and slow requests, not every poll.

A dashboard tab polls every 5 s; logging each of those buried everything
else. By default a request is logged when its status is not 2xx (304, a
cache hit, counts as a success) or when it took at least ``slow_sec``; with
``slow_sec`` 0 every request is. Event streams are long by design: their
duration never makes them "slow".
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.logger import Logger
from twisted.web.server import Request, Site

__all__ = ["AccessLogSite"]

log = Logger(namespace="orchestrator.access")


class _TimedRequest(Request):
    """A request that knows when it started being processed."""

    started_at = 0.0

    def process(self) -> None:
        self.started_at = self.channel.factory.clock()
        super().process()


class AccessLogSite(Site):
    requestFactory = _TimedRequest
    noisy = False                   # no "Starting factory" lines

    def __init__(self, resource: Any, slow_sec: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.slow_sec = slow_sec
        self.clock = clock

    def log(self, request: Any) -> None:
        seconds = self.clock() - getattr(request, "started_at", 0.0)
        code = request.code
        failed = not (200 <= code < 300 or code == 304)
        streaming = (request.responseHeaders.getRawHeaders(b"content-type") or [b""])[0] \
            .startswith(b"text/event-stream")
        slow = seconds >= self.slow_sec and (not streaming or self.slow_sec == 0)
        if not (failed or slow):
            return
        log.info("{method} {path} {code} {seconds:.3f}s {size} bytes ({client})",
                 method=request.method.decode("latin-1"),
                 path=request.uri.decode("latin-1")[:500], code=code, seconds=seconds,
                 size=request.sentLength, client=_client(request))


def _client(request: Any) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", None) or str(peer)
