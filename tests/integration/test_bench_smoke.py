"""The performance bench scripts run, for a tiny R and M (the real figures come from make bench).

Not a measurement: tiny runs only prove that ``bench/floor.py``, ``bench/load.py``
and ``bench/perf.py`` work end to end against both the floor and the real
orchestrator, and print the JSON lines the closing note and CI read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line that is not a '#' comment must be one JSON object."""
    return [json.loads(line) for line in stdout.splitlines()
            if line.strip() and not line.startswith("#")]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_bench_scripts_run_for_a_tiny_load(broker: Mosquitto, tmp_path: Path) -> None:
    # 1. the load generator against the floor, on the test's own broker; the load
    #    waits for the floor's retained "online" itself, so no sleeping here
    floor = subprocess.Popen([sys.executable, str(BENCH / "floor.py"), "--port", str(broker.port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH / "load.py"), "--port", str(broker.port),
             "--target", "floor", "-R", "3", "-M", "30", "-W", "5", "--timeout", "20",
             "--watch", f"floor={floor.pid}", "--keepalive-runtimes", "4",
             "--keepalive-seconds", "0.5"],
            capture_output=True, text=True, timeout=60)
    finally:
        floor.terminate()
        floor.wait(10)
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = json_lines(done.stdout)
    assert run["system"] == "floor" and "error" not in run
    assert run["register"]["n"] == 3 and run["create"]["n"] == 30
    assert run["create_scheduled"]["runtimes_used"] == 3
    assert run["keepalive"]["sent"] >= 2 and "floor" in run["keepalive"]["cpu_per_wall"]

    # 2. the whole driver: floor and the real twistd, same tiny load, every part on
    done = subprocess.run(
        [sys.executable, str(BENCH / "perf.py"), "-R", "3", "-M", "30", "-W", "5",
         "--scaling", "10", "--keepalive-runtimes", "4", "--keepalive-seconds", "0.5",
         "--keepalive-modules", "8", "--rest-budget", "0.05", "--timeout", "20",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    records = json_lines(done.stdout)
    runs = [r for r in records if r["bench"] == "perf-run"]
    assert not [r for r in runs if "error" in r], runs
    assert {(r["system"], r["label"]) for r in runs} == {
        (s, label) for s in ("floor", "orchestrator") for label in ("main", "scale10", "keepalive")
    } | {("floor-wire", "main")}
    orch = next(r for r in runs if r["system"] == "orchestrator" and r["label"] == "main")
    assert orch["create"]["reply_p99_ms"] is not None
    assert orch["rest"]["at_30"]["list_modules"]["items"] == 30
    assert orch["rss"]["after_kb"] > 0
    [cmp] = [r for r in records if r["bench"] == "perf-compare"]
    assert cmp["ratios"]["create_throughput"] > 0
    assert cmp["ratios"]["create_throughput_vs_wire"] > 0     # the second floor
    assert set(cmp["targets"]) >= {"create_throughput_vs_floor", "create_p99_vs_floor",
                                   "register_throughput_vs_floor", "rest_list_modules_p50",
                                   "rest_page_500_p99", "rest_detail_p99", "rss_per_module",
                                   "keepalive_cpu", "linear_cost"}
    assert [p["M"] for p in next(r for r in records if r["bench"] == "perf-scaling")["points"]] \
        == [10, 30]
    assert any(line.startswith("# target ") for line in done.stdout.splitlines())
