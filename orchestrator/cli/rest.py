"""Reading the REST API: JSON documents, and Server-Sent Event streams line by line."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator

from .errors import REFUSED, UNREACHABLE, CliError

__all__ = ["Rest", "Frame"]

Frame = dict[str, Any]     # {"id", "event", "data"}


class Rest:
    def __init__(self, base: str, token: str | None, timeout: float = 10.0) -> None:
        self.base = base
        self.token = token
        self.timeout = timeout

    def _open(self, path: str, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return e            # the caller decides what not found means
            try:
                why = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                why = e.reason
            raise CliError(f"REST {url}: {e.code} {why}", REFUSED) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach the REST API at {self.base}: {reason}",
                           UNREACHABLE) from None

    def get(self, path: str, **params: Any) -> Any:
        """The JSON document, or None when it is a 404."""
        with self._open(path, params) as response:
            body = response.read()
            if response.status == 404:
                return None
        return json.loads(body) if body else None

    def lines(self, path: str, **params: Any) -> list[Any] | None:
        """A JSON-lines document, or None when it is a 404."""
        with self._open(path, params) as response:
            if response.status == 404:
                return None
            return [json.loads(line) for line in response.read().splitlines() if line]

    def stream(self, path: str, last_id: str | None = None, **params: Any) -> Iterator[Frame]:
        """Frames of an event stream until the server closes it (None ends at a 404)."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        response = self._open(path, params, headers, timeout=60.0)   # pings every 15 s
        with response:
            if response.status == 404:
                raise CliError("not found", REFUSED)
            frame: Frame = {}
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if "data" in frame or "event" in frame:
                        yield frame
                    frame = {}
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    try:
                        frame["data"] = json.loads(value)
                    except ValueError:
                        frame["data"] = value
                elif field in ("id", "event"):
                    frame[field] = value
