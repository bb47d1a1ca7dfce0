"""Runtimes and managers of each generation, driven step by step by a test.

Each holds a connected :class:`tests.support.peer.Peer` (made by the
``peers`` fixture) and does what its original does when a message arrives,
one step per call, so a test can check the orchestrator between steps.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from typing import Any, Awaitable, Callable

from tests.support.peer import Msg, Peer

__all__ = ["Runtime2021", "Runtime2022", "Manager2023"]

R = "realm/proc"
MakePeer = Callable[..., Awaitable[Peer]]


def _id() -> str:
    return str(uuidlib.uuid4())


def _is(action: str) -> Callable[[Msg], bool]:
    return lambda m: m.json.get("action") == action


class Runtime2021:
    """arena-runtime-simulated: registers on ``R/proc/reg``, answers on its control topic.

    It confirms creates and deletes with an ``arts_resp`` to the forward's
    ``object_id`` (never ``exited``), and reports a module's end as a
    ``delete`` whose ``parent`` is its whole runtime object.
    """

    def __init__(self, name: str = "py-runtime") -> None:
        self.uuid = _id()
        self.me = {"uuid": self.uuid, "name": name, "max_nmodules": 100,
                   "apis": "python:python3", "dbg_topic": f"{R}/debug",
                   "ctl_topic": f"{R}/control"}
        self.peer: Peer | None = None

    async def start(self, peers: MakePeer) -> dict[str, Any]:
        will = {"object_id": _id(), "action": "delete", "type": "arts_req",
                "data": {"type": "runtime", **self.me}}
        self.peer = await peers("rt2021", f"{R}/reg", will=(f"{R}/reg", will))
        reg_id = _id()
        self.peer.publish(f"{R}/reg", {"object_id": reg_id, "action": "create",
                                       "type": "arts_req", "data": {"type": "runtime", **self.me}})
        reply = await self.peer.expect(f"{R}/reg", lambda m: m.json.get("object_id") == reg_id
                                       and m.json.get("type") == "arts_resp")
        await self.peer.subscribe(f"{R}/control/{self.uuid}")
        return reply.json

    async def answer_create(self) -> dict[str, Any]:
        """Launch the module, then confirm with its Module object as a JSON string."""
        assert self.peer is not None
        msg = (await self.peer.expect(f"{R}/control/{self.uuid}", _is("create"))).json
        data = msg["data"]
        module = {"uuid": data["uuid"], "name": data["name"], "parent": self.me,
                  "filename": data["filename"], "fileid": data.get("fileid", ""),
                  "filetype": data["filetype"], "args": data.get("args", ""),
                  "env": data.get("env", "")}
        self.peer.publish(f"{R}/control/{self.uuid}", {
            "object_id": msg["object_id"], "type": "arts_resp",
            "data": {"result": "ok", "details": json.dumps(module)}})
        return msg

    async def answer_delete(self) -> dict[str, Any]:
        """Kill the module, then confirm: an arts_resp "Deleted." to the delete's object_id."""
        assert self.peer is not None
        msg = (await self.peer.expect(f"{R}/control/{self.uuid}", _is("delete"))).json
        self.peer.publish(f"{R}/control/{self.uuid}", {
            "object_id": msg["object_id"], "type": "arts_resp",
            "data": {"result": "ok", "details": {"msg": "Deleted.",
                                                 "uuid": msg["data"]["uuid"]}}})
        return msg

    def module_done(self, module: dict[str, Any]) -> None:
        """py_run.sh's last line: the prepared delete, its ``parent`` the runtime object."""
        assert self.peer is not None
        self.peer.publish(f"{R}/control", {
            "object_id": _id(), "action": "delete", "type": "arts_req",
            "data": {"type": "module", "uuid": module["uuid"], "name": module["name"],
                     "parent": self.me, "filename": module["filename"],
                     "fileid": "", "filetype": module["filetype"], "args": "", "env": ""}})


