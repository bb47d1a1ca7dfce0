"""The read-only REST API (protocol.md section 8), served by Klein.

Handlers read the registry directly: same thread as the protocol core, so
no copies and no locks. They decide nothing; shapes come from the records.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, NotFound

from .model import ModuleStatus
from .protocol import Orchestrator

__all__ = ["RestApi", "json_body"]

log = Logger()


def json_body(request: IRequest, body: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body, separators=(",", ":")).encode()


class _Utf8Paths(Resource):
    """Answers URLs that are not UTF-8 with a JSON 400 (Klein would send text/plain)."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: IRequest) -> Any:
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return json_body(request, {"error": "the URL is not valid UTF-8"}, 400)
        return self._inner.render(request)


class RestApi:
    """``/api/runtimes/``, ``/api/modules/`` and their detail lookups."""

    app = Klein()

    def __init__(self, core: Orchestrator) -> None:
        self.core = core
        self.registry = core.registry

    def resource(self) -> Any:
        return _Utf8Paths(self.app.resource())

    # -- [compat] lists and details -------------------------------------------------
    @app.route("/api/runtimes/", methods=["GET", "HEAD"], strict_slashes=False)
    def list_runtimes(self, request: IRequest) -> bytes:
        registry = self.registry
        body = {"runtimes": [
            r.summary(registry.children(r.uuid, ModuleStatus.ALIVE))
            for r in registry.alive_runtimes()]}
        return json_body(request, body)

    @app.route("/api/runtimes/<q>/", methods=["GET", "HEAD"], strict_slashes=False)
    def runtime_detail(self, request: IRequest, q: str) -> bytes:
        runtime = self.registry.lookup_runtime(q)
        if runtime is None:
            return json_body(request, {}, 404)
        return json_body(request, runtime.detail(
            nmodules=self.registry.nalive(runtime.uuid),
            last_seen=self.core.liveness.last_seen(runtime.uuid),
            children=self.registry.children(runtime.uuid, ModuleStatus.ALIVE,
                                            ModuleStatus.QUEUED)))

    @app.route("/api/modules/", methods=["GET", "HEAD"], strict_slashes=False)
    def list_modules(self, request: IRequest) -> bytes:
        body = {"modules": [m.summary() for m in self.registry.alive_modules()]}
        return json_body(request, body)

    @app.route("/api/modules/<q>/", methods=["GET", "HEAD"], strict_slashes=False)
    def module_detail(self, request: IRequest, q: str) -> bytes:
        module = self.registry.lookup_module(q)
        if module is None:
            return json_body(request, {}, 404)
        return json_body(request, module.detail())

    # -- errors: JSON, with the status werkzeug chose (404, 405, 308) -----------------
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
