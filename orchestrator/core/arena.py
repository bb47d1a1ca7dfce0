"""The ARENA dialect's messages: reading what applauncher-runtime and
arena-web-core send, and shaping what they expect. Pure functions, no state.

Facts these shapes rest on (read from applauncher-runtime e259273 and
arena-web-core 994e586):

- every control message is ``{"object_id", "action", "type", "from", "data"}``
  with ``type`` ``req`` or ``resp``; ``from`` names the sender (a runtime's
  uuid; arena-web-core sends none). A runtime drops messages whose ``from``
  is its own uuid; we drop ours the same way.
- a runtime registers with ``create`` and ``data`` = ``{uuid, type: runtime,
  name, runtime_type, max_nmodules, apis, is_orchestration_runtime, tags}``
  (``apis`` a list, or a space-separated string in its settings), keeps
  alive with ``update`` (the same keys and ``children``: per module its
  ``uuid, name, file, filetype, parent`` and stats, or null), and leaves with
  ``delete`` (also its last will). It accepts as registration reply any
  message on its topic whose ``data.result`` is ``"ok"``.
- its errors are bare ``{"desc": "Runtime exception: ...", "data": ...}``
  objects on its runtime topic, naming neither request nor module.
- it starts a module from a ``create`` whose ``data`` has ``uuid, name,
  file, filetype, parent`` (its uuid or name), and reads ``location``,
  ``scene``, ``env``, ``args``, ``channels``, ``apis``.
"""

from __future__ import annotations

import sys
import uuid as uuidlib
from typing import Any

from .envelope import ProtocolError, invalid, missing
from .fields import Fields, check_ident
from .model import ARENA, Module, Runtime, wire_value

__all__ = [
    "REQ", "RESP", "orchestrator_id", "kind_of", "is_bare_error", "runtime_spec",
    "module_spec", "parent_ref", "registration_reply", "create_request",
    "delete_request", "is_launch_failure", "error_text",
]

REQ = "req"
RESP = "resp"
_REQ_TYPES = frozenset((REQ, "arts_req"))
_RESP_TYPES = frozenset((RESP, "arts_resp", "runtime_resp"))
#: stats keys of a keepalive child, besides its identity
_CHILD_IDENTITY = frozenset(("uuid", "name", "file", "filetype", "parent"))
#: bare error descriptions that mean "the create sent to me did not start"
_LAUNCH_FAILURES = ("error in launcher", "error getting program file")


def orchestrator_id(realm: str) -> str:
    """Our ``from``: stable for a realm, so a restart still knows its own messages."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"silverline-orchestrator:{realm}"))


def kind_of(msg: dict[str, Any]) -> str | None:
    """``REQ``, ``RESP`` or None (anything else, e.g. a persisted ``program`` object)."""
    kind = msg.get("type")
    if kind in _REQ_TYPES:
        return REQ
    if kind in _RESP_TYPES:
        return RESP
    return None


def is_bare_error(msg: dict[str, Any]) -> bool:
    """applauncher's error report: ``desc`` and ``data`` and no envelope."""
    return "desc" in msg and "type" not in msg and "action" not in msg


def is_launch_failure(desc: Any) -> bool:
    return isinstance(desc, str) and any(f in desc for f in _LAUNCH_FAILURES)


def error_text(msg: dict[str, Any], limit: int = 500) -> str:
    """``desc: data`` of a bare error, bounded: what a failed module's ``reason`` says."""
    return f"{msg.get('desc')}: {msg.get('data')}"[:limit]


def request_data(msg: dict[str, Any]) -> dict[str, Any]:
    data = msg.get("data")
    if data is None:
        raise missing("data")
    if not isinstance(data, dict):
        raise invalid("data", "object")
    return data


def _apis(f: Fields) -> Any:
    """applauncher may send its apis as one space-separated string."""
    value = f.data.get("apis")
    if isinstance(value, str) and not value.lstrip().startswith("["):
        f.data = {**f.data, "apis": value.split()}
    return f.listish("apis", (), of_strings=True)


