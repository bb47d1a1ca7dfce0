"""Private RabbitMQ nodes with the MQTT plugin: own node names, ports, epmd and data
directories (never the machine's own RabbitMQ), clustered on request."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.support.broker import free_port, port_open

RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists()


class RabbitCluster:
    """Nodes sharing one private epmd and one Erlang cookie."""

    def __init__(self, workdir: Path, nodes: int = 2, extra: str = "") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.epmd_port = free_port()
        self.cookie = secrets.token_hex(16)
        self.nodes = [RabbitNode(self, i, extra) for i in range(nodes)]

    def start(self) -> None:
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_listening()
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.nodes[0].name)
            node.ctl("start_app")
            node.ctl("await_startup")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"],
                       capture_output=True, env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)})


class RabbitNode:
    def __init__(self, cluster: RabbitCluster, index: int, extra: str) -> None:
        self.dir = cluster.dir / f"node{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        self.name = f"sltest{index}-{self.mqtt_port}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\nloopback_users = none\n" + extra)
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(cluster.cookie)
        cookie.chmod(0o400)
        self.env = {
            **os.environ, "HOME": str(self.dir), "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(free_port()), "ERL_EPMD_PORT": str(cluster.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "none.env"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def spawn(self) -> None:
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env,
                                         stdout=log, stderr=log, start_new_session=True)

    def wait_listening(self, timeout: float = 240) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not port_open(self.mqtt_port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ MQTT not listening after {timeout}s")
            time.sleep(0.2)

    def log_tail(self) -> str:
        return (self.dir / "server.log").read_text()[-2000:]

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM (``kill -9`` of a cluster node)."""
        pid = int((self.dir / "pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)
        while port_open(self.mqtt_port):
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None
