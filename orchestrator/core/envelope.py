"""Turning payload bytes into a checked envelope, or into a protocol error.

Every way a payload can be wrong ends here as a :class:`ProtocolError` whose
``desc`` and ``data`` are the [compat] error of docs/protocol.md section 9.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ProtocolError", "Envelope", "decode_payload", "parse_envelope",
           "REQUEST", "REPLY", "RUNTIME_REPLY"]

REQUEST = "arts_req"
REPLY = "arts_resp"
RUNTIME_REPLY = "runtime_resp"
_TYPES = {REQUEST: REQUEST, "req": REQUEST, REPLY: REPLY, "resp": REPLY,
          RUNTIME_REPLY: RUNTIME_REPLY}

#: how much of a bad payload an ``invalid JSON`` error quotes back
ECHO_LIMIT = 1024


class ProtocolError(Exception):
    """A request the orchestrator refuses; becomes one error on the log topic."""

    def __init__(self, desc: str, data: Any) -> None:
        super().__init__(desc, data)
        self.desc = desc
        self.data = data


def missing(path: str) -> ProtocolError:
    return ProtocolError("missing field", path)


def invalid(path: str, expected: str) -> ProtocolError:
    return ProtocolError("invalid field", {"field": path, "expected": expected})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A control message's outer fields; ``type`` is normalised (req -> arts_req)."""

    object_id: str | None
    type: str
    action: str | None
    data: dict[str, Any]

    @property
    def is_reply(self) -> bool:
        return self.type != REQUEST


def _echo(payload: bytes) -> str:
    return payload[:ECHO_LIMIT].decode("utf-8", "replace")


def decode_payload(payload: bytes, max_bytes: int) -> Any:
    """UTF-8 JSON (optionally wrapped in one pair of single quotes) -> value."""
    if len(payload) > max_bytes:
        raise ProtocolError("payload too large", {"size": len(payload), "limit": max_bytes})
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid JSON", _echo(payload)) from None
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == "'" and stripped[-1] == "'":
        stripped = stripped[1:-1]
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        raise ProtocolError("invalid JSON", _echo(payload)) from None


def request_id(msg: Any) -> str | None:
    """The id to quote in a reply: ``object_id``, or libsilverline's top-level ``uuid``."""
    if isinstance(msg, dict):
        for key in ("object_id", "uuid"):
            value = msg.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def parse_envelope(msg: Any) -> Envelope:
    """Check the envelope keys of a decoded message."""
    if not isinstance(msg, dict):
        raise missing("type")
    if "type" not in msg:
        raise missing("type")
    kind = msg["type"]
    if not isinstance(kind, str) or kind not in _TYPES:
        raise ProtocolError("invalid type", kind)
    kind = _TYPES[kind]
    action = msg.get("action")
    data = msg.get("data")
    if kind == REQUEST:
        if action is None:
            raise missing("action")
        if not isinstance(action, str):
            raise ProtocolError("invalid action", action)
        if data is None:
            raise missing("data")
        if not isinstance(data, dict):
            raise invalid("data", "object")
    else:
        data = data if isinstance(data, dict) else {}
        action = action if isinstance(action, str) else None
    return Envelope(object_id=request_id(msg), type=kind, action=action, data=data)
