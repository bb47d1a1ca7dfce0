"""Lookups find what exists: dead runtimes, queued and dead modules, by name and short id."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from treq.testing import StubTreq

from orchestrator.adapters.web import RestApi
from tests.support.harness import RT1, RT2, Harness

M1 = "b0000000-0000-4000-8000-00000000a001"
M2 = "b0000000-0000-4000-8000-00000000a002"
M3 = "b0000000-0000-4000-8000-00000000a003"


async def get(h: Harness, path: str) -> tuple[int, Any]:
    response = await StubTreq(RestApi(h.core).resource()).get(f"http://localhost{path}")
    return response.code, json.loads(await response.content())


def fleet() -> Harness:
    """edge-b died with two modules that wait for it; one module queued for lack of room."""
    h = Harness()
    h.register(RT1, name="edge-a", max_nmodules=1)
    h.register(RT2, name="edge-b")
    h.create(uuid=M1, name="m1", parent=RT2)
    h.create(uuid=M2, name="m2", parent=RT2, fault_crash="restart")
    h.create(uuid="b0000000-0000-4000-8000-00000000a009", name="filler", parent=RT1)
    h.deregister(RT2)
    h.create(uuid=M3, name="m3")
    return h


@pytest_twisted.ensureDeferred
async def test_a_dead_runtime_by_name_lists_the_modules_waiting_for_it() -> None:
    h = fleet()
    code, body = await get(h, "/api/runtimes/edge-b/")
    assert code == 200 and body["uuid"] == RT2 and body["status"] == "dead"
    assert [m["uuid"] for m in body["children"]] == [M1, M2]
    assert {m["status"] for m in body["children"]} == {"killed"} and body["nwaiting"] == 2
    assert body["children"][0]["waiting"] == ("waiting for runtime edge-b to register again "
                                              "(not moved: fault_crash is not restart)")
    assert body["children"][1]["waiting"].endswith(
        "(not moved: no room: all 1 compatible runtimes are full)")


@pytest_twisted.ensureDeferred
async def test_alive_wins_over_dead_of_the_same_name() -> None:
    h = fleet()
    h.register("cccccccc-0000-4000-8000-000000000003", name="edge-b")
    _, body = await get(h, "/api/runtimes/edge-b/")
    assert body["status"] == "alive" and body["uuid"].startswith("cccccccc")


@pytest_twisted.ensureDeferred
async def test_queued_and_dead_modules_by_name() -> None:
    h = fleet()
    code, body = await get(h, "/api/modules/m3/")
    assert code == 200 and body["status"] == "queued"
    assert body["waiting"] == "waiting: no room: all 1 compatible runtimes are full"
    h.delete(M3)
    code, body = await get(h, "/api/modules/m3/")
    assert code == 200 and body["status"] == "dead" and "waiting" not in body


@pytest_twisted.ensureDeferred
async def test_parent_filter_takes_a_dead_runtimes_name() -> None:
    h = fleet()
    code, body = await get(h, "/api/modules/?status=killed&parent=edge-b")
    assert code == 200 and [m["uuid"] for m in body["modules"]] == [M1, M2]


@pytest_twisted.ensureDeferred
async def test_short_id_is_the_uuid_end_for_alive_and_dead() -> None:
    h = fleet()
    _, body = await get(h, f"/api/runtimes/{RT2[-8:]}/")          # dead runtime
    assert body["uuid"] == RT2
    _, body = await get(h, f"/api/modules/{M3[-8:]}/")            # queued module
    assert body["uuid"] == M3
    _, body = await get(h, f"/api/runtimes/{RT1[-4:].upper()}/")  # libsilverline's 4 digits
    assert body["uuid"] == RT1


@pytest_twisted.ensureDeferred
async def test_waiting_for_a_named_runtime_and_for_missing_apis() -> None:
    h = fleet()
    h.create(uuid="b0000000-0000-4000-8000-00000000a00a", name="pinned", parent="edge-a")
    h.create(uuid="b0000000-0000-4000-8000-00000000a00b", name="gpu", apis=["cuda"])
    _, body = await get(h, "/api/modules/pinned/")
    assert body["waiting"] == "waiting for room on runtime edge-a (1/1 running)"
    _, body = await get(h, "/api/modules/gpu/")
    assert body["waiting"] == "waiting: no compatible runtime: none alive offers cuda"
