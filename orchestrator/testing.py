"""Test doubles and probes that ship with the orchestrator, for its tests and yours.

Nothing here is used by the running service.
"""

from __future__ import annotations

from .core.liveness import Liveness, allowed_silence

__all__ = ["silence_allowed"]


def silence_allowed(liveness: Liveness, uuid: str) -> float | None:
    """How long ``uuid`` may stay silent now, or None while it is judged by its will alone."""
    saved = liveness.dump().get(uuid)
    if saved is None:
        return None
    _, keepalives, gaps = saved
    if keepalives < 2:
        return None
    return allowed_silence(liveness.misses, liveness.ka_interval, gaps)
