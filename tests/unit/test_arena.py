"""The ARENA dialect in the pure core: applauncher-runtime and arena-web-core shapes."""

from __future__ import annotations

from typing import Any

from orchestrator.core import arena
from orchestrator.core.arena_topics import MODULE, PROGRAM, RUNTIME, ArenaTopics
from orchestrator.core.model import ARENA, PROC, Runtime
from tests.support import arena as wire
from tests.support.harness import RT1, RT2, Harness, on

ME = arena.orchestrator_id("realm")
A1 = "aaaaaaaa-1111-4111-8111-111111111111"
A2 = "aaaaaaaa-2222-4222-8222-222222222222"
M1 = "bbbbbbbb-1111-4111-8111-111111111111"
M2 = "bbbbbbbb-2222-4222-8222-222222222222"
CLIENT = wire.program_topic("public", "lab", "jdoe_1_web", "jdoe_1")
CLIENT2 = wire.program_topic("public", "lab", "ann_2_web", "ann_2")


def requests_to(published: list[Any], runtime: str) -> list[dict[str, Any]]:
    """Creates and deletes sent to an ARENA runtime on R/s/<ns>/<scene>/p/<runtime>/<module>."""
    return [p.payload for p in published
            if p.topic.startswith("realm/s/") and p.topic.split("/")[5] == runtime]


def registered(h: Harness, uuid: str = A1, ready: bool = True, **kw: Any) -> list[Any]:
    published = h.send_to(wire.runtime_topic(uuid), wire.registration(uuid, **kw))
    if ready:
        h.send_to(wire.runtime_topic(uuid), wire.keepalive(uuid, **kw))
    return published


# -- topics -----------------------------------------------------------------------------
def test_topics_route_the_three_arena_kinds_and_nothing_else() -> None:
    t = ArenaTopics("realm")
    assert t.route(f"realm/g/public/p/{A1}") == (RUNTIME, "public", None, None, A1)
    assert t.route("realm/s/ns/lab/p/jdoe_web/jdoe") == (PROGRAM, "ns", "lab", "jdoe_web", "jdoe")
    assert t.route(f"realm/s/ns/lab/p/{M1}") == (MODULE, "ns", "lab", None, M1)
    for other in (f"realm/s/ns/lab/p/{M1}/-/stdout", "realm/s/ns/lab/o/x/y", "realm/proc/reg",
                  "other/g/public/p/x", "realm/g/public/p", "realm/g//p/x"):
        assert t.route(other) is None, other
    assert t.subscriptions() == ["realm/g/+/p/+", "realm/s/+/+/p/+/+", "realm/s/+/+/p/+"]


# -- runtimes -----------------------------------------------------------------------------
def test_registration_is_answered_the_way_applauncher_reg_accepts() -> None:
    h = Harness()
    reg = wire.registration(A1)
    published = h.send_to(wire.runtime_topic(A1), reg)
    [reply] = [p for p in published if p.topic == wire.runtime_topic(A1)]
    assert reply.payload["data"]["result"] == "ok"             # all reg() looks at
    assert reply.payload["object_id"] == reg["object_id"]       # what arena-web-core checks
    assert reply.payload["type"] == "resp" and reply.payload["from"] == ME
    runtime = h.registry.runtimes[A1]
    assert (runtime.dialect, runtime.namespace, runtime.name) == (ARENA, "public", "arena-rt1")
    assert runtime.apis == ("python:python3", "wasm:wasi_preview_1")
    assert runtime.tags == ("arena-py", "containerized-modules")
    assert not runtime.ready              # it subscribes to module requests only after the reply
    h.send_to(wire.runtime_topic(A1), wire.keepalive(A1))
    assert h.registry.runtimes[A1].ready


def test_a_runtime_that_never_registers_is_adopted_from_its_first_keepalive() -> None:
    h = Harness()
    published = h.send_to(wire.runtime_topic(A1, "ns1"), wire.keepalive(A1))
    assert published == []                     # nothing is said back to a keepalive
    runtime = h.registry.runtimes[A1]
    assert runtime.alive and runtime.ready and runtime.namespace == "ns1"
    assert [e.type for e in h.events] == ["runtime.registered"]


def test_keepalive_children_stats_are_kept_and_unknown_children_adopted() -> None:
    h = Harness()
    module = {"uuid": M1, "name": "box", "file": "box.py", "filetype": "PY", "parent": A1}
    h.send_to(wire.runtime_topic(A1), wire.keepalive(A1, [wire.child(module, cpu=7.0), None]))
    assert h.registry.modules[M1].parent == A1 and h.registry.modules[M1].alive
    detail = h.core.arena.annotate_module(h.registry.modules[M1].detail())
    assert detail["stats"]["cpu_usage_percent"] == 7.0
    assert h.core.liveness.last_seen(A1) == h.now


