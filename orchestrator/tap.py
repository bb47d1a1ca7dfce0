"""``twistd silverline``: command-line options and the service tree.

The only module that knows about twistd. It reads the config, builds the
pieces, and wires them: store + core, the MQTT link, the REST site.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from .config import Config, ConfigError, broker_addresses, load_config
from .core.events import EventLog, event_renderer
from .adapters.logfile import LogFileService, NotifyReady
from .adapters.metrics import Metrics, state_series
from .core.model import Runtime
from .adapters.mqtt import MQTTService, build_client
from .core.protocol import Orchestrator
from .service import OrchestratorService
from .adapters.output_stream import OutputStreams
from .adapters.sse import EventStreams
from .core.output import ModuleOutput
from .adapters.store import Store
from .adapters.web import RestApi

__all__ = ["Options", "makeService", "build"]

log = Logger()
DEFAULT_CONFIG = "config.json"


class Options(usage.Options):
    synopsis = "[--config=PATH]"
    longdesc = ("Runs the SilverLine orchestrator. Without --config it reads config.json "
                "from the working directory if there is one, else uses the defaults.")
    optParameters = [
        ["config", "c", None, "Path of the JSON config file (default: ./config.json)."],
    ]

    def postOptions(self) -> None:
        path = self["config"]
        if path is None and os.path.exists(DEFAULT_CONFIG):
            path = DEFAULT_CONFIG
        try:
            self.config, self.unknown_keys = load_config(path)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.config_path = path


class OrderedStop(MultiService):
    """Stops children one at a time, last started first.

    (MultiService stops them all at once; the store must close only after the
    MQTT link is down and no message can arrive any more.)
    """

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield maybeDeferred(child.stopService)
            except Exception:
                log.failure("while stopping {child}", child=child)


def _listen_endpoint(config: Config) -> str:
    host = config.http.replace(":", r"\:")
    kind = "tcp6" if ":" in config.http else "tcp"
    return f"{kind}:{config.http_port}:interface={host}"


class _Running(Service):
    """Starts and stops something that is not a service (the event streams)."""

    def __init__(self, start: Any, stop: Any) -> None:
        self._start, self._stop = start, stop

    def startService(self) -> None:
        super().startService()
        self._start()

    def stopService(self) -> None:
        super().stopService()
        self._stop()


def build(config: Config, reactor: Any, *, log_to_dir: bool = True) -> OrderedStop:
    """The whole service tree for a config (also used by tests, in-process)."""
    root = OrderedStop()
    if log_to_dir and config.log_dir:
        LogFileService(config.log_dir, config.debug).setServiceParent(root)
    metrics = Metrics()
    core = Orchestrator(config, on_placement=metrics.placement_seconds.observe,
                        on_failover=metrics.failover_seconds.observe)
    events = EventLog(event_renderer(core.registry, core.liveness.last_seen),
                      keep=config.events_retained,
                      keep_seconds=config.events_retained_sec,
                      eager=lambda event: isinstance(event.record, Runtime))
    store = Store(reactor, config.state_dir, config.journal_fsync,
                  on_sync=metrics.fsync_seconds.observe)
    topics = core.topics
    # module output (ids start at the start time in ms, so they grow across restarts)
    output = ModuleOutput(config.realm, first_id=int(reactor.seconds() * 1000))

    def on_message(topic: str, payload: bytes) -> None:
        if not output.accept(topic, payload, reactor.seconds()):
            orchestrator.message_received(topic, payload)

    # the link and the service point at each other: the link calls through these
    # names, bound once the service exists just below
    mqtt = MQTTService(
        reactor, build_client(config, topics.status),
        brokers=broker_addresses(config), protocol=config.mqtt_protocol,
        keepalive=config.mqtt_keepalive,
        subscriptions=topics.subscriptions() + output.subscriptions(),
        status_topic=topics.status,
        on_message=on_message,
        on_connected=lambda: orchestrator.broker_connected(),
        on_disconnected=lambda: orchestrator.broker_disconnected(),
        buffer_size=config.publish_buffer, max_delay=config.reconnect_max_delay,
        takeover_max_delay=config.takeover_max_delay)
    orchestrator = OrchestratorService(reactor, core, store, publisher=mqtt, events=events,
                                       metrics=metrics, stop=reactor.stop)
    orchestrator.setName("orchestrator")
    orchestrator.setServiceParent(root)
    mqtt.setName("mqtt")
    mqtt.setServiceParent(root)
    streams = EventStreams(reactor, events)
    _Running(streams.start, streams.stop).setServiceParent(root)
    output_streams = OutputStreams(reactor, output)
    _Running(output_streams.start, output_streams.stop).setServiceParent(root)
    metrics.watch(lambda: state_series(core, mqtt, streams, store))

    def not_ready() -> list[str]:
        reasons = []
        if orchestrator.loaded is None:
            reasons.append("state not loaded yet")
        if not mqtt.subscribed:
            reasons.append(f"not connected to the MQTT broker (trying {mqtt.broker})")
        if mqtt.taken_over is not None:
            reasons.append(mqtt.taken_over)
        return reasons

    api = RestApi(core, streams=streams, metrics=metrics, not_ready=not_ready,
                  token=config.rest_token, output=output_streams)
    site = Site(api.resource())
    site.displayTracebacks = False
    web = strports.service(_listen_endpoint(config), site, reactor=reactor)
    web.setName("web")
    web.setServiceParent(root)
    NotifyReady().setServiceParent(root)
    return root


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    config: Config = options.config
    if options.unknown_keys:
        log.warn("config: ignoring unknown keys {keys}", keys=", ".join(options.unknown_keys))
    log.info("config: {source}", source=options.config_path or "defaults (no config.json here)")
    return build(config, reactor)
