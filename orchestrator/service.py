"""The glue: messages to the core, changes to the journal, effects to the world.

The one rule this module keeps: nothing that announces a change (a reply, a
forward, a notification, an event) leaves the process before the change is
durable. Messages handled in the same reactor turn share one journal batch
and one fsync; their effects then go out in arrival order.
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
from .core.model import compact_json
from .core.protocol import Orchestrator
from .core.registry import Key, Record, Registry
from .adapters.store import LoadReport

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

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None: ...


class Journal(Protocol):
    """Where changes are made durable (the store): batches, then snapshots."""

    path: str
    seq: int
    snapshot_seq: int | None

    def load(self, registry: Registry) -> LoadReport: ...

    def commit(self, changes: dict[Key, Record | None], next_serial: int,
               meta: dict[str, Any] | None = None) -> Deferred[None]:
        """Write one batch; the Deferred fires once it is durable."""

    def flush(self) -> Deferred[None]: ...

    def snapshot(self, registry: Registry, meta: Callable[[], dict[str, Any]]
                 ) -> Deferred[None]: ...

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
    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        pass


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


def encode(payload: dict[str, Any]) -> bytes:
    return compact_json(payload).encode()


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
        self._turn_call: IDelayedCall | None = None
        self._outgoing: deque[tuple[list[Effect], Deferred[None] | None, int]] = deque()
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
            report = self.store.load(self.core.registry)
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
        self._end_turn()
        yield self.store.flush()
        if self.store.seq != self.store.snapshot_seq:
            yield self.store.snapshot(self.core.registry, self._snapshot_meta)
        self.leading = False

    # -- input ----------------------------------------------------------------------------
    def message_received(self, topic: str, payload: bytes) -> None:
        if not self._accepting:
            return
        started = time.perf_counter()
        self.decisions.wire_in(topic, payload)
        handled: Handled = self.core.handle(topic, payload, self._reactor.seconds())
        error = handled.error
        self.metrics.handled(handled.kind, None if error is None else error.desc,
                             time.perf_counter() - started)
        if error is not None:
            self.decisions.refused(topic, error, handled.effects)
        self._absorb(handled.effects)

    def broker_connected(self) -> None:
        self.core.bus_up(self._reactor.seconds())

    def broker_disconnected(self) -> None:
        self.core.bus_down()

    def _sweep_now(self) -> None:
        self._absorb(self.core.sweep(self._reactor.seconds()))

    def _prune_now(self) -> None:
        self._absorb(self.core.prune(self._reactor.seconds()))

    def _absorb(self, effects: list[Effect]) -> None:
        self._turn.extend(effects)
        if self._turn_call is None and (effects or self.core.has_changes()):
            self._turn_call = self._reactor.callLater(0, self._end_turn)

    # -- commit, then announce ---------------------------------------------------------------
    def _end_turn(self) -> None:
        """One batch for everything handled this turn: journal it, then let it out."""
        if self._turn_call is not None and self._turn_call.active():
            self._turn_call.cancel()
        self._turn_call = None
        effects, self._turn = self._turn, []
        changes = self.core.take_changes()
        nevents = sum(1 for e in effects if isinstance(e, Event))
        first_event = self.event_seq + 1
        self.event_seq += nevents
        durable = None
        if changes:
            durable = self.store.commit(changes, self.core.next_serial,
                                        {"events": self.event_seq})
            durable.addCallbacks(lambda _: self._drain(), self._durability_lost)
            self._changes_since_snapshot += len(changes)
        if effects or durable is not None:
            self._outgoing.append((effects, durable, first_event))
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
            effects, durable, first_event = self._outgoing[0]
            if durable is not None and not durable.called:
                return
            self._outgoing.popleft()
            self._emit(effects, first_event)

    def _emit(self, effects: list[Effect], event_id: int) -> None:
        for effect in effects:
            if isinstance(effect, Publish):
                payload = encode(effect.payload)
                self.decisions.wire_out(effect.topic, payload)
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

    # -- snapshots ------------------------------------------------------------------------------
    def _snapshot_meta(self) -> dict[str, Any]:
        return {"liveness": self.core.liveness_state(), "events": self.event_seq}

    def snapshot_if_changed(self) -> Deferred[None] | None:
        if self._changes_since_snapshot == 0:
            return None
        self._changes_since_snapshot = 0
        d = self.store.snapshot(self.core.registry, self._snapshot_meta)
        d.addErrback(lambda f: log.failure("snapshot failed", f))
        return d
