"""Active/standby on PostgreSQL (issue 15): what the PostgreSQL journal costs, and how
long a takeover takes.

    .venv/bin/python bench/ha.py                       # R=100 M=5000, 10 takeovers
    .venv/bin/python bench/ha.py -M 20000 --takeovers 20 --repeat 3

1. Create throughput of the real ``twistd silverline`` with the file journal and
   with the PostgreSQL journal, back to back in the same run, each on a fresh
   private mosquitto, under the same ``bench/load.py`` load (both commit before
   announcing: fsync / synchronous commit). Target: PostgreSQL >= 0.7 x file.
2. Failover: two orchestrators on one realm; creates at 100/s; SIGKILL of the
   leader; the time until the first reply from the new leader. The killed one
   is started again as a standby, and again, ``--takeovers`` times: p50 and p99.
   Target: p99 <= 5 s.

PostgreSQL is a private cluster (``initdb`` on a free port in a temporary
directory), never the machine's own.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, percentile, report

sys.path.insert(0, str(ROOT / "bench"))

import perf  # noqa: E402
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.ha import Group, Traffic  # noqa: E402
from tests.support.postgres import PostgresCluster, fresh_database  # noqa: E402


class PgOrchestrator(perf.Orchestrator):
    """perf.py's orchestrator with ``"postgres"`` in its config (it leads alone)."""

    dsn = ""

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        path = self.dir / "config.json"
        import json
        config = json.loads(path.read_text())
        config["postgres"] = self.dsn
        path.write_text(json.dumps(config))
        return cmd, env


def throughput(args: argparse.Namespace, pg: PostgresCluster) -> dict[str, Any]:
    bench = perf.Bench(argparse.Namespace(
        runtimes=args.runtimes, window=args.window, timeout=args.timeout, broker_nagle=False,
        workdir=None, keep=False))
    pairs = []
    try:
        for i in range(args.repeat):
            files = bench.run("orchestrator", args.modules, label=f"file-{i}")
            PgOrchestrator.dsn = fresh_database(pg, f"bench_{i}")
            pgrun = bench.run("orchestrator", args.modules, label=f"postgres-{i}",
                              system_class=PgOrchestrator)
            f = perf.dig(files, "create", "per_s")
            p = perf.dig(pgrun, "create", "per_s")
            pairs.append({"file_per_s": f, "postgres_per_s": p,
                          "ratio": round(p / f, 3) if f and p else None,
                          "file_p99_ms": perf.dig(files, "create", "p99_ms"),
                          "postgres_p99_ms": perf.dig(pgrun, "create", "p99_ms")})
    finally:
        bench.cleanup()
    ratios = sorted(p["ratio"] for p in pairs if p["ratio"] is not None)
    median = ratios[(len(ratios) - 1) // 2] if ratios else None
    return {"R": args.runtimes, "M": args.modules, "W": args.window, "runs": pairs,
            "ratio": median, "target": {"limit": 0.7, "met": median is not None and median >= 0.7}}


@defer.inlineCallbacks
def failover(args: argparse.Namespace, pg: PostgresCluster) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="silverline-ha-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    group = Group(reactor, tmp / "group", broker.port, fresh_database(pg, "bench_failover"),
                  lease=args.lease)
    traffic = Traffic(reactor, broker.port)
    times: list[float] = []
    try:
        group.add()
        yield defer.Deferred.fromCoroutine(group.leader(60))
        group.add()
        yield defer.Deferred.fromCoroutine(group.leader(60))
        yield defer.Deferred.fromCoroutine(traffic.start(runtimes=5))
        traffic.run(0.01)
        for n in range(args.takeovers):
            leader = yield defer.Deferred.fromCoroutine(group.leader(60))
            yield task.deferLater(reactor, 1.0, lambda: None)
            killed_at = time.monotonic()
            leader.signal(signal.SIGKILL)
            while traffic.first_reply_after(killed_at) is None:
                if time.monotonic() - killed_at > 30:
                    raise RuntimeError("no reply from a new leader within 30 s")
                yield task.deferLater(reactor, 0.005, lambda: None)
            times.append(traffic.first_reply_after(killed_at) - killed_at)  # type: ignore[operator]
            perf.progress(f"takeover {n + 1}: {times[-1]:.3f}s")
            yield deferToThread(leader.proc.wait, 10)
            group.add()                     # back as a standby
        traffic.pause()
        yield task.deferLater(reactor, 1.0, lambda: None)
        last = yield defer.Deferred.fromCoroutine(group.leader(60))
        audit = yield defer.Deferred.fromCoroutine(traffic.audit(last))
    finally:
        traffic.close()
        yield defer.Deferred.fromCoroutine(group.stop())
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    p99 = percentile(times, 99)
    return {"takeovers": len(times), "p50_s": round(percentile(times, 50), 3),
            "p99_s": round(p99, 3), "max_s": round(max(times), 3), "lease_s": args.lease,
            "acknowledged_lost": 0, **audit, "target": {"limit_s": 5.0, "met": p99 <= 5.0}}


@defer.inlineCallbacks
def main(args: argparse.Namespace) -> Any:
    pg = PostgresCluster().init()
    pg.start()
    try:
        if not args.skip_throughput:
            figures = yield deferToThread(throughput, args, pg)
            report("ha-journal-throughput", figures)
        if args.takeovers:
            figures = yield failover(args, pg)
            report("ha-failover", figures)
    finally:
        pg.destroy()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-R", "--runtimes", type=int, default=100)
    p.add_argument("-M", "--modules", type=int, default=5000)
    p.add_argument("-W", "--window", type=int, default=100)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--takeovers", type=int, default=10)
    p.add_argument("--lease", type=float, default=5.0)
    p.add_argument("--skip-throughput", action="store_true")
    task.react(lambda _: main(p.parse_args()))
