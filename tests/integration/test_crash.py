"""Zero acknowledged changes lost across SIGKILLs of the real twistd process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from tests.support.broker import Mosquitto
from tests.support.crash import CrashRig
from tests.support.twisted import within


@pytest_twisted.ensureDeferred
@within(240)
async def test_nothing_acknowledged_is_lost_across_22_kills(reactor: Any, broker: Mosquitto,
                                                            tmp_path: Path) -> None:
    rig = CrashRig(reactor, broker.port, tmp_path / "crash", seed=20261127)
    try:
        figures = await rig.run(kills=22)
    finally:
        await rig.stop()
    assert figures["kills"] == 22
    assert figures["acked_modules"] > 100, figures      # the kills hit real traffic
    print("crash test:", figures)