def test_bare_errors_are_recorded_never_answered_and_own_messages_ignored() -> None:
    h = Harness()
    registered(h)
    assert h.send_to(wire.runtime_topic(A1), wire.bare_error(
        "Runtime exception: invalid parent", "Parent is required")) == []
    assert [e["desc"] for e in h.core.arena.errors[A1]] == ["Runtime exception: invalid parent"]
    ours = {**wire.registration(A2), "from": ME}
    assert h.send_to(wire.runtime_topic(A2), ours) == []
    assert A2 not in h.registry.runtimes
    for junk in (b"not json", b"[1,2]", {"type": "req", "action": "create", "data": 5}):
        assert h.send_to(wire.runtime_topic(A1), junk) == []
    assert h.send_to(wire.runtime_topic(A2), wire.registration(A1)) == []   # not its topic


def test_delete_or_will_kills_the_runtime() -> None:
    h = Harness()
    registered(h)
    published = h.send_to(wire.runtime_topic(A1), wire.runtime_delete(A1))
    assert h.registry.runtimes[A1].dead_reason == "delete"
    assert on(published, "notif")[0]["action"] == "dead"
    assert requests_to(published, A1) == []


def test_zero_capacity_means_none_for_arena_and_unlimited_for_proc() -> None:
    arena_rt = Runtime(uuid=A1, serial=1, max_nmodules=0, dialect=ARENA)
    proc_rt = Runtime(uuid=RT1, serial=2, max_nmodules=0, dialect=PROC)
    assert not arena_rt.has_room(0) and proc_rt.has_room(10)
    assert not Runtime(uuid=A2, serial=3, dialect=ARENA, orchestration=True).has_room(0)
    assert "filetype:PY" in Runtime(uuid=A2, serial=3, dialect=ARENA,
                                    apis=("python:python3",)).offers()


# -- modules on ARENA runtimes -------------------------------------------------------------
def test_proc_create_for_an_arena_runtime_goes_out_in_applauncher_shape() -> None:
    h = Harness()
    registered(h)
    published = h.create(uuid=M1, name="hello", parent="arena-rt1", filename="hello.py",
                         filetype="PY", location="jdoe/py/hello", scene="lab",
                         env=["SCENE=lab"])
    [create] = requests_to(published, A1)
    [topic] = [p.topic for p in published if p.payload is create]
    assert topic == f"realm/s/public/lab/p/{A1}/{M1}"
    assert create["type"] == "req" and create["action"] == "create" and create["from"] == ME
    data = create["data"]
    for key in ("uuid", "name", "file", "filetype", "parent", "location", "scene", "env", "args"):
        assert key in data, key
    assert (data["file"], data["parent"], data["location"], data["env"]) == (
        "hello.py", A1, "jdoe/py/hello", ["SCENE=lab"])
    assert on(published, "control")[0]["data"]["result"] == "ok"      # proc requester's reply
    # applauncher confirms on the module's own topic
    h.send_to(wire.module_topic(data), wire.confirmation(create, A1))
    assert h.registry.modules[M1].acked_at == h.now
    # and reports the exit there
    h.send_to(wire.module_topic(data), wire.module_exit(data, A1))
    assert h.registry.modules[M1].status == "dead"


def test_a_delete_goes_out_on_the_module_request_topic_and_its_confirmation_ends_it() -> None:
    h = Harness()
    registered(h)
    h.create(uuid=M1, parent=A1, filename="a.py", filetype="PY")
    published = h.delete(M1)
    [delete] = requests_to(published, A1)
    assert delete["action"] == "delete" and delete["data"]["uuid"] == M1
    assert h.registry.modules[M1].status == "exiting"
    h.send_to(wire.module_topic({"uuid": M1, "scene": "default"}), wire.confirmation(delete, A1))
    assert h.registry.modules[M1].status == "dead"


def test_a_launcher_failure_fails_the_oldest_unconfirmed_create_with_the_runtimes_reason() -> None:
    h = Harness()
    registered(h)
    h.create(uuid=M1, parent=A1, filename="a.py", filetype="PY")
    h.create(object_id="c-2", uuid=M2, parent=A1, filename="b.py", filetype="PY")
    h.send_to(wire.runtime_topic(A1), wire.bare_error("Runtime exception: invalid parent", "x"))
    assert h.registry.modules[M1].alive                    # not a launch failure
    published = h.send_to(wire.runtime_topic(A1), wire.bare_error(*wire.NO_DOCKER))
    failed = h.registry.modules[M1]
    assert failed.status == "failed" and "error in launcher" in (failed.reason or "")
    assert h.registry.modules[M2].alive
    assert on(published, "notif")[0]["action"] == "failed"
    assert [p for p in published if p.topic.startswith("realm/g/")] == []   # never answered


