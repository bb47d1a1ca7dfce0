"""What the operator's log costs a module create, against the same run without it.

    .venv/bin/python bench/logcost.py [-n 20000] [--repeat 5]

In one process: N creates handled by the pure core (the baseline), then the
same creates' decisions written as log lines to a file, as ``orchestrator.log``
gets them (text, and JSON), and the debug lines of their messages in and out.
CPU time (``time.process_time``), so other load on the machine matters less;
the best of ``--repeat`` rounds. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.logger import LogLevel, Logger, jsonFileLogObserver  # noqa: E402

from orchestrator.adapters.decisionlog import DecisionLog  # noqa: E402
from orchestrator.adapters.logfile import levelled, text_observer  # noqa: E402
from orchestrator.core.effects import Event, Publish  # noqa: E402
from orchestrator.service import encode  # noqa: E402
from orchestrator.testing import CoreHarness  # noqa: E402

RT = "11111111-1111-4111-8111-111111111111"


def fleet() -> CoreHarness:
    h = CoreHarness(max_nmodules=0)
    h.send("reg", {"object_id": "r", "action": "create", "type": "arts_req",
                   "data": {"type": "runtime", "uuid": RT, "name": "rt"}})
    return h


def cpu_us(f: Callable[[], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        f()
        best = min(best, time.process_time() - started)
    return best / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    n = args.n
    payloads = [json.dumps({"object_id": f"o{i}", "action": "create", "type": "arts_req",
                            "data": {"type": "module", "name": f"m{i}", "parent": "rt"}}).encode()
                for i in range(n)]
    effects: list[Any] = []

    def handle() -> None:
        h = fleet()
        effects.clear()
        for payload in payloads:
            effects.extend(h.core.handle("realm/proc/control", payload, 1.0).effects)
    baseline = cpu_us(handle, n, args.repeat)
    core = fleet()
    events = [e for e in effects if isinstance(e, Event)]
    wire = [(e.topic, encode(e.payload)) for e in effects if isinstance(e, Publish)]
    with tempfile.TemporaryDirectory() as tmp:
        def lines(fmt: str, debug: bool) -> Callable[[], None]:
            out = open(Path(tmp) / f"{fmt}-{debug}.log", "w")
            writer = jsonFileLogObserver(out, "") if fmt == "json" else text_observer(out)
            log = DecisionLog("least_loaded", core.registry.runtimes.get, debug=debug,
                              log=Logger(observer=levelled(
                                  writer, LogLevel.debug if debug else LogLevel.info)))

            def run() -> None:
                for payload in payloads:
                    log.wire_in("realm/proc/control", payload)
                for topic, payload in wire:
                    log.wire_out(topic, payload)
                for event in events:
                    log.event(event)
                out.flush()
            return run
        text = cpu_us(lines("text", False), n, args.repeat)
        text_debug = cpu_us(lines("text", True), n, args.repeat)
        json_lines = cpu_us(lines("json", False), n, args.repeat)
    print(json.dumps({
        "bench": "logcost", "creates": n,
        "handle_us_per_create": round(baseline, 1),
        "log_us_per_create": {"text": round(text, 1), "text+debug": round(text_debug, 1),
                              "json": round(json_lines, 1)},
        "log_share_of_handle": {"text": round(text / baseline, 3),
                                "text+debug": round(text_debug / baseline, 3),
                                "json": round(json_lines / baseline, 3)}}))


if __name__ == "__main__":
    main()
