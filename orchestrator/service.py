"""The glue: messages to the core, changes to the journal, effects to the world.

The rules this module keeps:

- nothing that announces a change (a reply, a forward, a notification, an
  event) leaves the process before the change is durable. Messages handled
  in the same reactor turn share one journal batch and one fsync; their
  effects then go out in arrival order;
- an incoming message is acknowledged to the broker (PUBACK) at that same
  point, never before: until then the broker keeps it and sends it again
  after a crash (the core recognises what it already carried out);
- each announcement is journaled in the batch of its change (the outbox)
  and sent again after a restart until the broker acknowledged it.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any, Callable, Protocol, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .adapters.decisionlog import DecisionLog
from .core.effects import Effect, Event, Handled, Publish
from .core.protocol import Orchestrator
from .core.registry import Key, Record, Registry
from .adapters.store import JournaledTables, LoadReport

__all__ = ["OrchestratorService", "Publisher", "Journal", "EventSink", "Counts",
           "NO_PUBLISHER", "NO_EVENTS", "NO_COUNTS", "StartupError"]

log = Logger()

#: how often the liveness sweep runs (the +1 s of the detection bound)
SWEEP_INTERVAL = 1.0
#: how often dead records past retention are dropped
PRUNE_INTERVAL = 3600.0


class StartupError(Exception):
    """The service cannot start (the message says why, in one line)."""


class Publisher(Protocol):
    """Where announcements go (the MQTT link)."""

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        """Send at QoS 1. With a ``tag``: True if handed to a live connection
        (its PUBACK is reported with the tag), False if not sent at all."""
        ...


#: a message's acknowledgement to the broker, to call once it is durable
Ack = Callable[[], None]

#: how long acknowledged announcements may wait for a batch to carry their trimming
ACK_FLUSH_DELAY = 1.0


class Journal(Protocol):
    """Where changes are made durable (the store): batches, then snapshots."""

    path: str
    seq: int
    snapshot_seq: int | None

    def load(self, registry: Registry, tables: JournaledTables | None = None) -> LoadReport: ...

    def commit(self, changes: dict[Key, Record | None], next_serial: int,
               meta: dict[str, Any] | None = None, tail: bytes = b"") -> Deferred[None]:
        """Write one batch (``tail``: the delivery tables' delta, already JSON);
        the Deferred fires once it is durable."""

    def flush(self) -> Deferred[None]: ...

    def snapshot(self, registry: Registry, meta: Callable[[], dict[str, Any]],
                 tables: JournaledTables | None = None) -> Deferred[None]: ...

    def close(self) -> None: ...


class EventSink(Protocol):
    """Where announced events go (the event log behind /api/events)."""

    latest: int

    def append(self, event_id: int, event: Event, now: float) -> object: ...


class Counts(Protocol):
    """What the glue counts (the Prometheus series)."""

    def handled(self, kind: str, error: str | None, seconds: float) -> None:
        """One message of route ``kind`` handled, refused with ``error`` if not None."""

    def announced(self, event_type: str) -> None: ...


class _NoPublisher:
    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        return True


class _NoEvents:
    def __init__(self) -> None:
        self.latest = 0

    def append(self, event_id: int, event: Event, now: float) -> None:
        self.latest = event_id


class _NoCounts:
    def handled(self, kind: str, error: str | None, seconds: float) -> None:
        pass

    def announced(self, event_type: str) -> None:
        pass


#: the null collaborators: announce to nobody, keep no events, count nothing
NO_PUBLISHER: Publisher = _NoPublisher()
NO_COUNTS: Counts = _NoCounts()
NO_EVENTS = _NoEvents       # a class: each service gets its own (it keeps ``latest``)


def _freeze_after_full_collections(phase: str, info: dict[str, Any]) -> None:
    """What survives a full collection is long-lived (registry records, mostly):
    freeze it, so the next full collections do not rescan it all (at 100,000
    modules each one took up to 160 ms, stalling REST and MQTT alike). Records
    hold no reference cycles, so freezing them leaks nothing."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


class OrchestratorService(Service):
    """Owns the core and the store; the MQTT service feeds it and carries its output."""

    def __init__(self, reactor: IReactorTime, core: Orchestrator, store: Journal, *,
                 publisher: Publisher = NO_PUBLISHER, events: EventSink | None = None,
                 metrics: Counts = NO_COUNTS, decisions: DecisionLog | None = None,
                 stop: Callable[[], None] | None = None, standby: bool = False,
                 may_announce: Callable[[], bool] = lambda: True) -> None:
        """``stop`` is called when the journal cannot be made durable (default: stop
        the reactor). ``decisions`` is the operator's log (default: one without
        debug lines)."""
        self._reactor = reactor
        #: start as a standby: load, then wait for start_leading() (active/standby)
        self.standby = standby
        #: announcements wait while this says no (a leader whose lease is not fresh)
        self.may_announce = may_announce
        self.leading = False
        self.core = core
        self.store = store
        self.events: EventSink = events if events is not None else NO_EVENTS()
        self.metrics = metrics
        self.publisher = publisher
        #: decisions once durable, refused requests, each message (debug)
        self.decisions = decisions or DecisionLog(core.config.scheduler,
                                                  core.registry.runtimes.get)
        self._stop = stop
        self.event_seq = 0              # id of the last event announced or committed
        self.loaded: LoadReport | None = None
        self._turn: list[Effect] = []
        self._turn_acks: list[Ack] = []
        self._turn_call: IDelayedCall | None = None
        # per batch: effects, outbox ids of its announcements, acks, durable, first event id
        self._outgoing: deque[tuple[list[Effect], list[int], list[Ack], Deferred[None] | None,
                                    int]] = deque()
        self._unsent: deque[int] = deque()      # outbox ids waiting for a live connection
        self._ack_flush: IDelayedCall | None = None
        self._accepting = False
        self._lost = False              # a batch could not be made durable: we are stopping
        self._changes_since_snapshot = 0
        self._sweep = LoopingCall(self._sweep_now)
        self._snapshot_timer = LoopingCall(self.snapshot_if_changed)
        self._prune = LoopingCall(self._prune_now)
        for loop in (self._sweep, self._snapshot_timer, self._prune):
            loop.clock = reactor

    # -- life cycle -------------------------------------------------------------------
    def load(self) -> LoadReport:
        """Read the state directory (before anything else starts).

        Loading allocates millions of objects: the cyclic GC is paused meanwhile
        (it would rescan them over and over), and what was loaded is then frozen
        out of future collections, since registry records live long and hold no cycles.
        """
        gc.disable()
        try:
            report = self.store.load(self.core.registry, self.core.delivery)
        except (OSError, RuntimeError) as e:
            # unreachable or unwritable, or (RuntimeError) refused on purpose: a
            # snapshot from a newer version, the PostgreSQL driver missing
            why = getattr(e, "strerror", None) or str(e)
            raise StartupError(f"state {self.store.path}: {why}") from None
        finally:
            gc.enable()
            gc.freeze()
        if _freeze_after_full_collections not in gc.callbacks:
            gc.callbacks.append(_freeze_after_full_collections)
        self.core.restore_liveness(report.meta.get("liveness"))
        self.event_seq = int(report.meta.get("events", 0))
        self.events.latest = self.event_seq
        self.loaded = report
        registry = self.core.registry
        log.info("state loaded from {path} in {s:.3f}s: {nr} runtimes, {nm} modules "
                 "(snapshot {snap}, {n} journal batches replayed)",
                 path=self.store.path, s=report.seconds, nr=len(registry.runtimes),
                 nm=len(registry.modules), snap=report.snapshot_seq, n=report.replayed)
        for problem in report.problems:
            log.error("state: {problem}", problem=problem)
        return report

    def startService(self) -> None:
        super().startService()
        if self.loaded is None:
            self.load()
        if not self.standby:
            self.start_leading()

    def start_leading(self) -> None:
        """Take messages and run the timers (at once, or when a standby is elected)."""
        seen = getattr(self.store, "events", 0)     # a standby followed the journal's events
        if seen > self.event_seq:
            self.event_seq = seen
            self.events.latest = seen
        # what the last leader (or our last life) announced without a PUBACK goes out again
        self._unsent = deque(ident for ident, _, _ in self.core.delivery.pending())
        if self._unsent:
            log.info("{n} announcements not acknowledged by the broker before the last stop: "
                     "sending them again", n=len(self._unsent))
        self.leading = True
        self._accepting = True
        self._sweep.start(SWEEP_INTERVAL, now=False)
        self._snapshot_timer.start(self.core.config.snapshot_every_sec, now=False)
        self._prune.start(PRUNE_INTERVAL, now=True)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self.leading:
            yield self.stop_leading()
        self.store.close()

    @inlineCallbacks
    def stop_leading(self) -> Any:
        """Stop taking messages; make everything durable and take a last snapshot."""
        self._accepting = False
        for loop in (self._sweep, self._snapshot_timer, self._prune):
            if loop.running:
                loop.stop()
        if not self.leading:
            return
        if self._ack_flush is not None and self._ack_flush.active():
            self._ack_flush.cancel()
        self._end_turn()
        yield self.store.flush()
        if self.store.seq != self.store.snapshot_seq or self.core.delivery.has_delta():
            yield self.store.snapshot(self.core.registry, self._snapshot_meta,
                                      self.core.delivery)
        self.leading = False

    # -- input ----------------------------------------------------------------------------
    def message_received(self, topic: str, payload: bytes, ack: Ack | None = None) -> None:
        """Handle one message; ``ack`` is called once what it did is durable."""
        if not self._accepting:
            return              # not acknowledged: the broker keeps it for the next start
        started = time.perf_counter()
        self.decisions.wire_in(topic, payload)
        handled: Handled = self.core.handle(topic, payload, self._reactor.seconds())
        error = handled.error
        self.metrics.handled(handled.kind, None if error is None else error.desc,
                             time.perf_counter() - started)
        if error is not None:
            self.decisions.refused(topic, error, handled.effects)
        if ack is not None:
            self._turn_acks.append(ack)
        self._absorb(handled.effects)

    def broker_connected(self) -> None:
        self.core.bus_up(self._reactor.seconds())
        self._send_unsent()

    def broker_disconnected(self) -> None:
        self.core.bus_down()

    def _sweep_now(self) -> None:
        self._absorb(self.core.sweep(self._reactor.seconds()))

    def _prune_now(self) -> None:
        self._absorb(self.core.prune(self._reactor.seconds()))

    def _absorb(self, effects: list[Effect]) -> None:
        self._turn.extend(effects)
        if self._turn_call is None and (effects or self._turn_acks or self.core.has_changes()):
            self._turn_call = self._reactor.callLater(0, self._end_turn)

    # -- commit, then announce ---------------------------------------------------------------
    def _end_turn(self) -> None:
        """One batch for everything handled this turn: journal it, then let it out."""
        if self._turn_call is not None and self._turn_call.active():
            self._turn_call.cancel()
        self._turn_call = None
        effects, self._turn = self._turn, []
        acks, self._turn_acks = self._turn_acks, []
        changes = self.core.take_changes()
        delivery = self.core.delivery
        nevents = 0
        announced: list[int] = []
        for e in effects:
            if isinstance(e, Event):
                nevents += 1
            elif e.outbox:
                announced.append(delivery.announce(e.topic, e.body()))
        first_event = self.event_seq + 1
        self.event_seq += nevents
        durable = None
        if changes or delivery.has_delta():
            durable = self.store.commit(changes, self.core.next_serial,
                                        {"events": self.event_seq}, delivery.journal_fragment())
            durable.addCallbacks(lambda _: self._drain(), self._durability_lost)
            self._changes_since_snapshot += len(changes)
        if effects or acks or durable is not None:
            self._outgoing.append((effects, announced, acks, durable, first_event))
        self._drain()
        if self._changes_since_snapshot >= self.core.config.snapshot_every_changes:
            self.snapshot_if_changed()

    def resume(self) -> None:
        """Announcements may go out again (the lease was renewed)."""
        if self._outgoing:
            self._drain()

    def _drain(self) -> None:
        if self._lost:
            self._outgoing.clear()      # nothing goes out after a lost batch, ever
            return
        if not self.may_announce():
            return                          # resumed by the next lease renewal
        while self._outgoing:
            effects, announced, acks, durable, first_event = self._outgoing[0]
            if durable is not None and not durable.called:
                return
            self._outgoing.popleft()
            self._emit(effects, announced, first_event)
            for ack in acks:
                ack()

    def _emit(self, effects: list[Effect], announced: list[int], event_id: int) -> None:
        ids = iter(announced)
        for effect in effects:
            if isinstance(effect, Publish):
                payload = effect.body()
                self.decisions.wire_out(effect.topic, payload)
                if effect.outbox:
                    self._send(next(ids), effect.topic, payload)
                else:
                    self.publisher.publish(effect.topic, payload)
            else:
                self.decisions.event(effect)
                self.events.append(event_id, effect, self._reactor.seconds())
                self.metrics.announced(effect.type)
                event_id += 1

    def _durability_lost(self, failure: Any) -> None:
        """Every batch waiting on a failed sync fails: stop once, announce nothing more."""
        self._outgoing.clear()
        if self._lost:
            return
        self._lost = True
        self._accepting = False
        log.critical("the journal could not be made durable ({why}); stopping rather than "
                     "announce changes that may be lost", why=failure.getErrorMessage())
        (self._stop or cast(IReactorCore, self._reactor).stop)()

    # -- the outbox -------------------------------------------------------------------------
    def _send(self, ident: int, topic: str, payload: bytes) -> None:
        """Hand an announcement to the broker link, behind any still waiting for it."""
        if self._unsent or not self.publisher.publish(topic, payload, tag=ident):
            self._unsent.append(ident)

    def _send_unsent(self) -> None:
        delivery = self.core.delivery
        while self._unsent:
            entry = delivery.entry(self._unsent[0])
            if entry is not None and not self.publisher.publish(*entry, tag=self._unsent[0]):
                return
            self._unsent.popleft()

    def published(self, ident: int) -> None:
        """The broker acknowledged announcement ``ident`` (PUBACK): trim it from the outbox.

        The trimming rides in the next batch; without one, in a batch of its own
        at most ``ACK_FLUSH_DELAY`` later (an announcement whose trimming was
        lost in a crash is merely sent once more).
        """
        if self.core.delivery.acknowledged(ident) and self._ack_flush is None:
            self._ack_flush = self._reactor.callLater(ACK_FLUSH_DELAY, self._flush_acks)
        if self._unsent:
            # the link refused them while connected (its queue was full): a PUBACK
            # makes room, so the backlog must not wait for the next reconnect
            self._send_unsent()

    def _flush_acks(self) -> None:
        self._ack_flush = None
        if self._accepting and self.core.delivery.has_delta() and self._turn_call is None:
            self._end_turn()

    # -- snapshots ------------------------------------------------------------------------------
    def _snapshot_meta(self) -> dict[str, Any]:
        return {"liveness": self.core.liveness_state(), "events": self.event_seq}

    def snapshot_if_changed(self) -> Deferred[None] | None:
        if self._changes_since_snapshot == 0:
            return None
        self._changes_since_snapshot = 0
        d = self.store.snapshot(self.core.registry, self._snapshot_meta, self.core.delivery)
        d.addErrback(lambda f: log.failure("snapshot failed", f))
        return d
