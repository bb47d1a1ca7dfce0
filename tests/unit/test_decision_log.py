"""The operator's log: one line per decision, after commit, from the real glue on a Clock."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, Logger, formatEvent

from orchestrator.adapters.access import AccessLogSite
from orchestrator.adapters.decisionlog import DecisionLog
from orchestrator.adapters.logfile import LogFileService
from orchestrator.adapters.metrics import Metrics
from orchestrator.config import Config
from orchestrator.core.envelope import ProtocolError
from orchestrator.core.protocol import Orchestrator
from orchestrator.service import OrchestratorService
from orchestrator.adapters.store import Store
from tests.support.harness import RT1, RT2, RT3

R = "realm/proc"
M1 = "b241e483-0000-4000-8000-000000000001"


class Lines(list):
    """Captured log events; ``text()`` renders them as the log file would."""

    def text(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self if level is None or e["log_level"] is level]

    def decisions(self, decision: str) -> list[dict[str, Any]]:
        return [e for e in self if e.get("decision") == decision]

    def one(self, decision: str) -> str:
        [event] = self.decisions(decision)
        return formatEvent(event)


class Fleet:
    """The glue with a decision log that records into ``lines``; no broker, no fsync."""

    def __init__(self, tmp_path: Path, debug: bool = False) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        config = replace(Config(), state_dir=str(tmp_path), journal_fsync=False)
        core = Orchestrator(config)
        self.lines = Lines()
        self.decisions = DecisionLog(config.scheduler, core.registry.runtimes.get, debug=debug,
                                     log=Logger(observer=self.lines.append))
        self.svc = OrchestratorService(self.clock, core, Store(self.clock, str(tmp_path), False),
                                       decisions=self.decisions)
        self.svc.startService()
        self.svc.broker_connected()

    def send(self, topic: str, doc: Any) -> None:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.svc.message_received(f"{R}/{topic}", payload)
        self.clock.advance(0)                 # end of the reactor turn: commit, then emit

    def register(self, uuid: str, name: str, **data: Any) -> None:
        self.send("reg", {"object_id": f"reg-{name}", "action": "create", "type": "arts_req",
                          "data": {"type": "runtime", "uuid": uuid, "name": name, **data}})

    def create(self, name: str, **data: Any) -> None:
        self.send("control", {"object_id": f"c-{name}", "action": "create", "type": "arts_req",
                              "data": {"type": "module", "name": name, **data}})

    def close(self) -> None:
        for loop in (self.svc._sweep, self.svc._snapshot_timer, self.svc._prune):
            if loop.running:
                loop.stop()
        self.svc.store.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    f.close()


def test_runtime_lines(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1", apis=["wasm", "wasi"], max_nmodules=4)
    assert fleet.lines.one("runtime.registered") == (
        f"runtime rt1 ({RT1}) registered: apis wasi,wasm, room for 4 modules")
    fleet.send("reg", {"object_id": "w", "action": "delete", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT1}})
    assert fleet.lines.one("runtime.dead") == f"runtime rt1 ({RT1}) dead: delete"
    fleet.register(RT1, "rt1")
    assert fleet.lines.one("runtime.reregistered") == (
        f"runtime rt1 ({RT1}) registered again (was dead)")
    event = fleet.lines.decisions("runtime.registered")[0]
    assert event["runtime"] == RT1 and event["runtime_name"] == "rt1"
    assert event["log_level"] is LogLevel.info


def test_a_keepalive_death_is_a_warning(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1")
    for _ in range(2):
        fleet.send("keepalive", {"object_id": "k", "action": "update", "type": "arts_req",
                                 "data": {"uuid": RT1}})
        fleet.clock.advance(5)
    fleet.clock.advance(20)
    [dead] = fleet.lines.decisions("runtime.dead")
    assert formatEvent(dead) == f"runtime rt1 ({RT1}) dead: keepalive timeout"
    assert dead["log_level"] is LogLevel.warn


def test_placement_says_where_and_why(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1", max_nmodules=1)
    fleet.register(RT2, "rt2", apis=["wasm", "wasi", "python"])
    fleet.create("pinned", uuid=M1, parent="rt1")
    fleet.create("free", uuid="m-free", apis=["python"])
    pinned, free = fleet.lines.decisions("module.created")
    assert formatEvent(pinned) == (
        f"module pinned ({M1}) placed on rt1 ({RT1}): named by the request")
    assert formatEvent(free) == (
        f"module free (m-free) placed on rt2 ({RT2}): least_loaded policy")
    assert pinned["module"] == M1 and pinned["parent"] == RT1


def test_queue_lines_say_what_a_module_waits_for(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1", max_nmodules=1)
    fleet.create("first", uuid=M1, parent="rt1")
    fleet.create("second", uuid="m-2", parent=RT1)
    fleet.create("anywhere", uuid="m-3", apis=["cuda"])
    for_rt1, for_any = fleet.lines.decisions("module.queued")
    assert formatEvent(for_rt1) == (
        f"module second (m-2) queued: waiting for room on rt1 ({RT1})")
    assert formatEvent(for_any) == (
        "module anywhere (m-3) queued: waiting for a runtime with apis cuda and room")
    fleet.send(f"control/{RT1}", {"object_id": "x", "action": "exited", "type": "arts_req",
                                  "data": {"type": "module", "uuid": M1}})
    assert fleet.lines.one("module.exited") == f"module first ({M1}) exited on rt1 ({RT1})"
    assert fleet.lines.one("module.started") == (
        f"module second (m-2) started from the queue on rt1 ({RT1})")


def test_failover_lines_say_from_where_to_where_and_why_not(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1", max_nmodules=1)
    fleet.register(RT2, "rt2", max_nmodules=2)
    fleet.create("mover", uuid="m-mover", parent="rt2", fault_crash="restart")
    fleet.create("stuck", uuid="m-stuck", parent="rt2", fault_crash="restart")
    fleet.register(RT3, "rt3", max_nmodules=1)
    fleet.create("stayer", uuid="m-stayer", parent="rt3")
    fleet.send("reg", {"object_id": "w", "action": "delete", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT2}})
    assert fleet.lines.one("module.rescheduled") == (
        f"module mover (m-mover) moved from rt2 ({RT2}) to rt1 ({RT1}): its runtime died")
    assert fleet.lines.one("module.killed") == (
        f"module stuck (m-stuck) killed: rt2 ({RT2}) died; not moved: no room: all 2 "
        "compatible runtimes are full; it starts again when that runtime registers again")
    fleet.send("reg", {"object_id": "w", "action": "delete", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT3}})
    assert "not moved: fault_crash is not restart" in formatEvent(
        fleet.lines.decisions("module.killed")[1])
    fleet.register(RT2, "rt2", max_nmodules=2)
    assert fleet.lines.one("module.respawned") == (
        f"module stuck (m-stuck) created again on rt2 ({RT2}): its runtime registered again")


def test_stop_and_delete_lines(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1", max_nmodules=1)
    fleet.create("running", uuid=M1, parent="rt1")
    fleet.create("waiting", uuid="m-w", parent="rt1")
    fleet.send("control", {"object_id": "d1", "action": "delete", "type": "arts_req",
                           "data": {"uuid": "waiting"}})
    assert fleet.lines.one("module.deleted") == "module waiting (m-w) deleted: it had not started"
    fleet.send("control", {"object_id": "d2", "action": "delete", "type": "arts_req",
                           "data": {"uuid": "running"}})
    assert fleet.lines.one("module.exiting") == (
        f"module running ({M1}) stopping: delete sent to rt1 ({RT1})")


def test_every_protocol_error_is_one_line_naming_topic_object_id_and_sender(
        fleet: Fleet) -> None:
    fleet.send(f"reg/{RT1}", b"nonsense")
    fleet.send("control", {"object_id": "c-9", "action": "create", "type": "arts_req",
                           "data": {"type": "module", "parent": "nowhere"}})
    first, second = fleet.lines.decisions("error")
    assert formatEvent(first).startswith(
        f"refused 'invalid JSON' on {R}/reg/{RT1} (object_id ")
    assert formatEvent(first).endswith(f", from {RT1}): nonsense")
    assert formatEvent(second) == (
        f"refused 'invalid Runtime UUID' on {R}/control (object_id c-9, from unknown): nowhere")
    assert second["desc"] == "invalid Runtime UUID" and second["object_id"] == "c-9"


def test_decisions_are_logged_only_once_durable(fleet: Fleet) -> None:
    held: list[Deferred[None]] = []
    commit = fleet.svc.store.commit

    def slow_commit(*args: Any) -> Deferred[None]:
        commit(*args)
        d: Deferred[None] = Deferred()
        held.append(d)
        return d
    fleet.svc.store.commit = slow_commit           # type: ignore[method-assign]
    fleet.register(RT1, "rt1")
    assert held and not fleet.lines.decisions("runtime.registered")
    held[0].callback(None)
    assert fleet.lines.decisions("runtime.registered")


def test_debug_lines_show_each_message_in_and_out(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, debug=True)
    try:
        fleet.register(RT1, "rt1")
        debug = fleet.lines.text(LogLevel.debug)
        assert debug[0].startswith(f"in  {R}/reg {{\"object_id\": \"reg-rt1\"")
        assert debug[1].startswith(f'out {R}/reg {{"object_id":"reg-rt1","type":"arts_resp"')
    finally:
        fleet.close()


def test_without_debug_there_are_no_debug_lines(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1")
    assert fleet.lines and not fleet.lines.text(LogLevel.debug)


def test_revival_lines(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1")
    fleet.create("kept", uuid=M1, parent="rt1")
    fleet.send("reg", {"object_id": "w", "action": "delete", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT1}})
    fleet.clock.advance(10)
    fleet.send("keepalive", {"object_id": "k", "action": "update", "type": "arts_req",
                             "data": {"uuid": RT1, "children": [{"uuid": M1}]}})
    [revived] = fleet.lines.decisions("runtime.revived")
    assert formatEvent(revived) == (
        f"runtime rt1 ({RT1}) alive again: it sends keepalives (was dead: delete)")
    assert revived["log_level"] is LogLevel.warn
    assert fleet.lines.one("module.revived") == (
        f"module kept ({M1}) alive again on rt1 ({RT1}): its keepalive lists it")


def test_operator_action_lines(fleet: Fleet) -> None:
    fleet.register(RT1, "rt1")
    fleet.register(RT2, "rt2")
    fleet.create("stays", uuid=M1, parent="rt1")
    fleet.create("mover", uuid="m-mover", parent="rt1", fault_crash="restart")

    def operate(action: str, q: str) -> None:
        fleet.send("control", {"object_id": f"op-{action}", "action": action,
                               "type": "arts_req", "data": {"type": "runtime", "uuid": q}})
    operate("drain", "rt1")
    assert fleet.lines.one("runtime.drained") == (
        f"runtime rt1 ({RT1}) drained: no new placements there")
    assert fleet.lines.one("module.rescheduled") == (
        f"module mover (m-mover) moved from rt1 ({RT1}) to rt2 ({RT2}): its runtime is drained")
    operate("undrain", "rt1")
    assert fleet.lines.one("runtime.undrained") == (
        f"runtime rt1 ({RT1}) takes placements again")
    operate("forget", "rt1")
    assert fleet.lines.one("runtime.forgotten") == (
        f"runtime rt1 ({RT1}) forgotten by an operator")
    assert fleet.lines.one("runtime.dead") == f"runtime rt1 ({RT1}) dead: forgotten"
    # stopped: its exit can no longer come, so it ends with its runtime
    assert fleet.lines.one("module.deleted") == (
        f"module stays ({M1}) deleted: its runtime was forgotten")


def test_a_failed_launch_is_a_warning() -> None:
    from orchestrator.core.effects import Event
    from orchestrator.core.model import Module, Runtime
    runtime = Runtime(uuid=RT1, serial=1, name="arena-rt1")
    lines = Lines()
    log = DecisionLog("least_loaded", {RT1: runtime}.get, log=Logger(observer=lines.append))
    log.event(Event("module.failed", Module(uuid=M1, serial=2, name="prog", parent=RT1,
                                            status="failed", arena={"reason": "error in launcher"})))
    [failed] = lines.decisions("module.failed")
    assert formatEvent(failed) == (
        f"module prog ({M1}) failed on arena-rt1 ({RT1}): error in launcher")
    assert failed["log_level"] is LogLevel.warn


def test_an_unknown_event_type_still_gets_a_line() -> None:
    from orchestrator.core.effects import Event
    from orchestrator.core.model import Runtime
    lines = Lines()
    log = DecisionLog("least_loaded", lambda uuid: None, log=Logger(observer=lines.append))
    log.event(Event("runtime.teleported", Runtime(uuid=RT1, serial=1, name="rt1"),
                    {"to": "mars"}))
    assert lines.one("runtime.teleported") == (
        f"runtime rt1 ({RT1}): runtime.teleported (to mars)")


# -- the log file: text or JSON lines -----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_file_formats(tmp_path: Path, fmt: str) -> None:
    logs = LogFileService(str(tmp_path), debug=False, log_format=fmt)
    logs.open()
    try:
        Logger(namespace="t").info("module {name} placed", name="m1", decision="module.created")
        Logger(namespace="t").debug("not at info")
    finally:
        logs.stopService()
    lines = (tmp_path / "orchestrator.log").read_text().splitlines()
    mine = [line for line in lines if "placed" in line]
    assert len(mine) == 1 and not any("not at info" in line for line in lines)
    if fmt == "json":
        for line in lines:
            json.loads(line)              # every line is one JSON object, nothing else
        doc = json.loads(mine[0])
        assert doc["decision"] == "module.created" and doc["name"] == "m1"
        assert doc["log_level"]["name"] == "info" and doc["log_namespace"] == "t"
    else:
        assert mine[0].endswith("[t#info] module m1 placed")


def test_fast_text_lines_are_twisteds_classic_lines() -> None:
    from twisted.logger import formatEventAsClassicLogText
    from orchestrator.adapters.logfile import ClassicLines
    lines = Lines()
    DecisionLog("least_loaded", lambda uuid: None, log=Logger(
        namespace="orchestrator.decisions", observer=lines.append)).refused(
        "realm/proc/control", ProtocolError("invalid JSON", "two\nlines"), [])
    Logger(namespace="other", observer=lines.append).info("plain {x}", x=1)
    render = ClassicLines()
    for event in lines:
        assert render(event) == formatEventAsClassicLogText(event)


# -- access lines -------------------------------------------------------------------------------
class _Request:
    def __init__(self, code: int, seconds: float, kind: bytes = b"application/json") -> None:
        from twisted.web.http_headers import Headers
        self.code, self.started_at = code, -seconds
        self.method, self.uri, self.sentLength = b"GET", b"/api/runtimes/", 12
        self.responseHeaders = Headers({b"content-type": [kind]})

    def getClientAddress(self) -> Any:
        from twisted.internet.address import IPv4Address
        return IPv4Address("TCP", "10.0.0.7", 4242)


@pytest.mark.parametrize("code,seconds,kind,slow_sec,logged", [
    (200, 0.01, b"application/json", 1.0, False),     # the dashboard's poll: silent
    (304, 0.01, b"text/css", 1.0, False),             # a cache hit is a success
    (404, 0.01, b"application/json", 1.0, True),
    (500, 0.01, b"application/json", 1.0, True),
    (308, 0.01, b"application/json", 1.0, True),
    (200, 2.50, b"application/json", 1.0, True),      # slow
    (200, 600.0, b"text/event-stream", 1.0, False),   # a long event stream is not slow
    (200, 0.01, b"application/json", 0.0, True),      # 0: every request
])
def test_access_lines_only_for_failures_and_slow_requests(
        code: int, seconds: float, kind: bytes, slow_sec: float, logged: bool) -> None:
    from twisted.logger import globalLogPublisher
    from twisted.web.resource import Resource
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        AccessLogSite(Resource(), slow_sec=slow_sec, clock=lambda: 0.0).log(
            _Request(code, seconds, kind))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    lines = [formatEvent(e) for e in seen if e.get("log_namespace") == "orchestrator.access"]
    assert bool(lines) == logged
    if logged:
        assert lines[0] == f"GET /api/runtimes/ {code} {seconds:.3f}s 12 bytes (10.0.0.7)"


# -- metrics -------------------------------------------------------------------------------------
def test_build_info_and_process_metrics() -> None:
    from orchestrator import __version__
    text = Metrics().exposition().decode()
    assert f'version="{__version__}"' in text.split("silverline_build_info{", 1)[1].split("\n")[0]
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "python_info{"):
        assert series in text, series
