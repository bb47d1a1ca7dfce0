"""contrib/systemd/silverline.service: systemd accepts it, and twistd behaves as it assumes.

systemd itself does not run in the test environment, so the unit is checked
with ``systemd-analyze verify`` (and ``security --offline`` where available),
and its assumptions are checked against the real ``twistd``, started the way
its ExecStart= says: READY=1 on $NOTIFY_SOCKET once serving (Type=notify),
and a SIGTERM stop that ends in a way systemd counts as clean.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.support.app import http_get
from tests.support.broker import Mosquitto, free_port
from tests.support.twisted import within

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "silverline.service"
VENV_BIN = Path(sys.executable).parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")

# signals after which systemd counts a service's exit as clean (systemd.exec(5),
# SuccessExitStatus=): SIGHUP, SIGINT, SIGTERM, SIGPIPE
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """section -> [(key, value)], keeping repeated keys and joining continued lines."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def service() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in unit_entries(UNIT.read_text())["Service"]:
        out.setdefault(key, []).append(value)
    return out


def exec_start() -> list[str]:
    [line] = service()["ExecStart"]
    return shlex.split(line)


def installable_copy(directory: Path) -> Path:
    """The unit, its ExecStart binary swapped for this venv's twistd if the installed
    path does not exist here (verify checks that the binary is executable)."""
    text = UNIT.read_text()
    binary = exec_start()[0]
    if not os.access(binary, os.X_OK):
        text = text.replace(binary, str(VENV_BIN / "twistd"))
    path = directory / "silverline.service"
    path.write_text(text)
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=120)


# -- the unit file ---------------------------------------------------------------------------
@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    done = verify(installable_copy(tmp_path))
    about_us = [line for line in (done.stdout + done.stderr).splitlines()
                if "silverline" in line]
    assert done.returncode == 0 and about_us == [], done.stdout + done.stderr


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: the same copy, with one typo, is reported."""
    path = installable_copy(tmp_path)
    path.write_text(path.read_text().replace("Type=notify", "Type=notfy"))
    done = verify(path)
    assert "silverline.service" in done.stdout + done.stderr and "notfy" in done.stdout + done.stderr


@needs_analyze
def test_sandbox_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes",
                           str(installable_copy(tmp_path))],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for silverline\.service: ([0-9.]+) (\w+)",
                      done.stdout)
    if found is None and "offline" in done.stderr:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0 and found.group(2) == "OK", found.group(0)


def test_unit_runs_twistd_as_documented() -> None:
    argv = exec_start()
    assert Path(argv[0]).is_absolute() and argv[0].endswith("/bin/twistd")
    assert "--nodaemon" in argv and "--pidfile=" in argv
    assert argv.index("silverline") > argv.index("--nodaemon")
    assert any(a.startswith("--config=/etc/silverline/") for a in argv)
    s = service()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s.get("DynamicUser") == ["yes"] or "User" in s
    assert s["StateDirectory"] == ["silverline"] and s["ConfigurationDirectory"] == ["silverline"]
    assert s["WorkingDirectory"] == ["%S/silverline"]       # = the StateDirectory
    assert s["Restart"] == ["on-failure"]
    assert "PYTHONUNBUFFERED=1" in s["Environment"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes"}.items():
        assert s[key] == [value], key


def test_a_clean_stop_is_not_a_failure() -> None:
    """systemd stops with KillSignal= (SIGTERM unless set); twistd dies of that same
    signal after a clean stop, so the unit must leave it counted as success."""
    s = service()
    kill = s.get("KillSignal", ["SIGTERM"])[-1]
    assert getattr(signal, kill) in CLEAN_SIGNALS
    assert "SuccessExitStatus" not in s or kill in " ".join(s["SuccessExitStatus"])
    assert "RestartForceExitStatus" not in s
    assert "RestartPreventExitStatus" not in s


# -- the real twistd, started as the unit starts it --------------------------------------------
@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """What systemd listens on for sd_notify: an AF_UNIX datagram socket (short path)."""
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(directory, "notify"))
    sock.settimeout(45)
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


# Start twistd the way the unit does, under the kernel's own W^X lock
# (PR_SET_MDWE, Linux 6.3+, kept across exec), the equivalent of the unit's
# MemoryDenyWriteExecute=yes. On older kernels it runs without it.
_WRAPPER = """
import ctypes, os, sys
c = ctypes.c_ulong
ok = ctypes.CDLL(None, use_errno=True).prctl(c(65), c(1), c(0), c(0), c(0)) == 0
print("memory-deny-write-execute:", "on" if ok else "unavailable", flush=True)
os.umask(0o077)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest_twisted.ensureDeferred
@within(90)
async def test_twistd_notifies_ready_once_serving_and_stops_cleanly(
        broker: Mosquitto, tmp_path: Path, notify_socket: socket.socket) -> None:
    http_port = free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": broker.port, "mqtt_username": None,
        "http": "127.0.0.1", "http_port": http_port, "state_dir": "state", "log_dir": None}))
    argv = [str(VENV_BIN / "twistd") if i == 0 else
            (f"--config={config}" if a.startswith("--config=") else a)
            for i, a in enumerate(exec_start())]
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.getsockname())
    for assignment in service()["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value
    work = tmp_path / "var-lib-silverline"                     # the WorkingDirectory
    work.mkdir()
    out = open(tmp_path / "twistd.out", "wb")
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *argv], cwd=work, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        ready = await deferToThread(notify_socket.recv, 4096)
        assert b"READY=1" in ready.split(b"\n"), ready
        # serving when it says so: the first request is answered, no retry
        code, body = await http_get(f"http://127.0.0.1:{http_port}/api/runtimes/")
        assert code == 200 and body["runtimes"] == [] and body["results"] == []
        assert (work / "state").is_dir()
        proc.send_signal(signal.SIGTERM)                          # systemctl stop
        stopping = await deferToThread(notify_socket.recv, 4096)
        assert b"STOPPING=1" in stopping.split(b"\n"), stopping
        status = await deferToThread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    log = (tmp_path / "twistd.out").read_text()
    assert status == 0 or -status in CLEAN_SIGNALS, (status, log[-2000:])
    assert "Server Shut Down" in log
    assert "Traceback" not in log, log[-3000:]


