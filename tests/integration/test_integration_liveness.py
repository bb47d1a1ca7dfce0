"""Section 7 over a real broker: simulated runtimes that hang, vanish, fill up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import LoopingCall

from orchestrator.testing import silence_allowed
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.twisted import eventually, within

R = "realm/proc"
RT1 = "11111111-1111-4111-8111-111111111111"
RT2 = "22222222-2222-4222-8222-222222222222"


class SimRuntime:
    """A runtime over MQTT: registers on its own subtopic, sends keepalives, has a will."""

    def __init__(self, peer: Any, uuid: str, reactor: Any) -> None:
        self.peer, self.uuid = peer, uuid
        self._ka = LoopingCall(self.keepalive)
        self._ka.clock = reactor

    @staticmethod
    def will(uuid: str) -> tuple[str, dict]:
        return (f"{R}/reg/{uuid}", {"object_id": "will", "action": "delete", "type": "arts_req",
                                    "data": {"type": "runtime", "uuid": uuid}})

    async def register(self, **data: Any) -> None:
        self.peer.publish(f"{R}/reg/{self.uuid}", {
            "object_id": f"reg-{self.uuid[:4]}", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": self.uuid, **data}})
        await self.peer.expect(f"{R}/reg/{self.uuid}",
                               lambda m: m.json.get("type") == "arts_resp")

    def keepalive(self) -> None:
        self.peer.publish(f"{R}/keepalive/{self.uuid}", {
            "object_id": "ka", "action": "update", "type": "arts_req",
            "data": {"type": "runtime", "uuid": self.uuid, "children": []}})

    def start_keepalives(self, every: float) -> None:
        self._ka.start(every)

    def stop_keepalives(self) -> None:
        if self._ka.running:
            self._ka.stop()


async def runtime(peers: Any, reactor: Any, uuid: str, **reg: Any) -> SimRuntime:
    peer = await peers(f"rt-{uuid[:4]}", f"{R}/reg/{uuid}", f"{R}/control/{uuid}",
                       will=SimRuntime.will(uuid))
    sim = SimRuntime(peer, uuid, reactor)
    await sim.register(**reg)
    return sim


def create(uuid: str, **data: Any) -> dict:
    return {"object_id": f"c-{uuid}", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": uuid, **data}}


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_runtime_that_stops_sending_keepalives_is_declared_dead(
        reactor: Any, broker: Mosquitto, peers: Any, tmp_path: Path) -> None:
    app = await App(reactor, make_config(broker.port, tmp_path / "s", ka_interval_sec=1,
                                         keepalive_misses=2)).start()
    try:
        watcher = await peers("watcher", f"{R}/notif")
        hung = await runtime(peers, reactor, RT1)
        hung.start_keepalives(1.0)
        await eventually(lambda: silence_allowed(app.service.core.liveness, RT1), 5,
                         "a rhythm")
        hung.stop_keepalives()                  # hangs: the connection stays up, no will
        stopped = time.monotonic()
        notif = await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "dead", 10)
        assert notif.json["data"]["reason"] == "keepalive timeout"
        assert time.monotonic() - stopped <= 2 * 1 + 1 + 0.5      # + delivery slack
        code, body = await app.get(f"/api/runtimes/{RT1}")
        assert body["status"] == "dead" and body["dead_reason"] == "keepalive timeout"
    finally:
        await app.stop()


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_cut_connection_fires_the_will_and_restart_modules_move(
        app: App, peers: Any, reactor: Any) -> None:
    watcher = await peers("watcher", f"{R}/notif")
    doomed = await runtime(peers, reactor, RT1)
    survivor = await runtime(peers, reactor, RT2)
    client = await peers("client")
    client.publish(f"{R}/control", create("mover", parent=RT1, fault_crash="restart"))
    await doomed.peer.expect(f"{R}/control/{RT1}")

    doomed.peer.vanish()                        # no DISCONNECT: the broker sends the will
    moved = await survivor.peer.expect(f"{R}/control/{RT2}")
    assert moved.json["action"] == "create" and moved.json["data"]["uuid"] == "mover"
    dead = await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "dead")
    assert dead.json["data"]["uuid"] == RT1
    rescheduled = await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "rescheduled")
    assert rescheduled.json["data"]["to"] == RT2
    assert (await app.get("/api/modules/mover"))[1]["parent"] == RT2


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_queued_module_starts_when_another_exits(app: App, peers: Any,
                                                         reactor: Any) -> None:
    full = await runtime(peers, reactor, RT1, max_nmodules=1)
    client = await peers("client", f"{R}/control")
    client.publish(f"{R}/control", create("first", parent=RT1))
    await full.peer.expect(f"{R}/control/{RT1}")
    client.publish(f"{R}/control", create("second"))
    reply = await client.expect(f"{R}/control", lambda m: m.json.get("object_id") == "c-second"
                                and m.json.get("type") == "arts_resp")
    assert reply.json["data"]["details"]["status"] == "queued"
    assert (await app.get("/api/modules/second"))[1]["status"] == "queued"
    assert (await app.get("/api/modules/"))[1]["modules"][0]["uuid"] == "first"
    children = (await app.get(f"/api/runtimes/{RT1}"))[1]["children"]
    assert [c["uuid"] for c in children] == ["first"]      # "second" waits for any runtime

    full.peer.publish(f"{R}/control/{RT1}", {"object_id": "x", "action": "exited",
                                              "type": "arts_req",
                                              "data": {"type": "module", "uuid": "first"}})
    started = await full.peer.expect(f"{R}/control/{RT1}", lambda m: m.json["action"] == "create")
    assert started.json["data"]["uuid"] == "second"
    assert (await app.get("/api/modules/second"))[1]["status"] == "alive"
