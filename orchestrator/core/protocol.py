"""The orchestrator's protocol logic: a message in, a list of effects out.

Pure: no reactor, no sockets, no files. The caller passes the time. Each
message is handled inside a registry transaction, so a request that fails
half-way (a :class:`ProtocolError`, or a bug) changes nothing and yields
exactly one error on the log topic; the next message is handled normally.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections import OrderedDict
from typing import Any, Callable

from twisted.logger import Logger

from ..config import Config
from .delivery import Delivery, request_key
from .dialects import batch_items, exit_reporter, is_2023_create, reply_type, sent_fields
from .effects import OTHER, REPLY, Effect, Handled, Outbox, Publish
from .envelope import Envelope, ProtocolError, decode_payload, invalid, parse_envelope, request_id
from .explain import unplaced_reason
from .fields import Fields, check_ident, module_fields, runtime_fields
from .lifecycle import born, transition
from .liveness import Liveness
from .partition import PartitionHold
from .arena_protocol import ArenaDialect
from .model import ARENA, Module, ModuleStatus, Runtime, RuntimeStatus, evolve
from .operations import OPERATIONS
from .registry import Key, Record, Registry, same_id
from .scheduler import Scheduler
from .topics import CONTROL, KEEPALIVE, REG, Route, Topics

__all__ = ["Orchestrator", "new_uuid"]

#: forwarded requests whose ack we still expect (bounded; oldest forgotten first:
#: runtimes ack within moments, so only a runtime that never acks fills this)
PENDING_ACKS = 20_000


#: client requests on the shared control topic that are recognised when repeated
DEDUPED = frozenset({"create", "create_batch", "delete"})


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def _ignore(seconds: float) -> None:
    pass


class Orchestrator:
    """Registry, scheduler and liveness, driven by messages and the sweep."""

    log = Logger()

    def __init__(self, config: Config, registry: Registry | None = None,
                 new_id: Callable[[], str] = new_uuid, *,
                 perf: Callable[[], float] = time.perf_counter,
                 on_placement: Callable[[float], None] = _ignore,
                 on_failover: Callable[[float], None] = _ignore) -> None:
        """``on_placement`` and ``on_failover`` get how long each one took (by ``perf``):
        observability hooks, they change nothing."""
        self.config = config
        self.topics = Topics(config.realm)
        self.registry = registry if registry is not None else Registry()
        self.scheduler = Scheduler(self.registry, config.scheduler)
        self.liveness = Liveness(config.ka_interval_sec, config.keepalive_misses,
                                 lambda: self.registry.runtimes.values(),
                                 PartitionHold(config.partition_share,
                                               config.partition_min_silent,
                                               config.partition_hold_max_sec))
        self.registry.observers.append(self.liveness)
        self.new_id = new_id
        self.delivery = Delivery(config.dedupe_window, config.outbox_limit)
        self._pending_acks: OrderedDict[str, str] = OrderedDict()
        #: forwarded deletes: object_id -> (module uuid, runtime uuid); a runtime that
        #: answers one (2021 ARENA runtimes do, instead of an exit report) completes it
        self._pending_deletes: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.perf = perf
        self.on_placement = on_placement
        self.on_failover = on_failover
        #: the ARENA topics (applauncher-runtime, arena-web-core), same registry
        self.arena = ArenaDialect(self)

    # -- entry points ---------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float) -> Handled:
        """Handle one MQTT message; never raises."""
        route = self.topics.route(topic)
        if route is None:
            return self.arena.handle(topic, payload, now) if self.config.arena \
                else Handled(OTHER, [])
        out = Outbox(self.topics, self.new_id)
        msg: Any = None
        error: ProtocolError | None = None
        try:
            msg = decode_payload(payload, self.config.max_payload_bytes)
            out.reply_type = reply_type(msg)
            env = parse_envelope(msg)
            key = self._dedupe_key(route, env, topic, payload)
            if key is not None:
                replies = self.delivery.replies_to(key)
                if replies is not None:
                    self.log.info("{action} {object_id} on {topic} was carried out before: "
                                  "its reply is sent again", action=env.action,
                                  object_id=env.object_id, topic=topic)
                    return Handled(route.kind, [Publish(t, body, REPLY, False)
                                               for t, body in replies])
            version = self.registry.version
            with self.registry.transaction():
                self._dispatch(route, topic, env, out, now)
            if self.registry.version == version:
                out.transient()
            elif key is not None:
                self.delivery.remember(key, tuple(
                    (e.topic, e.body()) for e in out.effects
                    if isinstance(e, Publish) and e.kind == REPLY))
        except ProtocolError as e:
            error = e
        except Exception as e:
            self.log.failure("while handling a message on {topic}", topic=topic)
            error = ProtocolError("Uncaught exception", f"{type(e).__name__}: {e}"[:200])
        if error is not None:
            out.effects.clear()
            out.error(request_id(msg), error.desc, error.data)
        return Handled(route.kind, out.effects, error)

    def subscriptions(self) -> list[str]:
        """Every topic to subscribe to: the proc dialect's, and ARENA's unless turned off."""
        return self.topics.subscriptions() + (
            self.arena.topics.subscriptions() if self.config.arena else [])

    def sweep(self, now: float) -> list[Effect]:
        """Declare dead the runtimes whose keepalives stopped (docs/protocol.md 10.1)."""
        out = Outbox(self.topics, self.new_id)
        for uuid in self.liveness.overdue(now):
            runtime = self.registry.runtimes.get(uuid)
            if runtime is not None and runtime.alive:
                with self.registry.transaction():
                    self._runtime_died(runtime, "keepalive timeout", out, now)
        return out.effects

    def prune(self, now: float) -> list[Effect]:
        """Drop dead records older than the retention period, so state stays bounded."""
        cutoff = now - self.config.retention_days * 86400.0
        registry = self.registry
        out = Outbox(self.topics, self.new_id)
        with registry.transaction():
            old_runtimes = [r for r in registry.runtimes.values()
                            if not r.alive and r.changed_at < cutoff]
            for runtime in old_runtimes:      # gone for good: so are its waiting modules
                for module in registry.children(runtime.uuid):
                    registry.drop_module(module.uuid)
                    out.event("module.dropped", module)
                registry.drop_runtime(runtime.uuid)
                out.event("runtime.dropped", runtime)
            old_modules = [m for m in registry.modules.values()
                           if m.status in ModuleStatus.ENDED and m.changed_at < cutoff]
            for module in old_modules:
                registry.drop_module(module.uuid)
                out.event("module.dropped", module)
        if old_runtimes or old_modules:
            self.log.info("retention: dropped {nr} runtimes and {nm} modules dead since before "
                          "the retention period", nr=len(old_runtimes), nm=len(old_modules))
        return out.effects

    # -- what the glue needs: the journal delta, liveness state, the broker link --
    def has_changes(self) -> bool:
        return self.registry.has_changes()

    def take_changes(self) -> dict[Key, Record | None]:
        """The registry changes since the last call: what the next journal batch holds."""
        return self.registry.take_changes()

    @property
    def next_serial(self) -> int:
        return self.registry.next_serial

    def liveness_state(self) -> dict[str, Any]:
        """Last-seen times: not journaled, kept in snapshots so a restart is fair."""
        return self.liveness.dump()

    def restore_liveness(self, saved: Any) -> None:
        self.liveness.restore(saved)

    def bus_up(self, now: float) -> None:
        """Our broker link is up: judge runtimes again, after a grace period."""
        self.liveness.bus_up(now)

    def bus_down(self) -> None:
        self.liveness.bus_down()

    @staticmethod
    def _dedupe_key(route: Route, env: Envelope, topic: str, payload: bytes) -> bytes | None:
        """Module creates (single or batch) and deletes from clients are deduplicated
        (docs/protocol.md 12.3).

        Everything else is idempotent by itself, and some of it must not be
        deduplicated: a runtime's last will is the same bytes every time it
        fires, and a runtime may register with the same bytes after a reboot.
        """
        if (route.kind != CONTROL or route.sub is not None or env.is_reply
                or env.object_id is None or env.action not in DEDUPED):
            return None
        return request_key(topic, payload)

    # -- routing ------------------------------------------------------------------
    def _dispatch(self, route: Route, topic: str, env: Envelope, out: Outbox, now: float) -> None:
        if env.is_reply:
            if route.kind == CONTROL:
                self._ack(route, env, out, now)
            return          # other replies are our own, heard back: ignore
        action = env.action
        if route.kind == REG:
            if action == "create":
                return self._register(route, topic, env, out, now)
            if action == "delete":
                return self._deregister(route, topic, env, out, now)
        elif route.kind == KEEPALIVE:
            if action == "update":
                return self._keepalive(route, env, out, now)
        elif route.sub is None:
            if action == "create":
                return self._create_module(env, out, now)
            if action == "create_batch":
                return self._create_batch(env, out, now)
            if action == "delete":
                return self._delete_module(route, env, out, now)
            if action == "exited":
                return self._exited(route, env, out, now)
            if action in OPERATIONS:
                return OPERATIONS[action](self, env, out, now)
        else:
            # a runtime's own control topic: only its exits (and acks) are for us;
            # creates and deletes there are our own forwards, heard back.
            if action == "exited":
                return self._exited(route, env, out, now)
            if action == "delete":
                return self._delete_as_exit(route, env, out, now)
            if action == "create":
                return None
        raise ProtocolError("invalid action", action)

    def _topic_identity(self, route: Route, uuid: str | None) -> str | None:
        """On ``reg/{X}`` and ``keepalive/{X}`` a runtime may only speak for X."""
        if route.sub is None:
            return uuid
        sub = check_ident(route.sub, "topic")
        if uuid is None:
            return sub
        if not same_id(uuid, sub):
            raise invalid("data/uuid", f"the uuid of the topic ({sub})")
        return uuid

    # -- runtimes -------------------------------------------------------------------
    def _register(self, route: Route, topic: str, env: Envelope, out: Outbox, now: float) -> None:
        f = Fields(env.data)
        if f.kind("runtime", "manager") == "manager":
            return self._manager(route, topic, env, out, now, alive=True)
        uuid = self._topic_identity(route, f.ident("uuid")) or self.new_id()
        spec = runtime_fields(f, self.config.max_nmodules)
        given = {"manager" if key == "parent" else key for key in f.given}   # field names
        self.admit_runtime(uuid, spec, given, now, out,
                           reply=lambda r: out.reply(topic, env.object_id, r.wire()))

    def admit_runtime(self, uuid: str, spec: dict[str, Any], given: set[str], now: float,
                      out: Outbox, reply: Callable[[Runtime], None] = lambda r: None) -> Runtime:
        """A runtime (re)registers: a new record, or the known one alive again with
        the fields it sent; its killed modules start again, then queued ones."""
        old = self.registry.runtime_by_uuid(uuid)
        common: dict[str, Any] = dict(dead_reason=None, registered_at=now,
                                      ka_interval_sec=self.config.ka_interval_sec)
        if old is None:
            runtime = born(Runtime(uuid=uuid, serial=self.registry.new_serial(), **spec,
                                   **common, status=RuntimeStatus.ALIVE, changed_at=now))
            self.registry.put_runtime(runtime)
            reply(runtime)
            out.event("runtime.registered", runtime)
        else:
            updates = {k: v for k, v in spec.items() if k in given}
            runtime = self.registry.put_runtime(
                transition(old, RuntimeStatus.ALIVE, now, **updates, **common))
            reply(runtime)
            out.event("runtime.reregistered", runtime, was=old.status)
            for module in self.registry.children(runtime.uuid, ModuleStatus.KILLED):
                self._start_or_queue(module, runtime, out, now, "module.respawned")
        self._fill(runtime, out, now)
        return runtime

    def _deregister(self, route: Route, topic: str, env: Envelope, out: Outbox, now: float) -> None:
        f = Fields(env.data)
        if f.kind("runtime", "manager") == "manager":
            return self._manager(route, topic, env, out, now, alive=False)
        uuid = self._topic_identity(route, check_ident(f.required_text("uuid"), "data/uuid"))
        assert uuid is not None
        runtime = self.registry.runtime_by_uuid(uuid)
        if runtime is None:
            raise ProtocolError("invalid Runtime UUID", uuid)
        if runtime.alive:
            runtime = self.runtime_deleted(runtime, out, now)
        out.reply(topic, env.object_id, runtime.wire())

    def runtime_deleted(self, runtime: Runtime, out: Outbox, now: float) -> Runtime:
        """An alive runtime's delete or last will (one message on the wire), unless late."""
        if self.liveness.take_stale_will(runtime.uuid):
            self.log.info("delete for runtime {uuid} ({name}) taken as the late last will "
                          "of a connection it replaced: it registered again since and "
                          "keeps sending keepalives, so it stays alive",
                          uuid=runtime.uuid, name=runtime.name)
            return runtime
        return self._runtime_died(runtime, "delete", out, now)

    def _manager(self, route: Route, topic: str, env: Envelope, out: Outbox, now: float,
                 alive: bool) -> None:
        """A runtime-manager process (2023 runtimes): its delete or will kills its runtimes."""
        f = Fields(env.data)
        uuid = self._topic_identity(route, f.ident("uuid")) or self.new_id()
        name = f.text("name", "manager")
        if not alive:
            for runtime in [r for r in self.registry.runtimes.values()
                            if r.alive and r.manager is not None and same_id(r.manager, uuid)]:
                self._runtime_died(runtime, "manager delete", out, now)
        out.reply(topic, env.object_id, {"type": "manager", "uuid": uuid, "name": name,
                                         "alive": alive, "status": "alive" if alive else "dead"})

    def _runtime_died(self, runtime: Runtime, reason: str, out: Outbox, now: float) -> Runtime:
        """Death by delete, last will or silence: fault policy for each module (docs/protocol.md 10.2)."""
        started = self.perf()
        dead = self.registry.put_runtime(transition(
            runtime, RuntimeStatus.DEAD, now, dead_reason=reason))
        out.notify("dead", {"type": "runtime", "uuid": dead.uuid, "name": dead.name,
                            "reason": reason})
        out.event("runtime.dead", dead, reason=reason)
        unplaced: dict[frozenset[str], str] = {}     # why no target, per api set
        for module in self.registry.children(dead.uuid):
            if module.status == ModuleStatus.ALIVE:
                apis = module.needs()
                target = (self.scheduler.pick(apis)
                          if module.fault_crash == "restart" else None)
                if target is not None:
                    self._reschedule(module, dead, target, out, now)
                else:
                    if module.fault_crash != "restart":
                        why = "fault_crash is not restart"
                    elif apis in unplaced:
                        why = unplaced[apis]
                    else:
                        why = unplaced[apis] = unplaced_reason(self.registry, apis)
                    killed = self.registry.put_module(transition(
                        module, ModuleStatus.KILLED, now))
                    out.event("module.killed", killed, reason=f"not moved: {why}")
            elif module.status == ModuleStatus.EXITING:
                gone = self.registry.put_module(transition(
                    module, ModuleStatus.DEAD, now))
                out.event("module.exited", gone)
        self.on_failover(self.perf() - started)
        return dead

    def _reschedule(self, module: Module, source: Runtime, target: Runtime, out: Outbox,
                    now: float, why: str = "its runtime died") -> Module:
        moved, _ = self._start(module, target, out, now, "module.rescheduled",
                               previous=source.uuid, why=why)
        out.notify("rescheduled", {"type": "module", "uuid": moved.uuid, "name": moved.name,
                                   "from": source.uuid, "to": target.uuid})
        return moved

    # -- steps the operator actions (operations.py) reuse ------------------------------
    def move(self, module: Module, source: Runtime, target: Runtime, out: Outbox,
             now: float) -> Module:
        """Start a running module on ``target`` and stop it on ``source`` (a drain)."""
        moved = self._reschedule(module, source, target, out, now, why="its runtime is drained")
        self.forward_delete(moved, source.uuid, out)
        return moved

    def runtime_died(self, runtime: Runtime, reason: str, out: Outbox, now: float) -> Runtime:
        return self._runtime_died(runtime, reason, out, now)

    def fill(self, runtime: Runtime, out: Outbox, now: float) -> None:
        self._fill(runtime, out, now)

    def _keepalive(self, route: Route, env: Envelope, out: Outbox, now: float) -> None:
        f = Fields(env.data)
        f.kind("runtime")
        uuid = self._topic_identity(route, check_ident(f.required_text("uuid"), "data/uuid"))
        assert uuid is not None
        children = env.data.get("children")        # absent: no claim about its modules
        if children is not None and not isinstance(children, list):
            raise invalid("data/children", "list")
        runtime = self.registry.runtime_by_uuid(uuid)
        if runtime is None:
            self.log.info("keepalive from unknown runtime {uuid}; waiting for it to register",
                          uuid=uuid)
            return
        self.heard(runtime, children, out, now)

    def heard(self, runtime: Runtime, children: list[Any] | None, out: Outbox,
              now: float) -> Runtime | None:
        """A known runtime's keepalive: liveness, revival, what it says it runs.

        None when the keepalive is ignored (sent before the runtime's death)."""
        revived = not runtime.alive
        if revived:
            if now - runtime.changed_at < self.config.revive_after_sec:
                # sent before its goodbye and overtaken by it: not a sign of life
                self.log.debug("keepalive from {uuid}, dead for {s:.3f}s: ignored as sent "
                               "before its death", uuid=runtime.uuid, s=now - runtime.changed_at)
                return None
            runtime = self._revive(runtime, out, now)
        self.liveness.keepalive(runtime.uuid, now)
        if children is not None:
            self._reconcile(runtime, children, out, now)
        if revived:
            self._fill(runtime, out, now)
        return runtime

    def _revive(self, runtime: Runtime, out: Outbox, now: float) -> Runtime:
        """A dead runtime is heard again: the verdict was wrong, undo it."""
        reason = runtime.dead_reason
        alive = self.registry.put_runtime(transition(
            runtime, RuntimeStatus.ALIVE, now, dead_reason=None))
        out.notify("revived", {"type": "runtime", "uuid": alive.uuid, "name": alive.name,
                               "dead_reason": reason})
        out.event("runtime.revived", alive, reason=reason)
        return alive

    def _reconcile(self, runtime: Runtime, children: list[Any], out: Outbox,
                   now: float) -> None:
        """What a keepalive says the runtime runs, against what we assigned it.

        Ours and killed by a wrong death verdict: alive again (it never stopped;
        nothing is sent). Moved elsewhere: it must not run twice, so this runtime
        is told to stop its copy. Anything else listed is left alone.
        """
        for child in children:
            child_uuid = child.get("uuid") if isinstance(child, dict) else None
            module = (self.registry.module_by_uuid(child_uuid)
                      if isinstance(child_uuid, str) else None)
            if module is None:
                continue
            if module.parent != runtime.uuid:
                self.forward_delete(module, runtime.uuid, out)
            elif module.status == ModuleStatus.KILLED:
                back = self.registry.put_module(transition(
                    module, ModuleStatus.ALIVE, now))
                out.event("module.revived", back)

    # -- modules -----------------------------------------------------------------
    def _resolve_parent(self, data: dict[str, Any], prefix: str = "data") -> Runtime | None:
        given = data.get("parent")
        if given is None:
            return None
        expected = "runtime uuid or name"
        if isinstance(given, dict):        # {"uuid": ...}
            parent = Fields(given, f"{prefix}/parent").required_text("uuid", expected)
        else:
            parent = Fields(data, prefix).required_text("parent", expected)
        runtime = (self.registry.runtime_by_uuid(parent)
                   or self.registry.newest_alive_runtime_named(parent))
        if runtime is None or not runtime.alive:
            raise ProtocolError("invalid Runtime UUID", parent)
        return runtime

    def _create_module(self, env: Envelope, out: Outbox, now: float) -> None:
        out.reply(self.topics.control, env.object_id, self._create_one(env.data, "data", out, now))

    def _create_batch(self, env: Envelope, out: Outbox, now: float) -> None:
        """Several creates in one request (2023 ``create_module_batch``): each as a single
        create would be, in order; one bad module refuses the whole batch; one reply."""
        results = [self._create_one(data, prefix, out, now)
                   for prefix, data in batch_items(env.data)]
        out.reply(self.topics.control, env.object_id, {"modules": results})

    def _create_one(self, data: dict[str, Any], prefix: str, out: Outbox,
                    now: float) -> dict[str, Any]:
        """Place or queue one module; its wire shape (the reply's details)."""
        f = Fields(data, prefix)
        f.kind("module")
        uuid = f.ident("uuid") or self.new_id()
        spec = module_fields(f)
        spec["sent"] = sent_fields(f) if is_2023_create(data) else None
        existing = self.registry.module_by_uuid(uuid)
        if existing is not None:
            if existing.status in ModuleStatus.IN_USE:
                raise ProtocolError("duplicate module UUID; request ignored", data)
            uuid = existing.uuid
        parent = self._resolve_parent(data, prefix)
        module = born(Module(uuid=uuid, serial=self.registry.new_serial(), **spec,
                             parent=parent.uuid if parent is not None else None,
                             pinned=parent is not None, status=ModuleStatus.QUEUED,
                             created_at=now, changed_at=now))
        target = parent
        if parent is None:
            started = self.perf()
            target = self.scheduler.pick(module.needs())
            self.on_placement(self.perf() - started)
        module, wire = self._start_or_queue(module, target, out, now, "module.created")
        return wire

    def start_or_queue(self, module: Module, runtime: Runtime | None, out: Outbox,
                       now: float, event: str) -> tuple[Module, dict[str, Any]]:
        return self._start_or_queue(module, runtime, out, now, event)

    def _start_or_queue(self, module: Module, runtime: Runtime | None, out: Outbox,
                        now: float, event: str) -> tuple[Module, dict[str, Any]]:
        """Start on ``runtime`` if it has room; else queue, for it or (None) for any.

        Returns the module and its wire shape (built once: forward and reply share it).
        """
        if runtime is not None and self.scheduler.has_room(runtime):
            return self._start(module, runtime, out, now, event)
        queued = self.registry.put_module(transition(
            module, ModuleStatus.QUEUED, now,
            parent=runtime.uuid if runtime is not None else None,
            pinned=runtime is not None))
        out.event("module.queued", queued)
        out.notify("queued", {"type": "module", "uuid": queued.uuid, "name": queued.name,
                              "parent": queued.parent})
        return queued, queued.wire()

    def _start(self, module: Module, runtime: Runtime, out: Outbox, now: float,
               event: str, **extra: Any) -> tuple[Module, dict[str, Any]]:
        """Make the module alive on ``runtime`` and forward its create there."""
        where = self.arena.where(module, runtime) if runtime.dialect == ARENA else {}
        started = self.registry.put_module(transition(
            module, ModuleStatus.ALIVE, now, parent=runtime.uuid, acked_at=None, **where))
        wire = started.wire()
        if runtime.dialect == ARENA:
            object_id = self.arena.send_create(started, runtime, out)
        else:
            object_id = out.request(self.topics.control_for(runtime.uuid), "create", wire)
        self._expect_ack(object_id, started.uuid)
        out.event(event, started, **extra)
        return started, wire

    def forward_delete(self, module: Module, runtime_uuid: str, out: Outbox) -> str | None:
        """Tell the runtime to stop the module, in the runtime's own dialect."""
        runtime = self.registry.runtimes.get(runtime_uuid)
        if runtime is not None and runtime.dialect == ARENA:
            self.arena.send_delete(module, runtime, out)
            return None
        return out.request(self.topics.control_for(runtime_uuid), "delete",
                           {"type": "module", "uuid": module.uuid})

    def _fill(self, runtime: Runtime, out: Outbox, now: float) -> None:
        """Start queued modules, oldest first, while the runtime has room."""
        while (module := self.scheduler.next_queued_for(runtime)) is not None:
            started, _ = self._start(module, runtime, out, now, "module.started")
            out.notify("started", {"type": "module", "uuid": started.uuid,
                                   "name": started.name, "parent": runtime.uuid})

    def _find_module(self, data: dict[str, Any]) -> Module:
        q = Fields(data).required_text("uuid", "module uuid or name")
        module = (self.registry.module_by_uuid(q)
                  or self.registry.newest_module_named(q, tuple(ModuleStatus.IN_USE)))
        if module is None:
            raise ProtocolError("invalid Module UUID", q)
        return module

    def _delete_module(self, route: Route, env: Envelope, out: Outbox, now: float) -> None:
        Fields(env.data).kind("module")
        module = self._find_module(env.data)
        reporter = exit_reporter(env.data)
        if reporter is not None and module.parent and same_id(reporter, module.parent):
            return self._exited(route, env, out, now)     # a 2021/2022 runtime reporting an exit
        if (reporter is not None and module.parent
                and self.registry.runtime_by_uuid(reporter) is not None):
            # a runtime that no longer holds the module (it was moved away) reporting
            # that its old copy stopped: not a request to delete the module
            self.log.info("ignoring delete of {uuid} reported by {by}, not its runtime",
                          uuid=module.uuid, by=reporter)
            return
        module = self.stop_module(module, out, now)
        out.reply(self.topics.control, env.object_id, module.wire())

    def stop_module(self, module: Module, out: Outbox, now: float) -> Module:
        """A delete: forward it to the module's runtime, or end a module that runs nowhere."""
        if module.status in (ModuleStatus.ALIVE, ModuleStatus.EXITING):
            parent = module.parent
            assert parent is not None
            if module.alive:
                module = self.registry.put_module(transition(
                    module, ModuleStatus.EXITING, now))
                out.event("module.exiting", module)
            object_id = self.forward_delete(module, parent, out)
            if object_id is not None:
                self._expect_delete_ack(object_id, module.uuid, parent)
        elif module.status in (ModuleStatus.QUEUED, ModuleStatus.KILLED):
            module = self.registry.put_module(transition(
                module, ModuleStatus.DEAD, now))
            out.event("module.deleted", module)
        return module

    def _delete_as_exit(self, route: Route, env: Envelope, out: Outbox, now: float) -> None:
        """A delete on a runtime's own topic counts only as that runtime's exit report."""
        if exit_reporter(env.data) is not None:
            self._exited(route, env, out, now)

    def _exited(self, route: Route, env: Envelope, out: Outbox, now: float) -> None:
        f = Fields(env.data)
        f.kind("module")
        q = f.required("uuid")
        module = self.registry.module_by_uuid(q) if isinstance(q, str) else None
        if module is None:
            raise ProtocolError("invalid Module UUID", q)
        if route.sub is not None and (module.parent is None
                                      or not same_id(route.sub, module.parent)):
            # e.g. the old copy of a module that failover moved elsewhere
            self.log.info("ignoring exit of {uuid} reported by {by}, not its runtime",
                          uuid=module.uuid, by=route.sub)
            return
        self.module_exited(module, out, now)

    def module_exited(self, module: Module, out: Outbox, now: float) -> None:
        """Its runtime says the module is gone (unless it ended already)."""
        if module.status not in ModuleStatus.ENDED:
            self._gone(module, out, now)

    def _gone(self, module: Module, out: Outbox, now: float) -> None:
        """The module's runtime says it no longer runs: dead, announced, its slot reused."""
        held_slot = module.status in ModuleStatus.OCCUPYING
        module = self.registry.put_module(transition(module, ModuleStatus.DEAD, now))
        out.notify("exited", {"type": "module", "uuid": module.uuid})
        out.event("module.exited", module)
        runtime = self.registry.runtimes.get(module.parent or "")
        if held_slot and runtime is not None and runtime.alive:
            self._fill(runtime, out, now)

    # -- acks --------------------------------------------------------------------------
    def confirm(self, object_id: str | None, out: Outbox, now: float) -> Module | None:
        """The runtime acknowledged the create we sent with ``object_id``."""
        module_uuid = self._pending_acks.pop(object_id or "", None)
        module = self.registry.modules.get(module_uuid or "")
        if module is None:
            return None
        acked = self.registry.put_module(evolve(module, acked_at=now))
        out.event("module.acked", acked)
        return acked

    def _expect_ack(self, object_id: str, module_uuid: str) -> None:
        self.registry.after_commit(
            lambda: _remember(self._pending_acks, object_id, module_uuid))

    def _expect_delete_ack(self, object_id: str, module_uuid: str, runtime_uuid: str) -> None:
        self.registry.after_commit(
            lambda: _remember(self._pending_deletes, object_id, (module_uuid, runtime_uuid)))

    def _delete_acked(self, route: Route, env: Envelope, out: Outbox, now: float) -> bool:
        """A runtime's answer to a forwarded delete; True if it was one."""
        pending = self._pending_deletes.pop(env.object_id or "", None)
        if pending is None:
            return False
        module_uuid, runtime_uuid = pending
        module = self.registry.modules.get(module_uuid)
        if (module is None or module.status != ModuleStatus.EXITING
                or module.parent != runtime_uuid
                or (route.sub is not None and not same_id(route.sub, runtime_uuid))):
            return True          # moved, already gone, or not its runtime speaking
        result = env.data.get("result")
        if result not in (None, "ok"):
            self.log.warn("runtime {rt} answered {result!r} to the delete of {uuid}; "
                          "it stays exiting", rt=runtime_uuid, result=result, uuid=module_uuid)
            return True
        self._gone(module, out, now)
        return True

    def _ack(self, route: Route, env: Envelope, out: Outbox, now: float) -> None:
        if self._pending_deletes and self._delete_acked(route, env, out, now):
            return
        module = self.confirm(env.object_id, out, now)
        if module is None:
            return
        result = env.data.get("result")
        if result not in (None, "ok"):
            self.log.warn("runtime answered {result!r} to the create of {uuid}",
                          result=result, uuid=module.uuid)


def _remember(pending: OrderedDict[str, Any], object_id: str, value: Any) -> None:
    """What a runtime's ack of ``object_id`` will answer, the oldest forgotten first."""
    pending[object_id] = value
    if len(pending) > PENDING_ACKS:
        pending.popitem(last=False)
