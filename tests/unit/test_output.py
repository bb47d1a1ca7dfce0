"""Module output kept in memory (core/output.py): dialect topics, bounds, resume; the logs endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock

from orchestrator.adapters.output_stream import OutputStreams
from orchestrator.adapters.web import RestApi
from orchestrator.core.output import MAX_LINE, ModuleOutput, OutputSource
from tests.support.harness import RT1, Harness

M = "c0000000-0000-4000-8000-000000000001"


def test_each_dialects_topic_is_heard_and_others_are_not() -> None:
    out = ModuleOutput("realm")
    assert out.subscriptions() == ["realm/proc/debug/stdout/+", "realm/proc/stdio/+",
                                   "realm/s/+/+/p/+/-/stdout", "realm/s/+/+/p/+/-/stderr"]
    assert out.accept(f"realm/proc/debug/stdout/{M}", b"from 2021", 1.0)
    assert out.accept(f"realm/proc/stdio/{M.upper()}", b"from 2023\nand more\n", 2.0)
    assert out.accept(f"realm/s/public/lab/p/{M}/-/stdout", b"from applauncher", 2.5)
    for topic in ("realm/proc/control", f"realm/proc/stdio/{M}/x", "other/proc/stdio/m",
                  "realm/proc/debug/stdin/m", "realm/proc/stdio/",
                  f"realm/s/public/lab/p/{M}/-/stdin", f"realm/s/public/lab/p/{M}"):
        assert not out.accept(topic, b"x", 3.0), topic
    lines, truncated = out.lines(M)
    assert [(l.text, l.time) for l in lines] == [("from 2021", 1.0), ("from 2023", 2.0),
                                                 ("and more", 2.0), ("from applauncher", 2.5)]
    assert not truncated and [l.id for l in lines] == [1, 2, 3, 4]


def test_a_new_dialect_is_one_source() -> None:
    arena = OutputSource("arena", "s/+/+/-/{module}/stdout")
    out = ModuleOutput("realm", sources=(arena,))
    assert out.subscriptions() == ["realm/s/+/+/-/+/stdout"]
    assert out.accept("realm/s/ns/scene/-/mod-7/stdout", b"hi", 0.0)
    assert [l.text for l in out.lines("mod-7")[0]] == ["hi"]


def test_bounded_per_module_and_resume_says_what_was_let_go() -> None:
    out = ModuleOutput("realm", per_module=3, first_id=100)
    for n in range(5):
        out.add(M, "stdout", f"line {n}".encode(), float(n))
    lines, truncated = out.lines(M)
    assert [l.text for l in lines] == ["line 2", "line 3", "line 4"] and truncated
    assert [l.id for l in lines] == [102, 103, 104]
    assert out.lines(M, after=102) == (lines[1:], False)      # nothing missed after 102
    assert out.lines(M, after=100)[1] is True                 # 101 was let go
    assert [l.text for l in out.lines(M, tail=1)[0]] == ["line 4"]


def test_bounded_in_total_the_least_recently_written_module_goes_first() -> None:
    out = ModuleOutput("realm", total=30, entry_cost=0)
    out.add("quiet", "stdout", b"0123456789", 0.0)         # 11 characters each, newline counted
    out.add("busy", "stdout", b"0123456789", 1.0)
    out.add("busy", "stdout", b"0123456789", 2.0)
    assert out.size <= 30 and not out.has("quiet") and out.modules() == 1
    out.add("busy", "stdout", b"x" * 40, 3.0)             # larger than the whole bound
    assert out.size == 0 and out.modules() == 0


def test_many_modules_of_tiny_or_empty_output_are_bounded_too() -> None:
    """Any runtime may write any module's output topic: empty payloads keep nothing,
    and each kept module counts against the total, however short its lines."""
    out = ModuleOutput("realm", total=10_000)
    for n in range(5_000):
        out.add(f"empty-{n}", "stdout", b"", 0.0)
        out.add(f"tiny-{n}", "stdout", b"\n", 0.0)
    assert not out.has("empty-0") and out.modules() <= 10_000 // out.entry_cost
    assert out.size <= 10_000 and out.has("tiny-4999")


def test_long_lines_are_cut() -> None:
    out = ModuleOutput("realm")
    out.add(M, "stdout", b"x" * (MAX_LINE * 2), 0.0)
    [line] = out.lines(M)[0]
    assert len(line.text) == MAX_LINE and line.text.endswith("…")


def test_binary_and_empty_payloads_do_not_break_anything() -> None:
    out = ModuleOutput("realm")
    out.add(M, "stdout", b"\xff\xfe ok", 0.0)
    out.add(M, "stdout", b"", 0.0)
    assert [l.text for l in out.lines(M)[0]] == ["\ufffd\ufffd ok"]


# -- GET /api/modules/{q}/logs ------------------------------------------------------------
@pytest.fixture
def api() -> tuple[Harness, ModuleOutput, Any]:
    h = Harness()
    h.register(RT1, name="edge")
    h.create(uuid=M, name="printer", parent=RT1)
    out = ModuleOutput("realm")
    for n in range(3):
        out.add(M, "stdout", f"hello {n}".encode(), 1_000_000.0 + n)
    out.add("not-in-registry", "stdout", b"orphan", 0.0)
    rest = RestApi(h.core, output=OutputStreams(Clock(), out))
    return h, out, StubTreq(rest.resource())


async def fetch(client: Any, path: str) -> tuple[int, list[Any], Any]:
    response = await client.get(f"http://localhost{path}")
    body = (await response.content()).decode()
    return response.code, [json.loads(l) for l in body.splitlines() if l], response.headers


@pytest_twisted.ensureDeferred
async def test_logs_as_json_lines_by_name_short_id_and_uuid(api: Any) -> None:
    _, _, client = api
    for q in ("printer", M[-8:], M):
        code, lines, headers = await fetch(client, f"/api/modules/{q}/logs")
        assert code == 200 and [l["text"] for l in lines] == ["hello 0", "hello 1", "hello 2"]
        assert headers.getRawHeaders("Content-Type") == ["application/x-ndjson"]
    assert lines[0] == {"id": 1, "time": "1970-01-12T13:46:40.000Z", "stream": "stdout",
                        "text": "hello 0"}
    code, lines, _ = await fetch(client, "/api/modules/printer/logs?tail=1")
    assert [l["text"] for l in lines] == ["hello 2"]
    code, lines, _ = await fetch(client, "/api/modules/printer/logs?after=2")
    assert [l["id"] for l in lines] == [3]
    code, lines, _ = await fetch(client, "/api/modules/not-in-registry/logs")
    assert code == 200 and [l["text"] for l in lines] == ["orphan"]


@pytest_twisted.ensureDeferred
async def test_logs_errors(api: Any) -> None:
    _, _, client = api
    assert (await fetch(client, "/api/modules/nobody/logs"))[0] == 404
    for query, param in (("tail=-1", "tail"), ("follow=maybe", "follow"), ("after=x", "after")):
        response = await client.get(f"http://localhost/api/modules/printer/logs?{query}")
        assert response.code == 400, query
        assert json.loads(await response.content())["parameter"] == param
