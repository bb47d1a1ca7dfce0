"""Module output through a real broker: each dialect's topic, served, followed, resumed."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import treq

from tests.support.app import App
from tests.support.sse import connect
from tests.support.twisted import eventually, within

R = "realm/proc"
RT = "11111111-1111-4111-8111-111111111111"
M = "d0000000-0000-4000-8000-000000000001"


async def logs(app: App, q: str, query: str = "") -> list[str]:
    import json
    response = await treq.get(f"{app.url}/api/modules/{q}/logs{query}", timeout=5)
    body = (await response.content()).decode()
    return [json.loads(line)["text"] for line in body.splitlines()] if response.code == 200 else []


@pytest_twisted.ensureDeferred
@within(30)
async def test_output_of_each_dialect_is_served_and_followed_with_resume(
        app: App, peers: Any, reactor: Any) -> None:
    runtime = await peers("rt", f"{R}/control/#")
    await runtime.publish_acked(f"{R}/reg", {"object_id": "r", "action": "create",
                                            "type": "arts_req", "data": {
                                                "type": "runtime", "uuid": RT, "name": "edge"}})
    await runtime.publish_acked(f"{R}/control", {"object_id": "c", "action": "create",
                                                "type": "arts_req", "data": {
                                                    "type": "module", "uuid": M,
                                                    "name": "printer", "parent": RT}})
    await runtime.expect(f"{R}/control/{RT}", lambda m: m.json.get("action") == "create")
    await runtime.publish_acked(f"{R}/debug/stdout/{M}", b"2021 says hi")      # simulated
    await runtime.publish_acked(f"{R}/stdio/{M}", b"2023 says hi\nsecond line\n")  # channel
    await eventually(lambda: logs(app, "printer"), 5, "the output to be kept")
    assert await logs(app, "printer") == ["2021 says hi", "2023 says hi", "second line"]

    follower = await connect(reactor, app.config.http_port,
                             f"/api/modules/{M[-8:]}/logs?follow=1&tail=1")
    first = await follower.until_events(1, reactor)
    assert [e["data"]["text"] for e in first] == ["second line"]
    await runtime.publish_acked(f"{R}/stdio/{M}", b"live line")
    events = await follower.until_events(2, reactor)
    assert events[-1]["data"]["text"] == "live line"
    last_id = events[-1]["id"]
    follower.close()

    await runtime.publish_acked(f"{R}/stdio/{M}", b"missed 1\nmissed 2")
    await eventually(lambda: logs(app, "printer", "?tail=1"), 5)
    again = await connect(reactor, app.config.http_port, f"/api/modules/printer/logs?follow=1",
                          **{"Last-Event-ID": last_id})
    resumed = await again.until_events(2, reactor)
    assert [e["data"]["text"] for e in resumed] == ["missed 1", "missed 2"]
    again.close()
    # the protocol path was not disturbed by the output topics
    code = (await treq.get(f"{app.url}/api/modules/printer/", timeout=5)).code
    assert code == 200


@pytest_twisted.ensureDeferred
@within(30)
async def test_events_history_replays_retained_events(app: App, peers: Any,
                                                      reactor: Any) -> None:
    runtime = await peers("rt")
    for n in range(3):
        await runtime.publish_acked(f"{R}/reg", {
            "object_id": f"r{n}", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": f"1111111{n}-1111-4111-8111-111111111111",
                     "name": f"rt{n}"}})
    await eventually(lambda: app.service.events.latest >= 3, 5)
    client = await connect(reactor, app.config.http_port, "/api/events?history=2")
    events = await client.until_events(2, reactor)
    assert [e["data"]["runtime"]["name"] for e in events] == ["rt1", "rt2"]
    client.close()
