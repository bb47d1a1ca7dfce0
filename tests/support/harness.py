"""Drive the pure protocol core by hand: orchestrator.testing's harness plus message makers."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.core.effects import Publish
from orchestrator.testing import CoreHarness

RT1 = "11111111-1111-4111-8111-111111111111"
RT2 = "22222222-2222-4222-8222-222222222222"
RT3 = "33333333-3333-4333-8333-333333333333"


class Harness(CoreHarness):
    """The shipped core harness, with the messages the tests send."""

    def send_to(self, topic: str, msg: Any) -> list[Publish]:
        """Handle one message on a full topic name (e.g. an ARENA topic)."""
        payload = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        return self._split(self.core.handle(topic, payload, self.now).effects)

    # -- message makers ----------------------------------------------------
    def register(self, uuid: str = RT1, topic: str = "reg", **data: Any) -> list[Publish]:
        return self.send(topic, {"object_id": f"reg-{uuid[:4]}", "action": "create",
                                 "type": "arts_req",
                                 "data": {"type": "runtime", "uuid": uuid, **data}})

    def deregister(self, uuid: str = RT1, topic: str = "reg") -> list[Publish]:
        return self.send(topic, {"object_id": "will", "action": "delete", "type": "arts_req",
                                 "data": {"type": "runtime", "uuid": uuid}})

    def create(self, object_id: str = "c-1", **data: Any) -> list[Publish]:
        return self.send("control", {"object_id": object_id, "action": "create",
                                     "type": "arts_req", "data": {"type": "module", **data}})

    def delete(self, q: str, **data: Any) -> list[Publish]:
        return self.send("control", {"object_id": "d-1", "action": "delete",
                                     "type": "arts_req", "data": {"uuid": q, **data}})

    def exited(self, uuid: str, topic: str = "control") -> list[Publish]:
        return self.send(topic, {"object_id": "x-1", "action": "exited", "type": "arts_req",
                                 "data": {"type": "module", "uuid": uuid}})

    def operate(self, action: str, q: str, object_id: str = "op-1") -> list[Publish]:
        """An operator action (drain, undrain, forget) on a runtime, by uuid or name."""
        return self.send("control", {"object_id": object_id, "action": action,
                                     "type": "arts_req", "data": {"type": "runtime", "uuid": q}})

    def keepalive(self, uuid: str = RT1, topic: str = "keepalive",
                  children: list[Any] | None = None) -> list[Publish]:
        """A keepalive; without ``children`` the key is left out (no claim about modules)."""
        data: dict[str, Any] = {"type": "runtime", "uuid": uuid}
        if children is not None:
            data["children"] = children
        return self.send(topic, {"object_id": "ka", "action": "update", "type": "arts_req",
                                 "data": data})

    def run_for(self, seconds: float, keepalive_every: dict[str, float] | None = None
                ) -> list[tuple[float, dict[str, Any]]]:
        """Advance 0.1 s at a time, send keepalives on schedule, sweep every second;
        the ``dead`` notifications with the time they went out."""
        verdicts = []
        keepalive_every = keepalive_every or {}
        last_sent = {uuid: self.now for uuid in keepalive_every}
        end, next_sweep = self.now + seconds, self.now + 1.0
        while self.now < end:
            self.now = round(self.now + 0.1, 6)
            for uuid, every in keepalive_every.items():
                if self.now - last_sent[uuid] >= every:
                    self.keepalive(uuid)
                    last_sent[uuid] = self.now
            if self.now >= next_sweep:
                next_sweep += 1.0
                verdicts += [(self.now, n) for n in on(self.sweep(), "notif")
                             if n["action"] == "dead"]
        return verdicts


def on(published: list[Publish], topic: str) -> list[dict[str, Any]]:
    """Payloads published to exactly ``topic`` (a realm-relative name)."""
    return [p.payload for p in published
            if p.topic == f"realm/proc/{topic}" and isinstance(p.payload, dict)]


def errors(published: list[Publish]) -> list[dict[str, Any]]:
    return on(published, "log/orchestrator")
