"""ARENA peers for tests: an applauncher-runtime and an arena-web-core client.

They speak the formats read from the real code (applauncher-runtime e259273:
``src/model/runtime.py``, ``module.py``, ``sl_msgs.py``, ``runtime_mngr.py``;
arena-web-core 994e586: ``src/systems/core/runtime-mngr/``), written anew.
The message builders are plain functions, so unit tests of the pure core
use the very shapes the simulated peers put on a real broker.

One deliberate difference: the real runtime sets its last will after it has
connected, which the broker never sees (so a killed applauncher is noticed
by keepalive silence only); the simulated one can set it when connecting, to
test the will path that arena-web-core's clients do use.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib
from typing import Any

import paho.mqtt.client as paho
from twisted.internet.task import LoopingCall

from tests.support.peer import Msg, Peer

REALM = "realm"
APIS = ["python:python3", "wasm:wasi_preview_1"]
#: the bare error applauncher reports when Docker is not there
NO_DOCKER = ("Runtime exception: error in launcher",
             "[DockerClient] Error starting docker (is the docker daemon running ?).")
_n = itertools.count(1)


def runtime_topic(uuid: str, namespace: str = "public", realm: str = REALM) -> str:
    return f"{realm}/g/{namespace}/p/{uuid}"


def _req(action: str, sender: str | None, data: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = {"object_id": str(uuidlib.uuid4()), "action": action, "type": "req"}
    if sender is not None:
        msg["from"] = sender
    msg["data"] = data
    return msg


def runtime_data(uuid: str, name: str = "arena-rt1", apis: list[str] | None = None,
                 max_nmodules: int = 100, orchestration: bool = False,
                 tags: list[str] | None = None) -> dict[str, Any]:
    """The attributes applauncher sends in registration, keepalive and delete."""
    return {"uuid": uuid, "type": "runtime", "name": name,
            "runtime_type": "containerized-modules", "max_nmodules": max_nmodules,
            "apis": list(APIS if apis is None else apis),
            "is_orchestration_runtime": orchestration,
            "tags": ["arena-py", "containerized-modules"] if tags is None else tags}


def registration(uuid: str, **kw: Any) -> dict[str, Any]:
    return _req("create", uuid, runtime_data(uuid, **kw))


def runtime_delete(uuid: str, **kw: Any) -> dict[str, Any]:
    return _req("delete", uuid, runtime_data(uuid, **kw))


def keepalive(uuid: str, children: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    return _req("update", uuid, {**runtime_data(uuid, **kw), "children": children or []})


def child(module: dict[str, Any], cpu: float = 1.5) -> dict[str, Any]:
    """A keepalive child: the module's identity and its container stats."""
    return {**{k: module.get(k) for k in ("uuid", "name", "file", "filetype", "parent")},
            "cpu_usage_percent": cpu, "mem_usage": 1048576, "network_rx_mb": 0.1,
            "network_tx_mb": 0.2, "network_rx_pkts": 10, "network_tx_pkts": 20}


def bare_error(desc: str, data: Any) -> dict[str, Any]:
    return {"desc": desc, "data": data}


def namespaced_scene(module: dict[str, Any]) -> str:
    """Where applauncher puts a module's own topic: ``public/<scene>`` when the
    create names a scene (whatever the namespace), else NAMESPACE/SCENE from env."""
    if module.get("scene") is not None:
        return f"public/{module['scene']}"
    namespace, scene = "public", "default"
    env = module.get("env")
    if isinstance(env, list):
        for entry in env:
            key, _, value = str(entry).partition("=")
            if key == "SCENE":
                scene = value
            elif key == "NAMESPACE":
                namespace = value
    return f"{namespace}/{scene}"


def module_topic(module: dict[str, Any], realm: str = REALM) -> str:
    return f"{realm}/s/{namespaced_scene(module)}/p/{module['uuid']}"


def confirmation(request: dict[str, Any], runtime_uuid: str) -> dict[str, Any]:
    """applauncher's ``confirm_msg``: a resp echoing the request's id, action and data."""
    return {"object_id": request["object_id"], "action": request["action"], "type": "resp",
            "from": runtime_uuid, "data": {"result": "ok", "details": request["data"]}}