def test_ready_is_the_last_service_started(tmp_path: Path) -> None:
    """Type=notify relies on it: MultiService starts children in order."""
    from dataclasses import replace

    from twisted.internet import reactor

    from orchestrator.config import Config
    from orchestrator.adapters.logfile import NotifyReady
    from orchestrator.tap import build

    config = replace(Config(), state_dir=str(tmp_path / "state"), mqtt_username=None,
                     http="127.0.0.1", http_port=free_port())
    children: list[Any] = list(build(config, reactor, log_to_dir=False))
    assert isinstance(children[-1], NotifyReady)
    assert not any(isinstance(c, NotifyReady) for c in children[:-1])


def test_the_documented_config_fits_the_unit() -> None:
    """docs/security.md's config is valid and uses the unit's paths."""
    from orchestrator.config import config_from_mapping

    doc = (ROOT / "docs" / "security.md").read_text()
    [block] = re.findall(r"```json\n(.*?)```", doc, re.S)
    config, unknown = config_from_mapping(json.loads(block))
    assert unknown == []
    s = service()
    [credential] = s["LoadCredential"]
    name, _, source = credential.partition(":")
    assert config.pwd == f"/run/credentials/{UNIT.name}/{name}"
    assert source == "/etc/silverline/mqtt_pwd.txt" and source in doc
    assert config.state_dir.startswith(f"/var/lib/{s['StateDirectory'][0]}/")
    assert config.log_dir == f"/var/log/{s['LogsDirectory'][0]}"
    config_arg = next(a for a in exec_start() if a.startswith("--config="))
    assert config_arg == f"--config=/etc/{s['ConfigurationDirectory'][0]}/config.json"
    assert config.max_payload_bytes == 262144 and "256 KiB" in doc
