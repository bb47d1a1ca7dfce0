"""The real ``twistd silverline`` as a subprocess: one way to start it, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: ``twistd -n --pidfile= silverline`` with this interpreter (the venv's twisted and plugin)
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
          "-n", "--pidfile=", "silverline"]


def twistd_env() -> dict[str, str]:
    """The environment it runs in: ours, with this checkout importable."""
    return dict(os.environ, PYTHONPATH=str(ROOT))


def start_twistd(workdir: Path, *args: str, log: Path | None = None,
                 env: dict[str, str] | None = None, prelude: str = "") -> subprocess.Popen[bytes]:
    """``twistd silverline *args`` in ``workdir``; its output appended to ``log``
    (None: thrown away). ``env`` adds variables; ``prelude`` is Python run first
    in the process (e.g. importing tests/support/faults.py)."""
    cmd = [*TWISTD, *args]
    if prelude:
        cmd[2] = f"{prelude}; {cmd[2]}"
    environment = {**twistd_env(), **(env or {})}
    if log is None:
        return subprocess.Popen(cmd, cwd=workdir, env=environment,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=environment,
                                stdout=out, stderr=subprocess.STDOUT)


def run_twistd(workdir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run it to the end (a start-up that must fail), its output captured."""
    return subprocess.run([*TWISTD, *args], cwd=workdir, env=twistd_env(),
                          capture_output=True, text=True, timeout=timeout)
