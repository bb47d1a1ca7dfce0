"""A private nats-server with its MQTT listener (3.1.1 only, on JetStream), on free ports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.broker import free_port, wait_listening

NATS_SERVER = os.environ.get("NATS_SERVER", "/usr/sbin/nats-server")


class NatsServer:
    """Start/stop a nats-server whose MQTT port speaks for it; ``extra`` is config text."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()             # the MQTT listener
        self.conf = self.dir / "nats.conf"
        self.log = self.dir / "nats.log"
        self.conf.write_text(
            f"listen: 127.0.0.1:{free_port()}\n"
            f"server_name: test-{self.port}\n"
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.port} }}\n" + extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", str(self.conf)],
                                         stdout=log, stderr=log)
        wait_listening(self.proc, self.port, timeout, "nats-server", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
