"""The MQTT topics of one realm (docs/protocol.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Topics", "Route", "REG", "CONTROL", "KEEPALIVE"]

REG = "reg"
CONTROL = "control"
KEEPALIVE = "keepalive"


class Route(NamedTuple):
    """Where a message came in: the topic kind and the subtopic (or None)."""

    kind: str
    sub: str | None


@dataclass(frozen=True, slots=True)
class Topics:
    realm: str

    @property
    def base(self) -> str:
        return f"{self.realm}/proc"

    @property
    def reg(self) -> str:
        return f"{self.base}/reg"

    @property
    def control(self) -> str:
        return f"{self.base}/control"

    @property
    def keepalive(self) -> str:
        return f"{self.base}/keepalive"

    @property
    def log(self) -> str:
        return f"{self.base}/log/orchestrator"

    @property
    def notif(self) -> str:
        return f"{self.base}/notif"

    @property
    def status(self) -> str:
        return f"{self.base}/orchestrator/status"

    def control_for(self, runtime_uuid: str) -> str:
        return f"{self.control}/{runtime_uuid}"

    def subscriptions(self) -> list[str]:
        """Every input topic, with and without the per-runtime subtopic."""
        return [t for kind in (REG, CONTROL, KEEPALIVE)
                for t in (f"{self.base}/{kind}", f"{self.base}/{kind}/+")]

    def route(self, topic: str) -> Route | None:
        """Classify an incoming topic; None when it is not one of ours."""
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix):]
        kind, _, sub = rest.partition("/")
        if kind not in (REG, CONTROL, KEEPALIVE) or "/" in sub:
            return None
        return Route(kind, sub if rest != kind else None)
