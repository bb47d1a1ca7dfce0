"""Shared helpers for the benchmarks: realistic registries, timing, printing."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.core.model import Module, Runtime  # noqa: E402
from orchestrator.core.registry import Registry  # noqa: E402
from stats import percentile  # noqa: E402,F401  (shared by the benchmarks that import common)


def populate(registry: Registry, runtimes: int, modules: int, now: float | None = None) -> None:
    """Alive runtimes and modules spread evenly, with fields like real ones."""
    now = now or time.time()
    rts = []
    for i in range(runtimes):
        rt = Runtime(uuid=str(uuid.uuid4()), serial=registry.new_serial(), name=f"rt-{i}",
                     apis=("wasm", "wasi"), max_nmodules=0, registered_at=now,
                     changed_at=now, platform={"cpu": {"cores": 4}})
        registry.put_runtime(rt)
        rts.append(rt.uuid)
    for i in range(modules):
        filename = f"wasm/apps/app{i % 50}.wasm"
        registry.put_module(Module(
            uuid=str(uuid.uuid4()), serial=registry.new_serial(), name=f"module-{i % 1000}",
            parent=rts[i % runtimes], filename=filename, args=(filename,),
            resources={"period": 10000000, "runtime": 5000000},
            created_at=now, changed_at=now))


def report(name: str, figures: dict[str, Any]) -> None:
    """One JSON line per result, for machines; the same figures are readable for people."""
    print(json.dumps({"bench": name, **figures}, sort_keys=False), flush=True)