def test_news_of_a_module_from_another_runtime_is_ignored() -> None:
    h = Harness()
    registered(h)
    h.create(uuid=M1, parent=A1, filename="a.py", filetype="PY")
    h.send_to(wire.module_topic({"uuid": M1, "scene": "default"}),
              wire.module_exit({"uuid": M1, "name": "module"}, A2))
    assert h.registry.modules[M1].alive


# -- arena-web-core requests ---------------------------------------------------------------
def test_an_unpinned_request_is_placed_once_and_republished_to_the_chosen_runtime() -> None:
    h = Harness()
    registered(h, A1)
    registered(h, A2, name="arena-rt2")
    request = wire.program_create(uuid=M1)
    published = h.send_to(CLIENT, request)
    module = h.registry.modules[M1]
    assert module.alive and module.parent == A1 and module.dialect == ARENA
    assert (module.namespace, module.scene, module.clients) == ("public", "lab", ("jdoe_1",))
    [create] = requests_to(published, A1)
    assert create["data"]["parent"] == A1 and create["data"]["file"] == "box.py"
    assert create["data"]["scene"] == "lab"
    # the same request heard again (another browser, "single") starts nothing new
    assert requests_to(h.send_to(CLIENT2, request), A1) == []
    assert h.registry.modules[M1].clients == ("jdoe_1", "ann_2")


def test_a_request_pinned_to_a_concrete_arena_runtime_is_left_to_it() -> None:
    h = Harness()
    registered(h, A1)
    published = h.send_to(CLIENT, wire.program_create(uuid=M1, parent="arena-rt1"))
    assert requests_to(published, A1) == []              # that runtime acts on it itself
    assert h.registry.modules[M1].parent == A1 and h.registry.modules[M1].pinned
    # a browser's own runtime (affinity client) is not ours to act for
    assert h.send_to(CLIENT, wire.program_create(uuid=M2, parent={"uuid": RT2})) == []
    assert M2 not in h.registry.modules


def test_a_request_naming_an_orchestration_runtime_is_placed() -> None:
    h = Harness()
    registered(h, A2, name="arena-orch", orchestration=True)
    registered(h, A1)
    published = h.send_to(CLIENT, wire.program_create(uuid=M1, parent="arena-orch"))
    assert [c["data"]["parent"] for c in requests_to(published, A1)] == [A1]
    assert requests_to(published, A2) == []


def test_a_request_nothing_can_run_waits_in_the_queue() -> None:
    h = Harness()
    registered(h, A1)
    h.send_to(CLIENT, wire.program_create(uuid=M1, filetype="WA"))    # apis wasm:unstable
    assert h.registry.modules[M1].status == "queued"


def test_client_instances_go_when_the_client_leaves_single_ones_stay() -> None:
    h = Harness()
    registered(h, A1)
    h.send_to(CLIENT, wire.program_create(uuid=M1))                       # per client
    single = wire.program_create(uuid=M2, name="shared")
    h.send_to(CLIENT, single)
    h.send_to(CLIENT2, single)                                            # a second viewer
    published = h.send_to(wire.runtime_topic(RT1),
                          wire.browser_runtime_delete(RT1, "jdoe_1"))      # jdoe's will
    assert [d["data"]["uuid"] for d in requests_to(published, A1)] == [M1]
    assert h.registry.modules[M1].status == "exiting"
    assert h.registry.modules[M2].alive


def test_an_arena_runtime_that_dies_has_its_placed_programs_moved() -> None:
    h = Harness(ka_interval_sec=1, keepalive_misses=2)
    h.core.liveness.bus_up(h.now)
    registered(h, A1)
    h.send_to(CLIENT, wire.program_create(uuid=M1))
    registered(h, A2, name="arena-rt2")
    for _ in range(2):
        h.now += 1
        h.send_to(wire.runtime_topic(A1), wire.keepalive(A1))
    h.now += 5
    published = h.sweep()
    assert h.registry.runtimes[A1].dead_reason == "keepalive timeout"
    assert h.registry.modules[M1].parent == A2
    assert [c["data"]["uuid"] for c in requests_to(published, A2)] == [M1]


def test_mixed_fleet_each_module_goes_where_its_apis_and_filetype_fit() -> None:
    h = Harness()
    h.register(RT1, name="proc-rt")                                   # a 2022 runtime
    registered(h, A1)
    proc = h.create(uuid=M1, filename="hello.wasm")                   # wasm+wasi: proc only
    assert h.registry.modules[M1].parent == RT1
    assert on(proc, f"control/{RT1}")
    placed = h.send_to(CLIENT, wire.program_create(uuid=M2))          # PY: ARENA only
    assert h.registry.modules[M2].parent == A1 and requests_to(placed, A1)
