"""Operator actions on runtimes: ``drain``, ``undrain`` and ``forget``.

Requests like any other, on ``R/proc/control`` from any client (the
``silverline`` command sends them), answered there with the request's
``object_id``; errors go to the log topic. What they change is a registry
change, so it is journaled and announced like any other (docs/protocol.md,
"Operations").

- ``drain``: the scheduler places nothing more on the runtime, and each of its
  alive modules with ``"fault_crash": "restart"`` is moved to a compatible
  runtime with room (create forwarded there, delete forwarded to the drained
  one). Others stay where they are. The flag is kept in the runtime's record
  (journal and snapshots), across re-registrations, until ``undrain``.
- ``undrain``: placements there again; queued modules may start on it.
- ``forget``: the record is removed (a dead runtime, or a "ghost" that never
  sends keepalives). An alive one first dies (reason ``forgotten``, the usual
  failover), and the modules that waited for it end as ``dead``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .effects import Outbox
from .envelope import Envelope, ProtocolError
from .explain import unplaced_reason
from .fields import Fields
from .lifecycle import transition
from .model import ModuleStatus, Runtime, evolve

if TYPE_CHECKING:
    from .protocol import Orchestrator

__all__ = ["OPERATIONS", "find_runtime"]

Operation = Callable[["Orchestrator", Envelope, Outbox, float], None]


def find_runtime(core: "Orchestrator", data: dict[str, Any]) -> Runtime:
    """``data.uuid`` (a uuid or a name) or ``data.name``; dead runtimes too."""
    f = Fields(data)
    f.kind("runtime")
    q = data.get("uuid", data.get("name"))
    if q is None:
        raise ProtocolError("missing field", "data/uuid")
    if not isinstance(q, str) or not q:
        raise ProtocolError("invalid field", {"field": "data/uuid",
                                              "expected": "runtime uuid or name"})
    runtime = core.registry.runtime_by_uuid(q) or core.registry.newest_runtime_named(q)
    if runtime is None:
        raise ProtocolError("invalid Runtime UUID", q)
    return runtime


def _details(runtime: Runtime, **more: Any) -> dict[str, Any]:
    return {"type": "runtime", "uuid": runtime.uuid, "name": runtime.name,
            "status": runtime.status, "drained": runtime.drained, **more}


def drain(core: "Orchestrator", env: Envelope, out: Outbox, now: float) -> None:
    runtime = find_runtime(core, env.data)
    registry = core.registry
    if not runtime.drained:
        runtime = registry.put_runtime(evolve(runtime, drained=True, changed_at=now))
        out.event("runtime.drained", runtime)
    moved: list[dict[str, Any]] = []
    stayed: list[dict[str, Any]] = []
    for module in registry.children(runtime.uuid, ModuleStatus.ALIVE):
        if module.fault_crash != "restart":
            stayed.append({"uuid": module.uuid, "name": module.name,
                           "reason": "fault_crash is not restart"})
            continue
        apis = module.needs()
        target = core.scheduler.pick(apis)
        if target is None:
            stayed.append({"uuid": module.uuid, "name": module.name,
                           "reason": unplaced_reason(registry, apis)})
            continue
        core.move(module, runtime, target, out, now)
        moved.append({"uuid": module.uuid, "name": module.name, "to": target.uuid})
    out.reply(core.topics.control, env.object_id,
              _details(runtime, moved=moved, stayed=stayed))


def undrain(core: "Orchestrator", env: Envelope, out: Outbox, now: float) -> None:
    runtime = find_runtime(core, env.data)
    if runtime.drained:
        runtime = core.registry.put_runtime(evolve(runtime, drained=False, changed_at=now))
        out.event("runtime.undrained", runtime)
        if runtime.alive:
            core.fill(runtime, out, now)
    out.reply(core.topics.control, env.object_id, _details(runtime))


def forget(core: "Orchestrator", env: Envelope, out: Outbox, now: float) -> None:
    runtime = find_runtime(core, env.data)
    registry = core.registry
    if runtime.alive:
        runtime = core.runtime_died(runtime, "forgotten", out, now)
    ended = []
    for module in registry.children(runtime.uuid):
        if module.status in (ModuleStatus.KILLED, ModuleStatus.QUEUED, ModuleStatus.EXITING):
            gone = registry.put_module(transition(module, ModuleStatus.DEAD, now))
            out.event("module.deleted", gone, reason="its runtime was forgotten")
            ended.append(gone.uuid)
    registry.drop_runtime(runtime.uuid)
    out.event("runtime.forgotten", runtime)
    out.reply(core.topics.control, env.object_id,
              _details(runtime, forgotten=True, ended=ended))


OPERATIONS: dict[str, Operation] = {"drain": drain, "undrain": undrain, "forget": forget}
