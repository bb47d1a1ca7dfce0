"""``twistd silverline``: command-line options and the service tree.

The only module that knows about twistd. It reads the config, builds the
pieces, and wires them: store + core, the MQTT link, the REST site.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any, Callable, NoReturn

import twisted
from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python import usage

from . import __version__
from .config import Config, ConfigError, broker_addresses, load_config
from .core.events import EventLog, event_renderer
from .adapters.access import AccessLogSite
from .adapters.decisionlog import DecisionLog
from .adapters.logfile import LogFileService, NotifyReady, levelled, text_observer
from .adapters.metrics import Metrics, leadership_series, state_series
from .core.effects import Event
from .core.model import ModuleStatus, Runtime
from .adapters.mqtt import MQTTService, build_client
from .core.protocol import Orchestrator
from .service import OrchestratorService, StartupError
from .adapters.output_stream import OutputStreams
from .adapters.sse import EventStreams
from .core.output import ModuleOutput
from .adapters.store import Store
from .adapters.leadership import LeaderOnly, Leadership
from .adapters.pgstore import PgJournal
from .adapters.web import RestApi

__all__ = ["Options", "makeService", "build"]

log = Logger()
#: exit status of an orchestrator that lost the leadership (or cannot follow it)
EXIT_DEPOSED = 3
DEFAULT_CONFIG = "config.json"


class Options(usage.Options):
    synopsis = "[--config=PATH]"
    longdesc = ("Runs the SilverLine orchestrator. Without --config it reads config.json "
                "from the working directory if there is one, else uses the defaults.")
    optParameters = [
        ["config", "c", None, "Path of the JSON config file (default: ./config.json)."],
    ]

    def opt_version(self) -> NoReturn:
        """Print the orchestrator's version and exit."""
        print(version_line())
        sys.exit(0)

    def postOptions(self) -> None:
        path = self["config"]
        if path is None and os.path.exists(DEFAULT_CONFIG):
            path = DEFAULT_CONFIG
        try:
            self.config, self.unknown_keys = load_config(path)
        except ConfigError as e:
            fail(str(e))        # one line, not twistd's usage text
        self.config_path = path


def version_line() -> str:
    return (f"silverline-orchestrator {__version__} (Twisted {twisted.__version__}, "
            f"Python {platform.python_version()})")


def fail(why: str, *, logging: bool = False) -> NoReturn:
    """Stop start-up with one clear line and exit status 1: on stderr while twistd's
    log has not begun, else in the log (which twistd -n writes to stdout)."""
    if logging:
        log.critical("cannot start: {why}", why=why)
    else:
        print(f"silverline: cannot start: {why}", file=sys.stderr, flush=True)
    sys.exit(1)


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


def _rendered_at_once(event: Event) -> bool:
    """Events that show values derived from elsewhere are rendered as of their moment:
    a runtime's module count, why a module waits."""
    record = event.record
    return isinstance(record, Runtime) or record.status in (ModuleStatus.QUEUED,
                                                            ModuleStatus.KILLED)


def open_logs(config: Config) -> LogFileService | None:
    """``orchestrator.log``, writing from now on (None with ``"log_dir": null``)."""
    if not config.log_dir:
        return None
    logs = LogFileService(config.log_dir, config.debug, config.log_format)
    try:
        logs.open()
    except OSError as e:
        raise StartupError(f"log directory {config.log_dir!r}: {e.strerror}") from None
    return logs


def _exit_deposed(why: str) -> None:
    """A leader that lost its lease, or a standby that cannot follow, ends at once:
    nothing it still holds in memory may be written or published. Its supervisor
    (systemd: Restart=on-failure) starts it again as a standby with a fresh copy."""
    sys.stderr.write(f"silverline: {why}; exiting ({EXIT_DEPOSED})\n")
    sys.stderr.flush()
    os._exit(EXIT_DEPOSED)


