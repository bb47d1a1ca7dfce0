"""Runtime and module records, their status values, and every shape they take.

Records are frozen: a change makes a new record (``dataclasses.replace``), so
the registry can undo a half-done request, REST can hand out what it reads
without copying, and a snapshot can serialize a record while others change.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any, Callable, Iterable, TypeVar

__all__ = [
    "RuntimeStatus", "ModuleStatus", "Runtime", "Module",
    "api_set", "wire_value", "iso", "evolve", "compact_json", "PROC", "ARENA",
]

#: one encoder for all compact JSON (json.dumps with separators builds one per call)
compact_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
#: first characters a JSON text can start with
_JSON_START = frozenset('[{"-0123456789tfn')


#: the topic dialects a record can come from: the ``R/proc/...`` topics (2022 and
#: 2023 shapes), and ARENA's ``R/g/...`` / ``R/s/...`` (applauncher-runtime, arena-web-core)
PROC = "proc"
ARENA = "arena"


class RuntimeStatus:
    ALIVE = "alive"
    DEAD = "dead"
    ALL = (ALIVE, DEAD)


class ModuleStatus:
    QUEUED = "queued"      # waiting for room on a compatible runtime
    ALIVE = "alive"        # create forwarded to its runtime
    EXITING = "exiting"    # delete forwarded, exit not yet confirmed
    DEAD = "dead"          # exited or deleted
    KILLED = "killed"      # its runtime died; re-created when it registers again
    FAILED = "failed"      # its runtime could not start it (``reason`` says why)
    ALL = (QUEUED, ALIVE, EXITING, DEAD, KILLED, FAILED)
    #: statuses past which nothing happens to a module any more (retention drops them)
    ENDED = frozenset((DEAD, FAILED))
    #: statuses that still hold the uuid (a create with it is a duplicate)
    IN_USE = frozenset((QUEUED, ALIVE, EXITING, KILLED))
    #: statuses that hold a slot on the runtime: an exiting module runs until its
    #: runtime confirms (a runtime-manager with max_nmodules 1 refuses a second one)
    OCCUPYING = frozenset((ALIVE, EXITING))


#: module create keys read into a record's own fields; a 2023 client's other keys
#: are kept as sent (``Module.sent``)
CREATE_KEYS = frozenset(("type", "uuid", "name", "parent", "filename", "file", "filetype",
                         "apis", "args", "env", "channels", "peripherals", "resources",
                         "metadata", "fault_crash"))

#: keys whose string values are JSON in disguise on the wire (docs/protocol.md 4)
WIRE_JSON_KEYS = frozenset(("apis", "args", "env", "channels", "peripherals", "aot_target"))


def wire_value(value: Any) -> Any:
    """A stored value as it goes out on MQTT: ``"{}"`` becomes ``{}``."""
    if isinstance(value, str):
        text = value.lstrip()
        if not text or text[0] not in _JSON_START and text[0] != "'":
            return value                 # cannot be JSON: skip the parse attempt
        try:
            return json.loads(text.replace("'", '"'))
        except ValueError:
            return value
    return value


def _wire(shape: dict[str, Any]) -> dict[str, Any]:
    for key in WIRE_JSON_KEYS.intersection(shape):
        if isinstance(shape[key], str):
            shape[key] = wire_value(shape[key])
    return shape


def api_set(apis: Any) -> frozenset[str]:
    """The apis a stored ``apis`` value names, however it was sent."""
    value = wire_value(apis)
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, (list, tuple)):
        return frozenset(a for a in value if isinstance(a, str))
    return frozenset()


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, the way REST shows times."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: list-valued keys, held as tuples so records stay immutable
LIST_KEYS = ("apis", "args", "env", "channels", "peripherals", "tags")
_shared_tuples: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def freeze_list(value: Any) -> Any:
    """A list as a tuple; common ones (``("wasm", "wasi")``, ``()``) shared, to save memory."""
    if not isinstance(value, list):
        return value
    if not value:
        return ()
    frozen = tuple(value)
    if len(_shared_tuples) < 10_000:
        try:
            return _shared_tuples.setdefault(frozen, frozen)
        except TypeError:             # holds dicts or lists: not hashable, not shared
            pass
    return frozen


def _from_record(cls: Any, names: tuple[str, ...], record: dict[str, Any]) -> Any:
    return cls(**{k: (freeze_list(v) if k in LIST_KEYS else v)
                  for k, v in record.items() if k in names})


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True, slots=True)
class Runtime:
    """A registered runtime; ``serial`` orders runtimes by first registration."""

    uuid: str
    serial: int
    name: str = "runtime"
    apis: Any = ("wasm", "wasi")
    runtime_type: str = "linux"
    max_nmodules: int = 100
    page_size: int = 65536
    aot_target: Any = "{}"
    metadata: Any = None
    platform: Any = None
    ka_interval_sec: int = 5
    status: str = RuntimeStatus.ALIVE
    registered_at: float = 0.0
    changed_at: float = 0.0
    dead_reason: str | None = None
    #: the runtime-manager process hosting it (its registration's ``parent``), if any
    manager: str | None = None
    #: an operator drained it: the scheduler places nothing more there (docs/protocol.md)
    drained: bool = False
    dialect: str = PROC
    #: ARENA: the namespace of its topic ``R/g/<namespace>/p/<uuid>``
    namespace: str | None = None
    tags: Any = None
    #: ARENA: it hands the requests that name it to the orchestrator to place
    orchestration: bool = False
    #: takes modules now; an ARENA runtime that registered listens for them only
    #: once registered, which its first keepalive shows
    ready: bool = True

    @property
    def alive(self) -> bool:
        return self.status == RuntimeStatus.ALIVE

    def has_room(self, nalive: int) -> bool:
        if not self.ready:
            return False
        if self.max_nmodules == 0:
            # 0 is "unlimited" in the proc dialect; an ARENA runtime saying 0 runs nothing
            return self.dialect == PROC
        return nalive < self.max_nmodules and not self.orchestration

    def offers(self) -> frozenset[str]:
        """What placement matches a module's needs against (see :meth:`Module.needs`)."""
        apis = api_set(self.apis)
        if self.dialect == PROC:
            return apis
        return apis | frozenset(f"filetype:{ft}" for prefix, ft in _FILETYPE_OF_API
                                if any(a.startswith(prefix) for a in apis))

    # -- shapes ---------------------------------------------------------
    def wire(self) -> dict[str, Any]:
        """The ``details`` of a registration or deletion reply (docs/protocol.md 5.1, 5.3)."""
        return _wire({
            "uuid": self.uuid, "name": self.name, "apis": self.apis,
            "runtime_type": self.runtime_type, "ka_interval_sec": self.ka_interval_sec,
            "page_size": self.page_size, "aot_target": self.aot_target,
            "metadata": self.metadata, "alive": self.alive, "status": self.status,
            "max_nmodules": self.max_nmodules, "platform": self.platform,
        })

    def summary(self, children: Iterable["Module"],
                queued: Iterable["Module"] = ()) -> dict[str, Any]:
        """An item of ``GET /api/runtimes/`` (docs/protocol.md 16) [compat]; ``queued`` is what 2023 clients read."""
        return {
            "uuid": self.uuid, "name": self.name, "runtime_type": self.runtime_type,
            "aot_target": self.aot_target,
            "children": [m.summary_in_runtime() for m in children],
            "queued": [m.summary_in_runtime() for m in queued],
        }

    def detail(self, *, nmodules: int, last_seen: float | None,
               children: Iterable["Module"] | None) -> dict[str, Any]:
        """``GET /api/runtimes/{q}/`` (docs/protocol.md 16): the [compat] keys, then ours
        (``children=None``: without the key, as in lists and events)."""
        detail: dict[str, Any] = {
            "uuid": self.uuid, "name": self.name, "apis": self.apis,
            "runtime_type": self.runtime_type, "ka_interval_sec": self.ka_interval_sec,
            "page_size": self.page_size, "aot_target": self.aot_target,
            "metadata": self.metadata, "alive": self.alive,
            "status": self.status, "max_nmodules": self.max_nmodules,
            "platform": self.platform, "nmodules": nmodules,
            "registered_at": iso(self.registered_at), "last_seen": iso(last_seen),
            "dead_reason": self.dead_reason, "manager": self.manager,
            "drained": self.drained,
            "dialect": self.dialect, "namespace": self.namespace, "tags": _plain(self.tags),
            "is_orchestration_runtime": self.orchestration, "ready": self.ready,
        }
        if children is not None:
            detail["children"] = [m.detail() for m in children]
        return detail

    # -- storage --------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RUNTIME_FIELDS}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Runtime":
        return _from_record(cls, RUNTIME_FIELDS, record)


