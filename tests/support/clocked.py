"""The real OrchestratorService on a ``task.Clock``: no reactor, no broker, a list for output."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from orchestrator.adapters.store import Store
from orchestrator.config import Config
from orchestrator.core.protocol import Orchestrator
from orchestrator.service import OrchestratorService


class ClockedService:
    """Started, connected to a pretend broker; what it publishes lands in ``published``."""

    def __init__(self, state_dir: Path, **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.config = replace(Config(), state_dir=str(state_dir), journal_fsync=False, **config)
        self.published: list[tuple[str, Any]] = []
        self.svc = OrchestratorService(self.clock, Orchestrator(self.config),
                                       Store(self.clock, str(state_dir), False), publisher=self)
        self.svc.startService()
        self.svc.broker_connected()

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        self.published.append((topic, json.loads(payload)))
        return True

    def message(self, topic: str, doc: dict[str, Any]) -> None:
        """One message, then the end of the reactor turn (journal, then publish)."""
        self.svc.message_received(topic, json.dumps(doc).encode())
        self.clock.advance(0)

    def stop(self) -> None:
        for loop in (self.svc._sweep, self.svc._snapshot_timer, self.svc._prune):
            if loop.running:
                loop.stop()
        self.svc.store.close()
