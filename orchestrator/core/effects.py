"""What handling a message produces: values the I/O layer carries out.

The protocol core never publishes or writes anything itself. It returns
:class:`Publish` (an MQTT message to send once the change is durable) and
:class:`Event` (a registry change to announce to watchers), in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union

from .envelope import ProtocolError
from .model import Module, Runtime, compact_json
from .topics import Topics

__all__ = ["Publish", "Event", "Effect", "Handled", "Outbox", "OTHER", "REPLY", "REQUEST",
           "ERROR"]

#: the route kind of a topic that is not one of ours
OTHER = "other"
#: what a publish is: the answer to a request, a request of ours (forward or
#: notification), or an error report
REPLY, REQUEST, ERROR = "reply", "request", "error"


@dataclass(frozen=True, slots=True)
class Publish:
    """An MQTT message to send.

    ``outbox``: it announces a change, so it is journaled with the change and
    sent again after a crash until the broker acknowledged it. Errors, answers
    to requests that changed nothing and replies repeated for a duplicate
    request are sent once, best effort. ``payload`` is bytes only for a
    repeated reply (sent exactly as the first time).
    """

    topic: str
    payload: dict[str, Any] | bytes
    kind: str = REQUEST
    outbox: bool = True
    _body: bytes | None = field(default=None, compare=False, repr=False)

    def body(self) -> bytes:
        """The payload as sent (encoded once, however often it is asked for)."""
        body = self._body
        if body is None:
            payload = self.payload
            body = payload if isinstance(payload, bytes) else compact_json(payload).encode()
            object.__setattr__(self, "_body", body)
        return body


@dataclass(frozen=True, slots=True)
class Event:
    """A registry change; ``record`` is the record after it (records are frozen)."""

    type: str
    record: Runtime | Module
    extra: dict[str, Any] | None = None


Effect = Union[Publish, Event]


@dataclass(frozen=True, slots=True)
class Handled:
    """What one message did: its route kind, its effects in order, and the
    error it was refused with (None if accepted). The caller reads this and
    never the core's insides."""

    kind: str
    effects: list[Effect]
    error: ProtocolError | None = None


class Outbox:
    """Collects the effects of one message, in the order they must happen."""

    def __init__(self, topics: Topics, new_id: Callable[[], str]) -> None:
        self.topics = topics
        self.new_id = new_id
        self.effects: list[Effect] = []
        #: ``type`` of replies and errors: the request's dialect (see dialects.reply_type)
        self.reply_type = "arts_resp"

    def publish(self, topic: str, payload: dict[str, Any], kind: str = REQUEST) -> None:
        self.effects.append(Publish(topic, payload, kind, kind != ERROR))

    def reply(self, topic: str, object_id: str | None, details: dict[str, Any]) -> None:
        """A request's answer [compat]: no ``action`` key, ``object_id`` echoed."""
        self.publish(topic, {"object_id": object_id or self.new_id(), "type": self.reply_type,
                             "data": {"result": "ok", "details": details}}, REPLY)

    def error(self, object_id: str | None, desc: str, data: Any) -> None:
        self.publish(self.topics.log, {
            "object_id": object_id or self.new_id(), "action": "error",
            "type": self.reply_type, "data": {"desc": desc, "data": data}}, ERROR)

    def transient(self) -> None:
        """Nothing changed: what was said needs no outbox (it is said again if asked again)."""
        self.effects = [replace(e, outbox=False) if isinstance(e, Publish) and e.outbox else e
                        for e in self.effects]

    def request(self, topic: str, action: str, data: dict[str, Any]) -> str:
        """A request of ours (forward or notification); returns its new object_id."""
        object_id = self.new_id()
        self.publish(topic, {"object_id": object_id, "action": action,
                             "type": "arts_req", "data": data})
        return object_id

    def notify(self, action: str, data: dict[str, Any]) -> None:
        self.request(self.topics.notif, action, data)

    def event(self, type_: str, record: Runtime | Module, **extra: Any) -> None:
        self.effects.append(Event(type_, record, extra or None))