def _leadership(config: Config, reactor: Any, store: PgJournal,
                orchestrator: OrchestratorService, mqtt: MQTTService,
                on_deposed: Callable[[str], None]) -> tuple[OrderedStop, Leadership]:
    """Active/standby: the broker link and the timers run only while we lead."""
    broker = LeaderOnly(mqtt)

    def elected() -> None:
        orchestrator.start_leading()
        broker.activate()

    leadership = Leadership(
        reactor, str(config.postgres), store,
        holder=f"{socket.gethostname()}:{os.getpid()}:{config.http_port}",
        lease=config.leader_lease_sec,
        follow=lambda rows: store.follow(orchestrator.core.registry, rows,
                                         orchestrator.core.delivery),
        elected=elected, deposed=on_deposed, stepping_down=orchestrator.stop_leading,
        resumed=orchestrator.resume)
    orchestrator.may_announce = leadership.may_act
    mqtt.may_connect = leadership.may_act
    group = OrderedStop()
    leadership.setServiceParent(group)
    broker.setServiceParent(group)      # stopped first: no message arrives while stepping down
    return group, leadership


def build(config: Config, reactor: Any, *, log_to_dir: bool = True,
          logs: LogFileService | None = None,
          on_deposed: Callable[[str], None] = _exit_deposed) -> OrderedStop:
    """The whole service tree for a config (also used by tests, in-process)."""
    root = OrderedStop()
    if logs is None and log_to_dir:
        logs = open_logs(config)
    if logs is not None:
        logs.setServiceParent(root)
    metrics = Metrics()
    core = Orchestrator(config, on_placement=metrics.placement_seconds.observe,
                        on_failover=metrics.failover_seconds.observe)
    events = EventLog(event_renderer(core.registry, core.liveness.last_seen),
                      keep=config.events_retained,
                      keep_seconds=config.events_retained_sec,
                      eager=_rendered_at_once)
    store: Store | PgJournal
    if config.postgres:
        store = PgJournal(reactor, config.postgres, config.realm, config.journal_fsync,
                          on_sync=metrics.fsync_seconds.observe)
    else:
        store = Store(reactor, config.state_dir, config.journal_fsync,
                      on_sync=metrics.fsync_seconds.observe)
    decisions = DecisionLog(config.scheduler, core.registry.runtimes.get,
                            debug=config.debug and logs is not None)
    topics = core.topics
    # module output (ids start at the start time in ms, so they grow across restarts)
    output = ModuleOutput(config.realm, first_id=int(reactor.seconds() * 1000))

    def on_message(topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        if not output.accept(topic, payload, reactor.seconds()):
            orchestrator.message_received(topic, payload, ack)
        elif ack is not None:
            ack()                   # module output is kept in memory only: nothing to wait for

    # the link and the service point at each other: the link calls through these
    # names, bound once the service exists just below
    mqtt = MQTTService(
        reactor, build_client(config, topics.status),
        brokers=broker_addresses(config), protocol=config.mqtt_protocol,
        keepalive=config.mqtt_keepalive,
        subscriptions=core.subscriptions() + output.subscriptions(),
        status_topic=topics.status,
        on_message=on_message,
        on_connected=lambda: orchestrator.broker_connected(),
        on_disconnected=lambda: orchestrator.broker_disconnected(),
        on_published=lambda tag: orchestrator.published(tag),
        buffer_size=config.publish_buffer, max_delay=config.reconnect_max_delay,
        takeover_max_delay=config.takeover_max_delay,
        session_expiry=config.mqtt_session_expiry_sec)
    orchestrator = OrchestratorService(reactor, core, store, publisher=mqtt, events=events,
                                       metrics=metrics, decisions=decisions, stop=reactor.stop,
                                       standby=isinstance(store, PgJournal))
    orchestrator.setName("orchestrator")
    orchestrator.setServiceParent(root)
    mqtt.setName("mqtt")
    leadership: Leadership | None = None
    if isinstance(store, PgJournal):
        group, leadership = _leadership(config, reactor, store, orchestrator, mqtt, on_deposed)
        group.setServiceParent(root)
    else:
        mqtt.setServiceParent(root)
    streams = EventStreams(reactor, events)
    _Running(streams.start, streams.stop).setServiceParent(root)
    output_streams = OutputStreams(reactor, output)
    _Running(output_streams.start, output_streams.stop).setServiceParent(root)
    metrics.watch(lambda: state_series(core, mqtt, streams, store))
    if leadership is not None:
        metrics.watch(lambda: leadership_series(leadership, store))

    def not_ready() -> list[str]:
        reasons = []
        if orchestrator.loaded is None:
            reasons.append("state not loaded yet")
        if leadership is not None:
            reasons += leadership.not_ready()
            if leadership.role != "leader":
                return reasons
            problem = getattr(store, "problem", None)
            if problem is not None:
                reasons.append(f"journal writes not durable in PostgreSQL ({problem})")
        if not mqtt.subscribed:
            reasons.append(f"not connected to the MQTT broker (trying {mqtt.broker})")
        if mqtt.taken_over is not None:
            reasons.append(mqtt.taken_over)
        held = core.liveness.partition.reason()
        if held is not None:
            reasons.append(held)
        return reasons

    api = RestApi(core, streams=streams, metrics=metrics, not_ready=not_ready,
                  token=config.rest_token, output=output_streams,
                  health=lambda: _health(mqtt, core, leadership))
    site = AccessLogSite(api.resource(), slow_sec=config.access_log_slow_sec)
    site.displayTracebacks = False
    web = strports.service(_listen_endpoint(config), site, reactor=reactor)
    web.setName("web")
    web.setServiceParent(root)
    NotifyReady().setServiceParent(root)
    return root


def _health(mqtt: MQTTService, core: Orchestrator, leadership: Leadership | None
            ) -> dict[str, Any]:
    """What /healthz adds to "ok": the broker link, a liveness hold, the HA role."""
    body: dict[str, Any] = {
        "broker": {"address": mqtt.broker, "protocol": mqtt.protocol,
                   "connected": mqtt.subscribed},
        "liveness_hold": core.liveness.partition.reason()}
    if leadership is not None:
        body.update(leadership.health())
    return body


class Twistd(MultiService):
    """The service tree as twistd runs it: start-up failures become one line and
    exit status 1, and twistd's own stdout log shows info and above (debug lines
    go to ``orchestrator.log`` only)."""

    def __init__(self, root: IService, stdout: ILogObserver | None) -> None:
        super().__init__()
        root.setServiceParent(self)
        self._stdout = stdout

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        # twistd asks its application for an ILogObserver before it makes its own
        if self._stdout is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self._stdout)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except (StartupError, CannotListenError) as e:
            fail(_why(e), logging=True)

    def startService(self) -> None:
        try:
            super().startService()
        except (StartupError, CannotListenError) as e:
            fail(_why(e), logging=True)


def _why(error: Exception) -> str:
    if isinstance(error, CannotListenError):
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        return f"cannot listen for HTTP on {error.interface or '*'}:{error.port}: {reason}"
    return str(error)


def _twistd_logs_to_stdout(options: Options) -> bool:
    """True when twistd would write its log to stdout (``-n`` without ``--logfile``)."""
    server: Any = getattr(options, "parent", None) or {}
    return (bool(server.get("nodaemon")) and server.get("logfile") in (None, "", "-")
            and not server.get("syslog") and not server.get("logger"))


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    config: Config = options.config
    try:
        logs = open_logs(config)
    except StartupError as e:
        fail(str(e))
    log.info("{version}", version=version_line())
    if options.unknown_keys:
        log.warn("config: ignoring unknown keys {keys}", keys=", ".join(options.unknown_keys))
    log.info("config: {source}", source=options.config_path or "defaults (no config.json here)")
    stdout = (levelled(text_observer(sys.stdout), LogLevel.info)
              if _twistd_logs_to_stdout(options) else None)
    return Twistd(build(config, reactor, logs=logs), stdout)
