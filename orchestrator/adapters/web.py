"""The read-only REST API (docs/protocol.md 16, the README), served by Klein.

Handlers read the registry directly: same thread as the protocol core, so no
copies and no locks. They decide nothing; shapes come from the records and
list selection from ``query.py``.
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST
from twisted.logger import Logger
from twisted.web import pages, static
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, NotFound

from .metrics import Metrics
from ..core.explain import Explainer
from ..core.model import Module, ModuleStatus, Runtime, compact_json
from .openapi import openapi_document
from .output_stream import OutputStreams, ndjson
from ..core.protocol import Orchestrator
from ..core.query import QueryError, parse_query, select
from .sse import EventStreams, parse_types

__all__ = ["RestApi", "json_body", "STATIC_DIR"]

log = Logger()
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: paths that need no bearer token: liveness probes and the dashboard's own files
#: (the page holds no data; it asks for the token and sends it with every API call)
OPEN_PATHS = (b"/healthz", b"/", b"/index.html")
OPEN_PREFIXES = (b"/static/",)
_WAITING = (ModuleStatus.QUEUED, ModuleStatus.KILLED)


def json_body(request: IRequest, body: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return compact_json(body).encode()


class _Gate(Resource):
    """In front of the Klein app: non-UTF-8 URLs get a JSON 400 (Klein would send
    text/plain), and, when a token is configured, requests without it a 401."""

    isLeaf = True

    def __init__(self, inner: Any, token: str | None) -> None:
        super().__init__()
        self._inner = inner
        self._token = f"Bearer {token}".encode() if token else None

    def render(self, request: IRequest) -> Any:
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return json_body(request, {"error": "the URL is not valid UTF-8"}, 400)
        path = request.path
        if (self._token is not None and path not in OPEN_PATHS
                and not path.startswith(OPEN_PREFIXES)):
            given = request.getHeader(b"Authorization") or b""
            if not hmac.compare_digest(given, self._token):
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="silverline"')
                return json_body(request, {"error": "a bearer token is needed "
                                                    "(Authorization: Bearer <token>)"}, 401)
        return self._inner.render(request)


class _StaticFiles(static.File):
    def directoryListing(self) -> IResource:
        return pages.notFound()


def _args(request: IRequest) -> dict[str, list[str]]:
    try:
        return {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
    except UnicodeDecodeError:
        raise QueryError("query", "the query string is not valid UTF-8") from None


def _last_id(request: IRequest, args: dict[str, list[str]], param: str,
             label: str | None = None) -> int | None:
    """The id to resume after: the ``Last-Event-ID`` header, else the ``param`` query;
    errors name ``label`` (default: what was given)."""
    header = request.getHeader(b"Last-Event-ID")
    raw = header.decode("latin-1") if header is not None else next(iter(args.get(param, [])), None)
    if raw is None:
        return None
    if not raw.strip().isdigit() or len(raw.strip()) > 18:
        raise QueryError(label or ("Last-Event-ID" if header is not None else param),
                         "not an event id")
    return int(raw)


def _flag(args: dict[str, list[str]], param: str) -> bool:
    value = next(iter(args.get(param, [])), "0")
    if value not in ("0", "1", "true", "false"):
        raise QueryError(param, "1 or 0 (true or false)")
    return value in ("1", "true")


def _count(args: dict[str, list[str]], param: str) -> int | None:
    value = next(iter(args.get(param, [])), None)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 9:
        raise QueryError(param, "an integer >= 0")
    return int(value)


class RestApi:
    """Every HTTP endpoint; see ``openapi.py`` for the full description."""

    app = Klein()

    def __init__(self, core: Orchestrator, *, streams: EventStreams | None = None,
                 metrics: Metrics | None = None,
                 not_ready: Callable[[], list[str]] = lambda: [],
                 token: str | None = None, static_dir: str = STATIC_DIR,
                 output: OutputStreams | None = None,
                 health: Callable[[], dict[str, Any]] = lambda: {}) -> None:
        self.core = core
        self.output = output
        self.health = health        # more of /healthz (active/standby: role and epoch)
        self.registry = core.registry
        self.streams = streams
        self.metrics = metrics
        self.not_ready = not_ready
        self.token = token
        self.static_dir = static_dir
        self._cache: dict[str, tuple[int, bytes]] = {}
        self.explainer = Explainer(core.registry)

    def resource(self) -> Any:
        return _Gate(self.app.resource(), self.token)

    # -- shapes ------------------------------------------------------------------------
    def _runtime_detail(self, runtime: Runtime, children: bool = True) -> dict[str, Any]:
        """Its detail; ``children`` are all its modules in use (a dead runtime's killed
        modules wait for it), ``nwaiting`` those queued for it or killed with it."""
        kids = self.registry.children(runtime.uuid) if children else None
        detail = runtime.detail(
            nmodules=self.registry.nalive(runtime.uuid),
            last_seen=self.core.liveness.last_seen(runtime.uuid),
            children=kids)
        if kids is not None:
            detail["nwaiting"] = sum(1 for m in kids if m.status in _WAITING)
            detail["queued"] = [m.summary_in_runtime() for m in kids
                                if m.status == ModuleStatus.QUEUED]
            for item, module in zip(detail["children"], kids):
                self._add_waiting(item, module)
        return self.core.arena.annotate_runtime(detail)

    def _add_waiting(self, item: dict[str, Any], module: Module) -> dict[str, Any]:
        if module.status in _WAITING:
            item["waiting"] = self.explainer.why(module)
        return item

    def module_detail_body(self, module: Module) -> dict[str, Any]:
        """A module's detail, with ``waiting`` (why) when it is queued or killed."""
        return self._add_waiting(self.core.arena.annotate_module(module.detail()), module)

    def _compat_list(self, request: IRequest, kind: str) -> bytes:
        """The [compat] list bodies, rebuilt only when the registry changed.

        Every client generation finds its key: 2022-07 reads ``runtimes`` /
        ``modules``, 2022-09 and later read ``results`` (with ``count`` and
        ``start``). The items are encoded once and spliced in under both keys.
        """
        cached = self._cache.get(kind)
        if cached is None or cached[0] != self.registry.version:
            registry = self.registry
            items: list[Any]
            if kind == "runtimes":
                items = []
                for r in registry.alive_runtimes():
                    kids = registry.children(r.uuid)       # arrival order
                    items.append(r.summary(
                        [m for m in kids if m.status == ModuleStatus.ALIVE],
                        [m for m in kids if m.status == ModuleStatus.QUEUED]))
            elif kind == "queued":
                items = [m.summary() for m in registry.modules.values()
                         if m.status == ModuleStatus.QUEUED]
            else:
                items = [m.summary() for m in registry.alive_modules()]
            encoded = compact_json(items)
            body = (f'{{"{kind}":{encoded},"count":{len(items)},"start":0,'
                    f'"results":{encoded}}}')
            cached = (registry.version, body.encode())
            self._cache[kind] = cached
        request.setHeader(b"Content-Type", b"application/json")
        return cached[1]

    def _list(self, request: IRequest, kind: str) -> bytes:
        try:
            args = _args(request)
            if not args:
                return self._compat_list(request, kind + "s")
            query = parse_query(args, kind)
        except QueryError as e:
            return json_body(request, {"error": str(e), "parameter": e.param}, 400)
        records, next_cursor = select(self.registry, query, kind)
        items = [self._runtime_detail(r, query.children) if isinstance(r, Runtime)
                 else self.module_detail_body(r) for r in records]
        body: dict[str, Any] = {kind + "s": items, "results": items}
        if query.limit is not None:
            body["next"] = next_cursor
        return json_body(request, body)

    # -- [compat] lists and details (docs/protocol.md 16), with filters and paging -------
    @app.route("/api/runtimes/", methods=["GET", "HEAD"], strict_slashes=False)
    def list_runtimes(self, request: IRequest) -> bytes:
        return self._list(request, "runtime")

    @app.route("/api/runtimes/<q>/", methods=["GET", "HEAD"], strict_slashes=False)
    def runtime_detail(self, request: IRequest, q: str) -> bytes:
        runtime = self.registry.lookup_runtime(q)
        if runtime is None:
            return json_body(request, {}, 404)
        return json_body(request, self._runtime_detail(runtime))

    @app.route("/api/modules/", methods=["GET", "HEAD"], strict_slashes=False)
    def list_modules(self, request: IRequest) -> bytes:
        return self._list(request, "module")

    @app.route("/api/queued/", methods=["GET", "HEAD"], strict_slashes=False)
    def list_queued(self, request: IRequest) -> bytes:
        """Queued modules in arrival order (the 2023 endpoint libsilverline's get_queued reads)."""
        return self._compat_list(request, "queued")

    @app.route("/api/modules/<q>/", methods=["GET", "HEAD"], strict_slashes=False)
    def module_detail(self, request: IRequest, q: str) -> bytes:
        module = self.registry.lookup_module(q)
        if module is None:
            return json_body(request, {}, 404)
        return json_body(request, self.module_detail_body(module))

    @app.route("/api/modules/<q>/logs", methods=["GET", "HEAD"], strict_slashes=False)
    def module_logs(self, request: Request, q: str) -> Any:
        """The module's kept output: JSON lines, or with ``follow`` an event stream."""
        if self.output is None:
            return json_body(request, {"error": "no module output here"}, 404)
        output = self.output.output
        module = self.registry.lookup_module(q)
        key = module.uuid if module is not None else q
        if module is None and not output.has(q):
            return json_body(request, {}, 404)
        try:
            args = _args(request)
            follow = _flag(args, "follow")
            tail = _count(args, "tail")
            after = _last_id(request, args, "after")
        except QueryError as e:
            return json_body(request, {"error": str(e), "parameter": e.param}, 400)
        if follow:
            if after is None:          # a new follower: from the tail (or all kept) on
                lines, _ = output.lines(key, 0, tail)
                after = lines[0].id - 1 if lines else output.latest
            return self.output.attach(request, key, after)
        lines, _ = output.lines(key, after or 0, tail)
        request.setHeader(b"Content-Type", b"application/x-ndjson")
        return ndjson(lines)

    # -- watching -------------------------------------------------------------------------
    @app.route("/api/events", methods=["GET"], strict_slashes=False)
    def events(self, request: Request) -> Any:
        if self.streams is None:
            return json_body(request, {"error": "no event stream here"}, 404)
        try:
            args = _args(request)
            types = parse_types(args["types"][0] if "types" in args else None)
        except QueryError as e:
            return json_body(request, {"error": str(e), "parameter": e.param}, 400)
        except ValueError as e:
            return json_body(request, {"error": f"types: {e}", "parameter": "types"}, 400)
        try:
            last_id = _last_id(request, args, "last_event_id", "Last-Event-ID")
            history = _count(args, "history")
        except QueryError as e:
            return json_body(request, {"error": str(e), "parameter": e.param}, 400)
        log_ = self.streams.log
        if last_id is None and history:      # the last `history` retained events first
            last_id = max(log_.oldest - 1, log_.latest - history)
        # what was there when the stream began: the dashboard tells history from news
        request.setHeader(b"X-Latest-Event-Id", str(log_.latest).encode())
        return self.streams.attach(request, last_id, types)

    # -- operations -----------------------------------------------------------------------
    @app.route("/healthz", methods=["GET", "HEAD"])
    def healthz(self, request: IRequest) -> bytes:
        return json_body(request, {"status": "ok", **self.health()})

    @app.route("/readyz", methods=["GET", "HEAD"])
    def readyz(self, request: IRequest) -> bytes:
        reasons = self.not_ready()
        if reasons:
            return json_body(request, {"ready": False, "reasons": reasons}, 503)
        return json_body(request, {"ready": True})

    @app.route("/metrics", methods=["GET", "HEAD"])
    def metrics_text(self, request: IRequest) -> bytes:
        if self.metrics is None:
            return json_body(request, {"error": "no metrics here"}, 404)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.exposition()

    @app.route("/api/openapi.json", methods=["GET", "HEAD"])
    def openapi(self, request: IRequest) -> bytes:
        return json_body(request, openapi_document())

    # -- the dashboard ----------------------------------------------------------------------
    @app.route("/", methods=["GET", "HEAD"])
    def dashboard(self, request: IRequest) -> Any:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        with open(os.path.join(self.static_dir, "index.html"), "rb") as f:
            return f.read()

    @app.route("/static/", branch=True, methods=["GET", "HEAD"])
    def static_files(self, request: IRequest) -> Any:
        return _StaticFiles(self.static_dir)

    # -- errors: JSON, with the status werkzeug chose (404, 405, 308) -------------------------
    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Any) -> bytes:
        return json_body(request, {"error": "no such endpoint"}, 404)

    @app.handle_errors(HTTPException)
    def http_error(self, request: IRequest, failure: Any) -> bytes:
        exc = failure.value
        response = exc.get_response({})
        for header in ("Location", "Allow"):
            if header in response.headers:
                request.setHeader(header.encode(), response.headers[header].encode())
        return json_body(request, {"error": exc.name}, exc.code)

    @app.handle_errors(Exception)
    def internal_error(self, request: IRequest, failure: Any) -> bytes:
        log.failure("REST handler failed on {uri}", failure, uri=request.uri)
        return json_body(request, {"error": "internal error"}, 500)

