"""Prometheus metrics for ``GET /metrics``.

Counters and histograms are fed by the glue as things happen; everything that
is a current value (registry sizes, broker link, watchers) is read when
Prometheus scrapes, so nothing has to be kept in step.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import platform

import twisted
from prometheus_client import (CollectorRegistry, Counter, Histogram, Info, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import __version__
from ..core.model import ModuleStatus, RuntimeStatus

__all__ = ["Metrics"]

FAST = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1, 1.0)
SLOW = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """All series of one orchestrator, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)          # process_cpu_seconds_total, RSS, open fds, ...
        PlatformCollector(registry=r)         # python_info
        Info("silverline_build", "The orchestrator's version", registry=r).info(
            {"version": __version__, "python": platform.python_version(),
             "twisted": twisted.__version__})
        self.messages = Counter("silverline_messages", "MQTT messages handled",
                                ["topic", "outcome"], registry=r)
        self.errors = Counter("silverline_errors", "Errors published on the log topic",
                              ["desc"], registry=r)
        self.events = Counter("silverline_events", "Registry changes announced", ["type"],
                              registry=r)
        self.handler_seconds = Histogram("silverline_handler_seconds",
                                         "Time to handle one MQTT message",
                                         buckets=FAST, registry=r)
        self.placement_seconds = Histogram("silverline_placement_seconds",
                                           "Time to choose a runtime for a module",
                                           buckets=FAST, registry=r)
        self.failover_seconds = Histogram("silverline_failover_seconds",
                                          "Time to handle a runtime's death, all its modules",
                                          buckets=SLOW, registry=r)
        self.fsync_seconds = Histogram("silverline_journal_fsync_seconds",
                                       "Time of one journal fsync (one batch or more)",
                                       buckets=SLOW, registry=r)
        self._message_counters: dict[tuple[str, str], Any] = {}

    # -- what the glue counts (service.Counts) --
    def handled(self, kind: str, error: str | None, seconds: float) -> None:
        if error is not None:
            self.errors.labels(error).inc()
        key = (kind, "ok" if error is None else "error")
        counter = self._message_counters.get(key)
        if counter is None:                # labels() costs a lock and a lookup: once per pair
            counter = self._message_counters[key] = self.messages.labels(*key)
        counter.inc()
        self.handler_seconds.observe(seconds)

    def announced(self, event_type: str) -> None:
        self.events.labels(event_type).inc()

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Add current-value series, computed by ``read`` at every scrape."""
        self.registry.register(_Reader(read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Reader:
    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return self._read()

    def describe(self) -> list[Metric]:
        return []


def state_series(core: Any, mqtt: Any, streams: Any, store: Any) -> Iterable[Metric]:
    """The current-value series, read at scrape time."""
    runtimes = GaugeMetricFamily("silverline_runtimes", "Runtimes by status", labels=["status"])
    for status in RuntimeStatus.ALL:
        runtimes.add_metric([status], core.registry.runtime_counts[status])
    modules = GaugeMetricFamily("silverline_modules", "Modules by status", labels=["status"])
    for status in ModuleStatus.ALL:
        modules.add_metric([status], core.registry.module_counts[status])
    yield runtimes
    yield modules
    if mqtt is not None:
        yield GaugeMetricFamily("silverline_broker_connected",
                                "1 while subscribed on the broker", value=int(mqtt.subscribed))
        broker = GaugeMetricFamily("silverline_broker_info",
                                   "The broker address in use (or being tried) and the MQTT "
                                   "version spoken", labels=["address", "protocol"])
        broker.add_metric([mqtt.broker, mqtt.protocol], 1)
        yield broker
        yield CounterMetricFamily("silverline_broker_reconnects",
                                  "Connections to the broker after the first",
                                  value=mqtt.reconnects)
        yield CounterMetricFamily("silverline_broker_takeovers",
                                  "Times another connection with our client id took our session",
                                  value=mqtt.takeovers)
        yield GaugeMetricFamily("silverline_broker_client_id_conflict",
                                "1 while another connection uses our client id (backing off)",
                                value=int(mqtt.taken_over is not None))
        yield GaugeMetricFamily("silverline_publish_buffered",
                                "Publishes waiting for the broker", value=mqtt.buffered)
        yield CounterMetricFamily("silverline_publish_dropped",
                                  "Publishes lost to a full buffer", value=mqtt.dropped)
    if streams is not None:
        yield GaugeMetricFamily("silverline_sse_watchers", "Open /api/events streams",
                                value=len(streams.watchers))
        yield GaugeMetricFamily("silverline_events_retained", "Events kept for resuming",
                                value=len(streams.log))
    if store is not None:
        yield CounterMetricFamily("silverline_journal_batches", "Journal batches written",
                                  value=store.seq)
    partition = core.liveness.partition
    yield GaugeMetricFamily("silverline_liveness_hold",
                            "1 while dead verdicts are held (much of the fleet silent at once)",
                            value=int(partition.holding))
    yield CounterMetricFamily("silverline_liveness_holds",
                              "Times dead verdicts were held for a suspected partition",
                              value=partition.holds)
    delivery = core.delivery
    yield GaugeMetricFamily("silverline_outbox_pending",
                            "Announcements not yet acknowledged by the broker",
                            value=delivery.unacknowledged)
    yield CounterMetricFamily("silverline_outbox_dropped",
                              "Announcements given up because the outbox was full",
                              value=delivery.dropped)
    yield GaugeMetricFamily("silverline_dedupe_remembered",
                            "Client requests remembered to recognise a repeat",
                            value=delivery.remembered)
    yield GaugeMetricFamily("silverline_liveness_tracked",
                            "Runtimes judged by their keepalives",
                            value=core.liveness.judged())


def leadership_series(leadership: Any, journal: Any) -> Iterable[Metric]:
    """Active/standby: role, epoch, how far a standby trails, what waits for PostgreSQL."""
    role = GaugeMetricFamily("silverline_role", "1 for this orchestrator's role", labels=["role"])
    for name in ("leader", "standby", "deposed"):
        role.add_metric([name], int(leadership.role == name))
    yield role
    yield GaugeMetricFamily("silverline_leader_epoch",
                            "Fencing epoch: ours as leader, the leader's as standby",
                            value=leadership.epoch)
    yield GaugeMetricFamily("silverline_leader_lease_fresh",
                            "1 while we lead on a lease renewed in time", value=int(leadership.may_act()))
    yield GaugeMetricFamily("silverline_standby_lag_batches",
                            "Journal batches committed that this standby has not applied",
                            value=leadership.lag_batches)
    yield GaugeMetricFamily("silverline_standby_lag_seconds",
                            "Seconds since this standby last held every committed batch",
                            value=leadership.lag_seconds())
    yield GaugeMetricFamily("silverline_journal_pending_batches",
                            "Batches handed to the journal and not yet durable",
                            value=journal.seq - journal.durable_seq)
