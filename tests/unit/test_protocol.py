"""The message handling of docs/protocol.md sections 3-9, on the pure core."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.core.model import ModuleStatus
from tests.support.harness import RT1, RT2, Harness, errors, on

M1 = "b241e483-0000-4000-8000-000000000001"
M2 = "b241e483-0000-4000-8000-000000000002"


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- 4.1 registration ---------------------------------------------------------------
def test_registration_reply_has_the_compat_shape(h: Harness) -> None:
    out = h.register(name="test", apis=["wasm", "wasi"], max_nmodules=128,
                     aot_target="x86_64.tigerlake", metadata={"k": "v"},
                     platform={"cpu": {"cores": 8}})
    [reply] = on(out, "reg")
    assert reply == {"object_id": f"reg-{RT1[:4]}", "type": "arts_resp", "data": {
        "result": "ok", "details": {
            "uuid": RT1, "name": "test", "apis": ["wasm", "wasi"], "runtime_type": "linux",
            "ka_interval_sec": 5, "page_size": 65536, "aot_target": "x86_64.tigerlake",
            "metadata": {"k": "v"}, "alive": True, "status": "alive", "max_nmodules": 128,
            "platform": {"cpu": {"cores": 8}}}}}
    assert "action" not in reply


def test_registration_defaults_and_string_json_goes_out_parsed(h: Harness) -> None:
    out = h.send("reg", {"object_id": "o", "action": "create", "type": "arts_req",
                         "data": {"type": "runtime"}})
    details = on(out, "reg")[0]["data"]["details"]
    assert details["name"] == "runtime" and details["apis"] == ["wasm", "wasi"]
    assert details["aot_target"] == {}          # stored "{}", sent parsed
    assert details["max_nmodules"] == 100 and details["page_size"] == 65536
    assert details["metadata"] is None and details["platform"] is None
    runtime = h.registry.runtimes[details["uuid"]]
    assert runtime.aot_target == "{}"            # REST shows it as stored


def test_registration_on_a_subtopic_is_answered_there(h: Harness) -> None:
    out = h.register(topic=f"reg/{RT1}")
    assert on(out, f"reg/{RT1}") and not on(out, "reg")


def test_registration_without_uuid_on_subtopic_takes_the_topics(h: Harness) -> None:
    h.send(f"reg/{RT1}", {"object_id": "o", "action": "create", "type": "arts_req",
                          "data": {"type": "runtime", "name": "n"}})
    assert RT1 in h.registry.runtimes


def test_reregistration_updates_fields_and_respawns_killed_modules(h: Harness) -> None:
    h.register(name="old", max_nmodules=5)
    h.create(uuid=M1, parent=RT1)
    h.deregister()
    assert h.registry.modules[M1].status == ModuleStatus.KILLED
    out = h.register(name="new", apis=["wasm"])
    reply = on(out, "reg")[0]["data"]["details"]
    assert reply["name"] == "new" and reply["apis"] == ["wasm"] and reply["alive"] is True
    assert reply["max_nmodules"] == 5            # not sent again: kept
    [create] = on(out, f"control/{RT1}")
    assert create["action"] == "create" and create["data"]["uuid"] == M1
    assert h.registry.modules[M1].status == ModuleStatus.ALIVE
    # the reply comes first, then the re-creates
    assert out[0].topic == "realm/proc/reg"


# -- 4.2 deletion / last will ------------------------------------------------------------
def test_deletion_marks_runtime_dead_and_replies_with_detail(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    out = h.deregister()
    [reply] = on(out, "reg")
    assert reply["data"]["details"]["alive"] is False
    assert reply["data"]["details"]["status"] == "dead"
    assert h.registry.modules[M1].status == ModuleStatus.KILLED
    [notif] = on(out, "notif")
    assert notif["action"] == "dead" and notif["data"]["reason"] == "delete"


def test_deleting_a_dead_runtime_again_is_not_an_error(h: Harness) -> None:
    h.register()
    h.deregister()
    out = h.deregister()
    assert not errors(out) and on(out, "reg")[0]["data"]["details"]["alive"] is False


def test_deleting_an_unknown_runtime_is_an_error(h: Harness) -> None:
    out = h.deregister(RT2)
    assert errors(out) == [{"object_id": "will", "action": "error", "type": "arts_resp",
                            "data": {"desc": "invalid Runtime UUID", "data": RT2}}]


# -- 4.3 module create --------------------------------------------------------------------
@pytest.mark.parametrize("parent", [RT1, {"uuid": RT1}, "rt-name", RT1.upper()])
def test_create_forwards_to_the_parent_and_answers_the_requester(h: Harness, parent) -> None:
    h.register(name="rt-name")
    out = h.create(uuid=M1, name="hello", parent=parent, filename="wasm/a.wasm",
                   args=["wasm/a.wasm"], env=[], resources={"period": 1, "runtime": 2},
                   fault_crash="ignore")
    [fwd] = on(out, f"control/{RT1}")
    assert fwd["action"] == "create" and fwd["type"] == "arts_req"
    assert fwd["object_id"] != "c-1"
    assert fwd["data"] == {
        "type": "module", "uuid": M1, "name": "hello", "parent": RT1,
        "filename": "wasm/a.wasm", "filetype": "WA", "apis": ["wasm", "wasi"],
        "args": ["wasm/a.wasm"], "env": [], "channels": [], "peripherals": [],
        "resources": {"period": 1, "runtime": 2}, "fault_crash": "ignore",
        "alive": True, "status": "alive"}
    [reply] = on(out, "control")
    assert reply == {"object_id": "c-1", "type": "arts_resp",
                     "data": {"result": "ok", "details": fwd["data"]}}


def test_create_without_parent_is_placed(h: Harness) -> None:
    h.register()
    out = h.create(uuid=M1)
    assert on(out, f"control/{RT1}")
    assert h.registry.modules[M1].parent == RT1


def test_create_with_string_encoded_args_goes_out_parsed(h: Harness) -> None:
    h.register()
    out = h.create(uuid=M1, args="['a', 'b']", env="[]")
    data = on(out, f"control/{RT1}")[0]["data"]
    assert data["args"] == ["a", "b"] and data["env"] == []
    assert h.registry.modules[M1].args == "['a', 'b']"


def test_duplicate_alive_uuid_is_refused(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    out = h.create(object_id="c-2", uuid=M1, name="again")
    assert errors(out) == [{"object_id": "c-2", "action": "error", "type": "arts_resp",
                            "data": {"desc": "duplicate module UUID; request ignored",
                                     "data": {"type": "module", "uuid": M1, "name": "again"}}}]
    assert h.registry.modules[M1].name == "module"


def test_dead_module_uuid_is_replaced(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    h.exited(M1)
    out = h.create(uuid=M1, name="second")
    assert not errors(out)
    assert h.registry.modules[M1].name == "second" and h.registry.modules[M1].alive


@pytest.mark.parametrize("parent", ["no-such-runtime", {"uuid": RT2}])
def test_unknown_parent_is_an_error(h: Harness, parent) -> None:
    h.register()
    out = h.create(uuid=M1, parent=parent)
    [err] = errors(out)
    assert err["data"]["desc"] == "invalid Runtime UUID"
    assert M1 not in h.registry.modules


def test_dead_parent_is_an_error_not_silently_accepted(h: Harness) -> None:
    h.register()
    h.deregister()
    out = h.create(uuid=M1, parent=RT1)
    assert errors(out)[0]["data"] == {"desc": "invalid Runtime UUID", "data": RT1}


# -- 4.4 module delete ---------------------------------------------------------------------
@pytest.mark.parametrize("by", ["uuid", "name"])
def test_delete_forwards_the_real_uuid(h: Harness, by: str) -> None:
    h.register()
    h.create(uuid=M1, name="hello")
    out = h.delete(M1 if by == "uuid" else "hello")
    [fwd] = on(out, f"control/{RT1}")
    assert fwd["action"] == "delete" and fwd["data"] == {"type": "module", "uuid": M1}
    assert h.registry.modules[M1].status == ModuleStatus.EXITING
    [reply] = on(out, "control")
    assert reply["object_id"] == "d-1" and reply["data"]["details"]["alive"] is False


def test_delete_accepts_libsilverlines_top_level_uuid(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    out = h.send("control", {"uuid": "ls-req", "type": "arts_req", "action": "delete",
                             "data": {"uuid": M1}})
    assert on(out, "control")[0]["object_id"] == "ls-req"


def test_delete_unknown_module_is_an_error(h: Harness) -> None:
    out = h.delete("nope")
    assert errors(out)[0]["data"] == {"desc": "invalid Module UUID", "data": "nope"}


def test_delete_of_a_queued_module_removes_it_from_the_queue(h: Harness) -> None:
    h.register(max_nmodules=1)
    h.create(uuid=M1)
    h.create(uuid=M2)
    assert h.registry.modules[M2].status == ModuleStatus.QUEUED
    out = h.delete(M2)
    assert not on(out, f"control/{RT1}")
    assert h.registry.modules[M2].status == ModuleStatus.DEAD
    h.exited(M1)
    assert h.registry.modules[M2].status == ModuleStatus.DEAD   # not started later


def test_delete_with_own_parent_counts_as_exit(h: Harness) -> None:
    h.register()
    h.create(uuid=M1)
    out = h.delete(M1, parent=RT1)
    assert on(out, "notif")[0]["action"] == "exited"
    assert h.registry.modules[M1].status == ModuleStatus.DEAD


# -- 4.5 exited ---------------------------------------------------------------------------------
@pytest.mark.parametrize("topic", ["control", f"control/{RT1}"])
def test_exited_marks_dead_and_notifies(h: Harness, topic: str) -> None:
    h.register()
    h.create(uuid=M1)
    out = h.exited(M1, topic=topic)
    [notif] = on(out, "notif")
    assert notif["action"] == "exited" and notif["type"] == "arts_req"
    assert notif["data"] == {"type": "module", "uuid": M1}
    assert h.registry.modules[M1].status == ModuleStatus.DEAD


def test_exited_reported_by_another_runtime_is_ignored(h: Harness) -> None:
    h.register()
    h.register(RT2)
    h.create(uuid=M1, parent=RT1)
    out = h.exited(M1, topic=f"control/{RT2}")
    assert out == [] and h.registry.modules[M1].alive


def test_exited_unknown_module_is_an_error(h: Harness) -> None:
    assert errors(h.exited(M2))[0]["data"] == {"desc": "invalid Module UUID", "data": M2}


# -- 4.6 runtime acks --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,topic", [("runtime_resp", f"control/{RT1}"),
                                        ("arts_resp", "control")])
def test_ack_of_a_forwarded_create_is_recorded(h: Harness, kind: str, topic: str) -> None:
    h.register()
    fwd = on(h.create(uuid=M1), f"control/{RT1}")[0]
    h.now += 2
    out = h.send(topic, {"object_id": fwd["object_id"], "type": kind,
                         "data": {"result": "ok", "details": {}}})
    assert out == []
    assert h.registry.modules[M1].acked_at == h.now


def test_our_own_replies_heard_back_are_ignored(h: Harness) -> None:
    h.register()
    out = h.create(uuid=M1)
    for p in out:                     # MQTT 3.1.1 has no No-Local: we hear everything
        assert h.core.handle(p.topic, json.dumps(p.payload).encode(), h.now).effects == [] or \
            p.topic.endswith("/notif")
    assert h.registry.modules[M1].alive


# -- 4.7 keepalive ------------------------------------------------------------------------------------
def test_keepalive_records_last_seen_and_needs_no_reply(h: Harness) -> None:
    h.register()
    h.now += 3
    assert h.keepalive() == []
    assert h.core.liveness.last_seen(RT1) == h.now


def test_keepalive_from_unknown_runtime_is_only_logged(h: Harness) -> None:
    assert h.keepalive(RT2) == []


def test_keepalive_for_another_runtimes_topic_is_refused(h: Harness) -> None:
    h.register()
    h.register(RT2)
    out = h.keepalive(RT2, topic=f"keepalive/{RT1}")
    assert errors(out)[0]["data"]["desc"] == "invalid field"


# -- 5 errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload,desc,data", [
    (b"", "invalid JSON", ""),
    (b"\xff\xfe garbage", "invalid JSON", "\ufffd\ufffd garbage"),
    (b"{not json", "invalid JSON", "{not json"),
    (b"[1, 2]", "missing field", "type"),
    (b'"a string"', "missing field", "type"),
    (b'{"action": "create", "data": {}}', "missing field", "type"),
    (b'{"type": "arts_req", "data": {}}', "missing field", "action"),
    (b'{"type": "arts_req", "action": "create"}', "missing field", "data"),
    (b'{"type": "bogus", "action": "create", "data": {}}', "invalid type", "bogus"),
    (b'{"type": "arts_req", "action": "explode", "data": {}}', "invalid action", "explode"),
    (b'{"type": "arts_req", "action": "create", "data": {"type": "runtime"}}',
     "invalid type", "runtime"),
    (b'{"type": "arts_req", "action": "create", "data": {"metadata": %s%s}}'
     % (b"[" * 40, b"]" * 40),
     "invalid field", {"field": "data/metadata", "expected":
                       "JSON nested at most 32 deep, lists and objects of at most 4096 items"}),
    (b'{"type": "arts_req", "action": "create", "data": {"fault_crash": "sometimes"}}',
     "invalid field", {"field": "data/fault_crash", "expected": '"ignore" or "restart"'}),
    (b'{"type": "arts_req", "action": "create", "data": {"uuid": "a/b/#"}}',
     "invalid field", {"field": "data/uuid",
                       "expected": "identifier of 1-128 characters without '/', '+', '#'"}),
    (b'{"type": "arts_req", "action": "create", "data": {"parent": 7}}',
     "invalid field", {"field": "data/parent", "expected": "runtime uuid or name"}),
    (b'{"type": "arts_req", "action": "create", "data": {"parent": {}}}',
     "missing field", "data/parent/uuid"),
    (b'{"type": "arts_req", "action": "delete", "data": {}}', "missing field", "data/uuid"),
])
def test_control_errors(h: Harness, payload: bytes, desc: str, data) -> None:
    h.register()
    before = dict(h.registry.modules)
    out = h.send("control", payload)
    [err] = errors(out)
    assert len(out) == 1
    assert err["action"] == "error" and err["type"] == "arts_resp"
    assert err["data"] == {"desc": desc, "data": data}
    assert h.registry.modules == before


@pytest.mark.parametrize("data,field,expected", [
    ({"max_nmodules": "128"}, "data/max_nmodules", "integer >= 0"),
    ({"max_nmodules": True}, "data/max_nmodules", "integer >= 0"),
    ({"page_size": -1}, "data/page_size", "integer >= 0"),
    ({"name": 5}, "data/name", "string"),
    ({"apis": [1, 2]}, "data/apis", "list of strings"),
    ({"apis": {"a": 1}}, "data/apis", "list of strings"),
])
def test_registration_wrong_types_are_errors_and_change_nothing(h: Harness, data, field,
                                                                expected) -> None:
    out = h.register(**data)
    [err] = errors(out)
    assert err["object_id"] == f"reg-{RT1[:4]}"
    assert err["data"] == {"desc": "invalid field", "data": {"field": field,
                                                             "expected": expected}}
    assert h.registry.runtimes == {}


def test_errors_carry_a_new_object_id_when_the_request_has_none(h: Harness) -> None:
    [err] = errors(h.send("control", b"nope"))
    assert err["object_id"].startswith("id-")


def test_payload_in_single_quotes_is_accepted(h: Harness) -> None:
    body = json.dumps({"object_id": "q", "action": "create", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT1}})
    out = h.send("reg", f"'{body}'".encode())
    assert on(out, "reg")[0]["object_id"] == "q"


def test_req_and_resp_are_synonyms(h: Harness) -> None:
    out = h.send("reg", {"object_id": "o", "action": "create", "type": "req",
                         "data": {"uuid": RT1}})
    assert on(out, "reg")
    assert h.send("reg", {"object_id": "o", "type": "resp", "data": {}}) == []


def test_payload_too_large(h: Harness) -> None:
    big = json.dumps({"type": "arts_req", "action": "create",
                      "data": {"name": "x" * 300_000}}).encode()
    [err] = errors(h.send("control", big))
    assert err["data"]["desc"] == "payload too large"


def test_invalid_json_echo_is_truncated(h: Harness) -> None:
    [err] = errors(h.send("control", b"x" * 5000))
    assert err["data"]["data"] == "x" * 1024


def test_a_bug_in_a_handler_is_reported_and_rolled_back(h: Harness, monkeypatch) -> None:
    h.register()

    def boom(*args, **kwargs):
        raise ZeroDivisionError("oops")

    # fail after the module was already put into the registry
    monkeypatch.setattr(h.core, "_expect_ack", boom)
    out = h.create(uuid=M1)
    [err] = errors(out)
    assert err["data"]["desc"] == "Uncaught exception" and "oops" in err["data"]["data"]
    assert len(out) == 1 and M1 not in h.registry.modules
    monkeypatch.undo()
    assert on(h.create(uuid=M1), f"control/{RT1}")     # and the next message works


def test_a_rolled_back_create_leaves_no_ack_expected(h: Harness, monkeypatch) -> None:
    """What a runtime's ack would answer is kept beside the registry: it must roll
    back with the request, or a late ack could touch a module that was never made."""
    from orchestrator.core.effects import Outbox
    h.register()
    real_event = Outbox.event

    def event(self: Outbox, kind: str, *args: Any, **kw: Any) -> None:
        if kind == "module.created":
            raise ZeroDivisionError("after the forward was built")
        real_event(self, kind, *args, **kw)

    monkeypatch.setattr(Outbox, "event", event)
    assert errors(h.create(uuid=M1))[0]["data"]["desc"] == "Uncaught exception"
    assert M1 not in h.registry.modules and not h.core._pending_acks
    monkeypatch.undo()
    fwd = on(h.create(uuid=M1), f"control/{RT1}")[0]
    assert list(h.core._pending_acks.items()) == [(fwd["object_id"], M1)]


def test_topics_outside_ours_are_ignored(h: Harness) -> None:
    assert h.core.handle("other/proc/reg", b"{}", 0).effects == []
    assert h.core.handle("realm/proc/reg/a/b", b"{}", 0).effects == []


def test_list_lengths_are_bounded(h: Harness) -> None:
    h.register()
    out = h.create(uuid=M1, args=["x"] * 5000)
    assert errors(out)[0]["data"] == {"desc": "invalid field", "data": {
        "field": "data/args", "expected": "list of at most 4096 items, nested at most 32 deep"}}
    out = h.create(uuid=M1, metadata={"k": list(range(5000))})
    assert errors(out)[0]["data"]["data"]["field"] == "data/metadata"
    assert M1 not in h.registry.modules


def test_reregistration_under_another_manager_records_it() -> None:
    h = Harness()
    h.register(RT1, parent="manager-a")
    h.register(RT1, parent="manager-b")
    assert h.registry.runtimes[RT1].manager == "manager-b"
    h.register(RT1)                                      # not given: kept
    assert h.registry.runtimes[RT1].manager == "manager-b"
