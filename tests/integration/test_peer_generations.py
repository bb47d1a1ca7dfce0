"""Every generation of SilverLine peer against the real ``twistd`` over a real mosquitto.

The peers are the simulations in ``tests/support/peers`` (derived from the real
libsilverline, runtime-manager and arena-runtime-simulated code); the same
flows were run by hand against the real software (README, Compatibility).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted

from tests.support.broker import Mosquitto
from tests.support.peers import clients
from tests.support.peers.runtimes import Manager2023, Runtime2021, Runtime2022
from tests.support.peers.service import Twistd
from tests.support.twisted import eventually, within

R = "realm/proc"


@pytest_twisted.async_yield_fixture
async def twistd(broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Twistd]:
    service = await Twistd(tmp_path, broker.port).start()
    yield service
    await service.stop()


def by_object_id(object_id: str) -> Any:
    return lambda m: m.json.get("object_id") == object_id and "action" not in m.json


@pytest_twisted.ensureDeferred
@within(60)
@pytest.mark.parametrize("generation", ["2022-07", "2022-09", "2023"])
async def test_libsilverline_list_run_stop(twistd: Twistd, peers: Any, generation: str) -> None:
    """list.py, run.py, stop_modules.py, stop_runtimes.py of each libsilverline generation."""
    runtime = Runtime2022("test")
    await runtime.start(peers)
    client = await peers("cli", f"{R}/control")
    listed = clients.list_runtimes(generation, await twistd.get("/api/runtimes/"))
    assert [(r["name"], r["children"]) for r in listed] == [("test", [])]

    create = clients.create_2022(generation, runtime.uuid, "hello", "wasm/tests/helloworld.wasm")
    client.publish(f"{R}/control", create)
    reply = (await client.expect(f"{R}/control", by_object_id(create["object_id"]))).json
    assert reply["type"] == ("resp" if generation == "2023" else "arts_resp")
    forward = await runtime.forwarded("create")
    # the 2022 forward, whatever the envelope: filename and args as a list
    assert forward["data"]["filename"] == "wasm/tests/helloworld.wasm"
    assert forward["data"]["args"] == ["wasm/tests/helloworld.wasm"]
    module = create["data"]["uuid"]
    listed = clients.list_runtimes(generation, await twistd.get("/api/runtimes/"))
    assert [m["uuid"] for m in listed[0]["children"]] == [module]

    delete = clients.delete_2022(generation, module)
    client.publish(f"{R}/control", delete)
    await client.expect(f"{R}/control", by_object_id(delete["uuid"]))
    assert (await runtime.forwarded("delete"))["data"] == {"type": "module", "uuid": module}
    runtime.exited(module)

    async def dead() -> bool:
        return (await twistd.get(f"/api/modules/{module}/"))["status"] == "dead"
    await eventually(dead, 10, "the module's exit")
    # stop_runtimes.py without --runtime: reads the list, then names each runtime
    assert [r["uuid"] for r in clients.list_runtimes(
        generation, await twistd.get("/api/runtimes/"))] == [runtime.uuid]


@pytest_twisted.ensureDeferred
@within(60)
async def test_runtime_manager_2023_end_to_end(twistd: Twistd, peers: Any) -> None:
    """start.py, manage.py list / run (one -f and several) / stop, the manager's will."""
    node = Manager2023("node")
    mgr_reply, rt_reply = await node.start(peers)
    assert mgr_reply["type"] == rt_reply["type"] == "resp"
    assert rt_reply["data"]["details"]["uuid"] == node.rtid
    client = await peers("cli", f"{R}/control", f"{R}/stdio/+", f"{R}/notif")
    rows = clients.manage_py_list(await twistd.get("/api/runtimes/"))
    assert rows == [(f"{node.rtid[-4:]}:node", "linux/min/wasmer", [], [])]

    # manage.py run -r node -n hello -f helloworld.wasm
    create = clients.create_2023("node", "helloworld.wasm", "hello", argv=["x"])
    client.publish(f"{R}/control", create)
    reply = (await client.expect(f"{R}/control", by_object_id(create["object_id"]))).json
    assert reply["type"] == "resp" and reply["data"]["details"]["status"] == "alive"
    ran = await node.run_next()
    assert ran["command"] == ["wasmer", "run", "helloworld.wasm", "x"]
    assert ran["forward"]["data"]["args"] == {"argv": ["x"], "env": [], "limit": 60.0}
    module = create["data"]["uuid"]
    out = await client.expect(f"{R}/stdio/{module}")
    assert out.payload == b"hello world\n"
    await client.expect(f"{R}/notif", lambda m: m.json["action"] == "exited"
                        and m.json["data"]["uuid"] == module)
    detail = await twistd.get(f"/api/modules/{module}/")
    assert detail["status"] == "dead" and detail["dialect"] == "2023"
    assert detail["file"] == "helloworld.wasm"

    # manage.py run -f a.wasm b.wasm c.wasm: one create_batch; max_nmodules is 1
    batch = clients.create_batch_2023(node.rtid, ["a.wasm", "b.wasm", "c.wasm"], "many")
    client.publish(f"{R}/control", batch)
    reply = (await client.expect(f"{R}/control", by_object_id(batch["object_id"]))).json
    assert [m["status"] for m in reply["data"]["details"]["modules"]] == [
        "alive", "queued", "queued"]
    rows = clients.manage_py_list(await twistd.get("/api/runtimes/"))
    names = [m["uuid"][-4:] + ":many" for m in batch["data"]["modules"]]
    assert rows[0][2:] == ([names[0]], names[1:])
    files = [(await node.run_next())["forward"]["data"]["file"] for _ in range(3)]
    assert files == ["a.wasm", "b.wasm", "c.wasm"]

    # manage.py stop -n <module> while it runs: linux_minimal ignores deletes, so
    # the module stays exiting (holding the only slot) until its program ends
    long = clients.create_2023(node.rtid, "sleep.wasm", "napper")
    waiting = clients.create_2023(node.rtid, "next.wasm", "after")
    client.publish(f"{R}/control", long)
    client.publish(f"{R}/control", waiting)
    await client.expect(f"{R}/control", by_object_id(waiting["object_id"]))
    assert node.peer is not None
    first = await node.peer.expect(f"{R}/control/{node.rtid}", lambda m:
                                   m.json.get("action") == "create")
    client.publish(f"{R}/control", clients.delete_2023(long["data"]["uuid"]))
    await node.peer.expect(f"{R}/control/{node.rtid}",
                           lambda m: m.json.get("action") == "delete")
    detail = await twistd.get(f"/api/modules/{long['data']['uuid']}/")
    assert detail["status"] == "exiting" and detail["exiting_since"] is not None
    assert (await twistd.get(f"/api/modules/{waiting['data']['uuid']}/"))["status"] == "queued"
    node.peer.publish(f"{R}/control/{node.rtid}", {
        "object_id": "x", "action": "exited", "type": "req",
        "data": {"type": "module", "uuid": first.json["data"]["uuid"], "status": "exited"}})
    assert (await node.run_next())["forward"]["data"]["file"] == "next.wasm"

    # the manager's last will takes its runtime down
    node.peer.vanish()
    await client.expect(f"{R}/notif", lambda m: m.json["action"] == "dead"
                        and m.json["data"]["uuid"] == node.rtid, 10)
    assert clients.manage_py_list(await twistd.get("/api/runtimes/")) == []


