"""The ``silverline`` console script against the real service over a private broker.

Each command runs as a subprocess of the installed script (asynchronously, so the
in-process service keeps serving); runtimes are test peers on the same broker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue

from tests.support.app import App
from tests.support.broker import free_port
from tests.support.peer import Peer
from tests.support.twisted import eventually, within

R = "realm/proc"
RT_A = "aaaaaaaa-1111-4111-8111-111111111111"
RT_B = "bbbbbbbb-2222-4222-8222-222222222222"
SCRIPT = str(Path(sys.executable).with_name("silverline"))


def config_file(app: App, tmp: Path, **overrides: Any) -> str:
    path = tmp / "cli-config.json"
    doc = {"mqtt": "127.0.0.1", "mqtt_port": app.config.mqtt_port, "mqtt_username": None,
           "http": "127.0.0.1", "http_port": app.config.http_port, **overrides}
    path.write_text(json.dumps(doc))
    return str(path)


async def cli(conf: str, *args: str) -> tuple[int, str, str]:
    out, err, code = await getProcessOutputAndValue(
        SCRIPT, ("--config", conf, "--timeout", "5", *args), env=dict(os.environ))
    return code, out.decode(), err.decode()


async def register(runtime: Peer, uuid: str, name: str, **data: Any) -> None:
    await runtime.publish_acked(f"{R}/reg", {
        "object_id": f"reg-{name}", "action": "create", "type": "arts_req",
        "data": {"type": "runtime", "uuid": uuid, "name": name, **data}})
    await runtime.expect(f"{R}/reg", lambda m: m.json.get("object_id") == f"reg-{name}"
                         and m.json.get("type") == "arts_resp")


class Lines(protocol.ProcessProtocol):
    """A long-running command (watch, logs -f): its stdout lines as they come."""

    def __init__(self) -> None:
        self.text = ""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.text += data.decode()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


def spawn(reactor: Any, conf: str, *args: str) -> tuple[Lines, Any]:
    lines = Lines()
    proc = reactor.spawnProcess(lines, SCRIPT, (SCRIPT, "--config", conf, *args),
                                env=dict(os.environ))
    return lines, proc


async def stop_process(proc: Any, lines: Lines) -> None:
    proc.signalProcess("TERM")
    await lines.ended


@pytest_twisted.ensureDeferred
@within(60)
async def test_run_list_get_stop(app: App, peers: Any, tmp_path: Path) -> None:
    conf = config_file(app, tmp_path)
    runtime = await peers("rt", f"{R}/reg", f"{R}/control/#")
    await register(runtime, RT_A, "edge-a", apis=["wasm", "wasi"])

    code, out, err = await cli(conf, "run", "wasm/hello.wasm", "--on", "edge-a")
    assert code == 0, err
    assert out.startswith("module hello (") and out.strip().endswith("runtime edge-a")
    forward = await runtime.expect(f"{R}/control/{RT_A}",
                                   lambda m: m.json.get("action") == "create")
    assert forward.json["data"]["filename"] == "wasm/hello.wasm"

    code, out, err = await cli(conf, "run", "x.wasm", "--on", "nowhere")
    assert code == 1 and out == ""
    assert err.strip() == "silverline: refused: invalid Runtime UUID: nowhere"

    code, out, _ = await cli(conf, "runtimes")
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "MODULES", "APIS", "SEEN", "DEAD", "REASON"]
    assert row.split()[:5] == [RT_A[-8:], "edge-a", "alive", "1/100", "wasm,wasi"]
    code, out, _ = await cli(conf, "runtimes", "-o", "json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["edge-a"]

    code, out, err = await cli(conf, "run", "two.wasm", "--on", RT_A[-8:])  # by short id
    assert code == 0 and out.strip().endswith("started on runtime edge-a"), err
    code, out, _ = await cli(conf, "modules", "--on", "edge-a", "--name", "hello")
    assert code == 0 and out.splitlines()[1].split()[1:5] == ["hello", "alive", "edge-a",
                                                             "wasm/hello.wasm"]
    code, out, _ = await cli(conf, "get", "hello")           # not a runtime: the module
    assert "Module:" in out and "Runtime:   edge-a" in out
    code, out, _ = await cli(conf, "get", RT_A[-8:])         # by short id
    assert out.startswith("Runtime:") and "hello" in out
    code, _, err = await cli(conf, "get", "module", "nothing")
    assert code == 1 and err.strip() == "silverline: no module 'nothing'"

    code, out, err = await cli(conf, "stop", "hello")
    assert code == 0, err
    assert out.strip().endswith(": exiting")
    await runtime.expect(f"{R}/control/{RT_A}", lambda m: m.json.get("action") == "delete")


@pytest_twisted.ensureDeferred
@within(60)
async def test_drain_undrain_forget(app: App, peers: Any, tmp_path: Path) -> None:
    conf = config_file(app, tmp_path)
    runtime = await peers("rt", f"{R}/reg", f"{R}/control/#")
    await register(runtime, RT_A, "edge-a")
    await register(runtime, RT_B, "edge-b")
    code, _, err = await cli(conf, "run", "keeper.wasm", "--on", "edge-a", "--restart")
    assert code == 0, err
    code, _, err = await cli(conf, "run", "plain.wasm", "--on", "edge-a")
    assert code == 0, err

    code, out, err = await cli(conf, "drain", "edge-a")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"runtime edge-a ({RT_A[-8:]}) drained"
    assert lines[1].split()[:2] == ["moved", "keeper"] and lines[1].endswith(RT_B[-8:])
    assert lines[2].split()[:2] == ["stayed", "plain"] and "fault_crash is not restart" in lines[2]
    await runtime.expect(f"{R}/control/{RT_B}", lambda m: m.json.get("action") == "create")
    code, out, _ = await cli(conf, "runtimes")
    assert "alive,drained" in out

    code, out, _ = await cli(conf, "run", "new.wasm")         # the scheduler avoids edge-a
    assert out.strip().endswith("started on runtime edge-b")
    code, out, _ = await cli(conf, "run", "gpu.wasm", "--api", "cuda")
    assert out.strip().endswith("queued: waiting: no compatible runtime: none alive offers cuda")
    code, out, _ = await cli(conf, "undrain", "edge-a")
    assert code == 0 and out.strip() == f"runtime edge-a ({RT_A[-8:]}) open for placements"

    code, out, err = await cli(conf, "forget", "edge-b")      # alive: fails over, then goes
    assert code == 0, err
    assert out.startswith(f"runtime edge-b ({RT_B[-8:]}) forgotten")
    code, _, err = await cli(conf, "get", "runtime", "edge-b")
    assert code == 1
    code, _, err = await cli(conf, "forget", "edge-b")
    assert code == 1 and "no runtime 'edge-b'" in err


@pytest_twisted.ensureDeferred
@within(60)
async def test_watch_and_logs_follow(app: App, peers: Any, tmp_path: Path,
                                     reactor: Any) -> None:
    conf = config_file(app, tmp_path)
    runtime = await peers("rt", f"{R}/reg", f"{R}/control/#")
    await register(runtime, RT_A, "edge-a")
    watch, watch_proc = spawn(reactor, conf, "watch", "--history", "10")
    await eventually(lambda: "runtime.registered" in watch.text, 10, "watch to show history")
    assert "edge-a (" in watch.text
    code, out, err = await cli(conf, "run", "printer.wasm", "--on", "edge-a")
    assert code == 0, err
    await eventually(lambda: "module.created" in watch.text, 10, "watch to show the create")
    line = next(l for l in watch.text.splitlines() if "module.created" in l)
    assert "printer (" in line and "on edge-a" in line
    await stop_process(watch_proc, watch)

    forward = await runtime.expect(f"{R}/control/{RT_A}",
                                   lambda m: m.json.get("action") == "create")
    module = forward.json["data"]["uuid"]
    await runtime.publish_acked(f"{R}/stdio/{module}", b"first\nsecond")
    await eventually(lambda: cli_ok(conf, "logs", "printer"), 10, "the output to be kept")
    code, out, _ = await cli(conf, "logs", "printer")
    assert code == 0 and out.splitlines() == ["first", "second"]
    follow, follow_proc = spawn(reactor, conf, "logs", "-f", "--tail", "1", "printer")
    await eventually(lambda: follow.text.splitlines() == ["second"], 10, "the tail")
    await runtime.publish_acked(f"{R}/debug/stdout/{module}", b"third")
    await eventually(lambda: follow.text.splitlines() == ["second", "third"], 10, "a new line")
    await stop_process(follow_proc, follow)
    code, _, err = await cli(conf, "logs", "nobody")
    assert code == 1 and err.strip() == "silverline: no module 'nobody'"


async def cli_ok(conf: str, *args: str) -> bool:
    code, out, _ = await cli(conf, *args)
    return code == 0 and bool(out)


@pytest_twisted.ensureDeferred
@within(60)
async def test_unreachable_broker_rest_and_orchestrator(app: App, tmp_path: Path) -> None:
    dead = free_port()
    conf = config_file(app, tmp_path, mqtt_port=dead)
    code, out, err = await cli(conf, "run", "x.wasm")
    assert code == 3 and out == ""
    assert err.strip() == (f"silverline: cannot reach the MQTT broker 127.0.0.1:{dead}: "
                           "Connection refused")
    conf = config_file(app, tmp_path, http_port=dead)
    code, _, err = await cli(conf, "runtimes")
    assert code == 3 and err.strip() == (f"silverline: cannot reach the REST API at "
                                         f"http://127.0.0.1:{dead}: [Errno 111] Connection refused")
    conf = config_file(app, tmp_path, realm="elsewhere")      # a broker but no orchestrator
    out_, err_, code = await getProcessOutputAndValue(
        SCRIPT, ("--config", conf, "--timeout", "1", "run", "x.wasm"), env=dict(os.environ))
    assert code == 4 and b"no reply from the orchestrator" in err_
    code, _, err = await cli(conf, "--bogus")
    assert code == 2


@pytest_twisted.ensureDeferred
@within(60)
async def test_drain_is_journaled_and_survives_a_restart(app: App, peers: Any,
                                                         tmp_path: Path) -> None:
    conf = config_file(app, tmp_path)
    runtime = await peers("rt", f"{R}/reg")
    await register(runtime, RT_A, "edge-a")
    code, _, err = await cli(conf, "drain", "edge-a")
    assert code == 0, err
    await app.stop()
    await app.start()                              # same state directory: journal replayed
    assert app.registry.runtimes[RT_A].drained
    code, out, _ = await cli(conf, "runtimes")
    assert "alive,drained" in out
