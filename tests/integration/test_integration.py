"""End to end: real mosquitto, the real service tree, a runtime and a client over MQTT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
import treq

from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.twisted import eventually, within

RT = "43a664a6-5c99-4b08-9d00-eeabc0d1f7f7"
M1 = "54c0d836-a23f-4ef7-8c64-4b6f5082b7a7"
R = "realm/proc"


def registration(uuid: str = RT, **data: Any) -> dict:
    return {"object_id": "o-reg-1", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": uuid, "name": "test", **data}}


async def register(runtime: Any, **data: Any) -> dict:
    """Register and wait for the reply (a runtime subscribed to the reg topic)."""
    runtime.publish(f"{R}/reg", registration(**data))
    reply = await runtime.expect(f"{R}/reg", lambda m: m.json.get("type") == "arts_resp")
    return reply.json


def create(uuid: str = M1, object_id: str = "o-create", **data: Any) -> dict:
    return {"object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": uuid, "name": "hello",
                     "filename": "wasm/tests/helloworld.wasm", **data}}


@pytest_twisted.ensureDeferred
@within(30)
async def test_runtime_and_client_full_cycle(app: App, peers: Any) -> None:
    runtime = await peers("runtime", f"{R}/reg", f"{R}/control/{RT}")
    client = await peers("client", f"{R}/control", f"{R}/notif", f"{R}/log/orchestrator")

    reply = await register(runtime)
    assert reply["object_id"] == "o-reg-1" and reply["data"]["details"]["alive"] is True

    client.publish(f"{R}/control", create(parent=RT))
    fwd = (await runtime.expect(f"{R}/control/{RT}")).json
    assert fwd["action"] == "create" and fwd["data"]["uuid"] == M1
    answer = (await client.expect(f"{R}/control", lambda m: m.json.get("object_id") == "o-create"
                                  and m.json.get("type") == "arts_resp")).json
    assert answer["data"]["details"]["status"] == "alive"

    runtime.publish(f"{R}/control/{RT}", {"object_id": fwd["object_id"], "type": "runtime_resp",
                                           "data": {"result": "ok", "details": {}}})
    await eventually(lambda: app.registry.modules[M1].acked_at, what="the ack")
    code, body = await app.get(f"/api/modules/{M1}/")
    assert code == 200 and body["acked_at"] is not None

    code, body = await app.get("/api/runtimes/")
    items = [{"uuid": RT, "name": "test", "runtime_type": "linux", "aot_target": "{}",
              "children": [{"uuid": M1, "name": "hello",
                            "filename": "wasm/tests/helloworld.wasm"}], "queued": []}]
    assert body == {"runtimes": items, "count": 1, "start": 0, "results": items}

    client.publish(f"{R}/control", {"object_id": "o-del", "type": "arts_req", "action": "delete",
                                    "data": {"uuid": "hello"}})
    delete = (await runtime.expect(f"{R}/control/{RT}", lambda m: m.json["action"] == "delete")).json
    assert delete["data"] == {"type": "module", "uuid": M1}

    runtime.publish(f"{R}/control/{RT}", {"object_id": "x", "action": "exited", "type": "arts_req",
                                           "data": {"type": "module", "uuid": M1}})
    notif = (await client.expect(f"{R}/notif", lambda m: m.json["action"] == "exited")).json
    assert notif["data"] == {"type": "module", "uuid": M1}
    assert (await app.get("/api/modules/"))[1] == {"modules": [], "count": 0, "start": 0,
                                                   "results": []}
    assert not client.on(f"{R}/log/orchestrator")


@pytest_twisted.ensureDeferred
@within(30)
async def test_reregistration_respawns_after_last_will(app: App, peers: Any) -> None:
    will = {"object_id": "will", "action": "delete", "type": "arts_req",
            "data": {"type": "runtime", "uuid": RT}}
    runtime = await peers("runtime", f"{R}/reg", f"{R}/control/{RT}", will=(f"{R}/reg", will))
    client = await peers("client")
    await register(runtime)
    client.publish(f"{R}/control", create(parent=RT))
    await runtime.expect(f"{R}/control/{RT}")

    runtime.vanish()                                   # the broker fires the will
    await eventually(lambda: not app.registry.runtimes[RT].alive, what="the will")
    assert app.registry.modules[M1].status == "killed"
    code, body = await app.get(f"/api/runtimes/{RT}")
    assert body["alive"] is False and body["status"] == "dead"

    again = await peers("runtime-again", f"{R}/control/{RT}")
    again.publish(f"{R}/reg", registration(name="renamed"))
    fwd = (await again.expect(f"{R}/control/{RT}")).json
    assert fwd["action"] == "create" and fwd["data"]["uuid"] == M1
    assert app.registry.runtimes[RT].name == "renamed"


@pytest_twisted.ensureDeferred
@within(30)
async def test_garbage_on_every_topic_gets_errors_and_service_goes_on(app: App, peers: Any) -> None:
    client = await peers("client", f"{R}/log/orchestrator", f"{R}/reg")
    topics = [f"{R}/reg", f"{R}/reg/{RT}", f"{R}/control", f"{R}/control/{RT}",
              f"{R}/keepalive", f"{R}/keepalive/{RT}"]
    for n, topic in enumerate(topics):
        for payload in [b"", b"\x00\xff\xfe", b"{", b"[]", b'{"type": 5}', b"x" * 300_000]:
            client.publish(topic, payload)
    for _ in range(len(topics) * 6):
        await client.expect(f"{R}/log/orchestrator")
    assert app.registry.runtimes == {} and app.registry.modules == {}
    client.publish(f"{R}/reg", registration())
    await client.expect(f"{R}/reg", lambda m: m.json.get("type") == "arts_resp")


@pytest_twisted.ensureDeferred
@within(60)
async def test_broker_restart_orchestrator_resubscribes(app: App, peers: Any,
                                                        broker: Mosquitto) -> None:
    broker.stop()
    await eventually(lambda: not app.mqtt.connected, 10, "the orchestrator to notice")
    broker.start()
    await eventually(lambda: app.mqtt.subscribed, 15, "the orchestrator to reconnect")
    runtime = await peers("runtime", f"{R}/reg", f"{R}/orchestrator/status")
    runtime.publish(f"{R}/reg", registration())
    await runtime.expect(f"{R}/reg", lambda m: m.json.get("type") == "arts_resp", timeout=5)
    status = await runtime.expect(f"{R}/orchestrator/status")
    assert status.payload == b"online" and status.retain


@pytest_twisted.ensureDeferred
@within(60)
async def test_restart_keeps_the_registry(reactor: Any, broker: Mosquitto, peers: Any,
                                          tmp_path: Path) -> None:
    config = make_config(broker.port, tmp_path / "state")
    first = await App(reactor, config).start()
    runtime = await peers("runtime", f"{R}/reg", f"{R}/control/{RT}")
    await register(runtime)
    runtime.publish(f"{R}/control", create(parent=RT))
    await runtime.expect(f"{R}/control/{RT}")
    runtime.publish(f"{R}/control", create(uuid="m-2", object_id="o2", parent=RT))
    await runtime.expect(f"{R}/control/{RT}")
    runtime.publish(f"{R}/control", {"object_id": "x", "action": "exited", "type": "arts_req",
                                     "data": {"type": "module", "uuid": "m-2"}})
    await eventually(lambda: first.registry.modules["m-2"].status == "dead")
    await first.stop()

    second = await App(reactor, config).start()
    try:
        code, body = await second.get(f"/api/runtimes/{RT}/")
        assert code == 200 and body["alive"] is True
        assert (await second.get(f"/api/modules/{M1}"))[1]["status"] == "alive"
        assert (await second.get("/api/modules/m-2"))[1]["status"] == "dead"
    finally:
        await second.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_mqtt_311_mode_ignores_its_own_publishes(reactor: Any, broker: Mosquitto,
                                                      peers: Any, tmp_path: Path) -> None:
    app = await App(reactor, make_config(broker.port, tmp_path / "s",
                                         mqtt_protocol="3.1.1")).start()
    try:
        runtime = await peers("runtime", f"{R}/#", v5=False)
        await register(runtime)
        runtime.publish(f"{R}/control", create(parent=RT))
        await runtime.expect(f"{R}/control/{RT}")
        runtime.publish(f"{R}/control", create(uuid="sentinel", object_id="s", parent=RT))
        await runtime.expect(f"{R}/control", lambda m: m.json.get("object_id") == "s"
                             and m.json.get("type") == "arts_resp")
        assert not runtime.on(f"{R}/log/orchestrator"), "it must not answer its own messages"
        assert len(runtime.on(f"{R}/control/{RT}")) == 1
    finally:
        await app.stop()


@pytest_twisted.ensureDeferred
async def test_the_service_tree_exposes_at_least_15_series(app: Any) -> None:
    response = await treq.get(app.url + "/metrics")
    text = (await response.content()).decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert len(families) >= 15, sorted(families)
    assert {"silverline_broker_connected", "silverline_broker_reconnects_total",
            "silverline_sse_watchers", "silverline_journal_fsync_seconds"} <= families
