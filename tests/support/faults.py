"""Fault injection for the real twistd (imported before twistd runs, tests only).

``SILVERLINE_TEST_KILL_BEFORE_PUBLISHING=<text>``: the process SIGKILLs itself
at the worst moment for an outbox, when a batch whose announcements mention
``<text>`` is durable on disk and about to be published.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from orchestrator.core.effects import Publish
from orchestrator.service import OrchestratorService

MARK = os.environ.get("SILVERLINE_TEST_KILL_BEFORE_PUBLISHING", "").encode()
_emit = OrchestratorService._emit


def _emit_or_die(self: OrchestratorService, effects: list[Any], *args: Any) -> None:
    if MARK and any(isinstance(e, Publish) and MARK in e.body() for e in effects):
        os.kill(os.getpid(), signal.SIGKILL)
    _emit(self, effects, *args)


OrchestratorService._emit = _emit_or_die  # type: ignore[method-assign, assignment]
