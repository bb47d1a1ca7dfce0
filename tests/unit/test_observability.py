"""Filters, paging, health, metrics, OpenAPI and the token gate (README "REST interface")."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry as SchemaRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012
from treq.testing import StubTreq

from orchestrator.adapters.metrics import Metrics, state_series
from orchestrator.adapters.openapi import openapi_document
from orchestrator.adapters.web import RestApi
from tests.support.harness import RT1, RT2, RT3, Harness


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.register(RT1, name="alpha", apis=["wasm", "wasi"], max_nmodules=3)
    h.register(RT2, name="beta", apis=["wasm", "wasi", "py"])
    h.register(RT3, name="gamma")
    for i in range(5):
        h.create(uuid=f"a{i}", name=f"mod{i % 2}", parent=RT1 if i < 4 else RT2,
                 apis=["wasm"] if i % 2 else ["py"])
    h.exited("a0")
    h.deregister(RT3)
    return h


def api(h: Harness, **kw: Any) -> StubTreq:
    metrics = Metrics()
    metrics.watch(lambda: state_series(h.core, None, None, None))
    return StubTreq(RestApi(h.core, metrics=metrics, **kw).resource())


async def get(client: StubTreq, path: str, **headers: str) -> tuple[int, Any, Any]:
    response = await client.get(f"http://localhost{path}",
                                headers={k: [v] for k, v in headers.items()})
    body = await response.content()
    kind = (response.headers.getRawHeaders("Content-Type") or [""])[0]
    return response.code, response.headers, json.loads(body) if "json" in kind else body


def uuids(items: list[dict]) -> list[str]:
    return [i["uuid"] for i in items]


# -- filters ------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("query,expected", [
    ("?status=alive", ["a1", "a2", "a3", "a4"]),
    ("?status=dead", ["a0"]),
    ("?status=dead,queued", ["a0"]),
    ("?status=all", ["a0", "a1", "a2", "a3", "a4"]),
    ("?status=all&parent=beta", ["a4"]),
    (f"?parent={RT1.upper()}", ["a1", "a2", "a3"]),
    ("?name=mod1", ["a1", "a3"]),
    ("?api=py&status=all", ["a0", "a2", "a4"]),
    ("?parent=nobody", []),
])
async def test_module_filters(h: Harness, query: str, expected: list[str]) -> None:
    code, _, body = await get(api(h), f"/api/modules/{query}")
    assert code == 200 and uuids(body["modules"]) == expected
    assert "next" not in body
    assert all("status" in m for m in body["modules"])           # detail shapes


@pytest_twisted.ensureDeferred
async def test_runtime_filters(h: Harness) -> None:
    client = api(h)
    assert uuids((await get(client, "/api/runtimes/?status=all"))[2]["runtimes"]) == [RT1, RT2, RT3]
    assert uuids((await get(client, "/api/runtimes/?status=dead"))[2]["runtimes"]) == [RT3]
    assert uuids((await get(client, "/api/runtimes/?api=py"))[2]["runtimes"]) == [RT2]
    [alpha] = (await get(client, "/api/runtimes/?name=alpha"))[2]["runtimes"]
    assert [c["status"] for c in alpha["children"]] == ["alive", "alive", "alive"]
    bare = (await get(client, "/api/runtimes/?status=all&children=false"))[2]["runtimes"]
    assert [r["uuid"] for r in bare] == [RT1, RT2, RT3] and "children" not in bare[0]
    assert bare[0]["nmodules"] == 3 and bare[0]["last_seen"] is not None


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("query,param", [
    ("?status=sleeping", "status"), ("?limit=0", "limit"), ("?limit=1001", "limit"),
    ("?limit=ten", "limit"), ("?cursor=5", "cursor"), ("?limit=5&cursor=abc", "cursor"),
    ("?colour=red", "colour"), ("?name=", "name"), ("?name=a&name=b", "name"),
    ("?name=%ff", "query"), ("?children=maybe", "children"),
])
async def test_bad_parameters_are_400_naming_the_parameter(h: Harness, query: str,
                                                           param: str) -> None:
    for kind in ("modules", "runtimes"):
        code, headers, body = await get(api(h), f"/api/{kind}/{query}")
        assert code == 400 and body["parameter"] == param, body
        assert headers.getRawHeaders("Content-Type") == ["application/json"]


# -- paging ----------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_pages_cover_everything_once_even_with_inserts_between_pages() -> None:
    h = Harness(max_nmodules=0)
    h.register(RT1, max_nmodules=0)
    for i in range(25):
        h.create(uuid=f"m{i:03d}")
    client = api(h)
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        path = "/api/modules/?limit=7" + (f"&cursor={cursor}" if cursor else "")
        code, _, body = await get(client, path)
        assert code == 200
        seen += uuids(body["modules"])
        pages += 1
        if pages == 2:                      # others arrive and go while we page
            for i in range(25, 30):
                h.create(uuid=f"m{i:03d}")
            h.exited("m001")                # already seen: not repeated
            h.exited("m020")                # not seen yet: filtered out (not alive)
        cursor = body["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen == [f"m{i:03d}" for i in range(30) if i != 20]


@pytest_twisted.ensureDeferred
async def test_empty_and_exact_last_page(h: Harness) -> None:
    client = api(h)
    assert (await get(client, "/api/modules/?status=killed&limit=5"))[2] == {
        "modules": [], "results": [], "next": None}
    code, _, body = await get(client, "/api/modules/?limit=4")
    assert len(body["modules"]) == 4 and body["next"] is None
    code, _, body = await get(client, "/api/modules/?limit=3")
    assert len(body["modules"]) == 3 and body["next"] is not None
    code, _, last = await get(client, f"/api/modules/?limit=3&cursor={body['next']}")
    assert uuids(last["modules"]) == ["a4"] and last["next"] is None


# -- health, readiness, metrics ------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_health_and_readiness(h: Harness) -> None:
    assert (await get(api(h), "/healthz"))[:3:2] == (200, {"status": "ok"})
    assert (await get(api(h), "/readyz"))[:3:2] == (200, {"ready": True})
    code, _, body = await get(api(h, not_ready=lambda: ["not connected to the MQTT broker"]),
                              "/readyz")
    assert code == 503 and body == {"ready": False,
                                    "reasons": ["not connected to the MQTT broker"]}


@pytest_twisted.ensureDeferred
async def test_metrics_exposition(h: Harness) -> None:
    code, headers, body = await get(api(h), "/metrics")
    assert code == 200 and headers.getRawHeaders("Content-Type")[0].startswith("text/plain")
    text = body.decode()
    assert 'silverline_modules{status="alive"} 4.0' in text
    assert 'silverline_runtimes{status="dead"} 1.0' in text
    for name in ("messages_total", "errors_total", "handler_seconds", "placement_seconds",
                 "failover_seconds", "journal_fsync_seconds", "events_total",
                 "liveness_tracked"):
        assert f"silverline_{name}" in text


# -- OpenAPI ------------------------------------------------------------------------------------
def test_openapi_document_is_valid() -> None:
    validate_openapi(openapi_document())


def _validator(schema_name: str) -> Draft202012Validator:
    doc = openapi_document()
    registry = SchemaRegistry().with_resource(
        "urn:openapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema_name}"},
                                registry=registry)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path,template,schema", [
    ("/api/runtimes/", "/api/runtimes/", "RuntimeList"),
    ("/api/runtimes/?status=all", "/api/runtimes/", "RuntimePage"),
    ("/api/runtimes/?limit=1", "/api/runtimes/", "RuntimePage"),
    (f"/api/runtimes/{RT1}", "/api/runtimes/{q}/", "RuntimeDetail"),
    ("/api/runtimes/nope", "/api/runtimes/{q}/", "NotFound"),
    ("/api/modules/", "/api/modules/", "ModuleList"),
    ("/api/queued/", "/api/queued/", "QueuedList"),
    ("/api/modules/?status=all&limit=2", "/api/modules/", "ModulePage"),
    ("/api/modules/a1", "/api/modules/{q}/", "ModuleDetail"),
    ("/api/modules/?status=nope", "/api/modules/", "Error"),
    ("/healthz", "/healthz", "Health"),
    ("/readyz", "/readyz", "Ready"),
])
async def test_real_responses_match_their_schemas(h: Harness, path: str, template: str,
                                                  schema: str) -> None:
    code, _, body = await get(api(h), path)
    _validator(schema).validate(body)
    assert str(code) in openapi_document()["paths"][template]["get"]["responses"]


def test_event_payloads_match_their_schema() -> None:
    from orchestrator.core.events import EventLog
    from orchestrator.core.events import event_renderer
    h = Harness()
    log = EventLog(event_renderer(h.registry, h.core.liveness.last_seen))
    h.register(RT1)
    h.create(uuid="m", fault_crash="restart")
    h.register(RT2)
    h.deregister(RT1)
    for n, event in enumerate(h.events, 1):
        log.append(n, event, h.now)
    validator = _validator("Event")
    for rendered in [log.json(e) for e in log.after(0)]:
        validator.validate(json.loads(rendered))


# -- the token gate and the dashboard's files (a real port: static files stream) -----------
async def served(h: Harness, reactor: Any, **kw: Any) -> tuple[str, Any]:
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.web.server import Site
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(RestApi(h.core, **kw).resource()))
    return f"http://127.0.0.1:{port.getHost().port}", port


async def fetch(url: str, **headers: str) -> tuple[int, Any, bytes]:
    response = await treq.get(url, headers={k: [v] for k, v in headers.items()}, timeout=5)
    return response.code, response.headers, await response.content()


@pytest_twisted.ensureDeferred
async def test_bearer_token(h: Harness, reactor: Any) -> None:
    url, port = await served(h, reactor, token="s3cret")
    try:
        code, headers, body = await fetch(url + "/api/runtimes/")
        assert code == 401 and "error" in json.loads(body)
        assert headers.getRawHeaders("WWW-Authenticate") == ['Bearer realm="silverline"']
        assert (await fetch(url + "/api/runtimes/", Authorization="Bearer wrong"))[0] == 401
        assert (await fetch(url + "/api/events"))[0] == 401
        assert (await fetch(url + "/metrics"))[0] == 401
        assert (await fetch(url + "/api/runtimes/", Authorization="Bearer s3cret"))[0] == 200
        assert (await fetch(url + "/healthz"))[0] == 200
        assert (await fetch(url + "/"))[0] == 200              # the page asks for the token
        assert (await fetch(url + "/static/index.html"))[0] == 200
    finally:
        await port.stopListening()
    assert (await get(api(h), "/api/runtimes/"))[0] == 200    # no token configured: open


@pytest_twisted.ensureDeferred
async def test_static_files_have_no_listing_and_no_escape(h: Harness, reactor: Any) -> None:
    url, port = await served(h, reactor)
    try:
        code, headers, body = await fetch(url + "/")
        assert code == 200 and b"<html" in body.lower()
        assert headers.getRawHeaders("Content-Type") == ["text/html; charset=utf-8"]
        assert (await fetch(url + "/static/index.html"))[0] == 200
        code, _, listing = await fetch(url + "/static/")
        assert code == 404 or listing == body              # the index page, never a listing
        assert (await fetch(url + "/static/nope.js"))[0] == 404
        assert (await fetch(url + "/static/%2e%2e/web.py"))[0] in (400, 404)
    finally:
        await port.stopListening()
