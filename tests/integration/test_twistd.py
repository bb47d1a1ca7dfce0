"""The real ``twistd -n silverline`` as a subprocess: start, serve, SIGTERM, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.support.app import http_get
from tests.support.broker import Mosquitto, free_port
from tests.support.twisted import eventually, within

ROOT = Path(__file__).resolve().parents[2]
RT = "43a664a6-5c99-4b08-9d00-eeabc0d1f7f7"
R = "realm/proc"


def twistd(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(workdir / "twistd.out", "ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "silverline", *args],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


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
    assert (tmp_path / "logs" / "orchestrator.log").read_text().count("MQTT connected") == 1

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


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"http_port": "eighty"}))
    proc = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "silverline", "--config", str(tmp_path / "bad.json")],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "http_port" in proc.stdout + proc.stderr
