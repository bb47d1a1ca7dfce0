"""The real ``twistd -n silverline`` as a subprocess, for the peer-generation tests."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread

from tests.support.app import http_get
from tests.support.broker import free_port
from tests.support.twisted import eventually
from tests.support.twistd import start_twistd



class Twistd:
    """Start it on a broker port, read its REST API, stop it with SIGTERM."""

    def __init__(self, workdir: Path, broker_port: int) -> None:
        self.dir = workdir
        self.http_port = free_port()
        self.config = workdir / "config.json"
        self.config.write_text(json.dumps({
            "mqtt": "127.0.0.1", "mqtt_port": broker_port, "http": "127.0.0.1",
            "http_port": self.http_port, "state_dir": "state", "log_dir": None,
            "mqtt_username": None}))
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> "Twistd":
        self.proc = start_twistd(self.dir, "--config", str(self.config),
                                 log=self.dir / "twistd.out")

        async def ready() -> Any:
            try:
                return (await http_get(f"{self.url}/readyz"))[0] == 200
            except Exception:
                return False
        await eventually(ready, 30, "twistd ready")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def get(self, path: str) -> Any:
        code, body = await http_get(f"{self.url}{path}")
        return body

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await deferToThread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
