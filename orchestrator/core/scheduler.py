"""Placement (docs/protocol.md 11.1) and the capacity queue (11.2).

Both are indexes derived from the registry and kept current as registry
observers, so a request that is rolled back leaves them right too. Placement
never scans the runtimes: runtimes are grouped by the set of apis they offer,
and each group keeps a heap ordered by (alive modules, registration order).
Heap entries go stale when a runtime's load changes; stale entries are
skipped when they reach the top and the heaps are rebuilt when they grow.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Callable, Protocol

from .model import Module, ModuleStatus, Runtime
from .registry import Registry, RegistryObserver

__all__ = ["Scheduler", "LeastLoaded", "RoundRobin", "CapacityQueue", "POLICIES"]


def _fits(registry: Registry, runtime: Runtime | None) -> bool:
    return (runtime is not None and runtime.alive
            and runtime.has_room(registry.nalive(runtime.uuid)))


def _placeable(registry: Registry, runtime: Runtime | None) -> bool:
    """The scheduler may choose it: it fits and no operator drained it."""
    return _fits(registry, runtime) and not runtime.drained  # type: ignore[union-attr]


def _alive_count_changed(old: Module | None, new: Module | None) -> set[str]:
    """Runtimes whose number of slots in use (alive and exiting modules) this change moved."""
    busy = ModuleStatus.OCCUPYING
    before = old.parent if old is not None and old.status in busy else None
    after = new.parent if new is not None and new.status in busy else None
    return {p for p in (before, after) if p is not None and before != after}


class Policy(RegistryObserver, Protocol):
    """A placement policy: an index kept current as a registry observer."""

    def pick(self, apis: frozenset[str]) -> Runtime | None: ...


class LeastLoaded:
    """Fewest alive modules first; ties go to the oldest registration."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._groups: dict[frozenset[str], list[tuple[int, int, str]]] = {}
        self._group_of: dict[str, frozenset[str]] = {}
        self._entries = 0

    def _push(self, runtime: Runtime) -> None:
        key = self._group_of.get(runtime.uuid)
        if key is None or not _placeable(self._registry, runtime):
            return
        heapq.heappush(self._groups.setdefault(key, []),
                       (self._registry.nalive(runtime.uuid), runtime.serial, runtime.uuid))
        self._entries += 1
        if self._entries > 4 * len(self._group_of) + 1024:
            self._rebuild()

    def _rebuild(self) -> None:
        self._groups, self._entries = {}, 0
        for uuid, key in self._group_of.items():
            rt = self._registry.runtimes[uuid]
            if _placeable(self._registry, rt):
                self._groups.setdefault(key, []).append(
                    (self._registry.nalive(uuid), rt.serial, uuid))
                self._entries += 1
        for heap in self._groups.values():
            heapq.heapify(heap)

    def reset(self) -> None:
        self._group_of = {r.uuid: r.offers() for r in self._registry.alive_runtimes()}
        self._rebuild()

    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None:
        if new is not None and new.alive:
            self._group_of[new.uuid] = new.offers()
            self._push(new)
        elif old is not None:
            self._group_of.pop(old.uuid, None)

    def module_changed(self, old: Module | None, new: Module | None) -> None:
        for uuid in _alive_count_changed(old, new):
            runtime = self._registry.runtimes.get(uuid)
            if runtime is not None:
                self._push(runtime)

    def _top(self, key: frozenset[str]) -> tuple[int, int, str] | None:
        heap = self._groups[key]
        registry = self._registry
        while heap:
            nalive, _serial, uuid = top = heap[0]
            rt = registry.runtimes.get(uuid)
            if (self._group_of.get(uuid) == key and nalive == registry.nalive(uuid)
                    and _placeable(registry, rt)):
                return top
            heapq.heappop(heap)
            self._entries -= 1
        del self._groups[key]
        return None

    def pick(self, apis: frozenset[str]) -> Runtime | None:
        best = None
        for key in [k for k in self._groups if apis <= k]:
            top = self._top(key)
            if top is not None and (best is None or top < best):
                best = top
        return None if best is None else self._registry.runtimes[best[2]]