class _ArenaFact:
    """A key of a module's ``arena`` dict, read as an attribute (its default when absent)."""

    def __init__(self, default: Any = None) -> None:
        self.default = default
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, module: Any, owner: type | None = None) -> Any:
        if module is None:
            return self
        facts = module.arena
        value = self.default if facts is None else facts.get(self.key, self.default)
        return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True, slots=True)
class Module:
    """A module; ``serial`` is its arrival order (queue order, paging cursor)."""

    uuid: str
    serial: int
    name: str = "module"
    parent: str | None = None
    filename: str = ""
    filetype: str = "WA"
    apis: Any = ("wasm", "wasi")
    args: Any = ()
    env: Any = ()
    channels: Any = ()
    peripherals: Any = ()
    resources: Any = None
    metadata: Any = None
    fault_crash: str = "ignore"
    status: str = ModuleStatus.ALIVE
    #: the requester named the parent, so a queued module waits for that runtime
    pinned: bool = False
    created_at: float = 0.0
    changed_at: float = 0.0
    acked_at: float | None = None
    #: a 2023-dialect create's fields as the client sent them (None: 2022 dialect);
    #: forwarded unchanged, so its runtime reads ``file`` and ``args`` as it expects
    sent: Any = None
    #: ARENA facts, None for the rest (one slot, so other modules pay 8 bytes):
    #: ``dialect`` ("arena" when heard on ARENA's topics), ``namespace`` and
    #: ``scene`` (``R/s/<namespace>/<scene>/...``), ``location`` of its files,
    #: ``clients`` (idTags that asked for it), ``instantiate``, ``reason`` (why it failed)
    arena: Any = None

    @property
    def alive(self) -> bool:
        return self.status == ModuleStatus.ALIVE

    dialect = _ArenaFact(PROC)
    namespace = _ArenaFact()
    scene = _ArenaFact()
    location = _ArenaFact()
    clients = _ArenaFact(())
    instantiate = _ArenaFact()
    reason = _ArenaFact()

    def with_arena(self, **changes: Any) -> dict[str, Any]:
        """The ``arena`` value with ``changes`` (None values dropped): for evolve/transition."""
        merged = {**(self.arena or {}), **changes}
        return {k: v for k, v in merged.items() if v is not None}

    def needs(self) -> frozenset[str]:
        """The apis a runtime must offer; an ARENA module also needs a launcher for its filetype."""
        apis = api_set(self.apis)
        if self.dialect == PROC:
            return apis
        return apis | {f"filetype:{self.filetype}"}

    # -- shapes ---------------------------------------------------------
    def wire(self) -> dict[str, Any]:
        """The ``data`` of a forwarded create (docs/protocol.md 5.7) [compat], in the client's dialect."""
        if self.sent is not None:
            return self._wire_2023()
        return _wire({
            "type": "module", "uuid": self.uuid, "name": self.name,
            "parent": self.parent, "filename": self.filename,
            "filetype": self.filetype, "apis": self.apis, "args": self.args,
            "env": self.env, "channels": self.channels,
            "peripherals": self.peripherals, "resources": self.resources,
            "fault_crash": self.fault_crash, "alive": self.alive,
            "status": self.status,
        })

    def _wire_2023(self) -> dict[str, Any]:
        """The client's own fields unchanged, with the ones the orchestrator decides."""
        shape: dict[str, Any] = {"type": "module", "uuid": self.uuid, "name": self.name,
                                 "parent": self.parent}
        shape.update((k, v) for k, v in self.sent.items() if k not in shape)
        shape["alive"], shape["status"] = self.alive, self.status
        return shape

    def summary_in_runtime(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "filename": self.filename}

    def summary(self) -> dict[str, Any]:
        """An item of ``GET /api/modules/`` (docs/protocol.md 16) [compat]."""
        return {"uuid": self.uuid, "name": self.name, "parent": self.parent,
                "filename": self.filename}

    def detail(self) -> dict[str, Any]:
        """``GET /api/modules/{q}/`` (docs/protocol.md 16): the [compat] keys, then ours."""
        return {
            "uuid": self.uuid, "name": self.name, "parent": self.parent,
            "filename": self.filename, "filetype": self.filetype,
            "apis": _plain(self.apis), "args": _plain(self.args),
            "env": _plain(self.env), "channels": _plain(self.channels),
            "peripherals": _plain(self.peripherals), "resources": self.resources,
            "alive": self.alive, "status": self.status,
            "fault_crash": self.fault_crash, "metadata": self.metadata,
            "created_at": iso(self.created_at), "acked_at": iso(self.acked_at),
            "exiting_since": (iso(self.changed_at) if self.status == ModuleStatus.EXITING
                              else None),
            "dialect": (ARENA if self.dialect == ARENA
                        else "2022" if self.sent is None else "2023"),
            **({} if self.sent is None else self._sent_detail()),
            "namespace": self.namespace, "scene": self.scene,
            "location": self.location, "clients": list(self.clients),
            "instantiate": self.instantiate, "reason": self.reason,
        }

    def _sent_detail(self) -> dict[str, Any]:
        """What a 2023 client sent beyond our own fields, as REST shows it."""
        return {"file": self.sent.get("file", self.filename),
                "extra": {k: v for k, v in self.sent.items() if k not in CREATE_KEYS}}

    # -- storage --------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MODULE_FIELDS}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Module":
        return _from_record(cls, MODULE_FIELDS, record)


