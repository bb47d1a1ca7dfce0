"""Every generation's wire format through the pure core (docs/protocol.md 1, Dialects).

The message shapes are those the real peers send: runtime-manager 2023
(``manage.py run``, ``create_module_batch``, ``linux_minimal`` runtimes),
libsilverline 2022-07/2022-09/2023, the 2021 ARENA simulated runtime.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from orchestrator.adapters.web import RestApi
from orchestrator.core.model import ModuleStatus
from tests.support.harness import RT1, RT2, Harness, errors, on

M1 = "44c72c87-c4ec-4759-b587-30ddc8590f6b"
M2 = "44c72c87-c4ec-4759-b587-30ddc8590f6c"
M3 = "44c72c87-c4ec-4759-b587-30ddc8590f6d"
MGR = "5f937916-d29d-4f66-801e-3d69f57728e2"

#: what runtime-manager's ``manage.py run -f helloworld.wasm`` sends as ``data.args``
ARGS_2023 = {"argv": ["x"], "env": ["A=1"], "limit": 60.0}


@pytest.fixture
def h() -> Harness:
    return Harness()


def req(action: str, data: dict[str, Any], object_id: str = "o-1") -> dict[str, Any]:
    """A 2023 request (libsilverline's control_message): ``"type": "req"``."""
    return {"object_id": object_id, "action": action, "type": "req", "data": data}


def create_2023(**data: Any) -> dict[str, Any]:
    return req("create", {"type": "module", "parent": RT1, "uuid": M1, "name": "hello",
                          "file": "helloworld.wasm", "args": ARGS_2023, **data})


# -- replies answer in the request's dialect ----------------------------------------------------
def test_a_req_gets_a_resp_and_an_arts_req_an_arts_resp(h: Harness) -> None:
    [reg] = h.send(f"reg/{MGR}", req("create", {"type": "manager", "uuid": MGR, "name": "n"}))
    assert reg.payload["type"] == "resp" and reg.payload["object_id"] == "o-1"
    [reg] = on(h.register(), "reg")
    assert reg["type"] == "arts_resp"
    out = h.send("control", req("create", {"type": "module", "uuid": M1}, "c-9"))
    assert on(out, "control")[0]["type"] == "resp"
    [err] = errors(h.send("control", req("create", {"type": "module", "uuid": M1})))
    assert err["type"] == "resp" and err["data"]["desc"].startswith("duplicate")
    assert errors(h.create(uuid=M1))[0]["type"] == "arts_resp"


def test_forwards_to_runtimes_stay_arts_req_in_every_dialect(h: Harness) -> None:
    h.register()
    [fwd] = on(h.send("control", create_2023()), f"control/{RT1}")
    assert fwd["type"] == "arts_req" and fwd["action"] == "create"


# -- the 2023 module create --------------------------------------------------------------------------
def test_a_2023_create_is_forwarded_with_the_clients_own_fields(h: Harness) -> None:
    h.register(name="node")
    channels = [{"path": "light", "mode": "rw", "topic": "realm/kitchen/light"}]
    out = h.send("control", create_2023(parent="node", channels=channels,
                                        apis=["wasm", "wasi"], engine={"x": [1]}))
    [fwd] = on(out, f"control/{RT1}")
    # runtime-manager's linux_minimal reads data["file"], data["args"]["argv"/"env"]
    assert fwd["data"] == {
        "type": "module", "uuid": M1, "name": "hello", "parent": RT1,
        "file": "helloworld.wasm", "args": ARGS_2023, "channels": channels,
        "apis": ["wasm", "wasi"], "engine": {"x": [1]}, "alive": True, "status": "alive"}
    [reply] = on(out, "control")
    assert reply == {"object_id": "o-1", "type": "resp",
                     "data": {"result": "ok", "details": fwd["data"]}}
    module = h.registry.modules[M1]
    assert module.filename == "helloworld.wasm" and module.args == ARGS_2023


def test_a_2022_create_still_gets_exactly_the_2022_forward(h: Harness) -> None:
    h.register()
    out = h.send("control", req("create", {"type": "module", "parent": RT1, "uuid": M1,
                                           "filename": "a.wasm", "args": ["a.wasm"],
                                           "env": [], "unknown": 1}))
    [fwd] = on(out, f"control/{RT1}")
    assert set(fwd["data"]) == {"type", "uuid", "name", "parent", "filename", "filetype",
                                "apis", "args", "env", "channels", "peripherals",
                                "resources", "fault_crash", "alive", "status"}
    assert fwd["data"]["args"] == ["a.wasm"]


def test_the_2023_args_object_is_checked(h: Harness) -> None:
    h.register()
    [err] = errors(h.send("control", create_2023(args={"argv": "not a list"})))
    assert err["data"] == {"desc": "invalid field",
                           "data": {"field": "data/args/argv", "expected": "list of strings"}}
    [err] = errors(h.send("control", create_2023(args=5)))
    assert err["data"]["data"] == {"field": "data/args", "expected": "list or object"}
    assert M1 not in h.registry.modules


def test_a_queued_2023_module_starts_later_in_its_own_shape(h: Harness) -> None:
    h.register(max_nmodules=1)
    h.create(uuid=M2)
    out = h.send("control", create_2023())
    assert on(out, "control")[0]["data"]["details"]["status"] == "queued"
    out = h.exited(M2)
    [fwd] = on(out, f"control/{RT1}")
    assert fwd["data"]["file"] == "helloworld.wasm" and fwd["data"]["args"] == ARGS_2023


# -- REST shows what was stored -------------------------------------------------------------------
async def rest(h: Harness, path: str) -> Any:
    response = await StubTreq(RestApi(h.core).resource()).get(f"http://localhost{path}")
    return json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_rest_shows_a_2023_module_as_it_was_sent(h: Harness) -> None:
    h.register()
    h.send("control", create_2023(channels=[{"path": "p", "mode": "r", "topic": "t"}],
                                  engine="wasmer"))
    detail = await rest(h, f"/api/modules/{M1}/")
    assert detail["dialect"] == "2023" and detail["file"] == "helloworld.wasm"
    assert detail["filename"] == "helloworld.wasm" and detail["args"] == ARGS_2023
    assert detail["channels"] == [{"path": "p", "mode": "r", "topic": "t"}]
    assert detail["extra"] == {"engine": "wasmer"}
    h.create(uuid=M2)
    assert (await rest(h, f"/api/modules/{M2}/"))["dialect"] == "2022"


# -- create_batch ---------------------------------------------------------------------------------
def batch(*modules: dict[str, Any], parent: Any = RT1) -> dict[str, Any]:
    """What libsilverline's ``create_module_batch`` sends."""
    return req("create_batch", {"modules": [{"type": "module", **m} for m in modules],
                                "parent": parent}, "b-1")


def test_create_batch_places_each_module_in_order_with_one_reply(h: Harness) -> None:
    h.register(max_nmodules=2)
    out = h.send("control", batch(*({"uuid": u, "name": "n", "file": f"{u[-1]}.wasm",
                                     "args": {}} for u in (M1, M2, M3))))
    fwds = on(out, f"control/{RT1}")
    assert [f["data"]["uuid"] for f in fwds] == [M1, M2]
    [reply] = on(out, "control")
    assert reply["object_id"] == "b-1" and reply["type"] == "resp"
    assert [(m["uuid"], m["status"]) for m in reply["data"]["details"]["modules"]] == [
        (M1, "alive"), (M2, "alive"), (M3, "queued")]
    assert [n["action"] for n in on(out, "notif")] == ["queued"]
    assert h.registry.modules[M3].status == ModuleStatus.QUEUED


@pytest.mark.parametrize("bad,field", [
    ({"uuid": M3, "args": {"argv": [1]}}, "data/modules/1/args/argv"),
    ({"uuid": M3, "name": 7}, "data/modules/1/name"),
])
def test_a_bad_module_refuses_the_whole_batch(h: Harness, bad: dict[str, Any],
                                               field: str) -> None:
    h.register()
    out = h.send("control", batch({"uuid": M1, "file": "a.wasm", "args": {}}, bad))
    [err] = errors(out)
    assert err["object_id"] == "b-1" and err["data"]["data"]["field"] == field
    assert not on(out, f"control/{RT1}") and h.registry.modules == {}


def test_a_batch_repeating_a_uuid_or_naming_an_unknown_runtime_changes_nothing(
        h: Harness) -> None:
    h.register()
    [err] = errors(h.send("control", batch({"uuid": M1}, {"uuid": M1})))
    assert err["data"]["desc"] == "duplicate module UUID; request ignored"
    [err] = errors(h.send("control", batch({"uuid": M1}, parent="nope")))
    assert err["data"] == {"desc": "invalid Runtime UUID", "data": "nope"}
    [err] = errors(h.send("control", req("create_batch", {"parent": RT1, "modules": []})))
    assert err["data"]["data"]["field"] == "data/modules"
    assert h.registry.modules == {}


# -- a runtime's confirmation of a forwarded delete -------------------------------------------------
def forwarded_delete(h: Harness, q: str = M1) -> dict[str, Any]:
    [fwd] = on(h.delete(q), f"control/{RT1}")
    assert fwd["action"] == "delete"
    return fwd


@pytest.mark.parametrize("kind,topic", [("arts_resp", f"control/{RT1}"),
                                        ("runtime_resp", "control"), ("resp", "control")])
def test_a_confirmed_delete_completes(h: Harness, kind: str, topic: str) -> None:
    h.register(max_nmodules=1)
    h.create(uuid=M1)
    h.create(uuid=M2)                              # waits for M1's slot
    fwd = forwarded_delete(h)
    assert h.registry.modules[M1].status == ModuleStatus.EXITING
    assert h.registry.modules[M2].status == ModuleStatus.QUEUED   # M1 still runs
    # the 2021 ARENA runtime's answer: an arts_resp to the delete's object_id
    out = h.send(topic, {"object_id": fwd["object_id"], "type": kind,
                         "data": {"result": "ok", "details": {"msg": "Deleted.", "uuid": M1}}})
    assert h.registry.modules[M1].status == ModuleStatus.DEAD
    assert [n["action"] for n in on(out, "notif")] == ["exited", "started"]
    assert on(out, "notif")[0]["data"] == {"type": "module", "uuid": M1}
    assert [f["data"]["uuid"] for f in on(out, f"control/{RT1}")] == [M2]


def test_a_delete_answered_with_an_error_stays_exiting(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    fwd = forwarded_delete(h)
    out = h.send(f"control/{RT1}", {"object_id": fwd["object_id"], "type": "arts_resp",
                                    "data": {"result": "error", "details": "no"}})
    assert out == [] and h.registry.modules[M1].status == ModuleStatus.EXITING


def test_a_delete_confirmed_by_another_runtime_is_ignored(h: Harness) -> None:
    h.register()
    h.register(RT2)
    h.create(uuid=M1, parent=RT1)
    fwd = forwarded_delete(h)
    h.send(f"control/{RT2}", {"object_id": fwd["object_id"], "type": "arts_resp",
                              "data": {"result": "ok"}})
    assert h.registry.modules[M1].status == ModuleStatus.EXITING


def test_an_exit_report_after_the_confirmation_changes_nothing(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    fwd = forwarded_delete(h)
    h.send("control", {"object_id": fwd["object_id"], "type": "arts_resp",
                       "data": {"result": "ok"}})
    assert h.exited(M1) == []


@pytest_twisted.ensureDeferred
async def test_an_unconfirmed_delete_shows_how_long_it_has_been_exiting(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    assert (await rest(h, f"/api/modules/{M1}/"))["exiting_since"] is None
    forwarded_delete(h)
    deleted_at = h.now
    h.now += 600
    h.delete(M1)                    # asking again does not reset the clock
    detail = await rest(h, f"/api/modules/{M1}/")
    assert detail["status"] == "exiting"
    from orchestrator.core.model import iso
    assert detail["exiting_since"] == iso(deleted_at)
    runtime = await rest(h, f"/api/runtimes/{RT1}/")
    assert runtime["nmodules"] == 1              # its slot is still in use


def test_the_2021_exit_report_names_its_runtime_as_an_object(h: Harness) -> None:
    """The ARENA runtime's module-done message: a delete whose parent is the runtime."""
    h.register()
    h.create(uuid=M1)
    out = h.send("control", {"object_id": "x", "action": "delete", "type": "arts_req",
                             "data": {"type": "module", "uuid": M1, "name": "m",
                                      "parent": {"uuid": RT1, "name": "rt"}}})
    assert not on(out, f"control/{RT1}")            # not forwarded as a delete
    assert [n["action"] for n in on(out, "notif")] == ["exited"]
    assert h.registry.modules[M1].status == ModuleStatus.DEAD


# -- a 2023 module survives a restart in its own shape ----------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_2023_module_is_journaled_and_snapshotted_as_sent(h: Harness,
                                                                   tmp_path: Any) -> None:
    from twisted.internet import reactor

    from orchestrator.adapters.store import Store
    from orchestrator.core.registry import Registry

    def load() -> tuple[Store, Registry]:
        store, registry = Store(reactor, str(tmp_path)), Registry()
        store.load(registry)
        return store, registry

    h.register()
    h.send("control", create_2023(channels=[{"path": "p", "mode": "r", "topic": "t"}], x=1))
    module = h.registry.modules[M1]
    store, registry = load()
    registry.put_module(module)
    await store.commit(registry.take_changes(), registry.next_serial, {})
    store.close()
    store, journaled = load()                      # from the journal
    assert journaled.modules[M1] == module and journaled.modules[M1].wire() == module.wire()
    await store.snapshot(journaled, lambda: {})
    store.close()
    _, snapshotted = load()                        # from the snapshot
    assert snapshotted.modules[M1].wire() == module.wire()
    assert snapshotted.modules[M1].wire()["args"] == ARGS_2023
