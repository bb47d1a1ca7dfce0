"""The MQTT topics of the ARENA dialect (applauncher-runtime, arena-web-core).

Templates, as the real peers use them (``R`` is the realm):

- ``R/g/<namespace>/p/<runtime uuid>``: a runtime's registration, keepalives,
  delete (also its last will) and its bare error reports; our replies.
- ``R/s/<namespace>/<scene>/p/<a>/<b>``: module requests. arena-web-core
  publishes on ``.../p/<userClient>/<idTag>``; the orchestrator sends a
  runtime its creates and deletes on ``.../p/<runtime uuid>/<module uuid>``.
  applauncher-runtime listens to ``R/s/+/+/p/+/+`` and picks what names it.
- ``R/s/<namespace>/<scene>/p/<module uuid>``: a module's own topic, where the
  runtime confirms (``resp``) and reports an exit (a ``delete`` request).
  Its ``/-/stdout``, ``/-/stdin``, ``/-/stderr`` streams are not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["ArenaTopics", "ArenaRoute", "RUNTIME", "PROGRAM", "MODULE"]

RUNTIME = "arena-runtime"
PROGRAM = "arena-program"
MODULE = "arena-module"


class ArenaRoute(NamedTuple):
    """An ARENA topic taken apart: its kind and the levels that identify things.

    ``RUNTIME``: ``ident`` is the runtime uuid. ``PROGRAM``: ``sender`` and
    ``ident`` are the last two levels (client and idTag, or runtime and
    module uuid). ``MODULE``: ``ident`` is the module uuid.
    """

    kind: str
    namespace: str
    scene: str | None
    sender: str | None
    ident: str


@dataclass(frozen=True, slots=True)
class ArenaTopics:
    realm: str

    def runtime(self, namespace: str, runtime_uuid: str) -> str:
        return f"{self.realm}/g/{namespace}/p/{runtime_uuid}"

    def module_request(self, namespace: str, scene: str, runtime_uuid: str,
                       module_uuid: str) -> str:
        return f"{self.realm}/s/{namespace}/{scene}/p/{runtime_uuid}/{module_uuid}"

    def subscriptions(self) -> list[str]:
        r = self.realm
        return [f"{r}/g/+/p/+", f"{r}/s/+/+/p/+/+", f"{r}/s/+/+/p/+"]

    def route(self, topic: str) -> ArenaRoute | None:
        """Classify an incoming topic; None when it is not an ARENA topic of ours."""
        levels = topic.split("/")
        if len(levels) < 5 or levels[0] != self.realm or not all(levels[1:]):
            return None
        if levels[1] == "g" and len(levels) == 5 and levels[3] == "p":
            return ArenaRoute(RUNTIME, levels[2], None, None, levels[4])
        if levels[1] == "s" and len(levels) in (6, 7) and levels[4] == "p":
            if len(levels) == 7:
                return ArenaRoute(PROGRAM, levels[2], levels[3], levels[5], levels[6])
            return ArenaRoute(MODULE, levels[2], levels[3], None, levels[5])
        return None
