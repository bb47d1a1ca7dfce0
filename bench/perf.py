"""make bench (performance): the floor and the orchestrator under the same load, compared.

    .venv/bin/python bench/perf.py [-R 500] [-M 20000] [-W 100] [--skip-100k]
                                   [--skip-keepalive] [--repeat 1]

Every figure is a ratio measured in this run: the same private mosquitto
set-up, the same load generator (``bench/load.py``) and the same R, M, W
drive first ``bench/floor.py`` (the least any orchestrator could do), then
the real orchestrator (``twistd -n silverline``, journal fsync on), each
with a fresh broker. Printed, one JSON line each:

- ``perf-run``: one load run (registration, creates with and without a
  parent, REST timings, RSS, CPU seconds per wall second of the system, the
  broker and the load generator);
- ``perf-compare``: floor and orchestrator side by side, the ratios, and
  each target of the performance issue with its value, limit and whether it
  is met;
- ``perf-scaling``: create throughput at M = 2,000, M and 100,000;
- ``perf-keepalive``: 1,000 runtimes, one keepalive per second each, ~20 s:
  CPU seconds per wall second of each system.

Then the same figures as a table, on lines starting with ``#``. The exit
status is non-zero if a run failed (lost or refused messages, timeouts),
never because a target was missed. See docs/fragments/bench.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Mosquitto, free_port  # noqa: E402
from tests.support.twistd import TWISTD, twistd_env  # noqa: E402

PYTHON = sys.executable
REALM = "realm"
#: Broker settings for both systems. Nothing may be dropped (a deep per-client
#: queue), and the broker sends each packet at once instead of letting Nagle
#: hold it back for up to 40 ms behind a delayed ACK: those stalls are the
#: broker's, not the systems', and would flatten every ratio towards 1.
BROKER_EXTRA = "max_queued_messages 1000000\n"
BROKER_NODELAY = "set_tcp_nodelay true\n"
#: CPU seconds per wall second used by the rest of the machine during a run above
#: which its ratios are flagged as untrustworthy (the box has two cores)
NOISY = 0.3


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


def progress(text: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the systems under test -------------------------------------------------------------

class System:
    """A floor or orchestrator process on its own fresh broker."""

    kind = "?"

    def __init__(self, workdir: Path, nodelay: bool) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(self.dir / "broker",
                                extra=BROKER_EXTRA + (BROKER_NODELAY if nodelay else ""))
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port: int | None = None
        self.out = self.dir / f"{self.kind}.out"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        self.broker.start()
        cmd, env = self.command()
        with open(self.out, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.wait_ready(60.0)

    def wait_ready(self, timeout: float) -> None:
        """Ready when the retained ``online`` status is on the broker (and REST answers)."""
        deadline = time.monotonic() + timeout
        seen: list[bytes] = []
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"perf-ready-{os.getpid()}")
        client.on_connect = lambda c, *a: c.subscribe(f"{REALM}/proc/orchestrator/status", 1)
        client.on_message = lambda c, u, m: seen.append(m.payload)
        client.connect("127.0.0.1", self.broker.port)
        try:
            while b"online" not in seen:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} not online after {timeout}s")
                client.loop(0.1)
        finally:
            client.disconnect()
        while self.http_port is not None:
            self._check_alive()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
                conn.request("GET", "/api/runtimes/")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: REST not answering after {timeout}s")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited ({self.proc.returncode}): {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.out.read_text(errors="replace")[-n:] if self.out.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.broker.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Floor(System):
    kind = "floor"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ([PYTHON, str(HERE / "floor.py"), "--port", str(self.broker.port),
                 "--realm", REALM], dict(os.environ))


class FloorWire(Floor):
    """The floor doing the orchestrator's wire work (bench/floor.py --wire): replies to
    requesters, manual acks, a persistent session."""

    kind = "floor-wire"

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        return cmd + ["--wire"], env


class Orchestrator(System):
    kind = "orchestrator"

    def command(self) -> tuple[list[str], dict[str, str]]:
        self.http_port = free_port()
        (self.dir / "config.json").write_text(json.dumps({
            "mqtt": "127.0.0.1", "mqtt_port": self.broker.port, "http": "127.0.0.1",
            "http_port": self.http_port, "state_dir": "state", "log_dir": None,
            "mqtt_username": None, "max_nmodules": 0, "journal_fsync": True}))
        return [*TWISTD, "--config", "config.json"], twistd_env()


# -- one load run ------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.failed = 0
        self.root = Path(tempfile.mkdtemp(prefix="silverline-perf-", dir=args.workdir))
        self.n = 0

    def run(self, kind: str, modules: int, *, runtimes: int | None = None,
            extra: list[str] | None = None, label: str = "",
            system_class: type[System] | None = None) -> dict[str, Any] | None:
        """Start a fresh system and broker, drive one load run, stop; the run's JSON."""
        self.n += 1
        cls = system_class or {"floor": Floor, "floor-wire": FloorWire,
                               "orchestrator": Orchestrator}[kind]
        system: System = cls(self.root / f"{self.n:02d}-{kind}-{label}", not self.args.broker_nagle)
        runtimes = self.args.runtimes if runtimes is None else runtimes
        progress(f"{label}: {kind}, R={runtimes} M={modules} W={self.args.window}")
        try:
            system.start()
            cmd = [PYTHON, str(HERE / "load.py"), "--port", str(system.broker.port),
                   "--realm", REALM, "--target", kind, "-R", str(runtimes), "-M", str(modules),
                   "-W", str(self.args.window), "--label", label, "--timeout",
                   str(self.args.timeout), "--watch", f"{kind}={system.pid}",
                   "--watch", f"broker={system.broker.proc.pid}", *(extra or [])]
            if system.http_port is not None:
                cmd += ["--http-port", str(system.http_port)]
            load_before = Path("/proc/loadavg").read_text().split()[0]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            result = (json.loads(lines[-1]) if lines
                      else {"error": f"load.py exited {done.returncode} without a result"})
            if done.returncode != 0 or "error" in result:
                raise RuntimeError(f"load run failed: {result.get('error')}\n"
                                   f"load.py stderr: {done.stderr[-1500:]}\n"
                                   f"{kind} output: {system.tail(1500)}")
        except Exception as e:          # report, go on with the other runs, exit 1 at the end
            self.failed += 1
            progress(f"{label}: {kind} FAILED: {e}")
            emit({"bench": "perf-run", "system": kind, "label": label, "M": modules,
                  "error": str(e)[:3000]})
            return None
        finally:
            system.stop()
        result["loadavg_1min_before"] = float(load_before)
        emit(result)
        return result

    def cleanup(self) -> None:
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)


