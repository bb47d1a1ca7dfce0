"""Event-stream latency with many watchers (issue 5).

    .venv/bin/python bench/sse.py [--watchers 100] [--rate 1000] [--seconds 10]

Starts a private mosquitto and the real ``twistd silverline``, then sends
module creates over MQTT at ``rate`` per second, twice: first with no
watcher, then with ``watchers`` open ``/api/events`` streams. Prints:
- sse: change-to-watcher latency (request published -> event received by a
  watcher, and event emitted -> received), p50/p99 over all watchers;
- handling: request published -> create forwarded to the runtime, p50/p99,
  without and with the watchers, and their ratio (the watchers' cost).
Everything runs on this machine's two cores: the watchers' own parsing
competes with the orchestrator, so these are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from common import percentile, report
from stats import cpu_seconds

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from tests.support.broker import Mosquitto, free_port
from tests.support.twistd import start_twistd

R = "realm/proc"
RT = "11111111-1111-4111-8111-111111111111"
EVENT = re.compile(rb'"time":"([^"]+)","module":\{"uuid":"bench-(\d+)"')


class Watcher(Protocol):
    """Reads the stream and timestamps each module event as it arrives."""

    def __init__(self, received: dict[int, list[float]], emitted: dict[int, float]) -> None:
        self.received, self.emitted = received, emitted
        self.tail = b""

    def connectionMade(self) -> None:
        self.transport.write(b"GET /api/events HTTP/1.0\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        now = time.time()
        data, self.tail = (self.tail + data).rsplit(b"\n\n", 1) if b"\n\n" in self.tail + data \
            else (b"", self.tail + data)
        for stamp, n in EVENT.findall(data):
            key = int(n)
            self.received.setdefault(key, []).append(now)
            if key not in self.emitted:
                self.emitted[key] = datetime.fromisoformat(
                    stamp.decode().replace("Z", "+00:00")).timestamp()


class Load:
    """Publishes creates at a fixed rate; timestamps their forwards (paho's thread)."""

    def __init__(self, port: int) -> None:
        self.sent: dict[int, float] = {}
        self.forwarded: dict[int, float] = {}
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-load")
        self.client.on_connect = lambda *a: self.client.subscribe(f"{R}/control/{RT}", 1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._forwarded
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)
        self.next = 0

    def _forwarded(self, client: object, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.time()
        uuid = json.loads(msg.payload)["data"].get("uuid", "")
        if uuid.startswith("bench-"):
            self.forwarded[int(uuid[6:])] = now

    def register(self) -> None:
        self.client.publish(f"{R}/reg", json.dumps({
            "object_id": "reg", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": RT, "max_nmodules": 0}}), qos=1)

    def burst(self, n: int) -> None:
        for _ in range(n):
            self.sent[self.next] = time.time()
            self.client.publish(f"{R}/control", json.dumps({
                "object_id": f"c{self.next}", "action": "create", "type": "arts_req",
                "data": {"type": "module", "uuid": f"bench-{self.next}", "parent": RT}}),
                qos=1)
            self.next += 1


def start_orchestrator(workdir: Path, broker_port: int, http_port: int) -> subprocess.Popen:
    (workdir / "config.json").write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": broker_port, "http": "127.0.0.1",
        "http_port": http_port, "state_dir": "state", "log_dir": None,
        "mqtt_username": None, "max_nmodules": 0, "debug": False}))
    return start_twistd(workdir)


@defer.inlineCallbacks
def phase(load: Load, rate: int, seconds: float, pid: int):
    cpu0, t0 = cpu_seconds(pid), time.time()
    first = load.next
    per_tick = max(1, rate // 100)
    loop = task.LoopingCall(load.burst, per_tick)
    loop.start(per_tick / rate)
    yield task.deferLater(reactor, seconds, lambda: None)
    loop.stop()
    load.cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
    last = load.next
    deadline = time.time() + 30
    while sum(1 for n in range(first, last) if n in load.forwarded) < last - first:
        if time.time() > deadline:
            raise RuntimeError("creates were not all forwarded")
        yield task.deferLater(reactor, 0.1, lambda: None)
    return range(first, last)


@defer.inlineCallbacks
def main(args):
    tmp = Path(tempfile.mkdtemp(prefix="silverline-sse-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    http_port = free_port()
    proc = start_orchestrator(tmp, broker.port, http_port)
    try:
        load = Load(broker.port)
        yield task.deferLater(reactor, 2.0, lambda: None)      # twistd up and subscribed
        load.register()
        yield task.deferLater(reactor, 0.5, lambda: None)
        quiet = yield phase(load, args.rate, args.seconds, proc.pid)
        quiet_cpu = load.cpu

        received: dict[int, list[float]] = {}
        emitted: dict[int, float] = {}
        watchers = []
        for _ in range(args.watchers):
            w = Watcher(received, emitted)
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", http_port), w)
            watchers.append(w)
        yield task.deferLater(reactor, 1.0, lambda: None)
        busy = yield phase(load, args.rate, args.seconds, proc.pid)
        deadline = time.time() + 30
        while any(len(received.get(n, ())) < args.watchers for n in busy):
            if time.time() > deadline:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)

        ms = lambda xs, p: round(percentile(xs, p) * 1000, 1)  # noqa: E731
        end_to_end = [t - load.sent[n] for n in busy for t in received.get(n, ())]
        stream_only = [t - emitted[n] for n in busy if n in emitted for t in received[n]]
        complete = sum(1 for n in busy if len(received.get(n, ())) == args.watchers)
        report("sse", {"watchers": args.watchers, "changes_per_s": args.rate,
                       "changes": len(busy), "deliveries": len(end_to_end),
                       "changes_seen_by_every_watcher": complete,
                       "publish_to_watcher_p50_ms": ms(end_to_end, 50),
                       "publish_to_watcher_p99_ms": ms(end_to_end, 99),
                       "emit_to_watcher_p50_ms": ms(stream_only, 50),
                       "emit_to_watcher_p99_ms": ms(stream_only, 99)})
        fwd = lambda r: [load.forwarded[n] - load.sent[n] for n in r]  # noqa: E731
        q, b = fwd(quiet), fwd(busy)
        report("handling", {"creates_per_s": args.rate,
                            "forward_p50_ms_no_watchers": ms(q, 50),
                            "forward_p99_ms_no_watchers": ms(q, 99),
                            "forward_p50_ms_with_watchers": ms(b, 50),
                            "forward_p99_ms_with_watchers": ms(b, 99),
                            "p99_ratio": round(percentile(b, 99) / percentile(q, 99), 2),
                            "orchestrator_cpu_per_s_no_watchers": round(quiet_cpu, 2),
                            "orchestrator_cpu_per_s_with_watchers": round(load.cpu, 2)})
        for w in watchers:
            w.transport.loseConnection()
        load.client.loop_stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    task.react(lambda _: main(parser.parse_args()))
