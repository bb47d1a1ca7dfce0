"""A TCP relay the test can cut: the link between two brokers, dropped and restored."""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.protocols.portforward import ProxyFactory, ProxyServer


def _abort(transport: Any) -> None:
    """Close at once, without FIN (TCP transports have it; the type stubs do not say)."""
    if transport is not None:
        transport.abortConnection()


class _Server(ProxyServer):
    def connectionMade(self) -> None:
        relay: Relay = self.factory.relay          # type: ignore[attr-defined]
        if not relay.up:
            _abort(self.transport)
            return
        relay.open.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.relay.open.discard(self)      # type: ignore[attr-defined]
        super().connectionLost(reason)


class Relay:
    """Listens on ``port`` and forwards to ``target_port`` on 127.0.0.1 while up."""

    def __init__(self, reactor: Any, port: int, target_port: int) -> None:
        self.reactor, self.port = reactor, port
        factory = ProxyFactory("127.0.0.1", target_port)
        factory.protocol = _Server
        factory.relay = self                       # type: ignore[attr-defined]
        self.factory = factory
        self.up = True
        self.open: set[_Server] = set()
        self.listening: Any = None

    async def start(self) -> "Relay":
        endpoint = endpoints.TCP4ServerEndpoint(self.reactor, self.port, interface="127.0.0.1")
        self.listening = await endpoint.listen(self.factory)
        return self

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones (no FIN: a dead link)."""
        self.up = False
        for server in list(self.open):
            if server.peer is not None:
                _abort(server.peer.transport)
            _abort(server.transport)

    def restore(self) -> None:
        self.up = True

    async def stop(self) -> None:
        self.cut()
        if self.listening is not None:
            await self.listening.stopListening()
