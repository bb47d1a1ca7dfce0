"""Soak (issue 7): 200 simulated runtimes with churn for 10 minutes; RSS must stay flat.

    .venv/bin/python bench/soak.py [--minutes 10] [--runtimes 200]

A private mosquitto and the real ``twistd silverline``. The simulated fleet
(one MQTT connection playing every runtime) registers, sends keepalives every
`ka_interval_sec`, acks every create it is sent and reports the exit of every
module it is told to delete; meanwhile a client creates and deletes modules
all the time, and runtimes die (delete) and come back (re-register). Module
and runtime uuids come from bounded pools, so the registry itself cannot grow
without bound, and the event log is kept small (2,000 events / 60 s): what
remains is the process's own memory. RSS is printed every minute (one JSON
line); after the warm-up (a third of the run) it may not grow by more than
5% or 8 MB, whichever is larger, or the run fails (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import report
from stats import rss_kb

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Mosquitto, free_port
from tests.support.twistd import start_twistd

R = "realm/proc"


class Fleet:
    def __init__(self, port: int, runtimes: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.runtimes = [f"5{i:07d}-0000-4000-8000-{i:012d}" for i in range(runtimes)]
        self.alive: set[str] = set()
        self.modules = [f"soak-module-{i}" for i in range(runtimes * 10)]
        self.lock = threading.Lock()
        self.counts = {"creates": 0, "deletes": 0, "deaths": 0, "acks": 0, "exits": 0,
                       "errors": 0}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="soak-fleet")
        self.client.max_inflight_messages_set(500)
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(f"{R}/control/+", 1), (f"{R}/log/orchestrator", 1)])
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _send(self, topic: str, body: dict) -> None:
        self.client.publish(topic, json.dumps(body), qos=1)

    def _message(self, client: object, userdata: object, msg: paho.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if msg.topic.endswith("/log/orchestrator"):
            self.counts["errors"] += 1
            return
        runtime = msg.topic.rsplit("/", 1)[1]
        if body.get("type") != "arts_req":
            return
        if body.get("action") == "create":             # a runtime acks what it is sent
            self.counts["acks"] += 1
            self._send(f"{R}/control/{runtime}", {"object_id": body["object_id"],
                                                   "type": "runtime_resp",
                                                   "data": {"result": "ok", "details": {}}})
        elif body.get("action") == "delete":           # and reports the exit
            self.counts["exits"] += 1
            self._send(f"{R}/control/{runtime}", {
                "object_id": f"x-{body['object_id']}", "action": "exited",
                "type": "arts_req", "data": {"type": "module", "uuid": body["data"]["uuid"]}})

    def register(self, uuid: str) -> None:
        self._send(f"{R}/reg/{uuid}", {"object_id": f"r-{uuid}", "action": "create",
                                        "type": "arts_req",
                                        "data": {"type": "runtime", "uuid": uuid,
                                                 "name": uuid[:8], "max_nmodules": 20}})
        self.alive.add(uuid)

    def keepalives(self) -> None:
        for uuid in list(self.alive):
            self._send(f"{R}/keepalive/{uuid}", {"object_id": "ka", "action": "update",
                                                  "type": "arts_req",
                                                  "data": {"type": "runtime", "uuid": uuid}})

    def churn(self) -> None:
        rng = self.rng
        for _ in range(8):
            self.counts["creates"] += 1
            self._send(f"{R}/control", {"object_id": f"c{self.counts['creates']}",
                                        "action": "create", "type": "arts_req",
                                        "data": {"type": "module",
                                                 "uuid": rng.choice(self.modules),
                                                 "filename": "wasm/soak.wasm",
                                                 "fault_crash": rng.choice(["ignore",
                                                                            "restart"])}})
        for _ in range(7):
            self.counts["deletes"] += 1
            self._send(f"{R}/control", {"object_id": f"d{self.counts['deletes']}",
                                        "action": "delete", "type": "arts_req",
                                        "data": {"uuid": rng.choice(self.modules)}})
        if rng.random() < 0.2 and len(self.alive) > len(self.runtimes) // 2:
            victim = rng.choice(sorted(self.alive))
            self.alive.discard(victim)
            self.counts["deaths"] += 1
            self._send(f"{R}/reg/{victim}", {"object_id": f"w-{victim}", "action": "delete",
                                              "type": "arts_req",
                                              "data": {"type": "runtime", "uuid": victim}})
        if rng.random() < 0.2:
            down = sorted(set(self.runtimes) - self.alive)
            if down:
                self.register(rng.choice(down))


def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="silverline-soak-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    (tmp / "config.json").write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": broker.port, "http": "127.0.0.1",
        "http_port": free_port(), "state_dir": "state", "log_dir": None,
        "mqtt_username": None, "debug": False, "events_retained": 2000,
        "events_retained_sec": 60, "snapshot_every_changes": 20000}))
    proc = start_twistd(tmp, log=tmp / "twistd.out")
    samples: list[int] = []
    try:
        time.sleep(2)
        fleet = Fleet(broker.port, args.runtimes, args.seed)
        for uuid in fleet.runtimes:
            fleet.register(uuid)
        start = last_ka = next_sample = time.monotonic()
        while (now := time.monotonic()) - start < args.minutes * 60:
            fleet.churn()
            if now - last_ka >= 5:
                fleet.keepalives()
                last_ka = now
            if now >= next_sample:
                samples.append(rss_kb(proc.pid))
                report("soak_rss", {"minute": len(samples) - 1, "rss_mb": round(
                    samples[-1] / 1024, 1), **fleet.counts, "alive_runtimes": len(fleet.alive)})
                next_sample += 60
            time.sleep(0.1)
        samples.append(rss_kb(proc.pid))
        fleet.client.loop_stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        broker.stop()
    warm = samples[max(1, len(samples) // 3)]
    growth_kb = samples[-1] - warm
    limit_kb = max(warm * 0.05, 8 * 1024)
    flat = growth_kb <= limit_kb
    report("soak", {"minutes": args.minutes, "runtimes": args.runtimes,
                    "rss_mb_after_warmup": round(warm / 1024, 1),
                    "rss_mb_end": round(samples[-1] / 1024, 1),
                    "growth_mb": round(growth_kb / 1024, 1),
                    "limit_mb": round(limit_kb / 1024, 1), "flat": flat,
                    "traceback_in_log": "Traceback" in (tmp / "twistd.out").read_text()})
    return 0 if flat else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--runtimes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    sys.exit(main(parser.parse_args()))
