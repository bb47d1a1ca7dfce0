"""The MQTT topics of one realm (docs/protocol.md section 3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Topics", "Route", "REG", "CONTROL", "KEEPALIVE", "SPECIAL", "WILDCARDS",
           "LEVEL_UNSAFE", "REALM_UNSAFE"]

REG = "reg"
CONTROL = "control"
KEEPALIVE = "keepalive"

#: characters with a meaning in a topic: the level separator and the wildcards
SPECIAL = "/+#"
WILDCARDS = "+#"
#: what an identifier that becomes one topic level (a uuid) may not contain
LEVEL_UNSAFE = re.compile(r"[/+#\x00-\x1f]")
#: what the realm (a topic prefix: levels allowed) may not contain
REALM_UNSAFE = re.compile(r"[+#\x00]")


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

    @property
    def everything(self) -> str:
        """The filter of every topic of the realm."""
        return f"{self.base}/#"

    def control_for(self, runtime_uuid: str) -> str:
        return f"{self.control}/{runtime_uuid}"

    def reg_for(self, runtime_uuid: str) -> str:
        return f"{self.reg}/{runtime_uuid}"

    def keepalive_for(self, runtime_uuid: str) -> str:
        return f"{self.keepalive}/{runtime_uuid}"

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
