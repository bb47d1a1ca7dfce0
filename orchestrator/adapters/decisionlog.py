"""The operator's log: one line per decision, rendered from the core's effects.

The handlers decide and say nothing; the glue hands this module every event
once its change is durable, every refused request, and (when ``debug`` is on)
every message in and out. Lines are ``twisted.logger`` events: the text is for
people, the fields (``decision``, ``runtime``, ``module``, ...) for log shippers
(``"log_format": "json"``). Event types this module does not know yet still get
a generic line, so a new decision is never silent.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from twisted.logger import Logger, LogLevel

from ..core.effects import Effect, Event, Publish
from ..core.envelope import ProtocolError
from ..core.model import Module, Runtime, api_set

__all__ = ["DecisionLog", "WIRE_ECHO"]

#: how much of a payload a debug line quotes
WIRE_ECHO = 2000


def _apis(record: Module | Runtime) -> str:
    return ",".join(sorted(api_set(record.apis))) or "none"


class DecisionLog:
    """Turns events and errors into log lines; decides nothing, changes nothing."""

    def __init__(self, policy: str, runtime: Callable[[str], Runtime | None],
                 debug: bool = False, log: Logger | None = None) -> None:
        self.policy = policy
        self._runtime = runtime
        #: message in/out lines (at debug); off, they cost nothing
        self.debug = debug
        self.log = log if log is not None else Logger(namespace="orchestrator.decisions")
        self._lines: dict[str, Callable[[Event], None]] = {
            "runtime.registered": self._registered,
            "runtime.reregistered": self._reregistered,
            "runtime.dead": self._dead,
            "runtime.revived": self._revived,
            "runtime.drained": self._drained,
            "runtime.undrained": self._undrained,
            "runtime.forgotten": self._forgotten,
            "module.revived": self._module_revived,
            "module.failed": self._failed,
            "module.created": self._placed,
            "module.queued": self._queued,
            "module.started": self._started,
            "module.respawned": self._respawned,
            "module.rescheduled": self._moved,
            "module.killed": self._killed,
            "module.exiting": self._exiting,
            "module.exited": self._exited,
            "module.deleted": self._deleted,
            "module.acked": self._acked,
            "module.dropped": self._dropped,
            "runtime.dropped": self._dropped,
        }

    # -- entry points (the glue) ------------------------------------------------------
    def event(self, event: Event) -> None:
        (self._lines.get(event.type) or self._other)(event)

    def refused(self, topic: str, error: ProtocolError, effects: Sequence[Effect]) -> None:
        """A request was refused; ``effects`` hold the error as published."""
        object_id = next((e.payload.get("object_id") for e in effects
                          if isinstance(e, Publish) and isinstance(e.payload, dict)
                          and e.payload.get("action") == "error"),
                         None)
        self._emit(LogLevel.info, "refused {desc!r} on {topic} (object_id {object_id}, from "
                   "{client}): {detail}", decision="error", desc=error.desc, topic=topic,
                   object_id=object_id, client=_client(topic), detail=_short(error.data))

    def wire_in(self, topic: str, payload: bytes) -> None:
        if self.debug:
            self._emit(LogLevel.debug, "in  {topic} {payload}", topic=topic,
                       payload=_text(payload))

    def wire_out(self, topic: str, payload: bytes) -> None:
        if self.debug:
            self._emit(LogLevel.debug, "out {topic} {payload}", topic=topic,
                       payload=_text(payload))

    # -- helpers ------------------------------------------------------------------------
    def _where(self, uuid: str | None) -> str:
        """A runtime as people read it: ``name (uuid)``."""
        if uuid is None:
            return "no runtime"
        runtime = self._runtime(uuid)
        return f"{runtime.name} ({uuid})" if runtime is not None else uuid

    def _emit(self, level: LogLevel, template: str, **fields: Any) -> None:
        """One log event, its text rendered here, once; the fields stay in the event
        for the JSON format. This runs for every create, so it skips what makes
        ``Logger.emit`` slow (it sorts the log levels to check ``level`` on every
        call, and the logger's formatter is several times slower than ``str.format``)."""
        log = self.log
        fields["log_text"] = template.format_map(fields)
        fields.update(log_logger=log, log_level=level, log_namespace=log.namespace,
                      log_source=None, log_format="{log_text}", log_time=time.time())
        log.observer(fields)

    def _say(self, template: str, event: Event, level: LogLevel = LogLevel.info,
             **fields: Any) -> None:
        record = event.record
        if isinstance(record, Runtime):
            fields["runtime"], fields["runtime_name"] = record.uuid, record.name
        else:
            fields["module"], fields["module_name"] = record.uuid, record.name
        fields["decision"] = event.type
        self._emit(level, template, **fields)

    # -- runtimes -----------------------------------------------------------------------
    def _registered(self, event: Event) -> None:
        r = event.record
        assert isinstance(r, Runtime)
        room = "unlimited" if r.max_nmodules == 0 else r.max_nmodules
        self._say("runtime {runtime_name} ({runtime}) registered: apis {apis}, room for "
                  "{room} modules{managed}", event, apis=_apis(r), room=room,
                  managed=f", managed by {r.manager}" if r.manager else "")

    def _reregistered(self, event: Event) -> None:
        was = (event.extra or {}).get("was")
        self._say("runtime {runtime_name} ({runtime}) registered again (was {was})",
                  event, was=was)

    def _dead(self, event: Event) -> None:
        reason = (event.extra or {}).get("reason")
        self._say("runtime {runtime_name} ({runtime}) dead: {reason}", event, reason=reason,
                  level=LogLevel.warn if reason == "keepalive timeout" else LogLevel.info)

    def _revived(self, event: Event) -> None:
        reason = (event.extra or {}).get("reason")
        self._say("runtime {runtime_name} ({runtime}) alive again: it sends keepalives "
                  "(was dead: {reason})", event, reason=reason, level=LogLevel.warn)

    def _drained(self, event: Event) -> None:
        self._say("runtime {runtime_name} ({runtime}) drained: no new placements there",
                  event)

    def _undrained(self, event: Event) -> None:
        self._say("runtime {runtime_name} ({runtime}) takes placements again", event)

    def _forgotten(self, event: Event) -> None:
        self._say("runtime {runtime_name} ({runtime}) forgotten by an operator", event)

    # -- modules ------------------------------------------------------------------------
    def _module_revived(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) alive again on {where}: its keepalive "
                  "lists it", event, where=self._where(_parent(m)), parent=_parent(m))

    def _placed(self, event: Event) -> None:
        m = event.record
        assert isinstance(m, Module)
        why = "named by the request" if m.pinned else f"{self.policy} policy"
        self._say("module {module_name} ({module}) placed on {where}: {why}", event,
                  where=self._where(m.parent), parent=m.parent, why=why)

    def _queued(self, event: Event) -> None:
        m = event.record
        assert isinstance(m, Module)
        if m.parent is not None:
            waiting = f"room on {self._where(m.parent)}"
        else:
            waiting = f"a runtime with apis {_apis(m)} and room"
        self._say("module {module_name} ({module}) queued: waiting for {waiting}", event,
                  parent=m.parent, waiting=waiting)

    def _started(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) started from the queue on {where}", event,
                  where=self._where(_parent(m)), parent=_parent(m))

    def _respawned(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) created again on {where}: its runtime "
                  "registered again", event, where=self._where(_parent(m)), parent=_parent(m))

    def _moved(self, event: Event) -> None:
        m = event.record
        extra = event.extra or {}
        previous = extra.get("previous")
        self._say("module {module_name} ({module}) moved from {source} to {where}: {why}",
                  event, source=self._where(previous), where=self._where(_parent(m)),
                  previous=previous, parent=_parent(m), why=extra.get("why", "its runtime died"))

    def _killed(self, event: Event) -> None:
        m = event.record
        assert isinstance(m, Module)
        why = (event.extra or {}).get("reason") or "not moved"
        self._say("module {module_name} ({module}) killed: {where} died; {why}; "
                  "it starts again when that runtime registers again", event,
                  where=self._where(m.parent), parent=m.parent, why=why)

    def _failed(self, event: Event) -> None:
        m = event.record
        assert isinstance(m, Module)
        self._say("module {module_name} ({module}) failed on {where}: {reason}", event,
                  where=self._where(m.parent), parent=m.parent, reason=m.reason,
                  level=LogLevel.warn)

    def _exiting(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) stopping: delete sent to {where}", event,
                  where=self._where(_parent(m)), parent=_parent(m))

    def _exited(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) exited on {where}", event,
                  where=self._where(_parent(m)), parent=_parent(m))

    def _deleted(self, event: Event) -> None:
        why = (event.extra or {}).get("reason") or "it had not started"
        self._say("module {module_name} ({module}) deleted: {why}", event, why=why)

    def _acked(self, event: Event) -> None:
        m = event.record
        self._say("module {module_name} ({module}) acknowledged by {where}", event,
                  where=self._where(_parent(m)), level=LogLevel.debug)

    def _dropped(self, event: Event) -> None:
        kind = "runtime" if isinstance(event.record, Runtime) else "module"
        self._say(f"{kind} {{{kind}_name}} ({{{kind}}}) forgotten: dead for longer than "
                  "the retention period", event, level=LogLevel.debug)

    def _other(self, event: Event) -> None:
        record = event.record
        kind = "runtime" if isinstance(record, Runtime) else "module"
        extra = ", ".join(f"{k} {v}" for k, v in sorted((event.extra or {}).items()))
        self._say(f"{kind} {{{kind}_name}} ({{{kind}}}): {{decision}}{{extra}}", event,
                  status=record.status, extra=f" ({extra})" if extra else "")


def _parent(record: Runtime | Module) -> str | None:
    return record.parent if isinstance(record, Module) else None


def _client(topic: str) -> str:
    """Who sent it, as far as MQTT tells: the runtime uuid of a per-runtime topic."""
    head, _, last = topic.rpartition("/")
    return last if head.endswith(("/reg", "/control", "/keepalive")) else "unknown"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def _text(payload: bytes) -> str:
    text = payload[:WIRE_ECHO].decode("utf-8", "replace")
    return text if len(payload) <= WIRE_ECHO else text + f"... ({len(payload)} bytes)"
