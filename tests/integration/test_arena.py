"""The ARENA dialect over a real broker: simulated applauncher-runtimes and
arena-web-core browsers against the real service tree (tests/support/arena.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest_twisted

from orchestrator.core.arena import orchestrator_id
from orchestrator.testing import silence_allowed
from tests.support import arena as wire
from tests.support.app import App, make_config
from tests.support.arena import SimulatedAppLauncher, SimulatedArenaClient
from tests.support.broker import Mosquitto
from tests.support.twisted import eventually, within

ME = orchestrator_id("realm")


@pytest_twisted.async_yield_fixture
async def fleet(reactor: Any, broker: Mosquitto, tmp_path: Path) -> AsyncIterator[Any]:
    """The orchestrator (keepalive deadline 2 s) and makers of ARENA peers."""
    app = await App(reactor, make_config(broker.port, tmp_path / "state", ka_interval_sec=1,
                                         keepalive_misses=2)).start()
    made: list[Any] = []

    async def runtime(register: bool = True, **kw: Any) -> SimulatedAppLauncher:
        rt = SimulatedAppLauncher(reactor, broker.port, **kw)
        made.append(rt)
        await rt.start(register)
        await eventually(lambda: (r := app.registry.runtimes.get(rt.uuid)) is not None
                         and r.ready, 5, "the runtime to be ready")
        return rt

    async def client(**kw: Any) -> SimulatedArenaClient:
        c = SimulatedArenaClient(reactor, broker.port, **kw)
        made.append(c)
        return await c.connect()  # type: ignore[return-value]

    class Fleet:
        pass
    f = Fleet()
    f.app, f.runtime, f.client = app, runtime, client  # type: ignore[attr-defined]
    yield f
    for peer in made:
        peer.close()
    await app.stop()


def module(app: App, uuid: str) -> Any:
    return app.registry.modules.get(uuid)


@pytest_twisted.ensureDeferred
@within(30)
async def test_registration_is_accepted_and_rest_shows_dialect_namespace_and_stats(
        fleet: Any) -> None:
    rt = await fleet.runtime(namespace="lab-ns", name="arena-rt1")
    code, body = await fleet.app.get(f"/api/runtimes/{rt.uuid}/")
    assert code == 200
    assert (body["dialect"], body["namespace"], body["status"]) == ("arena", "lab-ns", "alive")
    assert body["apis"] == wire.APIS and body["tags"] == ["arena-py", "containerized-modules"]
    assert body["ready"] and body["errors"] == []
    _, listed = await fleet.app.get("/api/runtimes/")
    assert any(r["uuid"] == rt.uuid for r in listed["runtimes"])


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_runtime_that_never_registers_is_adopted_and_runs_what_it_is_sent(
        fleet: Any, peers: Any) -> None:
    rt = await fleet.runtime(register=False)
    proc_client = await peers("cli", "realm/proc/control")
    proc_client.publish("realm/proc/control", {
        "object_id": "o-1", "action": "create", "type": "arts_req",
        "data": {"type": "module", "uuid": "b241e483-0000-4000-8000-000000000001",
                 "name": "hello", "parent": rt.uuid, "filename": "hello.py", "filetype": "PY",
                 "scene": "lab", "location": "jdoe/py/hello"}})
    await eventually(lambda: rt.modules, 5, "the runtime to get the create")
    [request] = rt.requests
    assert request["from"] == ME and request["data"]["file"] == "hello.py"
    await eventually(lambda: module(fleet.app, "b241e483-0000-4000-8000-000000000001")
                     .acked_at is not None, 5, "the confirmation")
    # keepalive children stats in REST
    async def stats() -> Any:
        _, body = await fleet.app.get(f"/api/runtimes/{rt.uuid}/")
        return body["children"] and "stats" in body["children"][0] and body
    body = await eventually(stats, 5, "stats from a keepalive")
    assert body["children"][0]["stats"]["cpu_usage_percent"] == 1.5
    # its output, streamed by the runtime, is the module's output
    rt.prints("b241e483-0000-4000-8000-000000000001", "hello from the container")

    async def logged() -> Any:
        code, line = await fleet.app.get("/api/modules/b241e483-0000-4000-8000-000000000001/logs")
        return code == 200 and line and line["text"] == "hello from the container"
    await eventually(logged, 5, "the module's output")
    # the module exits by itself: the runtime says so on the module's topic
    rt.exit_module("b241e483-0000-4000-8000-000000000001")
    await eventually(lambda: module(fleet.app, "b241e483-0000-4000-8000-000000000001")
                     .status == "dead", 5, "the exit")


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_launcher_failure_marks_the_module_failed_with_the_runtimes_reason(
        fleet: Any) -> None:
    rt = await fleet.runtime(launches=False)
    browser = await fleet.client()
    create = browser.start_program()
    uuid = create["data"]["uuid"]
    await eventually(lambda: (m := module(fleet.app, uuid)) is not None
                     and m.status == "failed", 5, "the failure")
    _, body = await fleet.app.get(f"/api/modules/{uuid}/")
    assert "error in launcher" in body["reason"] and body["dialect"] == "arena"
    _, rt_body = await fleet.app.get(f"/api/runtimes/{rt.uuid}/")
    descs = [e["desc"] for e in rt_body["errors"]]
    assert "Runtime exception: error in launcher" in descs
    assert "Runtime exception: invalid parent" in descs     # the browser's own request


@pytest_twisted.ensureDeferred
@within(30)
async def test_unpinned_requests_are_placed_once_pinned_ones_left_to_their_runtime(
        fleet: Any) -> None:
    rt1 = await fleet.runtime(name="arena-rt1")
    rt2 = await fleet.runtime(name="arena-rt2")
    browser = await fleet.client()
    free = browser.start_program()["data"]["uuid"]
    pinned = browser.start_program(parent="arena-rt2", name="jdoe/py/pinned")["data"]["uuid"]
    await eventually(lambda: free in rt1.modules or free in rt2.modules, 5, "placement")
    await eventually(lambda: pinned in rt2.modules, 5, "the pinned runtime to act")
    started = [r for rt in (rt1, rt2) for r in rt.requests if r["data"]["uuid"] == free]
    assert len(started) == 1 and started[0]["from"] == ME       # placed once, by us
    [own] = [r for r in rt2.requests if r["data"]["uuid"] == pinned]
    assert "from" not in own                                    # the browser's, not ours
    await eventually(lambda: module(fleet.app, pinned) is not None
                     and module(fleet.app, pinned).acked_at is not None, 5, "recorded")
    assert module(fleet.app, pinned).parent == rt2.uuid


@pytest_twisted.ensureDeferred
@within(30)
async def test_single_runs_once_for_all_clients_client_instances_go_with_their_client(
        fleet: Any) -> None:
    rt = await fleet.runtime()
    jdoe, ann = await fleet.client(), await fleet.client()
    program_id = "5c0e7a3e-1111-4111-8111-000000000001"
    jdoe.start_program("single", object_id=program_id, name="shared")
    mine = jdoe.start_program("client")["data"]["uuid"]
    theirs = ann.start_program("client")["data"]["uuid"]
    await eventually(lambda: program_id in rt.modules and mine in rt.modules
                     and theirs in rt.modules, 5, "three programs")
    ann.start_program("single", object_id=program_id, name="shared")
    await eventually(lambda: ann.id_tag in module(fleet.app, program_id).clients, 5, "seen")
    assert [r["data"]["uuid"] for r in rt.requests].count(program_id) == 1
    jdoe.vanish()                                    # the tab crashes: its will fires
    await eventually(lambda: mine not in rt.modules, 5, "jdoe's instance to go")
    await eventually(lambda: module(fleet.app, mine).status == "dead", 5, "recorded")
    assert program_id in rt.modules and theirs in rt.modules
    ann.leave()                                      # a clean unload
    await eventually(lambda: theirs not in rt.modules, 5, "ann's instance to go")
    assert program_id in rt.modules


@pytest_twisted.ensureDeferred
@within(40)
async def test_keepalive_silence_kills_the_runtime_and_its_programs_move(fleet: Any) -> None:
    rt1 = await fleet.runtime(name="arena-rt1")
    browser = await fleet.client()
    uuid = browser.start_program()["data"]["uuid"]
    await eventually(lambda: uuid in rt1.modules, 5, "placement on the only runtime")
    rt2 = await fleet.runtime(name="arena-rt2")
    await eventually(lambda: silence_allowed(fleet.app.service.core.liveness, rt1.uuid), 5,
                     "a rhythm")
    rt1.go_silent()                                  # hangs; the connection stays up
    await eventually(lambda: uuid in rt2.modules, 10, "the program to move")
    assert fleet.app.registry.runtimes[rt1.uuid].dead_reason == "keepalive timeout"
    assert module(fleet.app, uuid).parent == rt2.uuid
    # the hung runtime comes back: it is told to stop the copy that moved
    rt1.resume()
    await eventually(lambda: uuid not in rt1.modules, 5, "the old copy stopped")
    assert fleet.app.registry.runtimes[rt1.uuid].alive          # revived by its keepalives
    # applauncher deletes by uuid whatever the parent, so rt2's copy stopped too:
    # it is started there again, and runs once
    await eventually(lambda: uuid in rt2.modules, 5, "the live copy started again")
    assert module(fleet.app, uuid).parent == rt2.uuid and uuid not in rt1.modules
    assert module(fleet.app, uuid).alive


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_runtime_will_kills_it(fleet: Any) -> None:
    rt = await fleet.runtime()
    rt.crash()
    await eventually(lambda: fleet.app.registry.runtimes[rt.uuid].dead_reason == "delete",
                     5, "the will")


@pytest_twisted.ensureDeferred
@within(30)
async def test_mixed_fleet_of_proc_and_arena_runtimes(fleet: Any, peers: Any) -> None:
    arena_rt = await fleet.runtime()
    proc_rt = await peers("proc-rt", "realm/proc/control/11111111-1111-4111-8111-111111111111")
    requester = await peers("requester", "realm/proc/control")
    proc_rt.publish("realm/proc/reg", {
        "object_id": "r1", "action": "create", "type": "arts_req",
        "data": {"type": "runtime", "uuid": "11111111-1111-4111-8111-111111111111",
                 "name": "proc-rt", "apis": ["wasm", "wasi"]}})
    await eventually(lambda: "11111111-1111-4111-8111-111111111111"
                     in fleet.app.registry.runtimes, 5, "the proc runtime")
    requester.publish("realm/proc/control", {
        "object_id": "c1", "action": "create", "type": "arts_req",
        "data": {"type": "module", "uuid": "cccccccc-0000-4000-8000-000000000001",
                 "name": "wasm-one", "filename": "hello.wasm"}})
    forwarded = await proc_rt.expect("realm/proc/control/+")
    assert forwarded.json["data"]["uuid"] == "cccccccc-0000-4000-8000-000000000001"
    browser = await fleet.client()
    py = browser.start_program()["data"]["uuid"]
    await eventually(lambda: py in arena_rt.modules, 5, "the python program on ARENA")
    _, body = await fleet.app.get("/api/runtimes/?status=alive")
    assert sorted(r["dialect"] for r in body["runtimes"]) == ["arena", "proc"]
    _, mod = await fleet.app.get(f"/api/modules/{py}/")
    assert (mod["dialect"], mod["namespace"], mod["scene"]) == ("arena", "public", "lab")


@pytest_twisted.ensureDeferred
@within(40)
async def test_arena_records_survive_a_restart(reactor: Any, broker: Mosquitto,
                                               tmp_path: Path) -> None:
    config = make_config(broker.port, tmp_path / "state", ka_interval_sec=1,
                         keepalive_misses=2)
    app = await App(reactor, config).start()
    rt = SimulatedAppLauncher(reactor, broker.port, namespace="lab-ns")
    browser = SimulatedArenaClient(reactor, broker.port)
    try:
        await rt.start()
        await eventually(lambda: (r := app.registry.runtimes.get(rt.uuid)) is not None
                         and r.ready, 5, "ready")
        await browser.connect()
        uuid = browser.start_program()["data"]["uuid"]
        await eventually(lambda: uuid in rt.modules, 5, "placement")
        await app.stop()
        app = await App(reactor, config).start()
        runtime, placed = app.registry.runtimes[rt.uuid], app.registry.modules[uuid]
        assert (runtime.dialect, runtime.namespace) == ("arena", "lab-ns")
        assert (placed.dialect, placed.scene, placed.clients, placed.parent) == (
            "arena", "lab", (browser.id_tag,), rt.uuid)
        _, body = await app.get(f"/api/modules/{uuid}/")
        assert body["dialect"] == "arena" and body["clients"] == [browser.id_tag]
    finally:
        rt.close()
        browser.close()
        await app.stop()