@pytest_twisted.ensureDeferred
@within(60)
async def test_runtime_manager_clean_stop(twistd: Twistd, peers: Any) -> None:
    node = Manager2023("node")
    await node.start(peers)
    watcher = await peers("watcher", f"{R}/notif")
    node.stop()
    dead = await watcher.expect(f"{R}/notif", lambda m: m.json["action"] == "dead")
    assert dead.json["data"]["reason"] == "manager delete"


@pytest_twisted.ensureDeferred
@within(60)
async def test_arena_simulated_runtime_2021_delete_confirmation(twistd: Twistd,
                                                                peers: Any) -> None:
    """The 2021 runtime confirms a delete with an arts_resp and never sends exited."""
    runtime = Runtime2021("py-runtime")
    reply = await runtime.start(peers)
    assert reply["data"]["result"] == "ok"
    client = await peers("cli", f"{R}/control", f"{R}/notif")
    modules = []
    for n in range(2):
        create = {"object_id": f"c{n}", "action": "create", "type": "arts_req",
                  "data": {"type": "module", "uuid": f"aaaaaaaa-0000-4000-8000-00000000000{n}",
                           "name": "pytest", "parent": "py-runtime", "filename": "test.py",
                           "filetype": "PY", "args": "", "env": ""}}
        client.publish(f"{R}/control", create)
        modules.append((await runtime.answer_create())["data"])

    async def status(uuid: str) -> str:
        return (await twistd.get(f"/api/modules/{uuid}/"))["status"]

    async def acked() -> bool:
        return (await twistd.get(f"/api/modules/{modules[0]['uuid']}/"))["acked_at"] is not None
    await eventually(acked, 10, "the create's confirmation")

    client.publish(f"{R}/control", {"object_id": "d0", "action": "delete", "type": "arts_req",
                                    "data": {"uuid": modules[0]["uuid"]}})
    await runtime.answer_delete()
    notif = await client.expect(f"{R}/notif", lambda m: m.json["action"] == "exited")
    assert notif.json["data"] == {"type": "module", "uuid": modules[0]["uuid"]}
    assert await status(modules[0]["uuid"]) == "dead"

    # its other way to say a module ended: a delete naming the runtime object as parent
    runtime.module_done(modules[1])
    await client.expect(f"{R}/notif", lambda m: m.json["action"] == "exited"
                        and m.json["data"]["uuid"] == modules[1]["uuid"])
    assert await status(modules[1]["uuid"]) == "dead"
