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
                 will: tuple[str, Any] | None = None, v5: bool = True, *,
                 username: str | None = None, password: str | None = None,
                 client_id: str | None = None, cafile: str | None = None,
                 reconnect: bool = True,
                 on_message: Callable[[Msg], None] | None = None) -> None:
        """``on_message``, if given, gets every message instead of the inbox and waiters."""
        self._reactor = reactor
        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-{name}-{next(_ids)}",
                                  protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                                  reconnect_on_failure=reconnect)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], _encode(will[1]), qos=1)
        if cafile is not None:
            self.client.tls_set(ca_certs=cafile)
        self.inbox: list[Msg] = []
        self.connack: Any = None                      # the CONNACK reason code
        self.disconnects = 0
        self.gone: Deferred[None] = Deferred()        # fires at the first disconnect
        self._waiters: list[tuple[str, Callable[[Msg], bool], Deferred[Msg]]] = []
        self._acks: dict[int, Deferred[Any]] = {}
        #: called (in the reactor) with the mid and reason code of every PUBACK
        self.on_puback: Callable[[int, Any], None] | None = None
        call = reactor.callFromThread
        arrived = on_message or self._arrived
        self.client.on_message = lambda c, u, m: call(
            arrived, Msg(m.topic, bytes(m.payload), bool(m.retain)))
        self.client.on_publish = lambda c, u, mid, rc, p: call(self._acked, mid, rc)
        self.client.on_disconnect = lambda *a: call(self._disconnected)

    async def connect(self, timeout: float = 5.0) -> "Peer":
        done: Deferred[None] = Deferred()

        def connack(rc: Any) -> None:
            if not done.called:
                self.connack = rc
                done.callback(None)
        self.client.on_connect = lambda c, u, f, rc, p: self._reactor.callFromThread(connack, rc)
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        await done.addTimeout(timeout, self._reactor)
        return self

    async def subscribe(self, *topics: str, timeout: float = 5.0) -> list[Any]:
        """Subscribe at QoS 1; the SUBACK reason codes."""
        done: Deferred[list[Any]] = Deferred()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._reactor.callFromThread(
            done.callback, list(rcs))
        self.client.subscribe([(t, 1) for t in topics])
        return await done.addTimeout(timeout, self._reactor)

    async def publish_acked(self, topic: str, payload: Any, timeout: float = 5.0) -> int:
        """Publish at QoS 1 and wait: the PUBACK reason code (0 ok, 135 not authorized...)."""
        done: Deferred[Any] = Deferred()
        info = self.client.publish(topic, _encode(payload), qos=1)
        self._acks[info.mid] = done
        return (await done.addTimeout(timeout, self._reactor)).value

    def _acked(self, mid: int, rc: Any) -> None:
        if self.on_puback is not None:
            self.on_puback(mid, rc)
        d = self._acks.pop(mid, None)
        if d is not None:
            d.callback(rc)

    def _disconnected(self) -> None:
        self.disconnects += 1
        if not self.gone.called:
            self.gone.callback(None)

    def publish(self, topic: str, payload: Any, retain: bool = False) -> int:
        """Publish at QoS 1 without waiting; the mid (its PUBACK goes to ``on_puback``)."""
        return self.client.publish(topic, _encode(payload), qos=1, retain=retain).mid

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
