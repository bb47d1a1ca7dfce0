"""The glue's one rule, on the shipped doubles: nothing is announced before its batch is durable.

The real OrchestratorService runs on a task.Clock with orchestrator.testing's
MemoryJournal (whose batches become durable only when the test fires them)
and RecordingPublisher; no files, no broker.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from twisted.internet.task import Clock

from orchestrator.config import Config
from orchestrator.core.events import EventLog
from orchestrator.core.protocol import Orchestrator
from orchestrator.service import OrchestratorService
from orchestrator.testing import MemoryJournal, RecordingPublisher
from tests.support.harness import RT1, RT2, RT3

R = "realm/proc"


class Glue:
    """The service with the doubles, and a way to send one message per reactor turn."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.journal = MemoryJournal()
        self.publisher = RecordingPublisher()
        self.events = EventLog(lambda stored: b"{}")
        self.stops = 0
        self.svc = OrchestratorService(
            self.clock, Orchestrator(replace(Config(), snapshot_every_sec=3600)),
            self.journal, publisher=self.publisher, events=self.events, stop=self._stopped)
        self.svc.startService()
        self.svc.broker_connected()

    def _stopped(self) -> None:
        self.stops += 1

    def register(self, uuid: str, object_id: str) -> None:
        """A registration, then the end of the reactor turn (one journal batch)."""
        self.svc.message_received(f"{R}/reg", json.dumps({
            "object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": uuid, "name": object_id}}).encode())
        self.clock.advance(0)

    def replies(self) -> list[Any]:
        return [p["object_id"] for p in self.publisher.on(f"{R}/reg")]


@pytest.fixture
def glue() -> Glue:
    return Glue()


def test_nothing_is_published_or_announced_before_its_batch_is_durable(glue: Glue) -> None:
    glue.register(RT1, "r1")
    assert len(glue.journal.pending) == 1
    assert glue.publisher.published == [] and len(glue.events) == 0
    glue.journal.fire()
    assert glue.replies() == ["r1"]
    assert [e.type for e in glue.events.after(0)] == ["runtime.registered"]


def test_messages_of_one_turn_share_one_batch(glue: Glue) -> None:
    for uuid, object_id in ((RT1, "r1"), (RT2, "r2")):
        glue.svc.message_received(f"{R}/reg", json.dumps({
            "object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": uuid}}).encode())
    glue.clock.advance(0)
    assert len(glue.journal.batches) == 1
    glue.journal.fire()
    assert glue.replies() == ["r1", "r2"]


def test_a_later_batch_waits_for_the_earlier_one(glue: Glue) -> None:
    glue.register(RT1, "r1")
    glue.register(RT2, "r2")
    first, second = glue.journal.pending
    second.durable.callback(None)               # durable out of order
    assert glue.publisher.published == []
    first.durable.callback(None)
    assert glue.replies() == ["r1", "r2"]
    assert [e.id for e in glue.events.after(0)] == [1, 2]


def test_a_failed_sync_stops_exactly_once_and_nothing_of_it_is_announced(glue: Glue) -> None:
    glue.register(RT1, "r1")
    glue.journal.fire()
    glue.register(RT2, "r2")
    glue.register(RT3, "r3")
    glue.journal.fail()                          # both pending batches fail
    assert glue.stops == 1
    assert glue.replies() == ["r1"]
    glue.register("44444444-4444-4444-8444-444444444444", "r4")   # arrives while stopping
    glue.journal.fire()
    assert glue.replies() == ["r1"] and glue.stops == 1
