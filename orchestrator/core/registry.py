"""The in-memory registry: the orchestrator's whole memory, and its indexes.

Everything goes through :meth:`Registry.put_runtime`, :meth:`Registry.put_module`
and the ``drop_*`` methods, which keep the indexes right, remember what
changed (for the journal) and, inside :meth:`Registry.transaction`, how to
undo it: a request either takes effect whole or not at all.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Union

from .model import Module, ModuleStatus, Runtime, RuntimeStatus

__all__ = ["Registry", "Record", "RegistryObserver", "canonical_uuid", "id_key", "same_id"]

Record = Union[Runtime, Module]
#: (kind, uuid): "runtime" or "module", and the record's uuid
Key = tuple[str, str]


_HEX32 = re.compile(r"[0-9a-f]{32}")
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(q: str) -> str | None:
    """``q`` as a lowercase hyphenated uuid, if it is a uuid in any spelling."""
    h = q.replace("-", "").lower()
    if len(h) != 32 or not _HEX32.fullmatch(h):
        return None
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_key(q: str) -> str:
    """What identifies ``q``: a uuid in any case or hyphenation is one id; else ``q`` itself."""
    return canonical_uuid(q) or q


def same_id(a: str, b: str) -> bool:
    """Do ``a`` and ``b`` name the same runtime or module (the one "same uuid" rule)?"""
    return a == b or id_key(a) == id_key(b)


class RegistryObserver(Protocol):
    """Keeps a derived index (placement, queue, liveness) in step with the registry.

    Called for every write, including loads and rollbacks, so an observer
    never needs its own undo.
    """

    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None: ...

    def module_changed(self, old: Module | None, new: Module | None) -> None: ...

    def reset(self) -> None:
        """Rebuild from the registry, after a bulk load that sent no changes."""


class _Named:
    """name -> uuids in order of (re)registration; the newest is last."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, None]] = {}

    def add(self, name: str, uuid: str) -> None:
        self._by_name.setdefault(name, {})[uuid] = None

    def remove(self, name: str, uuid: str) -> None:
        uuids = self._by_name.get(name)
        if uuids is not None:
            uuids.pop(uuid, None)
            if not uuids:
                del self._by_name[name]

    def newest_first(self, name: str) -> Iterator[str]:
        return reversed(self._by_name.get(name, {}))


