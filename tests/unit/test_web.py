"""The REST API (docs/protocol.md 16) in memory, through StubTreq."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from orchestrator.adapters.web import RestApi
from tests.support.harness import RT1, RT2, Harness

M1 = "54c0d836-a23f-4ef7-8c64-4b6f5082b7a7"
M2 = "54c0d836-a23f-4ef7-8c64-4b6f5082aaaa"


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.register(RT1, name="test", aot_target="{}")
    h.register(RT2, name="other")
    h.create(uuid=M1, name="module", parent=RT1, filename="wasm/polybench/2mm_s.wasm",
             args=["wasm/polybench/2mm_s.wasm"])
    h.create(uuid=M2, name="gone", parent=RT2)
    h.exited(M2)
    return h


async def get(h: Harness, path: str, method: str = "GET") -> tuple[int, Any, Any]:
    client = StubTreq(RestApi(h.core).resource())
    response = await client.request(method, f"http://localhost{path}")
    body = await response.content()
    return response.code, response.headers, (json.loads(body) if body else None)


@pytest_twisted.ensureDeferred
async def test_list_runtimes_compat_shape(h: Harness) -> None:
    code, headers, body = await get(h, "/api/runtimes/")
    assert code == 200
    assert headers.getRawHeaders("Content-Type") == ["application/json"]
    items = [
        {"uuid": RT1, "name": "test", "runtime_type": "linux", "aot_target": "{}",
         "children": [{"uuid": M1, "name": "module", "filename": "wasm/polybench/2mm_s.wasm"}],
         "queued": []},
        {"uuid": RT2, "name": "other", "runtime_type": "linux", "aot_target": "{}",
         "children": [], "queued": []}]
    # 2022-07 clients read "runtimes"; 2022-09 and 2023 clients read "results"
    assert body == {"runtimes": items, "count": 2, "start": 0, "results": items}


@pytest_twisted.ensureDeferred
async def test_list_runtimes_shows_each_ones_queue(h: Harness) -> None:
    h.register(RT2, name="other", max_nmodules=1)
    h.create(uuid="q1", name="first", parent=RT2)
    h.create(uuid="q2", name="waiting", parent=RT2, filename="w.wasm")
    _, _, body = await get(h, "/api/runtimes/")
    [other] = [r for r in body["results"] if r["uuid"] == RT2]
    assert [c["uuid"] for c in other["children"]] == ["q1"]
    assert other["queued"] == [{"uuid": "q2", "name": "waiting", "filename": "w.wasm"}]
    _, _, detail = await get(h, f"/api/runtimes/{RT2}/")
    assert detail["queued"] == other["queued"]
    _, _, page = await get(h, "/api/runtimes/?limit=10")
    assert page["results"] == page["runtimes"] and page["next"] is None
    # libsilverline 2023's get_queued asks for "queued//"
    code, _, queued = await get(h, "/api/queued//")
    q2 = {"uuid": "q2", "name": "waiting", "parent": RT2, "filename": "w.wasm"}
    assert code == 200 and queued == {"queued": [q2], "count": 1, "start": 0, "results": [q2]}


@pytest_twisted.ensureDeferred
async def test_lists_show_only_alive(h: Harness) -> None:
    h.deregister(RT2)
    _, _, runtimes = await get(h, "/api/runtimes")
    assert [r["uuid"] for r in runtimes["runtimes"]] == [RT1]
    _, _, modules = await get(h, "/api/modules")
    items = [{"uuid": M1, "name": "module", "parent": RT1,
              "filename": "wasm/polybench/2mm_s.wasm"}]
    assert modules == {"modules": items, "count": 1, "start": 0, "results": items}


@pytest_twisted.ensureDeferred
async def test_runtime_detail_compat_keys_then_ours(h: Harness) -> None:
    code, _, body = await get(h, f"/api/runtimes/{RT1}/")
    assert code == 200
    compat = {"uuid": RT1, "name": "test", "apis": ["wasm", "wasi"], "runtime_type": "linux",
              "ka_interval_sec": 5, "page_size": 65536, "aot_target": "{}",
              "metadata": None, "alive": True}
    assert {k: body[k] for k in compat} == compat
    assert body["status"] == "alive" and body["nmodules"] == 1 and body["max_nmodules"] == 100
    assert body["registered_at"].endswith("Z") and body["last_seen"].endswith("Z")
    assert [c["uuid"] for c in body["children"]] == [M1]
    assert body["children"][0]["filetype"] == "WA"


@pytest_twisted.ensureDeferred
async def test_module_detail_compat_keys_then_ours(h: Harness) -> None:
    code, _, body = await get(h, f"/api/modules/{M1}")
    assert code == 200
    compat = {"uuid": M1, "name": "module", "parent": RT1,
              "filename": "wasm/polybench/2mm_s.wasm", "filetype": "WA",
              "apis": ["wasm", "wasi"], "args": ["wasm/polybench/2mm_s.wasm"], "env": [],
              "channels": [], "peripherals": [], "resources": None, "alive": True}
    assert {k: body[k] for k in compat} == compat
    assert body["status"] == "alive" and body["fault_crash"] == "ignore"
    assert body["created_at"].endswith("Z") and body["acked_at"] is None


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("q", [M1, M1.upper(), M1.replace("-", ""), "module", "b7a7"])
async def test_module_lookup_forms(h: Harness, q: str) -> None:
    code, _, body = await get(h, f"/api/modules/{q}/")
    assert code == 200 and body["uuid"] == M1


@pytest_twisted.ensureDeferred
async def test_dead_objects_are_found_too(h: Harness) -> None:
    code, _, body = await get(h, f"/api/modules/{M2}/")
    assert code == 200 and body["alive"] is False and body["status"] == "dead"
    for q in ("gone", "aaaa"):                          # by name, by short id (uuid suffix)
        code, _, body = await get(h, f"/api/modules/{q}/")
        assert code == 200 and body["uuid"] == M2 and body["status"] == "dead"


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/api/runtimes/nope/", "/api/modules/nope",
                                  "/api/modules/%00%01/", "/api/runtimes/%E2%98%83"])
async def test_not_found_is_empty_object(h: Harness, path: str) -> None:
    code, headers, body = await get(h, path)
    assert code == 404 and body == {}
    assert headers.getRawHeaders("Content-Type") == ["application/json"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(h: Harness, method: str) -> None:
    code, headers, body = await get(h, "/api/modules/", method)
    assert code == 405 and "error" in body
    assert "GET" in headers.getRawHeaders("Allow")[0]


@pytest_twisted.ensureDeferred
async def test_head_has_no_body(h: Harness) -> None:
    code, _, body = await get(h, "/api/runtimes/", "HEAD")
    assert code == 200 and body is None


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/nope", "/api", "/api/runtimes/a/b/c"])
async def test_unknown_paths_are_json_404(h: Harness, path: str) -> None:
    code, headers, body = await get(h, path)
    assert code == 404 and body == {"error": "no such endpoint"}
    assert headers.getRawHeaders("Content-Type") == ["application/json"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/%ff%fe", "/api/modules/%00%ff/"])
async def test_non_utf8_urls_are_json_400(h: Harness, path: str) -> None:
    code, headers, body = await get(h, path)
    assert code == 400 and body == {"error": "the URL is not valid UTF-8"}
    assert headers.getRawHeaders("Content-Type") == ["application/json"]
