"""Durability figures (issue 3): start-up at 100k modules, snapshot stalls, fsync cost.

    .venv/bin/python bench/durability.py [--runtimes 1000] [--modules 100000]

Prints one JSON line per figure:
- startup: a state dir with R runtimes and M modules (snapshot + journal tail);
  the real ``twistd silverline`` is started and timed until REST answers,
  next to the time Python + twistd take to start with an empty state (floor).
- snapshot_stall: a 10 ms LoopingCall measures its own lateness while a
  snapshot of the same registry is written, and during a quiet second before.
- throughput: module creates through the real service glue (core + journal +
  publish), with journal fsync on and off, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from common import percentile, populate, report

from twisted.internet import defer, reactor, task

from orchestrator.config import Config
from orchestrator.core.protocol import Orchestrator
from orchestrator.core.registry import Registry
from orchestrator.service import OrchestratorService
from orchestrator.adapters.store import Store
from tests.support.twistd import start_twistd


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_twistd_until_rest(workdir: Path) -> float:
    port = free_port()
    (workdir / "config.json").write_text(json.dumps({
        "http": "127.0.0.1", "http_port": port, "mqtt": "127.0.0.1",
        "mqtt_port": free_port(), "mqtt_username": None, "state_dir": "state",
        "log_dir": None}))
    started = time.perf_counter()
    proc = start_twistd(workdir)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runtimes/",
                                            timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("twistd exited")
                time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@defer.inlineCallbacks
def write_state(path: Path, runtimes: int, modules: int, tail: int):
    store = Store(reactor, str(path))
    registry = Registry()
    store.load(registry)
    populate(registry, runtimes, modules)
    registry.take_changes()
    yield store.snapshot(registry, dict)
    for i, m in enumerate(list(registry.modules.values())[:tail]):
        registry.put_module(replace(m, acked_at=time.time()))
        yield store.commit(registry.take_changes(), registry.next_serial)
    store.close()


@defer.inlineCallbacks
def startup(args, tmp: Path):
    state = tmp / "big" / "state"
    yield write_state(state, args.runtimes, args.modules, tail=1000)
    size = sum(p.stat().st_size for p in state.iterdir())
    t0 = time.perf_counter()
    service = OrchestratorService(reactor, Orchestrator(Config()), Store(reactor, str(state)))
    service.load()
    service.store.close()
    load_s = time.perf_counter() - t0
    empty = tmp / "empty"
    empty.mkdir()
    floor = min(time_twistd_until_rest(empty) for _ in range(2))
    full = min(time_twistd_until_rest(tmp / "big") for _ in range(2))
    report("startup", {"runtimes": args.runtimes, "modules": args.modules,
                       "state_mb": round(size / 1e6, 1), "load_in_process_s": round(load_s, 3),
                       "twistd_to_rest_s": round(full, 3),
                       "floor_empty_state_s": round(floor, 3),
                       "target_s": 2.0, "met": full <= 2.0})


@defer.inlineCallbacks
def snapshot_stall(args, tmp: Path):
    store = Store(reactor, str(tmp / "snap"))
    registry = Registry()
    store.load(registry)
    populate(registry, args.runtimes, args.modules)
    registry.take_changes()
    lateness: list[float] = []
    expected = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - expected[0]))
        expected[0] = now + 0.01
    probe = task.LoopingCall(tick)
    probe.start(0.01)
    yield task.deferLater(reactor, 1.0, lambda: None)
    quiet = lateness[:]
    lateness.clear()
    t0 = time.perf_counter()
    yield store.snapshot(registry, dict)
    took = time.perf_counter() - t0
    probe.stop()
    store.close()
    report("snapshot_stall", {
        "modules": args.modules, "snapshot_s": round(took, 3),
        "max_stall_ms": round(max(lateness) * 1000, 1),
        "p99_stall_ms": round(percentile(lateness, 99) * 1000, 1),
        "quiet_max_stall_ms": round(max(quiet) * 1000, 1),
        "target_ms": 100, "met": max(lateness) * 1000 <= 100})


class CountingPublisher:
    def __init__(self) -> None:
        self.count = 0
        self.done: defer.Deferred | None = None
        self.expect = 0

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        if topic == "realm/proc/control":
            self.count += 1
            if self.count == self.expect and self.done is not None:
                self.done.callback(None)
        return True


@defer.inlineCallbacks
def one_throughput(tmp: Path, fsync: bool, n: int, per_turn: int):
    config = replace(Config(), state_dir=str(tmp), journal_fsync=fsync, max_nmodules=0)
    core = Orchestrator(config)
    pub = CountingPublisher()
    svc = OrchestratorService(reactor, core, Store(reactor, str(tmp), fsync), publisher=pub)
    svc.startService()
    svc.message_received("realm/proc/reg", json.dumps({
        "object_id": "r", "action": "create", "type": "arts_req",
        "data": {"uuid": "11111111-1111-4111-8111-111111111111", "max_nmodules": 0}}).encode())
    messages = [json.dumps({"object_id": f"c{i}", "action": "create", "type": "arts_req",
                            "data": {"type": "module", "uuid": f"m-{i}",
                                     "filename": "wasm/a.wasm"}}).encode() for i in range(n)]
    pub.expect, pub.done = n, defer.Deferred()
    t0 = time.perf_counter()

    def feed(start: int) -> None:       # like loop_read: a burst of messages per turn
        for payload in messages[start:start + per_turn]:
            svc.message_received("realm/proc/control", payload)
        if start + per_turn < n:
            reactor.callLater(0, feed, start + per_turn)
    feed(0)
    yield pub.done
    took = time.perf_counter() - t0
    yield svc.stopService()
    return n / took


@defer.inlineCallbacks
def throughput(args, tmp: Path):
    rates = {}
    for fsync in (False, True, False, True):          # interleaved: same machine state
        rate = yield one_throughput(tmp / f"tp-{fsync}-{len(rates)}", fsync, args.messages, 50)
        rates.setdefault(fsync, []).append(rate)
    with_fsync, without = max(rates[True]), max(rates[False])
    report("throughput", {"messages": args.messages, "per_turn": 50,
                          "creates_per_s_fsync": round(with_fsync),
                          "creates_per_s_no_fsync": round(without),
                          "ratio": round(with_fsync / without, 3)})


@defer.inlineCallbacks
def main(args):
    tmp = Path(tempfile.mkdtemp(prefix="silverline-bench-"))
    try:
        yield throughput(args, tmp)
        yield snapshot_stall(args, tmp)
        yield startup(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runtimes", type=int, default=1000)
    parser.add_argument("--modules", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    task.react(lambda _: main(args))
