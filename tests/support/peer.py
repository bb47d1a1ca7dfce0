"""An MQTT peer for tests: plays a runtime or a client against the real broker.

It runs paho in its own thread (it is the test's tool, not the code under
test) and hands every message to the reactor, where tests await them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet.defer import Deferred

_ids = itertools.count(1)


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


class Peer:
    def __init__(self, reactor: Any, port: int, name: str = "peer",
                 will: tuple[str, Any] | None = None, v5: bool = True) -> None:
        self._reactor = reactor
        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{name}-{next(_ids)}",
                                  protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
        if will is not None:
            self.client.will_set(will[0], _encode(will[1]), qos=1)
        self.inbox: list[Msg] = []
        self._waiters: list[tuple[str, Callable[[Msg], bool], Deferred[Msg]]] = []
        self.client.on_message = lambda c, u, m: reactor.callFromThread(
            self._arrived, Msg(m.topic, m.payload, bool(m.retain)))

    async def connect(self, timeout: float = 5.0) -> "Peer":
        done: Deferred[None] = Deferred()
        self.client.on_connect = lambda *a: self._reactor.callFromThread(done.callback, None)
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        await done.addTimeout(timeout, self._reactor)
        return self

    async def subscribe(self, *topics: str, timeout: float = 5.0) -> None:
        done: Deferred[None] = Deferred()
        self.client.on_subscribe = lambda *a: self._reactor.callFromThread(done.callback, None)
        self.client.subscribe([(t, 1) for t in topics])
        await done.addTimeout(timeout, self._reactor)

    def publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        self.client.publish(topic, _encode(payload), qos=1, retain=retain)

    def _arrived(self, msg: Msg) -> None:
        for waiter in self._waiters:
            topic, where, d = waiter
            if paho.topic_matches_sub(topic, msg.topic) and _safe(where, msg):
                self._waiters.remove(waiter)
                d.callback(msg)
                return
        self.inbox.append(msg)

    async def expect(self, topic: str, where: Callable[[Msg], bool] = lambda m: True,
                     timeout: float = 5.0) -> Msg:
        """The first unclaimed message on ``topic`` that satisfies ``where``."""
        for msg in self.inbox:
            if paho.topic_matches_sub(topic, msg.topic) and _safe(where, msg):
                self.inbox.remove(msg)
                return msg
        d: Deferred[Msg] = Deferred()
        entry = (topic, where, d)
        self._waiters.append(entry)

        def give_up(failure: Any) -> Any:
            if entry in self._waiters:
                self._waiters.remove(entry)
            seen = [(m.topic, m.payload[:200]) for m in self.inbox[-10:]]
            raise AssertionError(f"no message on {topic} within {timeout}s; last seen: {seen}")
        return await d.addTimeout(timeout, self._reactor).addErrback(give_up)

    def on(self, topic: str) -> list[Msg]:
        return [m for m in self.inbox if paho.topic_matches_sub(topic, m.topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def vanish(self) -> None:
        """Drop the TCP connection without DISCONNECT, so the broker fires the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def _encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def _safe(where: Callable[[Msg], bool], msg: Msg) -> bool:
    try:
        return bool(where(msg))
    except Exception:
        return False
