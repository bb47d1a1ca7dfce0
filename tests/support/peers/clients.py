"""What each client generation sends and how it reads the REST lists."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any, Callable

__all__ = ["GENERATIONS", "create_2022", "delete_2022", "create_2023", "create_batch_2023",
           "delete_2023", "list_runtimes", "manage_py_list"]

#: libsilverline generation -> (request type, REST list key it reads)
GENERATIONS = {"2022-07": ("arts_req", "runtimes"), "2022-09": ("arts_req", "results"),
               "2023": ("req", "results")}


def _id() -> str:
    return str(uuidlib.uuid4())


def create_2022(generation: str, parent: str, name: str, path: str) -> dict[str, Any]:
    """libsilverline ``create_module_wasm``: filename, args as a list (2022-07 to 2023)."""
    data: dict[str, Any] = {"type": "module", "parent": parent, "uuid": _id(), "name": name,
                            "filename": path, "args": [path], "env": []}
    if generation != "2023":
        data["filetype"] = "WA"
    if generation == "2022-09":
        data["fault_crash"] = "ignore"
    return {"object_id": _id(), "action": "create", "type": GENERATIONS[generation][0],
            "data": data}


def delete_2022(generation: str, module: str) -> dict[str, Any]:
    """libsilverline ``delete_module``: the request id in a top-level ``uuid``."""
    return {"uuid": _id(), "type": GENERATIONS[generation][0], "action": "delete",
            "data": {"uuid": module}}


def _control_message(action: str, data: dict[str, Any]) -> dict[str, Any]:
    """runtime-manager's libsilverline ``control_message``."""
    return {"object_id": _id(), "action": action, "type": "req", "data": data}


def _module_args(argv: list[str] | None = None) -> dict[str, Any]:
    """``manage.py run``'s ``_module_args`` with its defaults."""
    return {"argv": argv or [], "env": [], "limit": 60.0}


def create_2023(runtime: str, file: str, name: str = "module",
                argv: list[str] | None = None) -> dict[str, Any]:
    """``manage.py run -r RT -n NAME -f FILE`` (``SilverlineClient.create_module``)."""
    return _control_message("create", {"type": "module", "parent": runtime, "uuid": _id(),
                                       "name": name, "file": file,
                                       "args": _module_args(argv)})


def create_batch_2023(runtime: str, files: list[str], name: str = "module") -> dict[str, Any]:
    """``manage.py run -f A B ...`` (``SilverlineClient.create_module_batch``)."""
    return _control_message("create_batch", {
        "modules": [{"type": "module", "uuid": _id(), "name": name, "file": f,
                     "args": _module_args()} for f in files],
        "parent": runtime})


def delete_2023(module: str) -> dict[str, Any]:
    """``manage.py stop -n MODULE`` (``SilverlineClient.delete_module``)."""
    return _control_message("delete", {"type": "module", "uuid": module})


def list_runtimes(generation: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``get_runtimes``: 2022-07 reads ``runtimes``, later ones ``results`` (KeyError if absent)."""
    return body[GENERATIONS[generation][1]]


def manage_py_list(body: dict[str, Any]) -> list[tuple[str, str, list[str], list[str]]]:
    """The rows ``manage.py list`` prints: uuid:name, type, modules, queue."""
    read: Callable[[dict[str, Any]], str] = lambda m: f"{m['uuid'][-4:]}:{m['name']}"
    return [(read(rt), rt["runtime_type"], [read(m) for m in rt["children"]],
             [read(m) for m in rt["queued"]])
            for rt in sorted(body.get("results", []), key=lambda rt: rt["name"])]
