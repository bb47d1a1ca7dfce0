"""Why a module waits, or was not moved: one sentence an operator can act on.

Derived from the registry as it is now (nothing is stored), so REST, the
event stream and the dashboard all say the same thing. A scan of the alive
runtimes per api set; :class:`Explainer` caches it while the registry is
unchanged, so a list of many queued modules costs one scan per api set.
"""

from __future__ import annotations

from .model import Module, ModuleStatus
from .registry import Registry

__all__ = ["Explainer", "unplaced_reason"]


def unplaced_reason(registry: Registry, apis: frozenset[str]) -> str:
    """Why the scheduler finds no runtime for these apis."""
    compatible = [r for r in registry.alive_runtimes() if apis <= r.offers()]
    if not compatible:
        wanted = ", ".join(sorted(apis)) or "nothing"
        return f"no compatible runtime: none alive offers {wanted}"
    open_ = [r for r in compatible if not r.drained]
    if not open_:
        return f"no compatible runtime: all {len(compatible)} that offer these apis are drained"
    return f"no room: all {len(open_)} compatible runtimes are full"


class Explainer:
    """``why(module)``: the reason a queued or killed module is not running."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._version = -1
        self._cache: dict[frozenset[str], str] = {}

    def _unplaced(self, apis: frozenset[str]) -> str:
        if self._version != self._registry.version:
            self._version, self._cache = self._registry.version, {}
        reason = self._cache.get(apis)
        if reason is None:
            reason = self._cache[apis] = unplaced_reason(self._registry, apis)
        return reason

    def _runtime_name(self, uuid: str) -> str:
        runtime = self._registry.runtimes.get(uuid)
        return runtime.name if runtime is not None else uuid

    def why(self, module: Module) -> str | None:
        registry = self._registry
        if module.status == ModuleStatus.QUEUED:
            if module.pinned and module.parent is not None:
                runtime = registry.runtimes.get(module.parent)
                name = self._runtime_name(module.parent)
                if runtime is None or not runtime.alive:
                    return f"waiting for runtime {name} to come back"
                return (f"waiting for room on runtime {name} "
                        f"({registry.nalive(runtime.uuid)}/{runtime.max_nmodules} running)")
            return "waiting: " + self._unplaced(module.needs())
        if module.status == ModuleStatus.KILLED and module.parent is not None:
            name = self._runtime_name(module.parent)
            if module.fault_crash != "restart":
                why_not = "fault_crash is not restart"
            else:
                why_not = self._unplaced(module.needs())
            return f"waiting for runtime {name} to register again (not moved: {why_not})"
        return None
