"""A partition is not a mass death: held verdicts and their boundary, on the pure core."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.metrics import Metrics, state_series
from orchestrator.core.model import ModuleStatus
from tests.support.clocked import ClockedService
from tests.support.harness import Harness, on

KA = 5.0
MISSES = 3
STEP = 0.1
BOUND = MISSES * KA + 1.0          # a silent runtime is declared within this


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture
def h() -> Harness:
    h = Harness(ka_interval_sec=int(KA), keepalive_misses=MISSES, partition_share=0.5,
                partition_min_silent=3, partition_hold_max_sec=120.0)
    h.core.liveness.bus_up(h.now)
    return h


class Fleet:
    """N runtimes keeping KA with phases spread over one period, as a real fleet does."""

    def __init__(self, h: Harness, n: int) -> None:
        self.h = h
        self.uuids = [uuid(i) for i in range(n)]
        self.phase = {u: round(i * KA / n / STEP) for i, u in enumerate(self.uuids)}
        self.quiet: set[str] = set()
        for u in self.uuids:
            h.register(u)
        self.tick = 0
        self.dead: dict[str, float] = {}

    def run(self, seconds: float) -> None:
        h, period = self.h, round(KA / STEP)
        for _ in range(round(seconds / STEP)):
            self.tick += 1
            h.now = round(h.now + STEP, 6)
            for u in self.uuids:
                if u not in self.quiet and (self.tick - self.phase[u]) % period == 0:
                    h.keepalive(u)
            if self.tick % round(1 / STEP) == 0:
                for notif in on(h.sweep(), "notif"):
                    if notif["action"] == "dead":
                        self.dead[notif["data"]["uuid"]] = h.now

    def silence(self, count: int) -> list[str]:
        chosen = self.uuids[:count]
        self.quiet.update(chosen)
        return chosen


def healthy(h: Harness, n: int) -> Fleet:
    fleet = Fleet(h, n)
    fleet.run(3 * KA)                                   # everyone judged by keepalives
    assert h.core.liveness.judged() == n
    return fleet


def test_half_the_fleet_silent_at_once_is_held_not_declared(h: Harness) -> None:
    fleet = healthy(h, 20)
    fleet.silence(10)                                   # share 0.5: the threshold
    fleet.run(60)
    assert fleet.dead == {}
    assert h.core.liveness.partition.holding
    reason = h.core.liveness.partition.reason()
    assert reason is not None and "10 of 20" in reason
    fleet.quiet.clear()                                 # the bridge is back
    fleet.run(2 * KA)
    assert fleet.dead == {} and not h.core.liveness.partition.holding
    assert all(h.registry.runtimes[u].alive for u in fleet.uuids)


def test_just_below_the_share_every_silent_runtime_is_declared_in_time(h: Harness) -> None:
    fleet = healthy(h, 20)
    silent_since = h.now
    gone = fleet.silence(9)                             # share 0.45
    fleet.run(30)
    assert set(fleet.dead) == set(gone)
    assert all(when - silent_since <= BOUND for when in fleet.dead.values())
    assert h.core.liveness.partition.holds == 0


def test_a_few_real_deaths_in_a_large_fleet_are_declared_at_once(h: Harness) -> None:
    fleet = healthy(h, 100)
    silent_since = h.now
    gone = fleet.silence(2)
    fleet.run(30)
    assert set(fleet.dead) == set(gone)
    assert all(when - silent_since <= BOUND for when in fleet.dead.values())


@pytest.mark.parametrize("silent, held", [(2, False), (3, True)])
def test_a_small_fleet_needs_min_silent_runtimes_to_hold(h: Harness, silent: int,
                                                          held: bool) -> None:
    fleet = healthy(h, 4)
    fleet.silence(silent)
    fleet.run(30)
    assert (fleet.dead == {}) is held


def test_when_most_come_back_those_still_silent_are_declared_at_once(h: Harness) -> None:
    fleet = healthy(h, 20)
    h.create(uuid="m", parent=uuid(0))
    fleet.silence(12)
    fleet.run(40)
    assert fleet.dead == {}
    fleet.quiet = {uuid(0), uuid(1)}                    # ten are heard again, two are not
    back_at = h.now
    fleet.run(KA + BOUND)
    assert set(fleet.dead) == {uuid(0), uuid(1)}
    # the hold ends within a period of their return; then one full allowance, as after
    # our own outage, and the two still silent are declared
    assert all(when - back_at <= KA + BOUND for when in fleet.dead.values())
    assert h.registry.modules["m"].status == ModuleStatus.KILLED
    assert not h.core.liveness.partition.holding


def test_the_hold_ends_after_its_limit_and_revival_heals_the_rest(h: Harness) -> None:
    fleet = healthy(h, 10)
    gone = fleet.silence(8)
    cut_at = h.now
    fleet.run(200)
    assert set(fleet.dead) == set(gone)
    limit = h.config.partition_hold_max_sec
    assert all(limit <= when - cut_at <= limit + BOUND for when in fleet.dead.values())
    assert h.core.liveness.partition.holds == 1
    fleet.quiet.clear()                                 # back, long after: alive again
    fleet.run(2 * KA + h.config.revive_after_sec)
    assert all(h.registry.runtimes[u].alive for u in fleet.uuids)


def test_the_hold_is_a_metric(h: Harness) -> None:
    metrics = Metrics()
    metrics.watch(lambda: state_series(h.core, None, None, None))
    fleet = healthy(h, 10)
    assert b"silverline_liveness_hold 0.0" in metrics.exposition()
    fleet.silence(6)
    fleet.run(30)
    text = metrics.exposition()
    assert b"silverline_liveness_hold 1.0" in text
    assert b"silverline_liveness_holds_total 1.0" in text


def test_our_own_outage_is_not_a_partition(h: Harness) -> None:
    fleet = healthy(h, 10)
    h.core.liveness.bus_down()
    fleet.silence(10)
    fleet.run(60)
    assert fleet.dead == {} and h.core.liveness.partition.holds == 0


def test_the_service_holds_on_the_injected_clock(tmp_path: Path) -> None:
    service = ClockedService(tmp_path, partition_min_silent=3)
    uuids = [uuid(i) for i in range(4)]

    def keepalive(u: str) -> None:
        service.message("realm/proc/keepalive", {"object_id": "k", "action": "update",
                                                 "type": "arts_req", "data": {"uuid": u}})
    for u in uuids:
        service.message("realm/proc/reg", {"object_id": "r", "action": "create",
                                           "type": "arts_req", "data": {"uuid": u}})
    for _ in range(3):
        service.clock.advance(5)
        for u in uuids:
            keepalive(u)
    for _ in range(60):                                 # three go silent, one keeps going
        service.clock.advance(0.5)
        if service.clock.seconds() % 5 == 0:
            keepalive(uuids[3])
    assert not [p for t, p in service.published if p.get("action") == "dead"]
    assert service.svc.core.liveness.partition.holding
    service.stop()
