"""Liveness verdicts, failover, the capacity queue (docs/protocol.md 10-11), clock-driven."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.model import ModuleStatus
from orchestrator.testing import silence_allowed
from tests.support.clocked import ClockedService
from tests.support.harness import RT1, RT2, RT3, Harness, on

KA = 5.0          # ka_interval_sec
MISSES = 3


@pytest.fixture
def h() -> Harness:
    h = Harness(ka_interval_sec=int(KA), keepalive_misses=MISSES)
    h.core.liveness.bus_up(h.now)
    return h


def run_for(h: Harness, seconds: float, keepalive_every: dict[str, float] | None = None
            ) -> list[tuple[float, dict]]:
    return h.run_for(seconds, keepalive_every)


def test_hung_runtime_is_declared_dead_within_the_bound(h: Harness) -> None:
    h.register(RT1)
    h.create(uuid="m", parent=RT1)
    run_for(h, 30, {RT1: KA})                     # a healthy rhythm
    last_keepalive = h.core.liveness.last_seen(RT1)
    [(when, notif)] = run_for(h, 60)              # then silence, no will
    assert notif["data"] == {"type": "runtime", "uuid": RT1, "name": "runtime",
                             "reason": "keepalive timeout"}
    assert when - last_keepalive <= MISSES * KA + 1.0
    assert when - last_keepalive >= MISSES * KA
    assert not h.registry.runtimes[RT1].alive
    assert h.registry.modules["m"].status == ModuleStatus.KILLED


def test_a_60s_runtime_against_an_advertised_5s_is_never_declared_dead(h: Harness) -> None:
    h.register(RT1)
    assert run_for(h, 20 * 60, {RT1: 60.0}) == []
    assert h.registry.runtimes[RT1].alive
    assert silence_allowed(h.core.liveness, RT1) == MISSES * 60.0


def test_a_runtime_that_never_sends_keepalives_is_judged_by_its_will_only(h: Harness) -> None:
    h.register(RT1)
    assert run_for(h, 600) == []
    h.keepalive(RT1)                              # one keepalive: still no rhythm
    assert run_for(h, 600) == []


def test_broker_link_down_for_10_intervals_declares_nobody_dead(h: Harness) -> None:
    h.register(RT1)
    h.register(RT2)
    run_for(h, 20, {RT1: KA, RT2: KA})
    h.core.liveness.bus_down()
    assert run_for(h, 10 * KA) == []              # we hear nothing: judge nobody
    h.core.liveness.bus_up(h.now)
    back = h.now
    assert run_for(h, MISSES * KA - 0.5, {RT1: KA}) == []   # a full grace period for all
    verdicts = run_for(h, 5, {RT1: KA})
    assert [n["data"]["uuid"] for _, n in verdicts] == [RT2]   # RT2 really is silent
    assert verdicts[0][0] - back <= MISSES * KA + 1.0


def test_a_dead_verdict_behaves_like_a_last_will(h: Harness) -> None:
    for uuid in (RT1, RT2):
        h.register(uuid)
    h.create(uuid="r", parent=RT1, fault_crash="restart")
    h.create(uuid="i", parent=RT1)
    run_for(h, 15, {RT1: KA, RT2: KA})
    published = []
    original_sweep = h.sweep

    def sweep_and_keep():
        out = original_sweep()
        published.extend(out)
        return out
    h.sweep = sweep_and_keep
    run_for(h, 30, {RT2: KA})                       # RT1 goes silent
    assert h.registry.modules["r"].parent == RT2 and h.registry.modules["r"].alive
    assert h.registry.modules["i"].status == ModuleStatus.KILLED
    assert [c["data"]["uuid"] for c in on(published, f"control/{RT2}")] == ["r"]
    actions = [n["action"] for n in on(published, "notif")]
    assert actions == ["dead", "rescheduled"]


def test_failover_of_1000_modules_publishes_every_create(h: Harness) -> None:
    h.register(RT1, max_nmodules=0)
    h.register(RT2, max_nmodules=0, apis=["wasm", "wasi", "extra"])
    h.register(RT3, max_nmodules=0, apis=["py"])          # incompatible: gets nothing
    for i in range(1000):
        h.create(object_id=f"c{i}", uuid=f"m{i}", parent=RT1, fault_crash="restart")
    out = h.deregister(RT1)
    creates = on(out, f"control/{RT2}")
    assert len(creates) == 1000
    assert {c["data"]["uuid"] for c in creates} == {f"m{i}" for i in range(1000)}
    assert all(c["data"]["parent"] == RT2 for c in creates)
    moved = [n for n in on(out, "notif") if n["action"] == "rescheduled"]
    assert len(moved) == 1000 and moved[0]["data"]["from"] == RT1
    assert not on(out, f"control/{RT3}")


def test_ignore_policy_and_restart_without_room_are_killed_then_respawned(h: Harness) -> None:
    h.register(RT1)
    h.register(RT2, max_nmodules=1)
    h.create(uuid="busy", parent=RT2)
    h.create(uuid="ign", parent=RT1)
    h.create(uuid="rst", parent=RT1, fault_crash="restart")   # RT2 is full
    h.deregister(RT1)
    assert h.registry.modules["ign"].status == ModuleStatus.KILLED
    assert h.registry.modules["rst"].status == ModuleStatus.KILLED
    out = h.register(RT1)
    assert {c["data"]["uuid"] for c in on(out, f"control/{RT1}")} == {"ign", "rst"}


def test_no_module_runs_twice_when_a_dead_runtime_comes_back(h: Harness) -> None:
    h.register(RT1)
    h.register(RT2)
    h.create(uuid="r", parent=RT1, fault_crash="restart")
    h.create(uuid="i", parent=RT1)
    h.deregister(RT1)                                   # r moves to RT2, i is killed
    out = h.register(RT1)
    assert [c["data"]["uuid"] for c in on(out, f"control/{RT1}")] == ["i"]
    # the runtime still runs its old copy of r: it is told to stop it
    out = h.keepalive(RT1, children=[{"uuid": "r"}, {"uuid": "i"}, {"uuid": "unknown"}])
    [delete] = on(out, f"control/{RT1}")
    assert delete["action"] == "delete" and delete["data"] == {"type": "module", "uuid": "r"}
    assert h.registry.modules["r"].alive and h.registry.modules["r"].parent == RT2
    # and its report that the old copy exited does not kill the moved one
    h.exited("r", topic=f"control/{RT1}")
    assert h.registry.modules["r"].alive


def test_queue_starts_in_arrival_order_when_room_appears(h: Harness) -> None:
    h.register(RT1, max_nmodules=1)
    h.create(uuid="a", parent=RT1)
    out_b = h.create(object_id="cb", uuid="b", parent=RT1)
    h.create(object_id="cc", uuid="c")                    # any runtime
    assert on(out_b, "control")[0]["data"]["details"]["status"] == "queued"
    assert not on(out_b, f"control/{RT1}")
    assert [n["action"] for n in on(out_b, "notif")] == ["queued"]
    out = h.exited("a")
    assert [c["data"]["uuid"] for c in on(out, f"control/{RT1}")] == ["b"]
    assert [n["action"] for n in on(out, "notif")] == ["exited", "started"]
    out = h.register(RT2)                                 # a newcomer takes c
    assert [c["data"]["uuid"] for c in on(out, f"control/{RT2}")] == ["c"]


def test_reregistering_with_more_room_starts_queued_modules(h: Harness) -> None:
    h.register(RT1, max_nmodules=1)
    for uuid in ("a", "b", "c"):
        h.create(uuid=uuid, parent=RT1)
    out = h.register(RT1, max_nmodules=3)
    assert [c["data"]["uuid"] for c in on(out, f"control/{RT1}")] == ["b", "c"]


def test_placement_skips_incompatible_and_full_runtimes(h: Harness) -> None:
    h.register(RT1, apis=["wasm"], max_nmodules=5)
    h.register(RT2, apis=["wasm", "wasi"], max_nmodules=1)
    h.register(RT3, apis=["wasm", "wasi"], max_nmodules=5)
    placed = []
    for i in range(4):
        h.create(uuid=f"m{i}", apis=["wasi"])
        placed.append(h.registry.modules[f"m{i}"].parent)
    assert placed == [RT2, RT3, RT3, RT3]                # least loaded, oldest on ties
    h.create(uuid="w", apis=["wasm"])
    assert h.registry.modules["w"].parent == RT1


def test_round_robin_policy(h: Harness) -> None:
    rr = Harness(scheduler="round_robin")
    for uuid in (RT1, RT2, RT3):
        rr.register(uuid)
    for i in range(6):
        rr.create(uuid=f"m{i}")
    assert [rr.registry.modules[f"m{i}"].parent for i in range(6)] == [RT1, RT2, RT3] * 2


def test_manager_will_kills_its_runtimes(h: Harness) -> None:
    mgr = "99999999-9999-4999-8999-999999999999"
    out = h.send(f"reg/{mgr}", {"object_id": "m1", "action": "create", "type": "arts_req",
                                "data": {"type": "manager", "uuid": mgr, "name": "node"}})
    assert on(out, f"reg/{mgr}")[0]["data"]["details"]["type"] == "manager"
    h.register(RT1, topic=f"reg/{RT1}", parent=mgr)
    h.register(RT2)
    out = h.send(f"reg/{mgr}", {"object_id": "w", "action": "delete", "type": "arts_req",
                                "data": {"type": "manager", "uuid": mgr}})
    [dead] = [n for n in on(out, "notif") if n["action"] == "dead"]
    assert dead["data"]["uuid"] == RT1 and dead["data"]["reason"] == "manager delete"
    assert not h.registry.runtimes[RT1].alive and h.registry.runtimes[RT2].alive


# -- the service's sweep, driven by a fake clock -------------------------------------------
def test_service_sweeps_on_the_injected_clock(tmp_path: Path) -> None:
    service = ClockedService(tmp_path)
    clock, published = service.clock, service.published
    service.message("realm/proc/reg", {"object_id": "r", "action": "create", "type": "arts_req",
                                       "data": {"uuid": RT1}})
    for _ in range(3):
        clock.advance(5)
        service.message("realm/proc/keepalive", {"object_id": "k", "action": "update",
                                                 "type": "arts_req", "data": {"uuid": RT1}})
    silent_since = clock.seconds()
    while not any(p[1].get("action") == "dead" for p in published):
        clock.advance(0.5)
        assert clock.seconds() - silent_since <= 3 * 5 + 1
    assert clock.seconds() - silent_since >= 3 * 5
    service.stop()
