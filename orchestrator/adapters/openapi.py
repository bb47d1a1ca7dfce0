"""The OpenAPI 3.1 description of the REST API (``GET /api/openapi.json``).

Kept as data next to the code it describes; tests validate the document and
check real responses against its schemas, so it cannot quietly drift.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..core.model import ModuleStatus, RuntimeStatus
from ..core.query import MAX_LIMIT

__all__ = ["openapi_document"]

ANY: dict[str, Any] = {}
NULLABLE_STR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "description": "ISO 8601 UTC, e.g. 2026-11-27T23:48:37.317Z"}
LISTISH = {"type": ["array", "string"], "description": "a list, or a string holding JSON"}
ARGS = {"type": ["array", "string", "object"],
        "description": "2022: a list (or a string holding one); 2023: an object "
                       "(argv, env, limit, ...) exactly as the client sent it"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list_body(key: str, item: str) -> dict[str, Any]:
    """A plain list: the 2022 key and the 2022-09+ ``count``/``start``/``results``."""
    items = {"type": "array", "items": _ref(item)}
    return _obj({key: {**items, "description": "2022-07 clients read this"},
                 "count": {"type": "integer", "minimum": 0}, "start": {"const": 0},
                 "results": {**items, "description": f"the same items as `{key}`: "
                                                     "2022-09 and later clients read this"}})


def _page_body(key: str, item: str) -> dict[str, Any]:
    items = {"type": "array", "items": _ref(item)}
    return _obj({key: items, "results": {**items, "description": f"the same as `{key}`"}},
                {"next": NULLABLE_STR})


MODULE_DETAIL = _obj({
    "uuid": {"type": "string"}, "name": {"type": "string"}, "parent": NULLABLE_STR,
    "filename": {"type": "string"}, "filetype": {"type": "string"}, "apis": LISTISH,
    "args": ARGS, "env": LISTISH, "channels": LISTISH, "peripherals": LISTISH,
    "resources": {"type": ["object", "null"]}, "alive": {"type": "boolean"},
    "status": {"enum": list(ModuleStatus.ALL)},
    "fault_crash": {"enum": ["ignore", "restart"]}, "metadata": ANY,
    "created_at": TIME, "acked_at": TIME,
    "exiting_since": {**TIME, "description": "while exiting: when the delete was forwarded "
                                            "(its runtime has not confirmed since)"},
    "dialect": {"enum": ["2022", "2023", "arena"], "description": "the create's dialect: 2023 "
                "creates are forwarded with the client's own fields; arena: heard on "
                "ARENA's topics"},
    "namespace": NULLABLE_STR, "scene": NULLABLE_STR, "location": NULLABLE_STR,
    "clients": {"type": "array", "items": {"type": "string"},
                "description": "ARENA clients (idTags) that asked for it"},
    "instantiate": {"enum": ["single", "client", None]},
    "reason": {**NULLABLE_STR, "description": "why it failed, in its runtime's words"}}, {
    "stats": {"type": "object", "description": "ARENA: from its runtime's last keepalive"},
    "waiting": {"type": ["string", "null"],
                "description": "queued or killed: why it is not running, e.g. "
                               "'waiting: no room: all 3 compatible runtimes are full'"},
    "file": {"type": "string", "description": "2023 creates: the program file as sent"},
    "extra": {"type": "object", "description": "2023 creates: keys the orchestrator does "
              "not read, kept and forwarded unchanged"}})

RUNTIME_FIELDS = {
    "uuid": {"type": "string"}, "name": {"type": "string"}, "apis": LISTISH,
    "runtime_type": {"type": "string"}, "ka_interval_sec": {"type": "integer"},
    "page_size": {"type": "integer"}, "aot_target": ANY, "metadata": ANY,
    "alive": {"type": "boolean"}, "status": {"enum": list(RuntimeStatus.ALL)},
    "max_nmodules": {"type": "integer", "description": "0 = unlimited"},
    "platform": ANY, "nmodules": {"type": "integer",
                                  "description": "slots in use: alive and exiting modules"},
    "registered_at": TIME, "last_seen": TIME, "dead_reason": NULLABLE_STR,
    "manager": NULLABLE_STR,
    "drained": {"type": "boolean", "description": "an operator drained it: the scheduler "
                                                  "places nothing more there"},
    "dialect": {"enum": ["proc", "arena"]},
    "namespace": NULLABLE_STR, "tags": ANY, "is_orchestration_runtime": {"type": "boolean"},
    "ready": {"type": "boolean", "description": "takes modules (ARENA: after its first keepalive)"}}

SCHEMAS: dict[str, Any] = {
    "ModuleBrief": _obj({"uuid": {"type": "string"}, "name": {"type": "string"},
                         "filename": {"type": "string"}}),
    "ModuleSummary": _obj({"uuid": {"type": "string"}, "name": {"type": "string"},
                           "parent": NULLABLE_STR, "filename": {"type": "string"}}),
    "ModuleDetail": MODULE_DETAIL,
    "RuntimeSummary": _obj({"uuid": {"type": "string"}, "name": {"type": "string"},
                            "runtime_type": {"type": "string"}, "aot_target": ANY,
                            "children": {"type": "array", "items": _ref("ModuleBrief"),
                                         "description": "its alive modules"},
                            "queued": {"type": "array", "items": _ref("ModuleBrief"),
                                       "description": "its queued modules, oldest first"}}),
    "RuntimeDetail": _obj(RUNTIME_FIELDS, {"children": {
        "type": "array", "items": _ref("ModuleDetail"),
        "description": "its modules that are not dead: alive, queued, exiting, and killed "
                       "ones waiting for it to come back (left out with children=false)"},
        "nwaiting": {"type": "integer", "description": "its queued and killed modules"},
        "queued": {"type": "array", "items": _ref("ModuleBrief"),
                   "description": "its queued modules (left out with children=false)"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "ARENA: its recent bare error reports {time, desc, data}"}}),
    "RuntimeList": _list_body("runtimes", "RuntimeSummary"),
    "RuntimePage": _page_body("runtimes", "RuntimeDetail"),
    "ModuleList": _list_body("modules", "ModuleSummary"),
    "QueuedList": _list_body("queued", "ModuleSummary"),
    "ModulePage": _page_body("modules", "ModuleDetail"),
    "NotFound": {"type": "object", "maxProperties": 0,
                 "description": "{}: what both libsilverline generations take as not found"},
    "Error": _obj({"error": {"type": "string"}}, {"parameter": {"type": "string"}}),
    "OutputLine": _obj({"id": {"type": "integer", "description": "grows, also across restarts"},
                        "time": TIME, "stream": {"type": "string"},
                        "text": {"type": "string"}}),
    "Health": _obj({"status": {"const": "ok"}}, {
        "broker": _obj({"address": {"type": "string", "description": "host:port in use or tried"},
                        "protocol": {"enum": ["5", "3.1.1"]},
                        "connected": {"type": "boolean",
                                      "description": "subscribed on that broker"}}),
        "liveness_hold": {"type": ["string", "null"],
                          "description": "why keepalive verdicts are held (a partition), or null"},
        "role": {"enum": ["leader", "standby", "deposed"],
                 "description": "with postgres (active/standby): this orchestrator's role"},
        "epoch": {"type": "integer", "description": "the fencing epoch: ours, or the leader's"},
        "leader": {"type": ["string", "null"], "description": "who leads, host:pid:http_port"},
        "lag_batches": {"type": "integer",
                        "description": "standby: journal batches committed and not applied yet"},
        "lag_seconds": {"type": ["number", "null"],
                        "description": "standby: seconds since it last held every batch"}}),
    "Ready": _obj({"ready": {"type": "boolean"}},
                  {"reasons": {"type": "array", "items": {"type": "string"}}}),
    "Event": _obj({"id": {"type": "integer"}, "type": {"type": "string"}, "time": TIME}, {
        "runtime": _obj(RUNTIME_FIELDS), "module": _ref("ModuleDetail"),
        "reason": {"type": "string", "description": "runtime.dead: why; runtime.revived: the verdict undone"},
        "was": {"type": "string", "description": "runtime.reregistered: status before"},
        "previous": {"type": "string", "description": "module.rescheduled: old runtime"},
        "why": {"type": "string", "description": "module.rescheduled: why it moved"}}),
}

LIST_PARAMS = [
    {"name": "status", "in": "query", "schema": {"type": "string"},
     "description": "a status, a comma list, or `all` (default: alive)"},
    {"name": "parent", "in": "query", "schema": {"type": "string"},
     "description": "modules: their runtime (uuid or name); runtimes: their manager"},
    {"name": "name", "in": "query", "schema": {"type": "string"}},
    {"name": "api", "in": "query", "schema": {"type": "string"},
     "description": "objects whose apis include this one"},
    {"name": "limit", "in": "query",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
     "description": "page size; the reply then has `next`"},
    {"name": "cursor", "in": "query", "schema": {"type": "string"},
     "description": "the `next` of the previous page (needs limit)"},
    {"name": "children", "in": "query", "schema": {"enum": ["true", "false"]},
     "description": "runtimes only: false leaves out each runtime's modules"},
]
Q = {"name": "q", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "full uuid (any case, hyphens optional); else a name (the newest alive "
                    "with it, else the newest of any status); else a short id, the end of the "
                    "uuid (alive first)"}
BAD = _json(_ref("Error"), "a bad parameter, named in `parameter`")


def _list_op(kind: str, summary: str) -> dict[str, Any]:
    name = kind.capitalize()
    return {"get": {
        "summary": summary, "parameters": LIST_PARAMS,
        "responses": {
            "200": _json({"anyOf": [_ref(f"{name}List"), _ref(f"{name}Page")]},
                         f"without parameters: the original {kind} list ({name}List); "
                         f"with any: full details ({name}Page)"),
            "400": BAD}}}


def _detail_op(kind: str) -> dict[str, Any]:
    name = kind.capitalize()
    return {"get": {
        "summary": f"one {kind}", "parameters": [Q],
        "responses": {"200": _json(_ref(f"{name}Detail"), f"the {kind}"),
                      "404": _json(_ref("NotFound"), "no such object")}}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "SilverLine Orchestrator", "version": "1",
                 "description": "Read-only metadata of runtimes and modules, a live event "
                                "stream, health and metrics. Changes go over MQTT."},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "only when the config sets rest_token"}}},
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/runtimes/": _list_op("runtime", "runtimes (default: alive ones)"),
            "/api/runtimes/{q}/": _detail_op("runtime"),
            "/api/modules/": _list_op("module", "modules (default: alive ones)"),
            "/api/queued/": {"get": {
                "summary": "queued modules, oldest first (what libsilverline 2023's "
                           "get_queued reads)",
                "responses": {"200": _json(_ref("QueuedList"), "the queued modules")}}},
            "/api/modules/{q}/": _detail_op("module"),
            "/api/modules/{q}/logs": {"get": {
                "summary": "the module's output, as its runtime published it",
                "description": "The last lines kept in memory (1,000 per module, 16 MiB "
                               "in all; not kept across restarts). JSON lines; with "
                               "follow=1 a Server-Sent Events stream (id: the line id, "
                               "data: an OutputLine) that resumes after Last-Event-ID, with "
                               "an `event: truncated` first when lines were let go.",
                "parameters": [
                    Q,
                    {"name": "follow", "in": "query", "schema": {"enum": ["0", "1", "true", "false"]}},
                    {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0},
                     "description": "only the last N lines"},
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                     "description": "only lines with a larger id"},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "JSON lines, or the stream", "content": {
                        "application/x-ndjson": {"schema": {"type": "string"},
                                                 "x-line": _ref("OutputLine")},
                        "text/event-stream": {"schema": {"type": "string"},
                                              "x-event-data": _ref("OutputLine")}}},
                    "400": BAD,
                    "404": _json(_ref("NotFound"), "no such module and no output kept for it")}}},
            "/api/events": {"get": {
                "summary": "Server-Sent Events of every registry change",
                "description": "Each event: `id:` (increasing) and `data:` (an Event). "
                               "Reconnect with Last-Event-ID to get what you missed; if "
                               "that is no longer retained, an `event: resync` comes first. "
                               "Comment lines every 15 s keep idle connections open.",
                "parameters": [
                    {"name": "types", "in": "query", "schema": {"type": "string"},
                     "description": "comma list of event types, or `runtime`/`module`"},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    {"name": "last_event_id", "in": "query", "schema": {"type": "string"},
                     "description": "the same, for clients that cannot set headers"},
                    {"name": "history", "in": "query",
                     "schema": {"type": "integer", "minimum": 0},
                     "description": "without a last id: start with the last N retained "
                                    "events (what happened recently), then live"}],
                "responses": {"200": {"description": "the stream", "content": {
                    "text/event-stream": {"schema": {"type": "string"},
                                          "x-event-data": _ref("Event")}}},
                              "400": BAD}}},
            "/healthz": {"get": {"summary": "the process is up", "security": [{}],
                                 "responses": {"200": _json(_ref("Health"), "up")}}},
            "/readyz": {"get": {"summary": "state loaded and broker connected", "responses": {
                "200": _json(_ref("Ready"), "ready"),
                "503": _json(_ref("Ready"), "not ready, with the reasons")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/api/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": _json({"type": "object"}, "OpenAPI 3.1")}}},
            "/": {"get": {"summary": "the dashboard page", "security": [{}], "responses": {
                "200": {"description": "HTML", "content": {
                    "text/html": {"schema": {"type": "string"}}}}}}},
        },
    }
