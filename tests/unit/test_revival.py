"""Liveness that heals: revival by keepalive, stale last wills, reconciliation (README "Liveness")."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.model import ModuleStatus
from orchestrator.testing import silence_allowed
from tests.support.clocked import ClockedService
from tests.support.harness import RT1, RT2, Harness, on

KA = 5.0
MISSES = 3
REVIVE_AFTER = 2.0


@pytest.fixture
def h() -> Harness:
    h = Harness(ka_interval_sec=int(KA), keepalive_misses=MISSES, revive_after_sec=REVIVE_AFTER)
    h.core.liveness.bus_up(h.now)
    return h


def later(h: Harness, seconds: float) -> None:
    h.now = round(h.now + seconds, 6)


def notifs(published: list, action: str) -> list[dict]:
    return [n["data"] for n in on(published, "notif") if n["action"] == action]


def event_types(h: Harness) -> list[str]:
    return [e.type for e in h.events]


def judged_runtime(h: Harness, uuid: str = RT1) -> None:
    """Registered and judged by its keepalives (two of them, KA apart)."""
    h.register(uuid)
    for _ in range(2):
        later(h, KA)
        h.keepalive(uuid)


# -- revival ------------------------------------------------------------------------


def test_a_keepalive_after_a_delete_revives_the_runtime(h: Harness) -> None:
    judged_runtime(h)
    h.deregister(RT1)
    later(h, REVIVE_AFTER)
    h.events.clear()
    out = h.keepalive(RT1)
    runtime = h.registry.runtimes[RT1]
    assert runtime.alive and runtime.dead_reason is None
    assert notifs(out, "revived") == [{"type": "runtime", "uuid": RT1, "name": "runtime",
                                        "dead_reason": "delete"}]
    assert event_types(h) == ["runtime.revived"]
    assert h.events[0].extra == {"reason": "delete"}


def test_a_keepalive_overtaken_by_the_goodbye_does_not_revive(h: Harness) -> None:
    """Clean shutdown: the last keepalive may arrive just after the delete."""
    judged_runtime(h)
    h.deregister(RT1)
    later(h, REVIVE_AFTER - 0.001)
    out = h.keepalive(RT1, children=[])
    assert out == [] and not h.registry.runtimes[RT1].alive
    # and nothing comes of it later: a runtime that said goodbye stays dead
    assert h.run_for(60) == [] and not h.registry.runtimes[RT1].alive


def test_revival_boundary_is_revive_after_sec_exactly(h: Harness) -> None:
    judged_runtime(h)
    h.deregister(RT1)
    later(h, REVIVE_AFTER - 0.001)
    h.keepalive(RT1)
    assert not h.registry.runtimes[RT1].alive
    later(h, 0.001)
    h.keepalive(RT1)
    assert h.registry.runtimes[RT1].alive


def test_a_runtime_declared_dead_for_silence_is_revived_and_keeps_its_rhythm(
        h: Harness) -> None:
    h.register(RT1)
    h.run_for(30, {RT1: KA})
    [(when, dead)] = h.run_for(30)                       # silent (a partition, say)
    assert dead["data"]["reason"] == "keepalive timeout"
    out = h.keepalive(RT1)
    assert notifs(out, "revived")[0]["dead_reason"] == "keepalive timeout"
    # the long gap counts towards its rhythm: no flapping back to dead
    assert h.run_for(120, {RT1: KA}) == []
    assert h.registry.runtimes[RT1].alive


def test_a_revived_runtime_that_goes_silent_is_declared_dead_within_the_bound(
        h: Harness) -> None:
    """A wrong revival (say, a keepalive buffered somewhere for long) heals too."""
    judged_runtime(h)
    h.deregister(RT1)
    later(h, 10)
    h.keepalive(RT1)
    revived_at = h.now
    [(when, dead)] = h.run_for(120)
    assert dead["data"]["reason"] == "keepalive timeout"
    # its rhythm is KA plus the gap across the death (10 s + KA): judged by that
    assert when - revived_at <= MISSES * (10 + 2 * KA) + 1


def test_a_runtime_that_never_sent_keepalives_is_judged_from_its_second(h: Harness) -> None:
    h.register(RT1)
    h.deregister(RT1)
    later(h, REVIVE_AFTER)
    h.keepalive(RT1)                                     # its first: revived, not yet judged
    assert h.registry.runtimes[RT1].alive
    assert silence_allowed(h.core.liveness, RT1) is None
    later(h, 60)
    h.keepalive(RT1)
    assert silence_allowed(h.core.liveness, RT1) == MISSES * 60


def test_queued_modules_start_on_a_revived_runtime(h: Harness) -> None:
    judged_runtime(h)
    h.deregister(RT1)
    h.create(uuid="waiting")                             # nobody alive: queued for any
    assert h.registry.modules["waiting"].status == ModuleStatus.QUEUED
    later(h, REVIVE_AFTER)
    out = h.keepalive(RT1)
    [create] = on(out, f"control/{RT1}")
    assert create["action"] == "create" and create["data"]["uuid"] == "waiting"


# -- reconciliation by the keepalive's children ---------------------------------------


def test_a_revival_reconciles_the_modules_the_keepalive_lists(h: Harness) -> None:
    judged_runtime(h, RT1)
    judged_runtime(h, RT2)
    h.create(uuid="mine", parent=RT1)                    # killed on death, listed: alive again
    h.create(uuid="moved", parent=RT1, fault_crash="restart")   # moved to RT2 on death
    h.create(uuid="gone", parent=RT1)                    # killed, not listed: stays killed
    h.deregister(RT1)
    assert h.registry.modules["mine"].status == ModuleStatus.KILLED
    assert h.registry.modules["moved"].parent == RT2
    later(h, REVIVE_AFTER)
    h.events.clear()
    out = h.keepalive(RT1, children=[{"uuid": "mine"}, {"uuid": "moved"}, {"uuid": "nobody"}])
    # never created twice: nothing is forwarded for "mine", the moved copy is stopped
    assert [(p["action"], p["data"]["uuid"]) for p in on(out, f"control/{RT1}")] == [
        ("delete", "moved")]
    assert on(out, f"control/{RT2}") == []
    assert h.registry.modules["mine"].status == ModuleStatus.ALIVE
    assert h.registry.modules["mine"].parent == RT1
    assert h.registry.modules["moved"].alive and h.registry.modules["moved"].parent == RT2
    assert h.registry.modules["gone"].status == ModuleStatus.KILLED
    assert event_types(h) == ["runtime.revived", "module.revived"]


def test_a_keepalive_without_children_reconciles_nothing(h: Harness) -> None:
    judged_runtime(h, RT1)
    judged_runtime(h, RT2)
    h.create(uuid="mine", parent=RT1)
    h.create(uuid="moved", parent=RT1, fault_crash="restart")
    h.deregister(RT1)
    later(h, REVIVE_AFTER)
    out = h.keepalive(RT1)
    assert h.registry.runtimes[RT1].alive
    assert on(out, f"control/{RT1}") == []
    assert h.registry.modules["mine"].status == ModuleStatus.KILLED
    # killed modules still come back when it registers again, and only then
    out = h.register(RT1)
    assert [p["data"]["uuid"] for p in on(out, f"control/{RT1}")] == ["mine"]


def test_an_alive_runtime_listing_a_moved_module_is_told_to_stop_it(h: Harness) -> None:
    judged_runtime(h, RT1)
    judged_runtime(h, RT2)
    h.create(uuid="m", parent=RT2)
    out = h.keepalive(RT1, children=[{"uuid": "m"}])
    [delete] = on(out, f"control/{RT1}")
    assert delete["action"] == "delete" and delete["data"]["uuid"] == "m"
    assert h.registry.modules["m"].parent == RT2


def test_children_must_be_a_list(h: Harness) -> None:
    judged_runtime(h)
    out = h.send("keepalive", {"object_id": "k", "action": "update", "type": "arts_req",
                               "data": {"type": "runtime", "uuid": RT1, "children": "m"}})
    [error] = on(out, "log/orchestrator")
    assert error["data"]["desc"] == "invalid field"


# -- stale last wills -------------------------------------------------------------------


def reconnected(h: Harness, keepalives: int) -> None:
    """RT1 (judged, with modules) registers again from a new connection and keeps sending."""
    judged_runtime(h, RT1)
    judged_runtime(h, RT2)
    h.create(uuid="restartable", parent=RT1, fault_crash="restart")
    h.create(uuid="plain", parent=RT1)
    later(h, 1)
    h.register(RT1)                                      # the old connection never said goodbye
    for _ in range(keepalives):
        later(h, 0.4)
        h.keepalive(RT1)


def test_a_late_will_after_a_reconnect_changes_nothing(h: Harness) -> None:
    reconnected(h, keepalives=2)
    h.events.clear()
    out = h.deregister(RT1)                              # the old connection's will, late
    assert h.registry.runtimes[RT1].alive
    assert on(out, "notif") == [] and on(out, f"control/{RT2}") == []
    assert h.events == []
    [reply] = on(out, "reg")
    assert reply["data"]["details"]["alive"] is True
    assert h.registry.modules["restartable"].parent == RT1
    assert h.registry.modules["plain"].alive
    # one old connection, one will: the next delete is a real goodbye
    out = h.deregister(RT1)
    assert not h.registry.runtimes[RT1].alive
    assert notifs(out, "dead")[0]["reason"] == "delete"


def test_a_runtime_spared_a_late_will_is_still_judged_by_its_keepalives(h: Harness) -> None:
    """If the delete was a real goodbye after all, silence declares it dead in time."""
    reconnected(h, keepalives=2)
    h.deregister(RT1)
    last = h.now
    [(when, dead)] = [v for v in h.run_for(60, {RT2: KA}) if v[1]["data"]["uuid"] == RT1]
    assert dead["data"]["reason"] == "keepalive timeout"
    assert when - last <= MISSES * KA + 1


def test_a_late_will_before_the_new_connection_is_judged_kills_then_revival_heals(
        h: Harness) -> None:
    reconnected(h, keepalives=1)                         # not yet judged by keepalives
    h.deregister(RT1)
    assert not h.registry.runtimes[RT1].alive
    assert h.registry.modules["restartable"].parent == RT2
    later(h, REVIVE_AFTER)
    out = h.keepalive(RT1, children=[{"uuid": "restartable"}, {"uuid": "plain"}])
    assert h.registry.runtimes[RT1].alive
    assert [(p["action"], p["data"]["uuid"]) for p in on(out, f"control/{RT1}")] == [
        ("delete", "restartable")]
    assert h.registry.modules["plain"].status == ModuleStatus.ALIVE


def test_no_will_is_owed_after_a_death_or_a_first_registration(h: Harness) -> None:
    judged_runtime(h)
    h.deregister(RT1)                                    # will, then the runtime comes back
    h.register(RT1)
    for _ in range(2):
        later(h, KA)
        h.keepalive(RT1)
    assert h.core.liveness.owed_wills(RT1) == 0
    h.deregister(RT1)
    assert not h.registry.runtimes[RT1].alive


def test_owed_wills_are_forgotten_when_the_runtime_dies(h: Harness) -> None:
    reconnected(h, keepalives=2)
    assert h.core.liveness.owed_wills(RT1) == 1
    h.run_for(30, {RT2: KA})                             # RT1 silent: dead by timeout
    assert not h.registry.runtimes[RT1].alive
    assert h.core.liveness.owed_wills(RT1) == 0


# -- through the service, on a task.Clock ---------------------------------------------


def test_service_revives_on_the_injected_clock(tmp_path: Path) -> None:
    service = ClockedService(tmp_path)

    def message(topic: str, data: dict, action: str) -> None:
        service.message(topic, {"object_id": "o", "action": action, "type": "arts_req",
                                "data": data})

    message("realm/proc/reg", {"uuid": RT1}, "create")
    message("realm/proc/reg", {"uuid": RT1}, "delete")
    service.clock.advance(service.config.revive_after_sec - 0.5)
    message("realm/proc/keepalive", {"uuid": RT1}, "update")
    assert not service.svc.core.registry.runtimes[RT1].alive
    service.clock.advance(0.5)
    message("realm/proc/keepalive", {"uuid": RT1}, "update")
    assert service.svc.core.registry.runtimes[RT1].alive
    assert [p["action"] for t, p in service.published
            if t == "realm/proc/notif"] == ["dead", "revived"]
    service.stop()
