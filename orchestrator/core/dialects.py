"""The generations of the SilverLine wire format the orchestrator speaks.

Three client and runtime generations are in the field (docs/protocol.md 1,
"Dialects"):

- 2022 (Django orchestrator, libsilverline up to 2022-09): ``"type":
  "arts_req"``, a module create carries ``filename`` and ``args`` as a list.
- 2023 (runtime-manager, libsilverline 2023): ``"type": "req"`` and
  ``"resp"``; a module create carries ``file`` and ``args`` as an object
  (``argv``, ``env``, ``limit``, ...), and its runtimes read exactly those
  keys from the forwarded create. Batches come as ``create_batch``.
- 2021 (ARENA simulated runtime): confirms a forwarded delete with an
  ``arts_resp`` to its ``object_id`` instead of reporting an exit.

This module decides which dialect a message speaks and reads the parts
that differ; the shapes themselves live with the records (``model.py``).
"""

from __future__ import annotations

from typing import Any

from .envelope import invalid, missing
from .fields import MAX_ITEMS, Fields
from .model import CREATE_KEYS

__all__ = ["reply_type", "is_2023_create", "sent_fields", "batch_items", "exit_reporter"]


def reply_type(msg: Any) -> str:
    """A reply answers in its request's dialect: ``resp`` to ``req``, else ``arts_resp``."""
    if isinstance(msg, dict) and msg.get("type") == "req":
        return "resp"
    return "arts_resp"


def is_2023_create(data: dict[str, Any]) -> bool:
    """A 2023 module create names its program ``file`` or sends ``args`` as an object."""
    return "file" in data or type(data.get("args")) is dict


def sent_fields(f: Fields) -> dict[str, Any]:
    """A 2023 create's fields as the client sent them (what its runtime will read).

    Unknown keys are kept too (checked only for size and nesting); the
    orchestrator's own keys (type, uuid, parent) are set at forward time.
    """
    for key in f.data.keys() - CREATE_KEYS:
        f.json_value(key, None)
    return {k: v for k, v in f.data.items() if k not in ("type", "uuid", "parent")}


def batch_items(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``create_batch`` data -> (error path prefix, one module's create data), in order.

    The batch's ``parent`` applies to every module that does not name its own.
    """
    if "modules" not in data:
        raise missing("data/modules")
    modules = data["modules"]
    if not isinstance(modules, list) or not modules or len(modules) > MAX_ITEMS:
        raise invalid("data/modules", f"list of 1-{MAX_ITEMS} module objects")
    items = []
    for i, module in enumerate(modules):
        prefix = f"data/modules/{i}"
        if not isinstance(module, dict):
            raise invalid(prefix, "object")
        if module.get("parent") is None and data.get("parent") is not None:
            module = {**module, "parent": data["parent"]}
        items.append((prefix, module))
    return items


def exit_reporter(data: dict[str, Any]) -> str | None:
    """The runtime a ``delete`` names as the module's ``parent``: that is an exit report.

    2022 runtimes name their uuid; the 2021 ARENA runtime sends its whole
    runtime object (``{"uuid": ..., "name": ...}``) when a module ends.
    """
    parent = data.get("parent")
    if isinstance(parent, dict):
        parent = parent.get("uuid")
    return parent if isinstance(parent, str) else None
