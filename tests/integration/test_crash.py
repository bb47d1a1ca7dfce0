"""Nothing the broker accepted or the orchestrator acknowledged is lost, or done twice,
across stops and SIGKILLs of the real twistd process."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.support.broker import Mosquitto
from tests.support.crash import CrashRig, R
from tests.support.twisted import eventually, within


@pytest.fixture
def deep_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that queues everything for an offline session (default: 1,000, then drops)."""
    b = Mosquitto(tmp_path / "deep-broker", extra="max_queued_messages 1000000\n")
    b.start()
    yield b
    b.stop()


@pytest_twisted.ensureDeferred
@within(300)
async def test_nothing_accepted_is_lost_or_done_twice_across_22_kills(
        reactor: Any, deep_broker: Mosquitto, tmp_path: Path) -> None:
    rig = CrashRig(reactor, deep_broker.port, tmp_path / "crash", seed=20261127)
    try:
        figures = await rig.run(kills=22)
    finally:
        await rig.stop()
    assert figures["kills"] == 22
    assert figures["acked_modules"] > 100, figures      # the kills hit real traffic
    assert figures["accepted_modules"] == figures["modules"], figures
    print("crash test:", figures)


async def created_while_down(rig: CrashRig, n: int) -> None:
    runtime = sorted(rig.acked_runtimes)[0]
    for _ in range(n):
        rig.create(runtime)
    await eventually(lambda: not rig._in_flight, timeout=10)   # the broker has them all


@pytest_twisted.ensureDeferred
@within(120)
async def test_creates_sent_while_the_orchestrator_is_stopped_or_killed_are_carried_out(
        reactor: Any, deep_broker: Mosquitto, tmp_path: Path) -> None:
    rig = CrashRig(reactor, deep_broker.port, tmp_path / "down")
    try:
        await rig.setup()
        await rig.start()
        rig.register()
        await eventually(lambda: rig.acked_runtimes, timeout=10)
        await rig.terminate()                       # SIGTERM: a clean stop
        await created_while_down(rig, 20)
        await rig.start()
        first = await rig.audit()
        assert first["modules"] == first["accepted_modules"] == 20, first
        await rig.kill()                            # SIGKILL, idle
        await created_while_down(rig, 20)
        await rig.start()
        second = await rig.audit()
        assert second["modules"] == second["accepted_modules"] == 40, second
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
@within(120)
async def test_a_crash_between_journal_and_publish_is_made_good_after_restart(
        reactor: Any, deep_broker: Mosquitto, tmp_path: Path) -> None:
    rig = CrashRig(reactor, deep_broker.port, tmp_path / "torn")
    module = str(uuid.uuid4())
    try:
        await rig.setup()
        await rig.start(kill_before_publishing=module)
        rig.register()
        await eventually(lambda: rig.acked_runtimes, timeout=10)
        runtime = sorted(rig.acked_runtimes)[0]
        rig.driver.publish(f"{R}/control", {
            "object_id": "c-torn", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": module, "parent": runtime}})
        assert rig.proc is not None
        await deferToThread(rig.proc.wait, 20)      # it killed itself before publishing
        await rig._status(b"offline", 10)
        assert module not in rig.forwards and module not in rig.acked_modules
        await rig.start()
        await eventually(lambda: module in rig.forwards and module in rig.acked_modules,
                         timeout=20)
        rig.accepted_modules.add(module)
        figures = await rig.audit()
        assert figures["modules"] == 1 and len(rig.forwards[module]) == 1, figures
        assert "announcements not acknowledged by the broker" in rig.output()
    finally:
        await rig.stop()


@pytest_twisted.ensureDeferred
@within(120)
async def test_creates_queued_for_a_stopped_orchestrator_survive_a_broker_restart(
        reactor: Any, tmp_path: Path) -> None:
    """The broker settings of contrib/mosquitto/production.conf (persistence, autosave on
    changes, a deep queue) keep what is queued for us across a broker restart."""
    store = tmp_path / "mosquitto-db"
    store.mkdir()
    broker = Mosquitto(tmp_path / "persistent-broker", extra=(
        f"persistence true\npersistence_location {store}/\nautosave_on_changes true\n"
        "autosave_interval 100\nmax_queued_messages 100000\n"))
    broker.start()
    rig = CrashRig(reactor, broker.port, tmp_path / "broker-restart")
    try:
        await rig.setup()
        await rig.start()
        rig.register()
        await eventually(lambda: rig.acked_runtimes, timeout=10)
        await rig.terminate()
        await created_while_down(rig, 20)
        rig.listener.close()
        rig.driver.close()
        broker.stop()                               # SIGTERM: mosquitto saves its database
        broker.start()
        await rig.setup()                           # our test peers start afresh
        await rig.start()
        figures = await rig.audit()
        assert figures["modules"] == figures["accepted_modules"] == 20, figures
    finally:
        await rig.stop()
        broker.stop()