class Registry:
    """Runtimes and modules by uuid, with the lookups the protocol and REST need."""

    def __init__(self) -> None:
        self.runtimes: dict[str, Runtime] = {}
        self.modules: dict[str, Module] = {}
        self.next_serial = 1
        #: bumped on every change; lets readers cache what they build
        self.version = 0
        self.runtime_counts: Counter[str] = Counter()
        self.module_counts: Counter[str] = Counter()
        self._odd_uuids: dict[str, str] = {}        # canonical -> stored, when they differ
        self._runtime_names = _Named()
        self._module_names = _Named()
        self._children: dict[str, dict[str, None]] = {}   # parent -> modules in use
        self._nalive: Counter[str] = Counter()             # parent -> slots in use
        # modules by serial, ascending, for paging: two flat lists (a list of tuples
        # cost 60 more bytes a module); entries whose record changed serial go stale
        self._order_serials = array("q")
        self._order_uuids: list[str] = []
        self._order_stale = 0
        self._order_sorted = True
        self._changes: dict[Key, Record | None] = {}
        self._undo: list[tuple[Key, Record | None, bool, Record | None]] | None = None
        self._undo_serial = 0
        self._on_commit: list[Callable[[], None]] = []
        self.observers: list[RegistryObserver] = []

    # -- transactions and change tracking --------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Apply a request's changes whole, or (on any exception) none of them."""
        if self._undo is not None:
            raise RuntimeError("transactions do not nest")
        self._undo, self._undo_serial = [], self.next_serial
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        finally:
            self._undo = None
            done, self._on_commit = self._on_commit, []
        for f in done:
            f()

    def after_commit(self, f: Callable[[], None]) -> None:
        """Run ``f`` once the current transaction has succeeded (at once outside one):
        state kept beside the registry (what a runtime's ack will answer) is then
        rolled back with it, by never being written."""
        if self._undo is None:
            f()
        else:
            self._on_commit.append(f)

    def _rollback(self) -> None:
        assert self._undo is not None
        for key, old, had_change, old_change in reversed(self._undo):
            self._set(key, old)
            if had_change:
                self._changes[key] = old_change
            else:
                self._changes.pop(key, None)
        self.next_serial = self._undo_serial
        self.version += 1

    def take_changes(self) -> dict[Key, Record | None]:
        """What changed since the last call: key -> new record (None: dropped)."""
        changes, self._changes = self._changes, {}
        return changes

    def has_changes(self) -> bool:
        return bool(self._changes)

    def new_serial(self) -> int:
        serial = self.next_serial
        self.next_serial += 1
        return serial

    # -- writes ------------------------------------------------------------
    def put_runtime(self, runtime: Runtime) -> Runtime:
        self._write(("runtime", runtime.uuid), runtime)
        return runtime

    def put_module(self, module: Module) -> Module:
        self._write(("module", module.uuid), module)
        return module

    def drop_runtime(self, uuid: str) -> None:
        self._write(("runtime", uuid), None)

    def drop_module(self, uuid: str) -> None:
        self._write(("module", uuid), None)

    def _write(self, key: Key, record: Record | None) -> None:
        old = self._get(key)
        if self._undo is not None:
            had = key in self._changes
            self._undo.append((key, old, had, self._changes.get(key)))
        self._set(key, record)
        self._changes[key] = record

    def load(self, runtimes: list[Runtime], modules: list[Module], next_serial: int) -> None:
        """Fill an empty registry from storage; observers rebuild once at the end."""
        for r in runtimes:
            self._set_runtime(r.uuid, None, r)
        for m in sorted(modules, key=lambda m: m.serial):
            self._set_module(m.uuid, None, m)
        top = max([r.serial for r in runtimes] + [m.serial for m in modules], default=0)
        self.next_serial = max(next_serial, top + 1)
        self.version += 1
        for observer in self.observers:
            observer.reset()

    # -- index maintenance ---------------------------------------------------
    def _get(self, key: Key) -> Record | None:
        kind, uuid = key
        return (self.runtimes if kind == "runtime" else self.modules).get(uuid)

    def _set(self, key: Key, new: Record | None) -> None:
        kind, uuid = key
        self.version += 1
        if kind == "runtime":
            old_rt = self.runtimes.get(uuid)
            self._set_runtime(uuid, old_rt, new)  # type: ignore[arg-type]
            for observer in self.observers:
                observer.runtime_changed(old_rt, new)  # type: ignore[arg-type]
        else:
            old_m = self.modules.get(uuid)
            self._set_module(uuid, old_m, new)  # type: ignore[arg-type]
            for observer in self.observers:
                observer.module_changed(old_m, new)  # type: ignore[arg-type]

    def _index_uuid(self, uuid: str, present: bool) -> None:
        if _CANONICAL.fullmatch(uuid):
            return                      # found by a plain dict lookup already
        canon = canonical_uuid(uuid)
        if canon is not None and canon != uuid:
            if present:
                self._odd_uuids[canon] = uuid
            else:
                self._odd_uuids.pop(canon, None)

    def _set_runtime(self, uuid: str, old: Runtime | None, new: Runtime | None) -> None:
        if old is not None:
            self.runtime_counts[old.status] -= 1
            if new is None or (new.name, new.registered_at) != (old.name, old.registered_at):
                self._runtime_names.remove(old.name, uuid)
        if new is None:
            if old is not None:
                del self.runtimes[uuid]
                self._index_uuid(uuid, False)
            return
        self.runtimes[uuid] = new
        self.runtime_counts[new.status] += 1
        if old is None:
            self._index_uuid(uuid, True)
        if old is None or (new.name, new.registered_at) != (old.name, old.registered_at):
            self._runtime_names.add(new.name, uuid)

    def _set_module(self, uuid: str, old: Module | None, new: Module | None) -> None:
        if old is not None:
            self.module_counts[old.status] -= 1
            self._module_names.remove(old.name, uuid)
            if old.parent is not None:
                if old.status in ModuleStatus.IN_USE:
                    kids = self._children[old.parent]
                    del kids[uuid]
                    if not kids:
                        del self._children[old.parent]
                if old.status in ModuleStatus.OCCUPYING:
                    self._nalive[old.parent] -= 1
                    if not self._nalive[old.parent]:
                        del self._nalive[old.parent]
            if new is None or new.serial != old.serial:
                del self.modules[uuid]       # re-insert below keeps dict order = serial order
                self._index_uuid(uuid, False)
                self._order_stale += 1
        if new is None:
            return
        if old is None or new.serial != old.serial:
            if self._order_serials and new.serial < self._order_serials[-1]:
                self._order_sorted = False   # only a rollback re-inserts an older serial
            self._order_serials.append(new.serial)
            self._order_uuids.append(uuid)
        self.modules[uuid] = new
        self._index_uuid(uuid, True)
        self.module_counts[new.status] += 1
        self._module_names.add(new.name, uuid)
        if new.parent is not None:
            if new.status in ModuleStatus.IN_USE:
                self._children.setdefault(new.parent, {})[uuid] = None
            if new.status in ModuleStatus.OCCUPYING:
                self._nalive[new.parent] += 1

    # -- reads -----------------------------------------------------------------
    def modules_after(self, serial: int) -> Iterator[Module]:
        """Modules in serial (creation) order, starting after ``serial``: a stable cursor."""
        if not self._order_sorted or self._order_stale > len(self._order_uuids) // 2 + 64:
            pairs = sorted((m.serial, u) for u, m in self.modules.items())
            self._order_serials = array("q", (p[0] for p in pairs))
            self._order_uuids = [p[1] for p in pairs]
            self._order_stale, self._order_sorted = 0, True
        serials, uuids = self._order_serials, self._order_uuids
        for i in range(bisect.bisect_right(serials, serial), len(uuids)):
            module = self.modules.get(uuids[i])
            if module is not None and module.serial == serials[i]:
                yield module

    def nalive(self, runtime_uuid: str) -> int:
        """How many slots of the runtime are in use: its alive and exiting modules."""
        return self._nalive.get(runtime_uuid, 0)

    def children(self, runtime_uuid: str, *statuses: str) -> list[Module]:
        """The runtime's modules that are not dead, optionally of given statuses,
        in arrival order (serial)."""
        kids = (self.modules[u] for u in self._children.get(runtime_uuid, ()))
        return sorted((m for m in kids if not statuses or m.status in statuses),
                      key=_serial)

    def alive_runtimes(self) -> Iterator[Runtime]:
        return (r for r in self.runtimes.values() if r.status == RuntimeStatus.ALIVE)

    def alive_modules(self) -> Iterator[Module]:
        return (m for m in self.modules.values() if m.status == ModuleStatus.ALIVE)

    def runtime_by_uuid(self, uuid: str) -> Runtime | None:
        """Exact uuid, in any case and with or without hyphens."""
        return self._by_uuid(self.runtimes, uuid)

    def module_by_uuid(self, uuid: str) -> Module | None:
        return self._by_uuid(self.modules, uuid)

    def _by_uuid(self, table: dict[str, Any], q: str) -> Any:
        found = table.get(q)
        if found is None:
            canon = canonical_uuid(q)
            if canon is not None:
                found = table.get(canon) or table.get(self._odd_uuids.get(canon, ""))
        return found

    def newest_alive_runtime_named(self, name: str) -> Runtime | None:
        for uuid in self._runtime_names.newest_first(name):
            r = self.runtimes[uuid]
            if r.alive:
                return r
        return None

    def newest_runtime_named(self, name: str) -> Runtime | None:
        """The alive one with that name, else the newest registration of any status."""
        return (self.newest_alive_runtime_named(name)
                or _newest(self.runtimes, self._runtime_names.newest_first(name),
                           _registration_order))

    def newest_module_named(self, name: str,
                            statuses: tuple[str, ...] = (ModuleStatus.ALIVE,)) -> Module | None:
        for uuid in self._module_names.newest_first(name):
            m = self.modules[uuid]
            if m.status in statuses:
                return m
        return None

    def newest_module_named_any(self, name: str) -> Module | None:
        """The alive one with that name, else the newest created of any status."""
        return (self.newest_module_named(name)
                or _newest(self.modules, self._module_names.newest_first(name), _serial))

    def lookup_runtime(self, q: str) -> Runtime | None:
        """REST lookup (docs/protocol.md 16): uuid; name (alive first, then the
        newest of any status); uuid suffix, the short id (alive first, then any)."""
        return (self.runtime_by_uuid(q) or self.newest_runtime_named(q)
                or _by_suffix(self.alive_runtimes(), q)
                or _by_suffix(iter(self.runtimes.values()), q))

    def lookup_module(self, q: str) -> Module | None:
        return (self.module_by_uuid(q) or self.newest_module_named_any(q)
                or _by_suffix(self.alive_modules(), q)
                or _by_suffix(iter(self.modules.values()), q))


def _newest(table: dict[str, Any], uuids: Iterator[str], order: Any) -> Any:
    return max((table[u] for u in uuids), key=order, default=None)


def _serial(record: Any) -> int:
    return record.serial


def _registration_order(runtime: Runtime) -> tuple[float, int]:
    return (runtime.registered_at, runtime.serial)


def _by_suffix(records: Iterator[Any], q: str) -> Any:
    if not q:
        return None
    q = q.lower()
    found = None
    for r in records:
        if r.uuid.lower().endswith(q):
            found = r            # keep going: the newest (last) one wins
    return found
