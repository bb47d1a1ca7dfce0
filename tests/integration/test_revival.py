"""Liveness that heals, over a real mosquitto: late wills, revival, a goodbye that stays one.

A real broker fires a connection's will when that connection drops, so one
runtime here uses two connections, as a runtime on a flaky link does.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.task import LoopingCall

from orchestrator.testing import silence_allowed
from tests.integration.test_integration_liveness import R, RT1, RT2, SimRuntime, create, runtime
from tests.support.app import App
from tests.support.twisted import eventually, within

RT3 = "33333333-3333-4333-8333-333333333333"


def keepalive(uuid: str, children: list[str] | None = None) -> dict:
    data: dict[str, Any] = {"type": "runtime", "uuid": uuid}
    if children is not None:
        data["children"] = [{"uuid": c} for c in children]
    return {"object_id": "ka", "action": "update", "type": "arts_req", "data": data}


async def with_modules(peers: Any, reactor: Any) -> tuple[SimRuntime, SimRuntime, Any]:
    """RT1 running "plain" (killed if RT1 dies) and "mover" (moved to RT2 if it dies),
    and a peer watching notifications."""
    first = await runtime(peers, reactor, RT1)
    survivor = await runtime(peers, reactor, RT2)
    client = await peers("client")
    client.publish(f"{R}/control", create("plain", parent=RT1))
    client.publish(f"{R}/control", create("mover", parent=RT1, fault_crash="restart"))
    for _ in range(2):
        await first.peer.expect(f"{R}/control/{RT1}", lambda m: m.json["action"] == "create")
    return first, survivor, await peers("watcher", f"{R}/notif")


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_late_will_after_a_reconnect_leaves_the_runtime_alive_and_its_modules_put(
        app: App, peers: Any, reactor: Any) -> None:
    old, survivor, watcher = await with_modules(peers, reactor)
    old.start_keepalives(0.4)
    # the link goes half-open: the runtime reconnects on a new connection and registers again
    new_peer = await peers("rt1-new", f"{R}/reg/{RT1}", f"{R}/control/{RT1}",
                           will=SimRuntime.will(RT1))
    new = SimRuntime(new_peer, RT1, reactor)
    old.stop_keepalives()
    await new.register()
    new.start_keepalives(0.4)
    await eventually(lambda: silence_allowed(app.service.core.liveness, RT1) is not None, 10,
                     "the new connection's keepalives to be heard")

    old.peer.vanish()                   # only now does the broker fire the old connection's will
    answer = await new_peer.expect(f"{R}/reg/{RT1}", lambda m: m.json.get("object_id") == "will"
                                   and m.json.get("type") == "arts_resp")
    assert answer.json["data"]["details"]["alive"] is True
    code, detail = await app.get(f"/api/runtimes/{RT1}")
    assert detail["status"] == "alive"
    assert {c["uuid"]: c["status"] for c in detail["children"]} == {"plain": "alive",
                                                                    "mover": "alive"}
    assert survivor.peer.on(f"{R}/control/{RT2}") == []
    assert [m.json["action"] for m in watcher.on(f"{R}/notif")] == []
    new.stop_keepalives()


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_dead_runtime_that_keeps_sending_keepalives_is_alive_again(
        app: App, peers: Any, reactor: Any) -> None:
    old, survivor, watcher = await with_modules(peers, reactor)
    old.peer.vanish()                                   # its will: dead, "mover" moves
    moved = await survivor.peer.expect(f"{R}/control/{RT2}")
    assert moved.json["data"]["uuid"] == "mover"
    await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "dead")

    # it was fine all along: keepalives from its new connection, listing what it runs
    back = await peers("rt1-back", f"{R}/control/{RT1}")
    sender = LoopingCall(back.publish, f"{R}/keepalive/{RT1}", keepalive(RT1, ["plain", "mover"]))
    sender.clock = reactor
    sender.start(0.4)
    revived = await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "revived",
                                   timeout=10)
    assert revived.json["data"] == {"type": "runtime", "uuid": RT1, "name": "runtime",
                                    "dead_reason": "delete"}
    stop = await back.expect(f"{R}/control/{RT1}", lambda m: m.json["action"] == "delete")
    assert stop.json["data"] == {"type": "module", "uuid": "mover"}
    sender.stop()
    code, detail = await app.get(f"/api/runtimes/{RT1}")
    assert detail["status"] == "alive" and detail["dead_reason"] is None
    assert {c["uuid"]: c["status"] for c in detail["children"]} == {"plain": "alive"}
    assert (await app.get("/api/modules/mover"))[1]["parent"] == RT2
    # "plain" never stopped: it is not created a second time
    assert [m.json["data"]["uuid"] for m in back.on(f"{R}/control/{RT1}")
            if m.json["action"] == "create"] == []


@pytest_twisted.ensureDeferred
@within(40)
async def test_a_keepalive_right_behind_a_clean_delete_does_not_revive(
        app: App, peers: Any, reactor: Any) -> None:
    leaving = await runtime(peers, reactor, RT1)
    leaving.peer.publish(f"{R}/reg/{RT1}", {"object_id": "bye", "action": "delete",
                                            "type": "arts_req",
                                            "data": {"type": "runtime", "uuid": RT1}})
    leaving.keepalive()                                 # overtaken, as it were, by the goodbye
    # a later message on the same connection: once it is answered, both were handled
    await leaving.peer.subscribe(f"{R}/reg/{RT3}")
    leaving.peer.publish(f"{R}/reg/{RT3}", {"object_id": "probe", "action": "create",
                                            "type": "arts_req",
                                            "data": {"type": "runtime", "uuid": RT3}})
    await leaving.peer.expect(f"{R}/reg/{RT3}", lambda m: m.json.get("object_id") == "probe")
    code, detail = await app.get(f"/api/runtimes/{RT1}")
    assert detail["status"] == "dead" and detail["dead_reason"] == "delete"