def module_exit(module: dict[str, Any], runtime_uuid: str) -> dict[str, Any]:
    """applauncher's ``delete_msg``: what it publishes when a module exits by itself."""
    return _req("delete", runtime_uuid, {"type": "module", "uuid": module["uuid"],
                                         "name": module["name"], "parent": runtime_uuid})


# -- arena-web-core ------------------------------------------------------------------
def program_topic(namespace: str, scene: str, user_client: str, id_tag: str,
                  realm: str = REALM) -> str:
    return f"{realm}/s/{namespace}/{scene}/p/{user_client}/{id_tag}"


def program_create(*, uuid: str | None = None, name: str = "jdoe/py/box", parent: Any = None,
                   file: str = "box.py", filetype: str = "PY", location: str = "jdoe/py/box",
                   env: list[str] | None = None, apis: list[str] | None = None,
                   **extra: Any) -> dict[str, Any]:
    """``createModuleFromPersistObj``: what a browser sends for a persisted program."""
    data: dict[str, Any] = {
        "type": "module", "uuid": uuid or str(uuidlib.uuid4()), "name": name,
        "file": file, "location": location, "filetype": filetype,
        "env": env if env is not None else ["SCENE=lab", "NAMESPACE=public"],
        "args": [], "channels": [],
        "apis": apis if apis is not None else (["python:python3"] if filetype == "PY"
                                               else ["wasm:unstable"] if filetype == "WA"
                                               else [])}
    if parent is not None:           # JSON.stringify drops an undefined parent
        data["parent"] = parent
    data.update(extra)
    return _req("create", None, data)


def program_delete(create: dict[str, Any]) -> dict[str, Any]:
    data = create["data"]
    return _req("delete", None, {k: data.get(k) for k in (
        "type", "uuid", "name", "parent", "file", "location", "filetype", "env", "args",
        "channels", "apis") if data.get(k) is not None})


def browser_runtime_delete(uuid: str, id_tag: str) -> dict[str, Any]:
    """A browser's last will (and what it publishes on unload): its runtime's delete."""
    return _req("delete", None, {"type": "runtime", "uuid": uuid, "name": f"rt-{id_tag}",
                                 "max_nmodules": 0, "apis": [], "runtime_type": "browser"})