class RoundRobin:
    """Each placement goes to the next compatible runtime with room, in registration order."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._ring: list[tuple[int, str]] = []     # alive runtimes by serial
        self._last = 0

    def reset(self) -> None:
        self._ring = sorted((r.serial, r.uuid) for r in self._registry.alive_runtimes())

    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None:
        if old is not None and old.alive:
            i = bisect.bisect_left(self._ring, (old.serial, old.uuid))
            if i < len(self._ring) and self._ring[i] == (old.serial, old.uuid):
                del self._ring[i]
        if new is not None and new.alive:
            bisect.insort(self._ring, (new.serial, new.uuid))

    def module_changed(self, old: Module | None, new: Module | None) -> None:
        pass

    def pick(self, apis: frozenset[str]) -> Runtime | None:
        start = bisect.bisect_right(self._ring, (self._last, "\U0010ffff"))
        n = len(self._ring)
        for i in range(n):
            serial, uuid = self._ring[(start + i) % n]
            rt = self._registry.runtimes[uuid]
            if apis <= rt.offers() and _placeable(self._registry, rt):
                self._last = serial
                return rt
        return None


POLICIES: dict[str, Callable[[Registry], Policy]] = {
    "least_loaded": LeastLoaded,
    "round_robin": RoundRobin,
}


class CapacityQueue:
    """Queued modules in arrival order: per named runtime, and per api set for the rest."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._pinned: dict[str, list[tuple[int, str]]] = {}
        self._free: dict[frozenset[str], list[tuple[int, str]]] = {}

    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None:
        pass

    def reset(self) -> None:
        self._pinned, self._free = {}, {}
        for module in self._registry.modules.values():
            if module.status == ModuleStatus.QUEUED:
                self.module_changed(None, module)

    def module_changed(self, old: Module | None, new: Module | None) -> None:
        if new is None or new.status != ModuleStatus.QUEUED:
            return
        entry = (new.serial, new.uuid)
        if new.pinned and new.parent is not None:
            heapq.heappush(self._pinned.setdefault(new.parent, []), entry)
        else:
            heapq.heappush(self._free.setdefault(new.needs(), []), entry)

    def _top(self, table: dict, key: object, runtime_uuid: str | None) -> tuple[int, str] | None:
        heap = table[key]
        while heap:
            serial, uuid = heap[0]
            m = self._registry.modules.get(uuid)
            if (m is not None and m.serial == serial and m.status == ModuleStatus.QUEUED
                    and (m.parent == runtime_uuid if m.pinned else runtime_uuid is None)):
                return heap[0]
            heapq.heappop(heap)
        del table[key]
        return None

    def next_for(self, runtime: Runtime) -> Module | None:
        """The oldest queued module that may start on this runtime."""
        candidates = []
        if runtime.uuid in self._pinned:
            candidates.append(self._top(self._pinned, runtime.uuid, runtime.uuid))
        if not runtime.drained:           # a drained runtime takes only modules named for it
            offered = runtime.offers()
            for key in [k for k in self._free if k <= offered]:
                candidates.append(self._top(self._free, key, None))
        best = min((c for c in candidates if c is not None), default=None)
        return None if best is None else self._registry.modules[best[1]]


class Scheduler:
    """Where modules go: the placement policy and the capacity queue together."""

    def __init__(self, registry: Registry, policy: str = "least_loaded") -> None:
        self._registry = registry
        self.policy = POLICIES[policy](registry)
        self.queue = CapacityQueue(registry)
        registry.observers.extend([self.policy, self.queue])

    def pick(self, apis: frozenset[str]) -> Runtime | None:
        """A compatible alive runtime with room, or None."""
        return self.policy.pick(apis)

    def has_room(self, runtime: Runtime) -> bool:
        return _fits(self._registry, runtime)

    def next_queued_for(self, runtime: Runtime) -> Module | None:
        if not self.has_room(runtime):
            return None
        return self.queue.next_for(runtime)