#: which filetype an applauncher-runtime can launch, judged by the apis it offers
#: (its launchers are keyed by filetype; its apis are the union of theirs)
_FILETYPE_OF_API = (("python:", "PY"), ("wasm:", "WA"), ("wasi:", "WA"))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


RUNTIME_FIELDS = _fields(Runtime)
MODULE_FIELDS = _fields(Module)

#: a record's values in field order: the compact form snapshots store
runtime_row: Callable[[Runtime], tuple[Any, ...]] = attrgetter(*RUNTIME_FIELDS)
module_row: Callable[[Module], tuple[Any, ...]] = attrgetter(*MODULE_FIELDS)


_ROWS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {
    Runtime: (runtime_row, {n: i for i, n in enumerate(RUNTIME_FIELDS)}),
    Module: (module_row, {n: i for i, n in enumerate(MODULE_FIELDS)})}


Record = TypeVar("Record", Runtime, Module)


def evolve(record: Record, **changes: Any) -> Record:
    """``dataclasses.replace`` for our records, three times faster (it is on every path)."""
    row, index = _ROWS[type(record)]
    values = list(row(record))
    for name, value in changes.items():
        values[index[name]] = value
    return type(record)(*values)


def row_reader(cls: Any, header: list[str]) -> Callable[[list[Any]], Any]:
    """Builds records of ``cls`` from snapshot rows written under ``header``.

    When the header is today's field list (the usual case) rows are used as
    they are, which is what makes loading 100k modules fast; otherwise (a
    snapshot from another version) fields are matched by name.
    """
    names = _fields(cls)
    if list(header) != list(names):
        return lambda row: _from_record(cls, names, dict(zip(header, row)))
    list_at = [i for i, name in enumerate(names) if name in LIST_KEYS]

    def build(row: list[Any]) -> Any:
        for i in list_at:
            row[i] = freeze_list(row[i])
        return cls(*row)
    return build
