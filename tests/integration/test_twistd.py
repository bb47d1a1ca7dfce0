"""The real ``twistd -n silverline`` as a subprocess: start, serve, SIGTERM, restart;
what it logs where; start-up failures as one line and exit status 1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent

from tests.support.app import http_get
from tests.support.broker import Mosquitto, free_port
from tests.support.twisted import eventually, within
from tests.support.twistd import run_twistd, start_twistd

RT = "43a664a6-5c99-4b08-9d00-eeabc0d1f7f7"
R = "realm/proc"


def twistd(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    return start_twistd(workdir, *args, log=workdir / "twistd.out")


async def stop(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM; True if it shut down cleanly (twistd re-raises SIGTERM after a clean stop)."""
    proc.send_signal(signal.SIGTERM)
    return await deferToThread(proc.wait, 20) in (0, -signal.SIGTERM)


@pytest_twisted.ensureDeferred
@within(90)
async def test_twistd_serves_and_survives_a_restart(broker: Mosquitto, peers: Any,
                                                   tmp_path: Path) -> None:
    http_port = free_port()
    (tmp_path / "config.json").write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": broker.port, "http": "127.0.0.1",
        "http_port": http_port, "state_dir": "state", "log_dir": "logs",
        "mqtt_username": None, "some_cluster_key": 1}))
    watcher = await peers("watcher", f"{R}/orchestrator/status", f"{R}/reg", f"{R}/control/#")
    proc = twistd(tmp_path)        # no --config: reads ./config.json
    try:
        await watcher.expect(f"{R}/orchestrator/status", lambda m: m.payload == b"online", 20)
        watcher.publish(f"{R}/reg", {"object_id": "o1", "action": "create", "type": "arts_req",
                                     "data": {"type": "runtime", "uuid": RT, "name": "sub"}})
        await watcher.expect(f"{R}/reg", lambda m: m.json.get("type") == "arts_resp")
        watcher.publish(f"{R}/control", {"object_id": "c1", "action": "create",
                                         "type": "arts_req",
                                         "data": {"type": "module", "uuid": "m1"}})
        await watcher.expect(f"{R}/control/{RT}")
        assert await stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    await watcher.expect(f"{R}/orchestrator/status", lambda m: m.payload == b"offline")
    late = await peers("late", f"{R}/orchestrator/status")     # sees the retained value
    assert (await late.expect(f"{R}/orchestrator/status")).payload == b"offline"
    out = (tmp_path / "twistd.out").read_text()
    assert "ignoring unknown keys some_cluster_key" in out
    assert "Server Shut Down" in out and "snapshot of batch" in out
    log = (tmp_path / "logs" / "orchestrator.log").read_text()
    assert log.count("MQTT connected") == 1
    # start-up warnings, decisions and (debug is on by default) each message in and out
    assert log.count("ignoring unknown keys some_cluster_key") == 1    # logged once, not
    assert log.count("] silverline-orchestrator ") == 1  # again when twistd replays it
    assert f"runtime sub ({RT}) registered" in log
    assert f"module module (m1) placed on sub ({RT}): least_loaded policy" in log
    assert f"#debug] in  {R}/reg " in log and f"#debug] out {R}/control/{RT} " in log
    assert "#debug]" not in out            # twistd's stdout log stays at info

    proc = twistd(tmp_path, "--config", str(tmp_path / "config.json"))
    try:
        url = f"http://127.0.0.1:{http_port}/api"

        async def up() -> Any:
            try:
                return await http_get(f"{url}/runtimes/sub/")
            except Exception:
                return None
        code, body = await eventually(up, 20, "REST after restart")
        assert code == 200 and body["uuid"] == RT and body["alive"] is True
        assert [c["uuid"] for c in body["children"]] == ["m1"]
        assert await stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def one_clear_line(proc: subprocess.CompletedProcess[str], why: str) -> None:
    """Exit status 1, the reason once, no traceback and no usage text."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert output.count(why) == 1, output
    assert "Traceback" not in output and "Usage:" not in output and "--help" not in output


def test_version(tmp_path: Path) -> None:
    from orchestrator import __version__
    proc = run_twistd(tmp_path, "--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"silverline-orchestrator {__version__} (Twisted ")


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"http_port": "eighty"}))
    proc = run_twistd(tmp_path, "--config", str(tmp_path / "bad.json"))
    one_clear_line(proc, "silverline: cannot start: config key 'http_port': expected an "
                         'integer port 0-65535, got "eighty"')
    (tmp_path / "broken.json").write_text("{nope")
    one_clear_line(run_twistd(tmp_path, "--config", "broken.json"), "is not valid JSON")
    one_clear_line(run_twistd(tmp_path, "--config", "missing.json"),
                   "cannot read config 'missing.json'")


def _config(tmp_path: Path, **keys: Any) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": free_port(), "http": "127.0.0.1",
        "http_port": free_port(), "state_dir": "state", "log_dir": "logs", **keys}))


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _config(tmp_path, http_port=port)
        proc = run_twistd(tmp_path)
    one_clear_line(proc, f"cannot start: cannot listen for HTTP on 127.0.0.1:{port}: "
                         "Address already in use")
    assert "cannot listen for HTTP" in (tmp_path / "logs" / "orchestrator.log").read_text()


def test_an_unusable_state_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    _config(tmp_path, state_dir="a-file/state", mqtt_username="arts", pwd="no-such-file")
    proc = run_twistd(tmp_path)
    one_clear_line(proc, "cannot start: state a-file/state: Not a directory")
    log = (tmp_path / "logs" / "orchestrator.log").read_text()
    # start-up warnings reach orchestrator.log too, not only stdout
    assert "MQTT password file 'no-such-file' not found" in log
    assert "cannot start: state a-file/state" in log


def test_state_from_a_newer_version_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / f"snapshot-{1:012d}.json").write_text(json.dumps(
        {"schema": 999, "seq": 1, "runtimes": [], "modules": []}))
    _config(tmp_path)
    one_clear_line(run_twistd(tmp_path), "newer than")


def test_an_unreachable_postgres_is_one_line(tmp_path: Path) -> None:
    _config(tmp_path, postgres=f"host=127.0.0.1 port={free_port()} dbname=x connect_timeout=5")
    one_clear_line(run_twistd(tmp_path), "cannot start: state PostgreSQL (realm 'realm'): ")


def test_an_unusable_log_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    _config(tmp_path, log_dir="a-file/logs")
    one_clear_line(run_twistd(tmp_path),
                   "silverline: cannot start: log directory 'a-file/logs': Not a directory")


@pytest_twisted.ensureDeferred
@within(60)
async def test_json_log_and_metrics(broker: Mosquitto, tmp_path: Path) -> None:
    http_port = free_port()
    _config(tmp_path, mqtt_port=broker.port, http_port=http_port, mqtt_username=None,
            log_format="json", debug=False)
    proc = twistd(tmp_path)
    try:
        async def metrics() -> Any:
            try:
                response = await treq.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5)
                return await response.text()
            except Exception:
                return None
        text = await eventually(metrics, 20, "/metrics")
        assert "silverline_build_info{" in text and "process_cpu_seconds_total" in text
        code, _ = await http_get(f"http://127.0.0.1:{http_port}/api/nothing-here")
        assert code == 404
        assert await stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = (tmp_path / "logs" / "orchestrator.log").read_text().splitlines()
    docs = [json.loads(line) for line in lines]           # every line one JSON object
    texts = [formatEvent(d) for d in docs]
    assert any(t.startswith("silverline-orchestrator ") for t in texts)
    assert any(t.startswith("GET /api/nothing-here 404 ") for t in texts)
    assert not any(t.startswith("GET /metrics ") for t in texts)     # 200s are not logged
    assert not any(d["log_level"]["name"] == "debug" for d in docs)
