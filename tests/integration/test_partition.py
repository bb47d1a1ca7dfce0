"""A partition is not a mass death, through the in-process service and a real mosquitto.

The far side of a dropped bridge is, to the orchestrator, runtimes that stop
sending keepalives while its own link stays up: that is what is played here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest_twisted
import treq

from tests.integration.test_integration_liveness import R, SimRuntime, runtime
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
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
