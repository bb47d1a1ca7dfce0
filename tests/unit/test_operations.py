"""Operator actions (drain, undrain, forget) in the pure core; docs/protocol.md, Operations."""

from __future__ import annotations

from orchestrator.core.model import ModuleStatus, Runtime
from tests.support.harness import RT1, RT2, RT3, Harness, errors, on

M1 = "a0000000-0000-4000-8000-000000000001"
M2 = "a0000000-0000-4000-8000-000000000002"
M3 = "a0000000-0000-4000-8000-000000000003"


def fleet() -> Harness:
    h = Harness()
    h.register(RT1, name="edge-a")
    h.register(RT2, name="edge-b")
    h.create(uuid=M1, name="keeper", parent=RT1, fault_crash="restart")
    h.create(uuid=M2, name="plain", parent=RT1)
    return h


def reply(published: list, object_id: str = "op-1") -> dict:
    [answer] = [p for p in on(published, "control") if p.get("object_id") == object_id]
    return answer["data"]["details"]


def test_drain_moves_restartable_modules_and_keeps_the_rest() -> None:
    h = fleet()
    out = h.operate("drain", "edge-a")
    details = reply(out)
    assert details["drained"] is True and details["uuid"] == RT1
    assert details["moved"] == [{"uuid": M1, "name": "keeper", "to": RT2}]
    assert details["stayed"] == [{"uuid": M2, "name": "plain",
                                  "reason": "fault_crash is not restart"}]
    assert on(out, f"control/{RT2}")[0]["action"] == "create"             # started there
    [stop] = on(out, f"control/{RT1}")                                    # stopped here
    assert (stop["action"], stop["data"]) == ("delete", {"type": "module", "uuid": M1})
    assert on(out, "notif")[0]["action"] == "rescheduled"
    assert h.registry.modules[M1].parent == RT2 and h.registry.modules[M2].parent == RT1
    assert h.registry.runtimes[RT1].drained
    assert [e.type for e in h.events[-2:]] == ["runtime.drained", "module.rescheduled"]
    assert h.events[-1].extra == {"previous": RT1, "why": "its runtime is drained"}


def test_drained_runtime_gets_no_scheduled_placement() -> None:
    h = fleet()
    h.operate("drain", RT1)
    h.operate("drain", RT2)
    out = h.create(uuid=M3, name="new")
    assert reply(out, "c-1")["status"] == "queued"       # every runtime drained
    out = h.send("control", {"object_id": "x", "action": "undrain", "type": "arts_req",
                              "data": {"type": "runtime", "name": "edge-b"}})
    assert h.registry.modules[M3].status == ModuleStatus.ALIVE     # undrain starts the queue
    assert h.registry.modules[M3].parent == RT2
    assert reply(out, "x")["drained"] is False


def test_a_named_parent_still_goes_to_a_drained_runtime() -> None:
    h = fleet()
    h.operate("drain", RT1)
    h.create(uuid=M3, parent="edge-a")
    assert h.registry.modules[M3].parent == RT1 and h.registry.modules[M3].alive


def test_drain_survives_reregistration_and_records_carry_it() -> None:
    h = fleet()
    h.operate("drain", RT1)
    h.register(RT1, name="edge-a")
    runtime = h.registry.runtimes[RT1]
    assert runtime.drained
    assert Runtime.from_record(runtime.to_record()).drained      # journal and snapshot shape


def test_drain_with_no_room_elsewhere_says_why() -> None:
    h = Harness()
    h.register(RT1, name="edge-a")
    h.register(RT2, name="edge-b", max_nmodules=1)
    h.create(uuid=M3, parent=RT2)
    h.create(uuid=M1, parent=RT1, fault_crash="restart")
    details = reply(h.operate("drain", RT1))
    assert details["moved"] == []
    assert details["stayed"][0]["reason"] == "no room: all 1 compatible runtimes are full"


def test_forget_a_dead_runtime_ends_its_waiting_modules() -> None:
    h = fleet()
    h.deregister(RT1)                 # M1 moves to RT2, M2 is killed and waits for RT1
    killed = [e for e in h.events if e.type == "module.killed"]
    assert killed[-1].extra == {"reason": "not moved: fault_crash is not restart"}
    details = reply(h.operate("forget", "edge-a"))
    assert details["forgotten"] is True and details["ended"] == [M2]
    assert RT1 not in h.registry.runtimes
    assert h.registry.modules[M2].status == ModuleStatus.DEAD
    assert h.events[-1].type == "runtime.forgotten"


def test_forget_an_alive_ghost_fails_it_over_first() -> None:
    h = fleet()
    out = h.operate("forget", RT1)
    assert on(out, "notif")[0]["data"]["reason"] == "forgotten"
    assert h.registry.modules[M1].parent == RT2 and h.registry.modules[M1].alive
    assert RT1 not in h.registry.runtimes


def test_bad_operations_change_nothing() -> None:
    h = fleet()
    before = dict(h.registry.runtimes)
    for q, desc in [("nope", "invalid Runtime UUID")]:
        [err] = errors(h.operate("drain", q))
        assert err["data"]["desc"] == desc and err["object_id"] == "op-1"
    [err] = errors(h.send("control", {"object_id": "o", "action": "forget", "type": "arts_req",
                                      "data": {"type": "runtime"}}))
    assert err["data"] == {"desc": "missing field", "data": "data/uuid"}
    [err] = errors(h.send("control", {"object_id": "o", "action": "drain", "type": "arts_req",
                                      "data": {"type": "module", "uuid": RT1}}))
    assert err["data"]["desc"] == "invalid type"
    assert h.registry.runtimes == before


def test_stale_delete_report_from_the_old_runtime_is_ignored() -> None:
    h = fleet()
    h.operate("drain", RT1)
    # a 2022 runtime reports the stop of its old copy as a delete naming itself
    out = h.delete(M1, parent=RT1)
    assert out == [] and h.registry.modules[M1].alive and h.registry.modules[M1].parent == RT2