def runtime_spec(data: dict[str, Any], topic_uuid: str) -> tuple[str, dict[str, Any]]:
    """A registration or keepalive's runtime fields; its uuid must be the topic's."""
    f = Fields(data)
    f.kind("runtime")
    uuid = f.ident("uuid") or topic_uuid
    if uuid != topic_uuid:
        raise invalid("data/uuid", f"the uuid of the topic ({topic_uuid})")
    orchestration = data.get("is_orchestration_runtime")
    return uuid, {
        "name": f.text("name", "runtime"),
        "apis": _apis(f),
        "runtime_type": f.text("runtime_type", "containerized-modules"),
        "max_nmodules": f.integer("max_nmodules", 100),
        "tags": f.listish("tags", ()),
        "orchestration": orchestration is True,
    }


def child_stats(child: dict[str, Any]) -> dict[str, Any]:
    """A keepalive child's stats (cpu, memory, network), without its identity keys."""
    return {k: v for k, v in child.items() if k not in _CHILD_IDENTITY}


def parent_ref(data: dict[str, Any]) -> str | None:
    """The runtime a request names: a uuid or name, or ``{"uuid": ...}``; None if none."""
    parent = data.get("parent")
    if isinstance(parent, dict):
        parent = parent.get("uuid")
    if parent is None or parent == "":
        return None
    if not isinstance(parent, str):
        raise invalid("data/parent", "runtime uuid or name")
    return parent


def module_spec(data: dict[str, Any], namespace: str, scene: str | None,
                client: str) -> dict[str, Any]:
    """An arena-web-core create's module fields, in the registry's terms."""
    f = Fields(data)
    f.kind("module")
    filename = f.text("file", "") or f.text("filename", "")
    location = data.get("location")
    return {
        "name": f.text("name", "module"),
        "filename": filename,
        "filetype": f.text("filetype", "WA"),
        "apis": f.listish("apis", ()),
        "args": f.listish("args", ()),
        "env": f.listish("env", ()),
        "channels": f.listish("channels", ()),
        "arena": {k: v for k, v in {
            "dialect": ARENA, "namespace": namespace, "scene": scene, "clients": [client],
            "location": sys.intern(location) if isinstance(location, str) else None,
            "instantiate": f.choice("instantiate", "", ("single", "client")) or None,
        }.items() if v is not None},
    }


def module_uuid(data: dict[str, Any]) -> str:
    if data.get("uuid") is None:
        raise missing("data/uuid")
    return check_ident(data["uuid"], "data/uuid")


def registration_reply(me: str, object_id: Any, runtime: Runtime) -> dict[str, Any]:
    """What applauncher's ``reg()`` and arena-web-core wait for: ``resp``, result ok."""
    return {"object_id": object_id if isinstance(object_id, str) else str(uuidlib.uuid4()),
            "action": "create", "type": RESP, "from": me,
            "data": {"result": "ok", "details": runtime.wire()}}


def create_request(me: str, object_id: str, module: Module, runtime: Runtime,
                   scene: str) -> dict[str, Any]:
    """A create in the shape applauncher's ``Module`` requires."""
    env = wire_value(module.env)
    args = wire_value(module.args)
    return {"object_id": object_id, "action": "create", "type": REQ, "from": me,
            "data": {"type": "module", "uuid": module.uuid, "name": module.name,
                     "parent": runtime.uuid, "file": module.filename,
                     "location": module.location or "", "filetype": module.filetype,
                     "scene": scene, "env": list(env) if isinstance(env, tuple) else env,
                     "args": list(args) if isinstance(args, tuple) else args,
                     "channels": list(wire_value(module.channels) or ()),
                     "apis": list(wire_value(module.apis) or ())}}


def delete_request(me: str, object_id: str, module: Module, runtime_uuid: str) -> dict[str, Any]:
    return {"object_id": object_id, "action": "delete", "type": REQ, "from": me,
            "data": {"type": "module", "uuid": module.uuid, "name": module.name,
                     "parent": runtime_uuid}}


def check_request(msg: Any) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise ProtocolError("missing field", "type")
    return msg
