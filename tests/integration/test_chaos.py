"""Broker chaos: the broker is SIGKILLed and restarted under load, five times."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest_twisted
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet.task import LoopingCall

from orchestrator.adapters.mqtt import SHORT_LIVED
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.peer import Peer
from tests.support.twisted import eventually, within

R = "realm/proc"
RUNTIMES = [str(uuid.UUID(int=i + 1, version=4)) for i in range(100)]


class Fleet:
    """100 runtimes' keepalives and a client's creates, over self-reconnecting paho clients."""

    def __init__(self, reactor: Any, port: int) -> None:
        self.reactor = reactor
        self.acked: set[str] = set()
        self.sent = 0
        self.client = self._client("fleet", port)
        self.client.on_message = lambda c, u, m: reactor.callFromThread(self._reply, m.payload)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{R}/control", 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    @staticmethod
    def _client(name: str, port: int) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"chaos-{name}")
        client.reconnect_delay_set(0.1, 0.5)          # back as soon as the broker is
        client.max_inflight_messages_set(200)
        return client

    def _reply(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if body.get("type") == "arts_resp":
            self.acked.add(body["data"]["details"]["uuid"])

    def register_all(self) -> None:
        for rt in RUNTIMES:
            self.client.publish(f"{R}/reg", json.dumps({
                "object_id": f"r-{rt}", "action": "create", "type": "arts_req",
                "data": {"type": "runtime", "uuid": rt, "max_nmodules": 0}}), qos=1)

    def keepalives(self) -> None:
        for rt in RUNTIMES:
            self.client.publish(f"{R}/keepalive", json.dumps({
                "object_id": "ka", "action": "update", "type": "arts_req",
                "data": {"type": "runtime", "uuid": rt}}), qos=0)

    def create(self) -> None:
        self.sent += 1
        self.client.publish(f"{R}/control", json.dumps({
            "object_id": f"c{self.sent}", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": f"chaos-{self.sent}",
                     "parent": RUNTIMES[self.sent % len(RUNTIMES)]}}), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest_twisted.ensureDeferred
@within(240)
async def test_five_broker_kills_lose_nothing_and_kill_nobody(reactor: Any, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    app = await App(reactor, make_config(broker.port, tmp_path / "state", ka_interval_sec=1,
                                         keepalive_misses=3, reconnect_max_delay=0.5)).start()
    fleet = Fleet(reactor, broker.port)
    keepalive = LoopingCall(fleet.keepalives)
    creates = LoopingCall(fleet.create)
    try:
        fleet.register_all()
        await eventually(lambda: app.registry.runtime_counts["alive"] == 100, 10, "registrations")
        keepalive.start(0.5)
        creates.start(0.01)
        await eventually(lambda: app.service.core.liveness.judged() == 100, 10,
                         "every runtime to be judged by its keepalives")
        for cycle in range(5):
            broker.kill()
            outage = time.monotonic()
            await eventually(lambda: not app.mqtt.connected, 10, "the orchestrator to notice")
            # stay down longer than a runtime's whole keepalive allowance (3 s)
            while time.monotonic() - outage < 4.5:
                await eventually(lambda: True, 0.1)
            broker.start()
            back = time.monotonic()
            probe = await Peer(reactor, broker.port, f"probe{cycle}").connect()
            await probe.subscribe(f"{R}/reg/probe-{cycle}", f"{R}/orchestrator/status")
            probe.publish(f"{R}/reg/probe-{cycle}", {
                "object_id": "p", "action": "create", "type": "arts_req",
                "data": {"type": "runtime", "uuid": f"probe-{cycle}"}})
            await probe.expect(f"{R}/reg/probe-{cycle}", timeout=10)
            assert time.monotonic() - back <= 5.0 + 1.0, "answers within 5 s of the restart"
            status = await probe.expect(f"{R}/orchestrator/status")
            assert status.payload == b"online"
            probe.close()
            await eventually(lambda: len(fleet.acked) > 50 * (cycle + 1), 10, "creates again")
            # the outbox re-sends the replies of the outage at once, so "creates again" can
            # come within a second: keep each connection longer than one that is dropped
            # right away, or three of them in a row read as a session takeover
            while time.monotonic() - back < SHORT_LIVED + 0.5:
                await eventually(lambda: True, 0.1)
        creates.stop()
        keepalive.stop()
        await eventually(lambda: app.registry.modules.keys() >= fleet.acked, 10, "every ack")
        dead = [r for r in RUNTIMES if not app.registry.runtimes[r].alive]
        assert dead == [], "nobody may be declared dead for our broker's outage"
        assert not [m for m in fleet.acked if app.registry.modules[m].status != "alive"]
        print(f"chaos: 5 broker kills, {fleet.sent} creates sent, {len(fleet.acked)} acknowledged, "
              f"{len(app.registry.modules)} in the registry, 0 runtimes declared dead")
        assert len(fleet.acked) > 100
    finally:
        for loop in (keepalive, creates):
            if loop.running:
                loop.stop()
        fleet.close()
        await app.stop()
        broker.stop()
