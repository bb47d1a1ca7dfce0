"""A partition is not a mass death, through the in-process service and a real mosquitto.

The far side of a dropped bridge is, to the orchestrator, runtimes that stop
sending keepalives while its own link stays up: that is what is played here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest_twisted
import treq

from tests.integration.test_integration_liveness import R, SimRuntime, create, runtime
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto, free_port
from tests.support.peer import Peer
from tests.support.relay import Relay
from tests.support.twisted import eventually, within


def rt(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest_twisted.async_yield_fixture
async def fast_app(reactor: Any, broker: Mosquitto, tmp_path: Path) -> AsyncIterator[App]:
    app = App(reactor, make_config(broker.port, tmp_path / "state", ka_interval_sec=1,
                                   keepalive_misses=2, partition_min_silent=3,
                                   partition_share=0.5))
    await app.start()
    yield app
    await app.stop()


async def metric(app: App, name: str) -> str:
    body = (await (await treq.get(app.url + "/metrics", timeout=5)).content()).decode()
    return next(line for line in body.splitlines() if line.startswith(name + " "))


@pytest_twisted.ensureDeferred
@within(60)
async def test_most_of_the_fleet_silent_at_once_holds_verdicts_and_says_so(
        fast_app: App, peers: Any, reactor: Any) -> None:
    fleet: list[SimRuntime] = [await runtime(peers, reactor, rt(i)) for i in range(4)]
    for sim in fleet:
        sim.start_keepalives(0.3)
    watcher = await peers("watcher", f"{R}/notif")
    await eventually(lambda: fast_app.service.core.liveness.judged() == 4, 10,
                     "all four judged by keepalives")
    for sim in fleet[:3]:                               # cut off, still alive on their side
        sim.stop_keepalives()
    await eventually(lambda: fast_app.service.core.liveness.partition.holding, 10, "the hold")
    code, body = await fast_app.get("/readyz")
    assert code == 503 and any("3 of 4 runtimes went silent" in r for r in body["reasons"])
    assert await metric(fast_app, "silverline_liveness_hold") == "silverline_liveness_hold 1.0"

    for sim in fleet[:3]:                               # the link is back
        sim.start_keepalives(0.3)
    await eventually(lambda: not fast_app.service.core.liveness.partition.holding, 10,
                     "the hold to end")
    code, body = await fast_app.get("/readyz")
    assert code == 200
    assert [m.json["action"] for m in watcher.on(f"{R}/notif")] == []
    assert all(fast_app.registry.runtimes[rt(i)].alive for i in range(4))
    for sim in fleet:
        sim.stop_keepalives()


# -- a real partition: two mosquittos bridged through a link the test cuts -------------

def bridge_to(port: int) -> str:
    """Broker B's bridge to A: everything under R/proc/, both ways, as ARENA wires them."""
    return "\n".join([
        "connection to-a", f"address 127.0.0.1:{port}", f"topic {R}/# both 1",
        "bridge_protocol_version mqttv311", "try_private true", "cleansession false",
        "restart_timeout 1 2", "notifications false", ""])


@pytest_twisted.ensureDeferred
@within(90)
async def test_a_dropped_bridge_between_brokers_kills_nobody_and_moves_nothing(
        reactor: Any, broker: Mosquitto, peers: Any, tmp_path: Path) -> None:
    relay = await Relay(reactor, free_port(), broker.port).start()
    far = Mosquitto(tmp_path / "far", extra=bridge_to(relay.port))
    far.start()
    app = App(reactor, make_config(broker.port, tmp_path / "state", ka_interval_sec=1,
                                   keepalive_misses=2))
    await app.start()
    far_peers: list[Peer] = []
    try:
        near = await runtime(peers, reactor, rt(100))          # on the orchestrator's broker
        watcher = await peers("watcher", f"{R}/notif")
        fleet = []
        for i in range(4):                                     # on the far broker
            peer = await Peer(reactor, far.port, f"far-{i}", will=SimRuntime.will(rt(i))).connect()
            far_peers.append(peer)
            await peer.subscribe(f"{R}/reg/{rt(i)}", f"{R}/control/{rt(i)}")
            sim = SimRuntime(peer, rt(i), reactor)
            await eventually(lambda: register_through_bridge(sim), 15, "the bridge")
            fleet.append(sim)
        for sim in [near, *fleet]:
            sim.start_keepalives(0.3)
        client = await peers("client")
        client.publish(f"{R}/control", create("mover", parent=rt(0), fault_crash="restart"))
        await fleet[0].peer.expect(f"{R}/control/{rt(0)}", lambda m: m.json["action"] == "create")
        await eventually(lambda: app.service.core.liveness.judged() == 5, 10, "all judged")

        far_client = await Peer(reactor, far.port, "far-client").connect()
        far_peers.append(far_client)
        await far_client.subscribe(f"{R}/control")
        relay.cut()                                            # the bridge drops
        cut_at = reactor.seconds()
        await eventually(lambda: app.service.core.liveness.partition.holding, 10, "the hold")
        # a request made on the far side meanwhile waits in its broker for the bridge
        far_client.publish(f"{R}/control", create("during", parent=rt(1)))
        # stay cut for three times the keepalive allowance (2 s) while they keep sending
        await eventually(lambda: reactor.seconds() - cut_at > 6, 10, "a long outage")
        assert app.mqtt.subscribed                             # our own link never dropped
        relay.restore()
        await eventually(lambda: not app.service.core.liveness.partition.holding, 20,
                         "the hold to end once the far side is heard again")

        reply = await far_client.expect(f"{R}/control", lambda m: m.json.get("object_id")
                                        == "c-during" and m.json.get("type") == "arts_resp")
        assert reply.json["data"]["details"]["parent"] == rt(1)
        await fleet[1].peer.expect(f"{R}/control/{rt(1)}", lambda m: m.json["action"] == "create"
                                   and m.json["data"]["uuid"] == "during")
        assert [m.json["action"] for m in watcher.on(f"{R}/notif")] == []
        assert all(app.registry.runtimes[rt(i)].alive for i in (0, 1, 2, 3, 100))
        assert app.registry.modules["mover"].parent == rt(0)
        assert [m for m in near.peer.on(f"{R}/control/{rt(100)}")
                if m.json.get("action") == "create"] == []
        # one copy of each forward: the bridge (both ways) neither loops nor duplicates
        for sim, uuid in ((fleet[0], "mover"), (fleet[1], "during")):
            assert [m for m in sim.peer.on(f"{R}/control/{sim.uuid}")
                    if m.json.get("action") == "create"
                    and m.json["data"].get("uuid") == uuid] == [], uuid
        for sim in [near, *fleet]:
            sim.stop_keepalives()
    finally:
        for peer in far_peers:
            peer.close()
        await app.stop()
        await relay.stop()
        far.stop()


async def register_through_bridge(sim: SimRuntime) -> bool:
    """Register; False if the reply did not come back (the bridge is not up yet)."""
    try:
        await sim.register()
    except AssertionError:
        return False
    return True