class Runtime2022:
    """A 2022 runtime: its own subtopics, keepalives, exit reported as a delete with ``parent``."""

    def __init__(self, name: str = "rt2022", max_nmodules: int = 8) -> None:
        self.uuid = _id()
        self.data = {"type": "runtime", "uuid": self.uuid, "name": name,
                     "apis": ["wasm", "wasi"], "max_nmodules": max_nmodules}
        self.peer: Peer | None = None

    async def start(self, peers: MakePeer) -> dict[str, Any]:
        reg = f"{R}/reg/{self.uuid}"
        will = {"object_id": _id(), "action": "delete", "type": "arts_req", "data": self.data}
        self.peer = await peers("rt2022", reg, f"{R}/control/{self.uuid}", will=(reg, will))
        self.peer.publish(reg, {"object_id": _id(), "action": "create", "type": "arts_req",
                                "data": self.data})
        return (await self.peer.expect(reg, lambda m: m.json.get("type") == "arts_resp")).json

    async def forwarded(self, action: str) -> dict[str, Any]:
        assert self.peer is not None
        return (await self.peer.expect(f"{R}/control/{self.uuid}", _is(action))).json

    def exited(self, module: str) -> None:
        assert self.peer is not None
        self.peer.publish(f"{R}/control", {"object_id": _id(), "action": "delete",
                                           "type": "arts_req",
                                           "data": {"uuid": module, "parent": self.uuid}})


class Manager2023:
    """runtime-manager ``start.py -n NAME -r linux/min/wasmer``: a manager and one runtime.

    The manager registers itself, then its runtime (``parent``: the manager),
    each waiting for the reply on its reg topic; its will deletes the manager.
    The runtime reads ``data["file"]`` and ``data["args"]["argv"]`` of a
    forwarded create, prints on ``R/proc/stdio/{module}`` and reports
    ``exited`` on its own control topic. It never sends keepalives.
    """

    TYPE = "linux/min/wasmer"
    APIS = ["wasm", "wasm:wasmer", "wasi", "stdio:in", "stdio:out"]

    def __init__(self, name: str = "node") -> None:
        self.mgr = {"type": "manager", "uuid": _id(), "name": name}
        self.rtid = _id()
        self.name = name
        self.peer: Peer | None = None

    def _message(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"object_id": _id(), "action": action, "type": "req", "data": data}

    async def _register(self, topic: str, data: dict[str, Any]) -> dict[str, Any]:
        assert self.peer is not None
        await self.peer.subscribe(topic)
        request = self._message("create", data)
        self.peer.publish(topic, request)
        return (await self.peer.expect(topic, lambda m: m.json.get("object_id")
                                       == request["object_id"] and "action" not in m.json)).json

    async def start(self, peers: MakePeer) -> tuple[dict[str, Any], dict[str, Any]]:
        reg = f"{R}/reg/{self.mgr['uuid']}"
        self.peer = await peers("mgr2023", will=(reg, self._message("delete", self.mgr)))
        await self.peer.subscribe(f"{R}/control/{self.rtid}")
        mgr_reply = await self._register(reg, self.mgr)
        rt_reply = await self._register(f"{R}/reg/{self.rtid}", {
            "type": "runtime", "uuid": self.rtid, "name": self.name,
            "runtime_type": self.TYPE, "max_nmodules": 1, "apis": self.APIS,
            "platform": {}, "metadata": {"host": "test"}, "parent": self.mgr["uuid"]})
        return mgr_reply, rt_reply

    async def run_next(self, output: bytes = b"hello world\n") -> dict[str, Any]:
        """Take the next forwarded create, run it (as linux_minimal does), report the exit."""
        assert self.peer is not None
        msg = (await self.peer.expect(f"{R}/control/{self.rtid}", _is("create"))).json
        data = msg["data"]
        command = ["wasmer", "run", *(["--env", *data["args"]["env"]]
                                      if data["args"].get("env") else []),
                   data["file"], *data["args"].get("argv", [])]
        self.peer.publish(f"{R}/stdio/{data['uuid']}", output)
        self.peer.publish(f"{R}/control/{self.rtid}", self._message(
            "exited", {"type": "module", "uuid": data["uuid"], "status": "exited"}))
        return {"forward": msg, "command": command}

    def stop(self) -> None:
        """A clean stop: the manager's delete (its runtimes just stop)."""
        assert self.peer is not None
        self.peer.publish(f"{R}/reg/{self.mgr['uuid']}", self._message("delete", self.mgr))
