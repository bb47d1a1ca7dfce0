"""The load generator: drives the floor or the orchestrator over MQTT and HTTP only.

    .venv/bin/python bench/load.py --port 1883 --runtimes 500 --modules 20000 --window 100 \\
        [--target orchestrator --http-port 8000 --rest-at 10000 --watch orchestrator=PID]

It speaks only the wire protocol (docs/protocol.md), so the same run can be
pointed at ``bench/floor.py`` or at the real orchestrator; ``bench/perf.py``
does both back to back and compares them. One run:

1. waits for the retained ``online`` on ``R/proc/orchestrator/status``;
2. registers R runtimes on ``R/proc/reg`` (latency: publish -> ``arts_resp``);
3. creates M modules: the first half with an explicit ``parent`` (the
   runtimes in turn), the second half without one (the system places them).
   Each create carries its own module ``uuid``, and its latency runs from the
   publish to the forwarded create on ``R/proc/control/{runtime}`` matched by
   ``data.uuid`` (the forward has a new ``object_id``). For the orchestrator
   (``--target orchestrator``) the reply to the requester on
   ``R/proc/control`` (same ``object_id``, ``arts_resp``) is awaited too,
   with its own latency, and counts in the elapsed time;
4. optionally pauses at module counts (``--rest-at``) and at the end to time
   REST (list runtimes, list modules, 500-item pages, detail lookups), and
   to read RSS and CPU time of watched processes from /proc (``--watch``);
5. optionally sends keepalives from K runtimes at one per second each
   (``--keepalive-runtimes``) and reports the CPU share of watched processes.

At most W requests are in flight (a registration until its reply, a create
until its forward), far below paho's and mosquitto's queue limits, so the
broker never has a reason to drop anything; everything is QoS 1, every
expected message is counted, any error the system publishes on
``R/proc/log/orchestrator`` aborts the run, and so does a phase that makes
no progress for ``--timeout`` seconds. The result is one JSON line on stdout.

All simulated runtimes share one MQTT connection (subscribed to
``R/proc/control/+``) and the requester another; one thread drives both
with select(), without paho's own loop thread, to keep the generator's own
CPU use (reported as ``cpu.*.load``) low on a small machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import select
import socket
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import quote

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from stats import CLK_TCK, cpu_seconds, percentile, rss_kb

PAGE = 500


class LoadError(RuntimeError):
    """The run cannot be trusted: something was lost, refused, or never came."""


# -- small measurements ------------------------------------------------------------------

def percentile_ms(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of seconds, in milliseconds (None: no values)."""
    return round(percentile(values, p) * 1000, 3) if values else None


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far (/proc/stat: not idle, not iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class CpuMeter:
    """CPU seconds per wall second of watched processes (and of this one) over a span.

    ``others`` is what the rest of the machine used meanwhile: on a shared,
    noisy box it says how much a figure can be trusted.
    """

    def __init__(self, watch: dict[str, int]) -> None:
        self.watch = {**watch, "load": os.getpid()}

    def start(self) -> tuple[float, dict[str, float]]:
        cpu = {k: cpu_seconds(p) for k, p in self.watch.items()}
        cpu["machine"] = machine_busy()
        return time.perf_counter(), cpu

    def delta(self, began: tuple[float, dict[str, float]]) -> tuple[float, dict[str, float]]:
        """Wall seconds since ``began``, and CPU seconds of each watched process and others."""
        wall = time.perf_counter() - began[0]
        out = {k: cpu_seconds(p) - began[1][k] for k, p in self.watch.items()}
        out["others"] = max(0.0, machine_busy() - began[1]["machine"] - sum(out.values()))
        return wall, out

    def stop(self, began: tuple[float, dict[str, float]]) -> dict[str, float]:
        wall, cpu = self.delta(began)
        return {k: round(v / wall, 3) for k, v in cpu.items()} if wall > 0 else {}


class CpuSpans:
    """CPU time summed over several spans (so REST pauses stay out of the create figures)."""

    def __init__(self, meter: CpuMeter) -> None:
        self.meter = meter
        self.wall = 0.0
        self.cpu: dict[str, float] = {}
        self._mark: tuple[float, dict[str, float]] | None = None

    def __enter__(self) -> "CpuSpans":
        self._mark = self.meter.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._mark is not None
        wall, cpu = self.meter.delta(self._mark)
        self.wall += wall
        for k, v in cpu.items():
            self.cpu[k] = self.cpu.get(k, 0.0) + v

    def figures(self, items: int) -> dict[str, Any]:
        """CPU seconds per wall second, and CPU microseconds per item, of each process."""
        if self.wall <= 0 or not items:
            return {}
        return {"per_wall_s": {k: round(v / self.wall, 3) for k, v in self.cpu.items()},
                "us_per_item": {k: round(v / items * 1e6) for k, v in self.cpu.items()
                                if k != "others"}}


# -- MQTT on our own loop -------------------------------------------------------------

class Link:
    """One paho client (MQTT 5, QoS 1) that the Driver's select() loop drives."""

    def __init__(self, name: str, host: str, port: int,
                 on_message: Callable[[str, bytes], None]) -> None:
        self.name = name
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-{name}-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        # the window is ours: paho must neither hold back nor refuse a publish
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = lambda c, u, m: on_message(m.topic, m.payload)
        self.client.on_connect = self._connected
        self.client.on_subscribe = self._subscribed
        self.client.on_disconnect = self._disconnected
        self.client.on_publish = self._acked
        self.published = 0
        self.acked = 0
        self.connected = False
        self.subscribed = 0
        self.lost: str | None = None
        self.client.connect(host, port, keepalive=60)
        # many small packets, each awaited: never let Nagle hold one back on our side
        sock = self.client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connected(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.lost = f"{self.name}: connect refused ({rc})"
        self.connected = True

    def _subscribed(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        if any(rc.is_failure for rc in rcs):
            self.lost = f"{self.name}: subscription refused ({rcs})"
        self.subscribed += 1

    def _acked(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.acked += 1

    def _disconnected(self, client: Any, userdata: Any, flags: Any, rc: Any,
                      props: Any) -> None:
        self.lost = f"{self.name}: disconnected from the broker ({rc})"

    def subscribe(self, *topics: str) -> None:
        opts = SubscribeOptions(qos=1, noLocal=True)
        self.client.subscribe([(t, opts) for t in topics])

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LoadError(f"{self.name}: publish refused by paho: {info.rc}")
        self.published += 1


@dataclass
class Phase:
    """What one windowed phase is waiting for, and what it measured."""

    name: str
    expect_reply: bool
    inflight: int = 0
    sent: int = 0
    done: int = 0
    started: float = 0.0
    last: float = 0.0
    paused: float = 0.0
    latencies: list[float] = field(default_factory=list)
    reply_latencies: list[float] = field(default_factory=list)
    pending: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    pending_replies: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        elapsed = self.last - self.started - self.paused
        out: dict[str, Any] = {
            "n": self.done, "seconds": round(elapsed, 3),
            "per_s": round(self.done / elapsed, 1) if elapsed > 0 else None,
            "p50_ms": percentile_ms(self.latencies, 50),
            "p99_ms": percentile_ms(self.latencies, 99),
            "max_ms": percentile_ms(self.latencies, 100)}
        if self.expect_reply:
            out["reply_p50_ms"] = percentile_ms(self.reply_latencies, 50)
            out["reply_p99_ms"] = percentile_ms(self.reply_latencies, 99)
        return out


def merge(name: str, phases: list[Phase]) -> dict[str, Any]:
    """Figures of several phases taken as one (the throughput over their summed time)."""
    total = Phase(name, phases[0].expect_reply)
    for p in phases:
        total.done += p.done
        total.latencies += p.latencies
        total.reply_latencies += p.reply_latencies
        total.last += p.last - p.started - p.paused
    return total.figures()


class Driver:
    """Runtimes, requests and their replies, over two MQTT connections and one thread."""

    def __init__(self, host: str, port: int, realm: str, window: int, timeout: float,
                 expect_reply: bool) -> None:
        self.proc = f"{realm}/proc"
        self.window = window
        self.timeout = timeout
        self.expect_reply = expect_reply
        self.status: bytes | None = None
        self.phase: Phase | None = None
        self.errors: list[Any] = []
        self.unexpected = 0
        self.misplaced = 0
        self.placed: dict[str, str] = {}          # module uuid -> runtime it was forwarded to
        self.req = Link("requester", host, port, self._requester_got)
        self.rts = Link("runtimes", host, port, self._runtimes_got)
        self.links = [self.req, self.rts]
        self._misc_at = 0.0

    # -- loop ------------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        by_sock = {}
        for link in self.links:
            if link.lost:
                raise LoadError(link.lost)
            sock = link.client.socket()
            if sock is None:
                raise LoadError(f"{link.name}: no connection")
            by_sock[sock] = link
        writers = [s for s, link in by_sock.items() if link.client.want_write()]
        readable, writable, _ = select.select(list(by_sock), writers, [], timeout)
        for sock in writable:
            by_sock[sock].client.loop_write()
        for sock in readable:
            if by_sock[sock].client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise LoadError(by_sock[sock].lost or f"{by_sock[sock].name}: read failed")
        for link in self.links:             # PUBACKs queued by the callbacks above
            if link.client.want_write():
                link.client.loop_write()
        now = time.monotonic()
        if now - self._misc_at > 1.0:
            self._misc_at = now
            for link in self.links:
                link.client.loop_misc()

    def wait(self, until: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not until():
            if time.monotonic() > deadline:
                raise LoadError(f"timed out waiting for {what}")
            self.pump(0.05)

    def connect(self, online_timeout: float) -> None:
        self.wait(lambda: self.req.connected and self.rts.connected, "the broker")
        self.req.subscribe(f"{self.proc}/reg", f"{self.proc}/control",
                           f"{self.proc}/log/orchestrator", f"{self.proc}/orchestrator/status")
        self.rts.subscribe(f"{self.proc}/control/+")
        self.wait(lambda: self.req.subscribed and self.rts.subscribed, "subscriptions")
        self.wait(lambda: self.status == b"online", "the retained 'online' status",
                  online_timeout)

    def close(self) -> None:
        for link in self.links:
            link.client.disconnect()
        for _ in range(20):
            if not any(link.client.want_write() for link in self.links):
                break
            for link in self.links:
                link.client.loop_write()

    # -- what arrives ----------------------------------------------------------------
    def _requester_got(self, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        if topic.endswith("/orchestrator/status"):
            self.status = payload
            return
        if topic.endswith("/log/orchestrator"):
            self.errors.append(payload[:500].decode(errors="replace"))
            raise LoadError(f"the system reported an error: {self.errors[-1]}")
        msg = json.loads(payload)
        if msg.get("type") != "arts_resp":
            return
        phase = self.phase
        oid = msg.get("object_id")
        if phase is None:
            self.unexpected += 1
        elif phase.name == "register":
            started = phase.pending.pop(oid, None)
            if started is None:
                self.unexpected += 1
                return
            if msg["data"].get("result") != "ok":
                raise LoadError(f"registration refused: {payload[:300]!r}")
            phase.latencies.append(now - started[0])
            phase.inflight -= 1
            phase.done += 1
            phase.last = now
        else:
            started_at = phase.pending_replies.pop(oid, None)
            if started_at is None:
                self.unexpected += 1
                return
            if msg["data"].get("result") != "ok":
                raise LoadError(f"create refused: {payload[:300]!r}")
            phase.reply_latencies.append(now - started_at)
            phase.last = max(phase.last, now)

    def _runtimes_got(self, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        msg = json.loads(payload)
        if msg.get("action") != "create":
            return
        module = msg["data"]["uuid"]
        phase = self.phase
        started = phase.pending.pop(module, None) if phase is not None else None
        if started is None:
            self.unexpected += 1
            return
        runtime = topic.rsplit("/", 1)[1]
        if started[1] is not None and started[1] != runtime:
            self.misplaced += 1
        self.placed[module] = runtime
        phase.latencies.append(now - started[0])
        phase.inflight -= 1
        phase.done += 1
        phase.last = max(phase.last, now)

    # -- windowed phases -----------------------------------------------------------------
    def run(self, phase: Phase, requests: Iterable[tuple[str, str, bytes, str | None, str]],
            stop_after: int | None = None) -> None:
        """Send requests keeping at most ``window`` in flight; return once all are answered.

        Each request is (topic, object_id, payload, expected runtime, wait key).
        With ``stop_after``, return (window drained) after that many more requests
        so the caller can measure a quiet system, then call ``run`` again.
        """
        self.phase = phase
        if not phase.started:
            phase.started = phase.last = time.perf_counter()
        else:
            phase.paused += time.perf_counter() - phase.last
        it = iter(requests)
        budget = stop_after
        exhausted = False
        progress = (phase.done, len(phase.reply_latencies))
        deadline = time.monotonic() + self.timeout
        while True:
            while not exhausted and phase.inflight < self.window and budget != 0:
                try:
                    topic, oid, payload, runtime, key = next(it)
                except StopIteration:
                    exhausted = True
                    break
                t0 = time.perf_counter()
                phase.pending[key] = (t0, runtime)
                if phase.expect_reply:
                    phase.pending_replies[oid] = t0
                phase.inflight += 1
                phase.sent += 1
                if budget is not None:
                    budget -= 1
                self.req.publish(topic, payload)
            if (exhausted or budget == 0) and not phase.pending and not phase.pending_replies:
                return
            self.pump(0.05)
            now_progress = (phase.done, len(phase.reply_latencies))
            if now_progress != progress:
                progress = now_progress
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise LoadError(
                    f"{phase.name}: no progress for {self.timeout}s; sent {phase.sent}, "
                    f"answered {phase.done}; waiting for {len(phase.pending)} forwards/replies "
                    f"and {len(phase.pending_replies)} requester replies")


# -- request payloads ---------------------------------------------------------------------

def registration(proc: str, i: int, rt: str) -> tuple[str, str, bytes, None, str]:
    oid = f"bench-reg-{uuid.uuid4()}"
    body = {"object_id": oid, "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": rt, "name": f"bench-rt-{i}",
                     "apis": ["wasm", "wasi"], "runtime_type": "linux", "max_nmodules": 0,
                     "page_size": 65536, "aot_target": "{}"}}
    return f"{proc}/reg", oid, json.dumps(body).encode(), None, oid


def module_create(proc: str, i: int, parent: str | None) -> tuple[str, str, bytes, str | None, str]:
    oid = f"bench-create-{uuid.uuid4()}"
    module = str(uuid.uuid4())
    filename = f"wasm/apps/app{i % 50}.wasm"
    data: dict[str, Any] = {"type": "module", "uuid": module, "name": f"bench-{i}",
                            "filename": filename, "filetype": "WA", "args": [filename],
                            "env": [], "resources": {"period": 10000000, "runtime": 5000000},
                            "fault_crash": "ignore"}
    if parent is not None:
        data["parent"] = parent
    body = {"object_id": oid, "action": "create", "type": "arts_req", "data": data}
    return f"{proc}/control", oid, json.dumps(body).encode(), parent, module


# -- REST ----------------------------------------------------------------------------------

class Rest:
    """Timed GETs over one keep-alive HTTP connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=60)

    def reconnect(self) -> None:
        """A fresh connection (the server closes one left idle for a minute)."""
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.conn.connect()

    def get(self, path: str) -> tuple[float, Any]:
        """Seconds from sending the request to the last body byte; then the parsed body."""
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.reconnect()            # not timed: retry once on a new connection
            t0 = time.perf_counter()
            self.conn.request("GET", path)
            response = self.conn.getresponse()
        body = response.read()
        seconds = time.perf_counter() - t0
        if response.status != 200:
            raise LoadError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        return seconds, json.loads(body)

    def close(self) -> None:
        self.conn.close()


def timed(samples: list[float], count: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"reps": len(samples), "p50_ms": percentile_ms(samples, 50),
                           "p99_ms": percentile_ms(samples, 99)}
    if count is not None:
        out["items"] = count
    return {**out, **extra}


def rest_timings(rest: Rest, modules: list[str], runtimes: int, budget: float = 8.0,
                 rng: random.Random | None = None) -> dict[str, Any]:
    """List runtimes, list modules, 500-item pages, detail lookups; each for a time budget."""
    rng = rng or random.Random(1)
    rest.reconnect()
    out: dict[str, Any] = {"modules": len(modules), "runtimes": runtimes}

    def repeat(path_of: Callable[[int], str], reps: int, minimum: int = 5
               ) -> tuple[list[float], Any]:
        samples: list[float] = []
        body: Any = None
        until = time.monotonic() + budget
        for k in range(reps):
            seconds, body = rest.get(path_of(k))
            samples.append(seconds)
            if k + 1 >= minimum and time.monotonic() > until:
                break
        return samples, body

    samples, body = repeat(lambda k: "/api/runtimes/", 20)
    if len(body["runtimes"]) != runtimes:
        raise LoadError(f"REST lists {len(body['runtimes'])} runtimes, expected {runtimes}")
    out["list_runtimes"] = timed(samples, len(body["runtimes"]))

    samples, body = repeat(lambda k: "/api/modules/", 30)
    if len(body["modules"]) != len(modules):
        raise LoadError(f"REST lists {len(body['modules'])} modules, expected {len(modules)}")
    out["list_modules"] = timed(samples, len(body["modules"]))

    # 500-item pages, walking the cursor (from the start again at the end)
    samples = []
    cursor: str | None = None
    seen = 0
    supported = True
    until = time.monotonic() + budget
    for k in range(300):
        path = f"/api/modules/?limit={PAGE}" + (f"&cursor={quote(cursor)}" if cursor else "")
        seconds, body = rest.get(path)
        samples.append(seconds)
        items = body.get("modules", [])
        if "next" not in body or len(items) > PAGE:
            supported = False          # the server ignored limit: a plain list came back
            break
        seen += len(items)
        cursor = body["next"]
        if cursor is None:
            if seen != len(modules):
                raise LoadError(f"paging gave {seen} modules, expected {len(modules)}")
            seen = 0
        if k + 1 >= 20 and time.monotonic() > until:
            break
    out["page_500"] = (timed(samples) if supported
                       else {"supported": False, "note": "the server ignored ?limit"})

    picks = [rng.choice(modules) for _ in range(1000)] if modules else []
    if picks:
        samples, body = repeat(lambda k: f"/api/modules/{picks[k]}/", len(picks), 50)
        out["detail"] = timed(samples)
    return out


# -- the whole run ---------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    watch = dict(w.split("=", 1) for w in args.watch)
    watch_pids = {k: int(v) for k, v in watch.items()}
    meter = CpuMeter(watch_pids)
    rss_of = args.rss_of or (next(iter(watch_pids)) if watch_pids else None)
    began = time.perf_counter()
    driver = Driver(args.host, args.port, args.realm, args.window, args.timeout,
                    expect_reply=args.target != "floor")
    proc = driver.proc
    result: dict[str, Any] = {"bench": "perf-run", "system": args.target, "label": args.label,
                              "R": args.runtimes, "M": args.modules, "W": args.window}
    cpu: dict[str, Any] = {}
    rest = Rest(args.host, args.http_port) if args.http_port else None
    try:
        driver.connect(args.online_timeout)

        runtimes = [str(uuid.uuid4()) for _ in range(args.runtimes)]
        regs = [registration(proc, i, rt) for i, rt in enumerate(runtimes)]
        phase = Phase("register", False)
        with CpuSpans(meter) as spans:
            driver.run(phase, regs)
        cpu["register"] = spans.figures(len(regs))
        result["register"] = phase.figures()

        rss: dict[str, Any] = {}
        if rss_of:
            rss["of"] = rss_of
            rss["before_kb"] = rss_kb(watch_pids[rss_of])

        half = args.modules // 2
        creates = ([module_create(proc, i, runtimes[i % len(runtimes)]) for i in range(half)]
                   + [module_create(proc, i, None) for i in range(half, args.modules)])
        stops = sorted(n for n in args.rest_at if 0 < n < args.modules)
        rest_results: dict[str, Any] = {}
        parented = Phase("create_parent", driver.expect_reply)
        scheduled = Phase("create_scheduled", driver.expect_reply)
        created = 0
        spans = CpuSpans(meter)
        for stop in stops + [args.modules]:
            while created < stop:
                upto = min(stop, half) if created < half else stop
                phase = parented if created < half else scheduled
                with spans:
                    driver.run(phase, creates[created:upto])
                created = upto
            if stop < args.modules and rest is not None:
                rest_results[f"at_{stop}"] = rest_timings(
                    rest, [c[4] for c in creates[:stop]], args.runtimes, args.rest_budget)
                if rss_of:
                    rest_results[f"at_{stop}"]["rss_kb"] = rss_kb(watch_pids[rss_of])
        cpu["create"] = spans.figures(args.modules)
        if rss_of:
            rss["after_kb"] = rss_kb(watch_pids[rss_of])
            rss["modules"] = args.modules
            rss["per_module_bytes"] = (round((rss["after_kb"] - rss["before_kb"]) * 1024
                                             / args.modules) if args.modules else None)
        used = [p for p in (parented, scheduled) if p.done]
        if used:
            result["create"] = merge("create", used)
        result["create_parent"] = parented.figures()
        result["create_scheduled"] = scheduled.figures()
        result["create_scheduled"]["runtimes_used"] = len(
            {driver.placed[c[4]] for c in creates[half:]})
        if driver.misplaced:
            raise LoadError(f"{driver.misplaced} creates were forwarded to another runtime "
                            "than the parent they named")

        if rest is not None:
            rest_results[f"at_{args.modules}"] = rest_timings(
                rest, [c[4] for c in creates], args.runtimes, args.rest_budget)
            result["rest"] = rest_results
        if rss:
            result["rss"] = rss

        if args.keepalive_runtimes:
            result["keepalive"] = keepalives(driver, meter, runtimes, creates, args)
        result["cpu"] = cpu
        result["unexpected_messages"] = driver.unexpected
        result["seconds"] = round(time.perf_counter() - began, 1)
        return result
    finally:
        driver.close()
        if rest is not None:
            rest.close()


def keepalives(driver: Driver, meter: CpuMeter, runtimes: list[str],
               creates: list[tuple[str, str, bytes, str | None, str]],
               args: argparse.Namespace) -> dict[str, Any]:
    """K runtimes at one keepalive per second each; the CPU it costs the watched processes.

    The first K registered runtimes send them (more are registered if R < K),
    each listing the modules it was given as ``children``. An idle span of the
    same system is measured first, for reference.
    """
    proc = driver.proc
    n = args.keepalive_runtimes
    extra = [str(uuid.uuid4()) for _ in range(max(0, n - len(runtimes)))]
    if extra:
        phase = Phase("register", False)
        driver.run(phase, [registration(proc, len(runtimes) + i, rt)
                           for i, rt in enumerate(extra)])
    senders = (runtimes + extra)[:n]
    children: dict[str, list[dict[str, Any]]] = {rt: [] for rt in senders}
    for c in creates:
        rt = driver.placed.get(c[4])
        if rt in children:
            children[rt].append({"uuid": c[4], "cpu_usage_percent": 1.5, "mem_usage": 1048576})
    payloads = [json.dumps({"object_id": f"bench-ka-{i}", "action": "update",
                            "type": "arts_req",
                            "data": {"type": "runtime", "uuid": rt, "name": f"bench-rt-{i}",
                                     "children": children[rt]}}).encode()
                for i, rt in enumerate(senders)]
    topic = f"{proc}/keepalive"

    def span(seconds: float, send: bool) -> tuple[dict[str, float], int]:
        tick = 0.02
        per_tick = n * tick / args.keepalive_period
        mark = meter.start()
        start = time.perf_counter()
        sent = 0
        k = 0
        while True:
            now = time.perf_counter()
            if now - start >= seconds:
                break
            due = int((now - start) / tick) + 1
            if send:
                while k < due * per_tick:
                    driver.req.publish(topic, payloads[sent % n])
                    sent += 1
                    k += 1
            driver.pump(max(0.0, start + due * tick - time.perf_counter()))
        # the broker has every keepalive once the requester's QoS 1 window drained
        driver.wait(lambda: driver.req.acked == driver.req.published, "keepalive PUBACKs")
        return meter.stop(mark), sent

    idle, _ = span(min(5.0, args.keepalive_seconds), send=False)
    busy, sent = span(args.keepalive_seconds, send=True)
    return {"runtimes": n, "period_s": args.keepalive_period, "seconds": args.keepalive_seconds,
            "sent": sent, "children_per_runtime": round(sum(map(len, children.values())) / n, 1),
            "cpu_per_wall_idle": idle, "cpu_per_wall": busy}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="broker port")
    p.add_argument("--realm", default="realm")
    p.add_argument("--target", choices=("floor", "floor-wire", "orchestrator"),
                   default="orchestrator",
                   help="orchestrator: also await the reply to the requester")
    p.add_argument("-R", "--runtimes", type=int, default=500)
    p.add_argument("-M", "--modules", type=int, default=20000)
    p.add_argument("-W", "--window", type=int, default=100)
    p.add_argument("--http-port", type=int, help="time REST at the end (orchestrator only)")
    p.add_argument("--rest-at", type=lambda s: [int(x) for x in s.split(",") if x],
                   default=[], help="also pause at these module counts to time REST")
    p.add_argument("--rest-budget", type=float, default=6.0,
                   help="seconds spent per REST measurement (at least a few requests)")
    p.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                   help="report CPU seconds per wall second (and RSS) of this process")
    p.add_argument("--rss-of", help="which watched process RSS growth is reported for")
    p.add_argument("--keepalive-runtimes", type=int, default=0)
    p.add_argument("--keepalive-seconds", type=float, default=20.0)
    p.add_argument("--keepalive-period", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="fail when a phase makes no progress for this long")
    p.add_argument("--online-timeout", type=float, default=30.0)
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    if args.window < 1 or args.runtimes < 1 or args.modules < 0:
        p.error("need W >= 1, R >= 1 and M >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except Exception as e:          # LoadError, or the system hung up: one JSON line says so
        if not isinstance(e, LoadError):
            traceback.print_exc()
        print(json.dumps({"bench": "perf-run", "system": args.target, "label": args.label,
                          "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