# -- comparison and targets ----------------------------------------------------------------------

def dig(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def target(value: Any, limit: float, ok: Callable[[float, float], bool], unit: str,
           where: str) -> dict[str, Any]:
    met = ok(value, limit) if isinstance(value, (int, float)) else None
    return {"value": value, "limit": limit, "unit": unit, "met": met, "measured": where}


def rest_at(run: dict[str, Any] | None, modules: int) -> tuple[dict[str, Any] | None, int | None]:
    """The REST timings taken at ``modules`` modules, else the closest ones taken."""
    rest = dig(run, "rest") or {}
    if not rest:
        return None, None
    counts = sorted(int(k.split("_")[1]) for k in rest)
    best = min(counts, key=lambda c: abs(c - modules))
    return rest[f"at_{best}"], best


Run = dict[str, Any] | None
ge: Callable[[float, float], bool] = lambda v, lim: v >= lim   # noqa: E731
le: Callable[[float, float], bool] = lambda v, lim: v <= lim   # noqa: E731
lt: Callable[[float, float], bool] = lambda v, lim: v < lim    # noqa: E731


def compare(args: argparse.Namespace, floor: Run, orch: Run, big: Run,
            scaling: list[dict[str, Any]], keep: Run, wire: Run = None) -> dict[str, Any]:
    """The figures of both sides (and the wire floor's), their ratios, and every target
    met or not."""
    side = sides(floor, orch, wire)
    f, o, w = side["floor"], side["orchestrator"], side["floor_wire"]
    ratios = {**side_ratios(f, o), **wire_ratios(w, o, f)}
    where = f"R={args.runtimes} M={args.modules} W={args.window}"
    targets: dict[str, Any] = {
        "create_throughput_vs_floor": target(ratios["create_throughput"], 0.7, ge, "x floor",
                                             where),
        "create_p99_vs_floor": target(ratios["create_p99"], 2.0, le, "x floor", where),
        "register_throughput_vs_floor": target(ratios["register_throughput"], 0.7, ge,
                                               "x floor", where),
    }
    targets.update(rest_targets(orch, big))
    targets.update(load_targets(orch, big, keep))
    targets.update(linear_cost_target(scaling))
    # other work on the machine during either run skews the ratios: say so, with the figure
    others = {name: dig(side[name], "cpu_per_wall_create", "others") for name in side
              if side[name]["create_per_s"] is not None}
    noisy = {k: v for k, v in others.items() if isinstance(v, (int, float)) and v > NOISY}
    for key in ("create_throughput_vs_floor", "create_p99_vs_floor",
                "register_throughput_vs_floor"):
        targets[key]["trust"] = "low: the machine was busy with other work" if noisy else "ok"
    return {"bench": "perf-compare", "R": args.runtimes, "M": args.modules, "W": args.window,
            "durability": "journal fsync before publish", "code": code_version(),
            "other_cpu_while_creating": others, "noisy": bool(noisy),
            "floor": f, "orchestrator": o, "floor_wire": w, "ratios": ratios,
            "targets": targets}


def sides(floor: Run, orch: Run, wire: Run = None) -> dict[str, Any]:
    """The figures compared, for each side."""
    side: dict[str, Any] = {}
    for name, run in (("floor", floor), ("orchestrator", orch), ("floor_wire", wire)):
        side[name] = {
            "register_per_s": dig(run, "register", "per_s"),
            "register_p99_ms": dig(run, "register", "p99_ms"),
            "create_per_s": dig(run, "create", "per_s"),
            "create_p50_ms": dig(run, "create", "p50_ms"),
            "create_p99_ms": dig(run, "create", "p99_ms"),
            "create_parent_per_s": dig(run, "create_parent", "per_s"),
            "create_scheduled_per_s": dig(run, "create_scheduled", "per_s"),
            "create_scheduled_p99_ms": dig(run, "create_scheduled", "p99_ms"),
            "cpu_per_wall_create": dig(run, "cpu", "create", "per_wall_s"),
            "cpu_us_per_create": dig(run, "cpu", "create", "us_per_item",
                                     "floor-wire" if name == "floor_wire" else name),
        }
    side["orchestrator"]["reply_p50_ms"] = dig(orch, "create", "reply_p50_ms")
    side["orchestrator"]["reply_p99_ms"] = dig(orch, "create", "reply_p99_ms")
    return side


def side_ratios(f: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    """Orchestrator / floor, figure by figure."""
    return {
        "create_throughput": ratio(o["create_per_s"], f["create_per_s"]),
        "create_parent_throughput": ratio(o["create_parent_per_s"], f["create_parent_per_s"]),
        "create_scheduled_throughput": ratio(o["create_scheduled_per_s"],
                                             f["create_scheduled_per_s"]),
        "create_p50": ratio(o["create_p50_ms"], f["create_p50_ms"]),
        "create_p99": ratio(o["create_p99_ms"], f["create_p99_ms"]),
        "register_throughput": ratio(o["register_per_s"], f["register_per_s"]),
        # not a target: CPU time per create, which other load on the machine disturbs less
        "cpu_per_create": ratio(o["cpu_us_per_create"], f["cpu_us_per_create"]),
    }


def wire_ratios(w: dict[str, Any], o: dict[str, Any], f: dict[str, Any]) -> dict[str, Any]:
    """Against the floor that does the orchestrator's wire work (replies, manual acks,
    persistent session): what the registry, checks and journal cost on their own.
    Not targets (the goal stays 0.7 of the plain floor)."""
    return {
        "create_throughput_vs_wire": ratio(o["create_per_s"], w["create_per_s"]),
        "create_p99_vs_wire": ratio(o["create_p99_ms"], w["create_p99_ms"]),
        "cpu_per_create_vs_wire": ratio(o["cpu_us_per_create"], w["cpu_us_per_create"]),
        "wire_floor_vs_floor": ratio(w["create_per_s"], f["create_per_s"]),
    }


def rest_targets(orch: Run, big: Run) -> dict[str, Any]:
    """REST latencies at 10,000 modules, and paging at 100,000 (the big run if there is one)."""
    targets: dict[str, Any] = {}
    rest10, at10 = rest_at(orch, 10000)
    if big is not None:
        rest100, at100 = rest_at(big, 100000)
    else:
        rest100, at100 = rest_at(orch, 100000)
    targets["rest_list_modules_p50"] = target(dig(rest10, "list_modules", "p50_ms"), 30.0, le,
                                              "ms", f"{at10} modules")
    page = dig(rest100, "page_500")
    targets["rest_page_500_p99"] = target(dig(page, "p99_ms"), 20.0, le, "ms",
                                          f"{at100} modules" + (
                                              "" if page is None or "p99_ms" in page
                                              else " (paging not supported by the server)"))
    targets["rest_detail_p99"] = target(dig(rest10, "detail", "p99_ms"), 5.0, le, "ms",
                                        f"{at10} modules")
    return targets


def load_targets(orch: Run, big: Run, keep: Run) -> dict[str, Any]:
    """Memory per module, and the CPU that keepalives cost."""
    targets: dict[str, Any] = {}
    mem_run = big if dig(big, "rss") else orch
    targets["rss_per_module"] = target(dig(mem_run, "rss", "per_module_bytes"), 1536, le,
                                       "bytes/module", f"{dig(mem_run, 'rss', 'modules')} modules")
    targets["keepalive_cpu"] = target(dig(keep, "orchestrator", "cpu_per_wall"), 0.5, lt,
                                      "CPU s per wall s",
                                      f"{dig(keep, 'orchestrator', 'runtimes')} runtimes x 1/s "
                                      f"for {dig(keep, 'orchestrator', 'seconds')} s"
                                      if keep else "skipped")
    return targets


def linear_cost_target(scaling: list[dict[str, Any]]) -> dict[str, Any]:
    """Cost per create must not grow with M (needs two scaling points or more)."""
    targets: dict[str, Any] = {}
    points = [p for p in scaling if p.get("orchestrator_per_s")]
    if len(points) >= 2:
        # cost per create must not grow with M: the largest M keeps at least 70% of the
        # best throughput seen at a smaller M (the smallest runs are short and noisy,
        # so the best one, not the first one, is the reference)
        last = points[-1]
        best = max(points[:-1], key=lambda p: p["orchestrator_per_s"])
        floor_best = max((p.get("floor_per_s") or 0 for p in points[:-1]), default=0)
        targets["linear_cost"] = target(
            ratio(last["orchestrator_per_s"], best["orchestrator_per_s"]), 0.7, ge,
            f"throughput at M={last['M']} / best at smaller M (M={best['M']})",
            f"floor's own: {ratio(last.get('floor_per_s'), floor_best)}")
    return targets


def code_version() -> str:
    """The commit measured, and whether orchestrator/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "orchestrator"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+uncommitted changes in orchestrator/" if dirty else "") if head else "unknown"


def table(cmp: dict[str, Any], orch: dict[str, Any] | None, big: dict[str, Any] | None,
          scaling: list[dict[str, Any]], keep: dict[str, Any] | None) -> None:
    """The comparison for people (every line starts with '#')."""
    f, o, r = cmp["floor"], cmp["orchestrator"], cmp["ratios"]
    note(f"R={cmp['R']} M={cmp['M']} W={cmp['W']}, durability on, code {cmp['code']}")
    for k, rep in enumerate(cmp.get("repeats", [])):
        note(f"pair {k + 1}: creates/s floor {fmt(rep['floor_per_s'])}, orchestrator "
             f"{fmt(rep['orchestrator_per_s'])}, ratio {fmt(rep['ratio'])}, "
             f"p99 ratio {fmt(rep['p99_ratio'])}; wire floor "
             f"{fmt(rep.get('floor_wire_per_s'))}, ratio {fmt(rep.get('ratio_vs_wire'))}")
    note(f"{'':28}{'floor':>12}{'orchestrator':>14}{'ratio':>8}")
    rows = [("registrations/s", "register_per_s", "register_throughput"),
            ("creates/s (all)", "create_per_s", "create_throughput"),
            ("creates/s (with parent)", "create_parent_per_s", "create_parent_throughput"),
            ("creates/s (scheduler)", "create_scheduled_per_s", "create_scheduled_throughput"),
            ("create p50 ms (forward)", "create_p50_ms", "create_p50"),
            ("create p99 ms (forward)", "create_p99_ms", "create_p99"),
            ("CPU us per create (system)", "cpu_us_per_create", "cpu_per_create")]
    for title, key, rkey in rows:
        note(f"{title:28}{fmt(f[key]):>12}{fmt(o[key]):>14}{fmt(r[rkey]):>8}")
    note(f"{'reply p50/p99 ms':28}{'-':>12}{fmt(o['reply_p50_ms']) + '/' + fmt(o['reply_p99_ms']):>14}")
    w = cmp.get("floor_wire") or {}
    if w.get("create_per_s") is not None:
        note(f"wire floor (replies, manual acks, persistent session): creates/s "
             f"{fmt(w['create_per_s'])}, p99 {fmt(w['create_p99_ms'])} ms, CPU us per create "
             f"{fmt(w['cpu_us_per_create'])}; orchestrator / wire floor: throughput "
             f"{fmt(r['create_throughput_vs_wire'])}, p99 {fmt(r['create_p99_vs_wire'])}, "
             f"CPU {fmt(r['cpu_per_create_vs_wire'])}; wire floor / floor "
             f"{fmt(r['wire_floor_vs_floor'])}")
    for name, side in (("floor", f), ("orchestrator", o)):
        note(f"CPU s per wall s while creating ({name} run): {side['cpu_per_wall_create']}")
    for run in (orch, big):
        for at, rest in (dig(run, "rest") or {}).items():
            note(f"REST {at.replace('at_', '')} modules: " + ", ".join(
                f"{k} p50/p99 {fmt(v.get('p50_ms'))}/{fmt(v.get('p99_ms'))} ms"
                if "p50_ms" in v else f"{k}: {v.get('note')}"
                for k, v in rest.items() if isinstance(v, dict) and k != "rss_kb"))
        if dig(run, "rss"):
            rss = run["rss"]
            note(f"RSS at M={rss['modules']}: {rss['before_kb']} kB before, {rss['after_kb']} kB "
                 f"after, {rss['per_module_bytes']} bytes per module")
    for p in scaling:
        note(f"scaling M={p['M']}: floor {fmt(p.get('floor_per_s'))}/s, orchestrator "
             f"{fmt(p.get('orchestrator_per_s'))}/s, ratio {fmt(p.get('ratio'))}")
    if keep:
        note(f"keepalives {keep['orchestrator'].get('runtimes')} x 1/s: CPU s per wall s floor {keep['floor'].get('cpu_per_wall')}, "
             f"orchestrator {keep['orchestrator'].get('cpu_per_wall')} "
             f"(idle {keep['orchestrator'].get('cpu_per_wall_idle')}; rest of the machine "
             f"meanwhile {dig(keep, 'orchestrator', 'cpu_per_wall_all', 'others')})")
    if cmp["noisy"]:
        note(f"WARNING: other work used {cmp['other_cpu_while_creating']} CPU s per wall s "
             f"during the runs compared: the ratios below are not trustworthy; rerun on a "
             f"quiet machine or with --repeat 3")
    for name, t in cmp["targets"].items():
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]
        if t.get("trust", "ok") != "ok":
            verdict += " (noisy run)"
        note(f"target {name}: {fmt(t['value'])} (limit {t['limit']} {t['unit']}; "
             f"{t['measured']}): {verdict}")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


# -- the whole bench -----------------------------------------------------------------------------

def pair(bench: Bench, modules: int, label: str, orch_extra: list[str] | None = None,
         runtimes: int | None = None, extra: list[str] | None = None,
         ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    floor = bench.run("floor", modules, runtimes=runtimes, extra=extra, label=label)
    orch = bench.run("orchestrator", modules, runtimes=runtimes,
                     extra=(extra or []) + (orch_extra or []), label=label)
    return floor, orch


def triple(bench: Bench, modules: int, label: str, orch_extra: list[str] | None
           ) -> tuple[Run, Run, Run]:
    """Floor, orchestrator, and the floor doing the orchestrator's wire work."""
    floor, orch = pair(bench, modules, label, orch_extra)
    return floor, orch, bench.run("floor-wire", modules, label=label)


def best_of(runs: list[tuple[Run, Run, Run]]) -> tuple[Run, Run, Run]:
    """With --repeat: the pair whose create-throughput ratio is the median one.

    Pairs measured while other work kept the machine busy are left out when
    quieter ones exist.
    """
    good = [p for p in runs if dig(p[0], "create", "per_s") and dig(p[1], "create", "per_s")]
    quiet = [p for p in good
             if all((dig(r, "cpu", "create", "per_wall_s", "others") or 0) <= NOISY for r in p)]
    good = quiet or good
    if not good:
        return runs[-1]
    good.sort(key=lambda p: p[1]["create"]["per_s"] / p[0]["create"]["per_s"])
    return good[(len(good) - 1) // 2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-R", "--runtimes", type=int, default=500)
    p.add_argument("-M", "--modules", type=int, default=20000)
    p.add_argument("-W", "--window", type=int, default=100)
    p.add_argument("--repeat", type=int, default=1,
                   help="run the main floor/orchestrator pair this many times; the median "
                        "pair (by create-throughput ratio) is compared")
    p.add_argument("--skip-100k", action="store_true", help="no run at 100,000 modules")
    p.add_argument("--scaling", type=lambda s: [int(x) for x in s.split(",") if x],
                   default=[2000, 100000], help="other M for the scaling line")
    p.add_argument("--skip-keepalive", action="store_true")
    p.add_argument("--keepalive-runtimes", type=int, default=1000)
    p.add_argument("--keepalive-seconds", type=float, default=20.0)
    p.add_argument("--keepalive-modules", type=int, default=5000,
                   help="modules on the keepalive runtimes (listed as their children)")
    p.add_argument("--rest-budget", type=float, default=6.0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--broker-nagle", action="store_true",
                   help="leave mosquitto's set_tcp_nodelay at its default (false)")
    p.add_argument("--workdir", help="where temporary state goes (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p


def repeat_figures(runs: list[tuple[Run, Run, Run]]) -> list[dict[str, Any]]:
    """With --repeat: each pair's throughputs and ratios (and the wire floor's)."""
    return [{"floor_per_s": dig(f_, "create", "per_s"),
             "orchestrator_per_s": dig(o_, "create", "per_s"),
             "floor_wire_per_s": dig(w_, "create", "per_s"),
             "ratio": ratio(dig(o_, "create", "per_s"), dig(f_, "create", "per_s")),
             "p99_ratio": ratio(dig(o_, "create", "p99_ms"), dig(f_, "create", "p99_ms")),
             "ratio_vs_wire": ratio(dig(o_, "create", "per_s"), dig(w_, "create", "per_s"))}
            for f_, o_, w_ in runs]


def scaling_runs(bench: Bench, args: argparse.Namespace, rest: list[str],
                 main_pair: tuple[Run, Run]) -> tuple[list[dict[str, Any]], Run]:
    """The pairs at the other M; the scaling line, and the orchestrator's 100k run if any."""
    points: dict[int, tuple[Run, Run]] = {args.modules: main_pair}
    big = None
    for m in args.scaling:
        if m == args.modules or (args.skip_100k and m >= 100000):
            continue
        f_run, o_run = pair(bench, m, f"scale{m}",
                            rest + ["--rest-at", "10000"] if 10000 < m else rest)
        points[m] = (f_run, o_run)
        if m >= 100000:
            big = o_run
    scaling = []
    for m in sorted(points):
        f_run, o_run = points[m]
        fp, op = dig(f_run, "create", "per_s"), dig(o_run, "create", "per_s")
        scaling.append({"M": m, "floor_per_s": fp, "orchestrator_per_s": op,
                        "ratio": ratio(op, fp),
                        "orchestrator_p99_ms": dig(o_run, "create", "p99_ms")})
    return scaling, big


def keepalive_run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Both sides under K runtimes' keepalives at one per second."""
    ka = ["--keepalive-runtimes", str(args.keepalive_runtimes),
          "--keepalive-seconds", str(args.keepalive_seconds)]
    kf, ko = pair(bench, args.keepalive_modules, "keepalive", ["--rest-budget", "0.5"],
                  runtimes=args.keepalive_runtimes, extra=ka)
    return {"floor": {**(dig(kf, "keepalive") or {}),
                      "cpu_per_wall_all": dig(kf, "keepalive", "cpu_per_wall"),
                      "cpu_per_wall": dig(kf, "keepalive", "cpu_per_wall", "floor")},
            "orchestrator": {**(dig(ko, "keepalive") or {}),
                             "cpu_per_wall_all": dig(ko, "keepalive", "cpu_per_wall"),
                             "cpu_per_wall": dig(ko, "keepalive", "cpu_per_wall",
                                                 "orchestrator"),
                             "cpu_per_wall_idle": dig(ko, "keepalive", "cpu_per_wall_idle",
                                                      "orchestrator")}}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bench = Bench(args)
    started = time.monotonic()
    rest = ["--rest-budget", str(args.rest_budget)]
    try:
        rest_main = rest + (["--rest-at", "10000"] if args.modules > 10000 else [])
        pairs = [triple(bench, args.modules, f"main{k + 1}" if args.repeat > 1 else "main",
                        rest_main)
                 for k in range(max(1, args.repeat))]
        floor, orch, wire = best_of(pairs)
        repeats = repeat_figures(pairs)
        scaling, big = scaling_runs(bench, args, rest, (floor, orch))
        emit({"bench": "perf-scaling", "R": args.runtimes, "W": args.window, "points": scaling})

        keep = None
        if not args.skip_keepalive:
            keep = keepalive_run(bench, args)
            emit({"bench": "perf-keepalive", "runtimes": args.keepalive_runtimes,
                  "seconds": args.keepalive_seconds, "floor": keep["floor"],
                  "orchestrator": keep["orchestrator"]})

        cmp = compare(args, floor, orch, big, scaling, keep, wire)
        if len(pairs) > 1:
            cmp["repeats"] = repeats      # every pair; the figures above are the median one
        cmp["seconds"] = round(time.monotonic() - started, 1)
        emit(cmp)
        table(cmp, orch, big, scaling, keep)
    finally:
        bench.cleanup()
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
