"""A minimal SSE client for tests: HTTP/1.0 (no chunking), frames parsed as they come."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure


class SseClient(Protocol):
    def __init__(self, path: str, headers: dict[str, str] | None = None) -> None:
        self.path, self.headers = path, headers or {}
        self.raw = b""
        self.status: int | None = None
        self.frames: list[dict[str, Any]] = []     # {"id", "event", "data", "comment"}
        self._body = b""
        self._waiters: list[tuple[Callable[[list], bool], Deferred[None]]] = []
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        lines = [f"GET {self.path} HTTP/1.0", "Host: test"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def dataReceived(self, data: bytes) -> None:
        if self.status is None:
            self.raw += data
            if b"\r\n\r\n" not in self.raw:
                return
            head, data = self.raw.split(b"\r\n\r\n", 1)
            self.status = int(head.split()[1])
        self._body += data
        while b"\n\n" in self._body:
            block, self._body = self._body.split(b"\n\n", 1)
            frame: dict[str, Any] = {}
            for line in block.decode().split("\n"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "":
                    frame["comment"] = value
                elif field == "data":
                    frame["data"] = json.loads(value)
                else:
                    frame[field] = value
            self.frames.append(frame)
        for check, d in list(self._waiters):
            if check(self.frames):
                self._waiters.remove((check, d))
                d.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "data" in f]

    async def wait(self, check: Callable[[list], bool], reactor: Any,
                   timeout: float = 5.0) -> None:
        if check(self.frames):
            return
        d: Deferred[None] = Deferred()
        self._waiters.append((check, d))
        await d.addTimeout(timeout, reactor)

    async def until_events(self, n: int, reactor: Any, timeout: float = 5.0) -> list[dict]:
        await self.wait(lambda frames: len([f for f in frames if "data" in f]) >= n,
                        reactor, timeout)
        return self.events

    def close(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


async def connect(reactor: Any, port: int, path: str, **headers: str) -> SseClient:
    client = SseClient(path, headers)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    await client.wait(lambda frames: bool(frames), reactor)     # the "connected" comment
    return client
