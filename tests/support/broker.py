"""A private mosquitto per test, on a free port (never the machine's own 1883)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_listening(proc: "subprocess.Popen[bytes]", port: int, timeout: float, what: str,
                   log: Path) -> None:
    """Until ``port`` takes connections; fail at once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not listening on {port} after {timeout}s")
        time.sleep(0.02)


class Mosquitto:
    """Start/stop/kill a mosquitto with its own config file and log."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "persistence false", "log_dest stderr", "log_type error",
                 "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            lines.append("user root")      # else mosquitto drops to a user that may not exist
        self.conf.write_text("\n".join(lines) + "\n" + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                         stdout=log, stderr=log)
        wait_listening(self.proc, self.port, timeout, "mosquitto", self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
