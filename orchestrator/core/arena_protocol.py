"""The ARENA dialect on the orchestrator's registry, scheduler and liveness.

applauncher-runtime runtimes and arena-web-core clients speak the topics of
:mod:`.arena_topics`; this module turns their messages into the same registry
changes the ``proc`` dialect makes (one runtime is one record, whichever
dialect it speaks) and shapes what goes back with :mod:`.arena`.

Two rules keep the peers' own behaviour intact: nothing is ever answered with
an error of ours (a malformed message is logged and dropped; a runtime's bare
error reports are recorded), and a request that names a concrete ARENA
runtime is left to that runtime, which acts on it itself: the orchestrator
only places requests that name no runtime or an orchestration runtime.

What the peers do not say is kept in memory only, like keepalive times:
per-module stats from keepalives, each runtime's recent error reports, and
the creates a runtime has not confirmed yet (its errors name no module, so a
launch failure is charged to the oldest create it has not confirmed).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from . import arena
from .arena_topics import MODULE, PROGRAM, RUNTIME, ArenaRoute, ArenaTopics
from .effects import OTHER, Handled, Outbox
from .envelope import ProtocolError, decode_payload
from .fields import check_ident
from .lifecycle import born, transition
from .model import ARENA, Module, ModuleStatus, Runtime, evolve, iso

if TYPE_CHECKING:
    from .protocol import Orchestrator

__all__ = ["ArenaDialect"]

#: recent bare error reports kept per runtime (REST shows them)
ERRORS_KEPT = 20
#: creates awaiting a runtime's confirmation, per runtime (oldest forgotten first)
UNCONFIRMED_KEPT = 1000


class ArenaDialect:
    """Handles every ARENA topic; the proc core does the registry work."""

    log = Logger()

    def __init__(self, core: "Orchestrator") -> None:
        self.core = core
        self.registry = core.registry
        self.topics = ArenaTopics(core.config.realm)
        self.me = arena.orchestrator_id(core.config.realm)
        self.stats: dict[str, dict[str, Any]] = {}              # module uuid -> stats
        self.errors: dict[str, deque[dict[str, Any]]] = {}      # runtime uuid -> reports
        self.unconfirmed: dict[str, OrderedDict[str, None]] = {}  # runtime -> module uuids
        self._by_client: dict[str, dict[str, None]] = {}         # idTag -> module uuids
        #: modules whose stale copy we asked a runtime to stop: applauncher deletes by
        #: uuid whatever the parent, so the live copy stops too and is started again
        self.recalled: OrderedDict[str, str] = OrderedDict()
        self.registry.observers.append(self)

    # -- entry point ----------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float) -> Handled:
        """One message on an ARENA topic; never raises, never answers with an error
        (a refused message's error is only returned, for logs and metrics)."""
        route = self.topics.route(topic)
        if route is None:
            return Handled(OTHER, [])
        out = Outbox(self.core.topics, self.core.new_id)
        error: ProtocolError | None = None
        try:
            msg = arena.check_request(decode_payload(payload, self.core.config.max_payload_bytes))
            if msg.get("from") == self.me:
                return Handled(route.kind, [])       # our own, heard back
            with self.registry.transaction():
                if route.kind == RUNTIME:
                    self._on_runtime_topic(route, msg, out, now)
                elif route.kind == PROGRAM:
                    self._on_program_topic(route, msg, out, now)
                elif route.kind == MODULE:
                    self._on_module_topic(route, msg, out, now)
        except ProtocolError as e:
            error = e
            self.log.info("ARENA message on {topic} dropped: {desc} {data}",
                          topic=topic, desc=e.desc, data=e.data)
        except Exception as e:
            self.log.failure("while handling an ARENA message on {topic}", topic=topic)
            error = ProtocolError("Uncaught exception", f"{type(e).__name__}: {e}"[:200])
        if error is not None:
            out.effects.clear()
        return Handled(route.kind, out.effects, error)

    # -- R/g/<namespace>/p/<runtime uuid> -------------------------------------------
    def _on_runtime_topic(self, route: ArenaRoute, msg: dict[str, Any], out: Outbox,
                          now: float) -> None:
        topic_uuid = check_ident(route.ident, "topic")
        if arena.is_bare_error(msg):
            return self._runtime_error(topic_uuid, msg, out, now)
        if arena.kind_of(msg) != arena.REQ:
            return                                   # a reply: another orchestrator's, or ours
        data = arena.request_data(msg)
        action = msg.get("action")
        if data.get("type") not in (None, "runtime"):
            return
        if action == "delete":
            return self._runtime_left(topic_uuid, data, out, now)
        uuid, spec = arena.runtime_spec(data, topic_uuid)
        if action == "create":
            self._admit(uuid, route.namespace, spec, data, out, now, ready=False,
                        reply=lambda r: out.publish(
                            self.topics.runtime(route.namespace, uuid),
                            arena.registration_reply(self.me, msg.get("object_id"), r)))
        elif action == "update":
            self._keepalive(uuid, route.namespace, spec, data, out, now)

    def _admit(self, uuid: str, namespace: str, spec: dict[str, Any], data: dict[str, Any],
               out: Outbox, now: float, *, ready: bool, reply: Any = None) -> Runtime:
        spec = {**spec, "dialect": ARENA, "namespace": namespace, "ready": ready,
                "manager": None}
        given = set(spec) - {k for k in ("tags", "apis") if k not in data}
        if reply is None:
            return self.core.admit_runtime(uuid, spec, given, now, out)
        return self.core.admit_runtime(uuid, spec, given, now, out, reply=reply)

    def _keepalive(self, uuid: str, namespace: str, spec: dict[str, Any],
                   data: dict[str, Any], out: Outbox, now: float) -> None:
        children = data.get("children") or []
        if not isinstance(children, list):
            raise ProtocolError("invalid field", {"field": "data/children", "expected": "list"})
        runtime = self.registry.runtime_by_uuid(uuid)
        if runtime is None:
            # applauncher skips registration by default (reg_attempts: -1): adopt it
            self.log.info("ARENA runtime {uuid} ({name}) adopted from its keepalive",
                          uuid=uuid, name=spec["name"])
            runtime = self._admit(uuid, namespace, spec, data, out, now, ready=True)
            self.core.liveness.keepalive(runtime.uuid, now)
        else:
            if not runtime.ready:
                # its first keepalive: it listens for module requests now
                runtime = self.registry.put_runtime(evolve(runtime, ready=True))
                if runtime.alive:
                    self.core.fill(runtime, out, now)
            # liveness, revival of a wrong death verdict, moved copies stopped
            heard = self.core.heard(runtime, children, out, now)
            if heard is None:
                return
            runtime = heard
        for child in children:
            if isinstance(child, dict) and isinstance(child.get("uuid"), str):
                self._child(runtime, child, out, now)

    def _child(self, runtime: Runtime, child: dict[str, Any], out: Outbox, now: float) -> None:
        """A module the runtime says it runs: stats kept; one we never heard of is adopted."""
        uuid = check_ident(child["uuid"], "data/children/uuid")
        self.stats[uuid] = arena.child_stats(child)
        module = self.registry.module_by_uuid(uuid)
        if module is None:
            module = Module(uuid=uuid, serial=self.registry.new_serial(),
                            name=_text(child.get("name"), "module"),
                            filename=_text(child.get("file"), ""),
                            filetype=_text(child.get("filetype"), "PY"),
                            parent=runtime.uuid, pinned=True, status=ModuleStatus.ALIVE,
                            arena={"dialect": ARENA, "namespace": runtime.namespace},
                            created_at=now, changed_at=now, acked_at=now, apis=())
            out.event("module.created", self.registry.put_module(born(module)))
        elif module.parent == runtime.uuid and module.alive and module.acked_at is None:
            self._confirmed(module, out, now)

    def _runtime_left(self, uuid: str, data: dict[str, Any], out: Outbox, now: float) -> None:
        """A delete or last will: of a runtime, or of a browser client leaving."""
        runtime = self.registry.runtime_by_uuid(uuid)
        if runtime is not None and runtime.alive:
            self.core.runtime_deleted(runtime, out, now)
        name = data.get("name")
        if isinstance(name, str) and name.startswith("rt-"):
            self._client_left(name[3:], out, now)

    def _runtime_error(self, uuid: str, msg: dict[str, Any], out: Outbox, now: float) -> None:
        """A bare error report: kept; a launch failure fails its module. Never answered."""
        runtime = self.registry.runtime_by_uuid(uuid)
        if runtime is None:
            self.log.info("error report from unknown ARENA runtime {uuid}: {text}",
                          uuid=uuid, text=arena.error_text(msg))
            return
        kept = self.errors.setdefault(runtime.uuid, deque(maxlen=ERRORS_KEPT))
        kept.append({"time": iso(now), "desc": msg.get("desc"),
                     "data": str(msg.get("data"))[:500]})
        if not arena.is_launch_failure(msg.get("desc")):
            return
        pending = self.unconfirmed.get(runtime.uuid)
        module = None
        while pending and module is None:
            candidate = self.registry.modules.get(pending.popitem(last=False)[0])
            if (candidate is not None and candidate.alive and candidate.parent == runtime.uuid):
                module = candidate
        if module is None:
            self.log.warn("ARENA runtime {uuid} reports {text}, with no create pending",
                          uuid=runtime.uuid, text=arena.error_text(msg))
            return
        reason = arena.error_text(msg)        # the decision log says it (module.failed)
        failed = self.registry.put_module(transition(module, ModuleStatus.FAILED, now,
                                                      arena=module.with_arena(reason=reason)))
        out.event("module.failed", failed)
        out.notify("failed", {"type": "module", "uuid": failed.uuid, "name": failed.name,
                              "parent": runtime.uuid, "reason": reason})
        if runtime.alive:
            self.core.fill(runtime, out, now)

    # -- R/s/<namespace>/<scene>/p/<client>/<idTag>: arena-web-core's requests ------------
    def _on_program_topic(self, route: ArenaRoute, msg: dict[str, Any], out: Outbox,
                          now: float) -> None:
        if arena.kind_of(msg) != arena.REQ:
            return
        sender = msg.get("from")
        if isinstance(sender, str) and self.registry.runtime_by_uuid(sender) is not None:
            return                                   # a runtime's own traffic, not a client's
        data = arena.request_data(msg)
        if data.get("type") != "module":
            return                                   # e.g. a persisted "program" object
        action = msg.get("action")
        if action == "create":
            self._client_create(route, data, out, now)
        elif action == "delete":
            self._client_delete(data, out, now)

    def _client_create(self, route: ArenaRoute, data: dict[str, Any], out: Outbox,
                       now: float) -> None:
        uuid = arena.module_uuid(data)
        client = route.ident
        existing = self.registry.module_by_uuid(uuid)
        if existing is not None and existing.status in ModuleStatus.IN_USE:
            # "single": every client asks for the same program object; it runs once
            if client not in existing.clients:
                self.registry.put_module(evolve(existing, arena=existing.with_arena(
                    clients=[*existing.clients, client])))
            return
        ref = arena.parent_ref(data)
        named = None
        if ref is not None:
            named = (self.registry.runtime_by_uuid(ref)
                     or self.registry.newest_alive_runtime_named(ref))
            if named is None:
                self.log.debug("request for {uuid} names {ref}, not a runtime we know: "
                               "left alone", uuid=uuid, ref=ref)
                return
        spec = arena.module_spec(data, route.namespace, route.scene, client)
        module = Module(uuid=existing.uuid if existing else uuid,
                        serial=self.registry.new_serial(),
                        created_at=now, changed_at=now, status=ModuleStatus.QUEUED, **spec)
        if named is not None and not named.orchestration:
            if named.dialect == ARENA:
                self._observe(module, named, out, now)
            else:                    # a proc runtime hears no ARENA topic: forward it there
                module = evolve(module, pinned=True, parent=named.uuid)
                self.core.start_or_queue(module, named, out, now, "module.created")
            return
        # no runtime named, or an orchestration runtime: ours to place, and to move
        module = evolve(module, fault_crash="restart")
        started = self.core.perf()
        target = self.core.scheduler.pick(module.needs())
        self.core.on_placement(self.core.perf() - started)
        self.core.start_or_queue(module, target, out, now, "module.created")

    def _observe(self, module: Module, runtime: Runtime, out: Outbox, now: float) -> None:
        """A request pinned to an ARENA runtime: that runtime starts it; we only record it."""
        if not runtime.alive:
            self.log.info("request for {uuid} names dead ARENA runtime {rt}: left alone",
                          uuid=module.uuid, rt=runtime.uuid)
            return
        observed = self.registry.put_module(born(Module.from_record({
            **module.to_record(), "parent": runtime.uuid, "pinned": True,
            "status": ModuleStatus.ALIVE})))
        self._expect_confirmation(runtime.uuid, observed.uuid)
        out.event("module.created", observed)

    def _client_delete(self, data: dict[str, Any], out: Outbox, now: float) -> None:
        module = self.registry.module_by_uuid(arena.module_uuid(data))
        if module is not None:
            self.core.stop_module(module, out, now)

    def _client_left(self, client: str, out: Outbox, now: float) -> None:
        """A browser client left (its delete or will): its own program instances go.

        A module only this client asked for goes, unless the request said
        ``instantiate: single``; one that several clients asked for is a
        single-instance program and stays.
        """
        for uuid in list(self._by_client.get(client, ())):
            module = self.registry.modules.get(uuid)
            if (module is not None and module.clients == (client,)
                    and module.instantiate != "single"
                    and module.status in ModuleStatus.IN_USE):
                self.core.stop_module(module, out, now)

    # -- R/s/<namespace>/<scene>/p/<module uuid>: the runtime about a module -------------
    def _on_module_topic(self, route: ArenaRoute, msg: dict[str, Any], out: Outbox,
                         now: float) -> None:
        module = self.registry.module_by_uuid(route.ident)
        if module is None:
            return
        sender = msg.get("from")
        if isinstance(sender, str) and module.parent is not None and sender != module.parent:
            self.log.info("ignoring news of {uuid} from {by}, not its runtime",
                          uuid=module.uuid, by=sender)
            return
        kind, action = arena.kind_of(msg), msg.get("action")
        raw = msg.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == arena.RESP and action == "create":
            if data.get("result") == "ok" and module.alive:
                self._confirmed(module, out, now, msg.get("object_id"))
        elif kind == arena.RESP and action == "delete" and module.alive \
                and self.recalled.pop(module.uuid, None) is not None:
            runtime = self.registry.runtimes.get(module.parent or "")
            if runtime is not None and runtime.alive:
                self.log.info("module {m} stopped on {rt} by the delete meant for its stale "
                              "copy: started again", m=module.uuid, rt=runtime.uuid)
                again = self.registry.put_module(evolve(module, acked_at=None))
                self.send_create(again, runtime, out)
        elif action == "delete" and kind in (arena.RESP, arena.REQ):
            self.core.module_exited(module, out, now)

    def _confirmed(self, module: Module, out: Outbox, now: float,
                   object_id: Any = None) -> None:
        pending = self.unconfirmed.get(module.parent or "")
        if pending is not None:
            pending.pop(module.uuid, None)
        if self.core.confirm(object_id if isinstance(object_id, str) else None, out, now) is None:
            out.event("module.acked", self.registry.put_module(evolve(module, acked_at=now)))

    # -- what the proc core calls for ARENA runtimes -----------------------------------
    def where(self, module: Module, runtime: Runtime) -> dict[str, Any]:
        """Namespace and scene for a module that has none (e.g. created over proc)."""
        if module.namespace is not None and module.scene is not None and module.reason is None:
            return {}
        return {"arena": module.with_arena(
            namespace=module.namespace or runtime.namespace or "public",
            scene=module.scene or "default", reason=None)}

    def send_create(self, module: Module, runtime: Runtime, out: Outbox) -> str:
        object_id = self.core.new_id()
        scene = module.scene or "default"
        out.publish(self.topics.module_request(module.namespace or runtime.namespace or "public",
                                               scene, runtime.uuid, module.uuid),
                    arena.create_request(self.me, object_id, module, runtime, scene))
        self._expect_confirmation(runtime.uuid, module.uuid)
        return object_id

    def send_delete(self, module: Module, runtime: Runtime, out: Outbox) -> None:
        if module.alive and module.parent != runtime.uuid:
            if self.recalled.get(module.uuid) == runtime.uuid:
                return                  # asked already; its keepalive predates the delete
            # kept beside the registry: written only if the request's changes stand
            self.registry.after_commit(lambda: self._recall(module.uuid, runtime.uuid))
        out.publish(self.topics.module_request(module.namespace or runtime.namespace or "public",
                                               module.scene or "default", runtime.uuid,
                                               module.uuid),
                    arena.delete_request(self.me, self.core.new_id(), module, runtime.uuid))

    def _recall(self, module_uuid: str, runtime_uuid: str) -> None:
        self.recalled[module_uuid] = runtime_uuid
        if len(self.recalled) > UNCONFIRMED_KEPT:
            self.recalled.popitem(last=False)

    def _expect_confirmation(self, runtime_uuid: str, module_uuid: str) -> None:
        self.registry.after_commit(lambda: self._unconfirmed(runtime_uuid, module_uuid))

    def _unconfirmed(self, runtime_uuid: str, module_uuid: str) -> None:
        pending = self.unconfirmed.setdefault(runtime_uuid, OrderedDict())
        pending[module_uuid] = None
        pending.move_to_end(module_uuid)
        if len(pending) > UNCONFIRMED_KEPT:
            pending.popitem(last=False)

    # -- REST annotations ---------------------------------------------------------------
    def annotate_runtime(self, detail: dict[str, Any]) -> dict[str, Any]:
        if detail.get("dialect") == ARENA:
            detail["errors"] = list(self.errors.get(detail["uuid"], ()))
            for child in detail.get("children", ()):
                self.annotate_module(child)
        return detail

    def annotate_module(self, detail: dict[str, Any]) -> dict[str, Any]:
        stats = self.stats.get(detail["uuid"])
        if stats is not None:
            detail["stats"] = stats
        return detail

    # -- registry observer: the client index, and forgetting what died ------------------
    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None:
        if old is not None and old.alive and (new is None or not new.alive):
            self.unconfirmed.pop(old.uuid, None)
            if new is None:
                self.errors.pop(old.uuid, None)

    def module_changed(self, old: Module | None, new: Module | None) -> None:
        if old is not None and old.clients and (new is None or new.clients != old.clients):
            for client in old.clients:
                owned = self._by_client.get(client)
                if owned is not None:
                    owned.pop(old.uuid, None)
                    if not owned:
                        del self._by_client[client]
        if new is not None and new.clients:
            for client in new.clients:
                self._by_client.setdefault(client, {})[new.uuid] = None
        if new is None or new.status in ModuleStatus.ENDED:
            if old is not None:
                self.stats.pop(old.uuid, None)

    def reset(self) -> None:
        self._by_client = {}
        for module in self.registry.modules.values():
            self.module_changed(None, module)


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default