# -- the simulated peers over a real broker -----------------------------------------
class SimulatedAppLauncher(Peer):
    """An applauncher-runtime: registers (or not), keeps alive, acts on creates and
    deletes that name it, reports bare errors on its runtime topic."""

    def __init__(self, reactor: Any, port: int, *, uuid: str | None = None,
                 name: str = "arena-rt1", namespace: str = "public",
                 apis: list[str] | None = None, max_nmodules: int = 100,
                 orchestration: bool = False, launches: bool = True,
                 will: bool = True, ka_interval: float = 0.3) -> None:
        self.uuid = uuid or str(uuidlib.uuid4())
        self.name = name
        self.namespace = namespace
        self.attrs = dict(name=name, apis=apis, max_nmodules=max_nmodules,
                          orchestration=orchestration)
        self.topic = runtime_topic(self.uuid, namespace)
        super().__init__(reactor, port, name=f"applauncher-{next(_n)}",
                         will=(self.topic, runtime_delete(self.uuid, **self.attrs))
                         if will else None)
        self.launches = launches
        self.ka_interval = ka_interval
        self.modules: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []     # every create/delete it acted on
        self.errors: list[dict[str, Any]] = []
        self._ka = LoopingCall(self.send_keepalive)
        self._ka.clock = reactor

    async def start(self, register: bool = True) -> "SimulatedAppLauncher":
        await self.connect()
        if register:
            await self.subscribe(self.topic)
            self.publish(self.topic, registration(self.uuid, **self.attrs))
            await self.expect(self.topic, lambda m: m.json.get("data", {}).get("result") == "ok")
            self.client.unsubscribe(self.topic)
        await self.subscribe(f"{REALM}/s/+/+/p/+/+")
        self._ka.start(self.ka_interval, now=False)
        return self

    def send_keepalive(self) -> None:
        self.publish(self.topic, keepalive(
            self.uuid, [child(m) for m in self.modules.values()], **self.attrs))

    def go_silent(self) -> None:
        if self._ka.running:
            self._ka.stop()

    def resume(self) -> None:
        """A hung runtime that comes back: its keepalives start again."""
        if not self._ka.running:
            self._ka.start(self.ka_interval, now=True)

    def leave(self) -> None:
        """Its exit handler: stop, publish the delete, disconnect."""
        self.go_silent()
        self.publish(self.topic, runtime_delete(self.uuid, **self.attrs))

    def crash(self) -> None:
        self.go_silent()
        self.vanish()

    def prints(self, uuid: str, text: str, stream: str = "stdout") -> None:
        """What its PubsubStreamer does with a container's output: raw text, no envelope."""
        self.publish(f"{module_topic(self.modules[uuid])}/-/{stream}", text.encode())

    def exit_module(self, uuid: str) -> None:
        module = self.modules.pop(uuid)
        self.publish(module_topic(module), module_exit(module, self.uuid))

    def _arrived(self, msg: Msg) -> None:
        if paho.topic_matches_sub(f"{REALM}/s/+/+/p/+/+", msg.topic):
            self._control(msg)
        super()._arrived(msg)

    def _error(self, desc: str, data: Any) -> None:
        # its RuntimeException prefixes every description
        prefix = "Runtime exception: "
        report = bare_error(desc if desc.startswith(prefix) else prefix + desc, data)
        self.errors.append(report)
        self.publish(self.topic, report)

    def _control(self, msg: Msg) -> None:
        try:
            request = msg.json
        except ValueError:
            return self._error("Invalid JSON", msg.payload.decode(errors="replace"))
        if request.get("from") == self.uuid:
            return
        if request.get("type") != "req":
            return self._error("invalid type", request.get("type"))
        data = request.get("data") or {}
        if request.get("action") == "create":
            if "parent" not in data:
                return self._error("invalid parent", "Parent is required")
            if data["parent"] not in (self.uuid, self.name):
                return self._error("invalid parent", "Parent does not match this runtime")
            if data.get("uuid") in self.modules:
                return self._error("invalid uuid", f"Module {data['uuid']} already exists")
            self.requests.append(request)
            if not self.launches:
                return self._error(*NO_DOCKER)
            module = {**data, "parent": self.uuid}
            self.modules[module["uuid"]] = module
            self.publish(module_topic(module), confirmation(request, self.uuid))
        elif request.get("action") == "delete":
            module = self.modules.pop(str(data.get("uuid")), None)
            if module is None:
                return self._error("invalid uuid", f"Module {data.get('uuid')} does not exist")
            self.requests.append(request)
            self.publish(module_topic(module), confirmation(request, self.uuid))

    def close(self) -> None:
        self.go_silent()
        super().close()


class SimulatedArenaClient(Peer):
    """A browser in a scene: its runtime manager sends program requests and, on
    unload, deletes its per-client programs and publishes its runtime delete."""

    def __init__(self, reactor: Any, port: int, *, namespace: str = "public",
                 scene: str = "lab", id_tag: str | None = None) -> None:
        self.namespace, self.scene = namespace, scene
        self.id_tag = id_tag or f"jdoe_{next(_n)}{uuidlib.uuid4().hex[:6]}"
        self.user_client = f"{self.id_tag}_web"
        self.runtime_uuid = str(uuidlib.uuid4())
        self.topic = program_topic(namespace, scene, self.user_client, self.id_tag)
        self.will_topic = runtime_topic(self.runtime_uuid, namespace)
        super().__init__(reactor, port, name=f"browser-{self.id_tag}",
                         will=(self.will_topic,
                               browser_runtime_delete(self.runtime_uuid, self.id_tag)))
        self.sent: list[tuple[dict[str, Any], bool]] = []   # (create, per-client?)

    def start_program(self, instantiate: str = "client", object_id: str | None = None,
                      **kw: Any) -> dict[str, Any]:
        """``single`` uses the program object's id as module uuid; ``client`` a fresh one."""
        uuid = object_id if instantiate == "single" else None
        create = program_create(uuid=uuid, **kw)
        self.sent.append((create, instantiate == "client"))
        self.publish(self.topic, create)
        return create

    def leave(self) -> None:
        """``cleanup()``: deletes for per-client programs, then the runtime delete."""
        for create, per_client in self.sent:
            if per_client:
                self.publish(self.topic, program_delete(create))
        self.publish(self.will_topic, browser_runtime_delete(self.runtime_uuid, self.id_tag))
