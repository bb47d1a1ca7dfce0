"""make bench: every benchmark, one after the other; each prints JSON lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [["perf.py"], ["durability.py"], ["placement.py"], ["sse.py"],
           ["crash.py", "--kills", "100"], ["soak.py", "--minutes", "10"], ["ha.py"], ["logcost.py"]]

if __name__ == "__main__":
    failed = 0
    for bench in BENCHES:
        print(f"# bench/{' '.join(bench)}", flush=True)
        failed |= subprocess.call([sys.executable, *bench], cwd=HERE)
    sys.exit(failed)
