"""Reading the ``data`` of a request field by field, with types checked.

A wrong type is an ``invalid field`` error naming the path and what was
expected; nothing is coerced silently. Identifiers that end up in topics
(runtime and module uuids) may not contain MQTT topic syntax, so no client
can make the orchestrator publish to a topic of its choosing.
"""

from __future__ import annotations

import sys
from typing import Any

from .envelope import ProtocolError, invalid, missing
from .model import freeze_list
from .topics import LEVEL_UNSAFE

__all__ = ["Fields", "runtime_fields", "module_fields", "check_ident",
           "MAX_IDENT", "MAX_DEPTH", "MAX_ITEMS"]

MAX_IDENT = 128
MAX_DEPTH = 32
MAX_ITEMS = 4096
_FORBIDDEN = LEVEL_UNSAFE


def check_ident(value: Any, path: str) -> str:
    """A uuid-like identifier: a non-empty string safe to put in a topic level."""
    if not isinstance(value, str):
        raise invalid(path, "string")
    if not value or len(value) > MAX_IDENT or _FORBIDDEN.search(value):
        raise invalid(path, f"identifier of 1-{MAX_IDENT} characters without '/', '+', '#'")
    return value


def _depth_ok(value: Any) -> bool:
    """Nesting depth and container sizes are bounded (walks without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH or len(v) > MAX_ITEMS:
                return False
            items = v.values() if isinstance(v, dict) else v
            stack.extend((x, depth + 1) for x in items if isinstance(x, (dict, list)))
    return True


class Fields:
    """Typed reads of optional keys of a request's ``data``; remembers which were given."""

    def __init__(self, data: dict[str, Any], prefix: str = "data") -> None:
        self.data = data
        #: where ``data`` sits in the message, for error paths (``data/modules/3`` in a batch)
        self.prefix = prefix
        self.given: dict[str, Any] = {}

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def _present(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _keep(self, key: str, value: Any) -> Any:
        self.given[key] = value
        return value

    def text(self, key: str, default: str) -> str:
        """A string; short ones are interned: names and file names repeat a lot."""
        if not self._present(key):
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise invalid(self._path(key), "string")
        return self._keep(key, sys.intern(value) if len(value) <= 200 else value)

    def ident(self, key: str) -> str | None:
        if not self._present(key):
            return None
        return self._keep(key, check_ident(self.data[key], self._path(key)))

    def required(self, key: str) -> Any:
        """The value of a key that must be there, of any type (the caller checks it)."""
        if key not in self.data:
            raise missing(self._path(key))
        return self.data[key]

    def required_text(self, key: str, expected: str = "non-empty string") -> str:
        value = self.required(key)
        if not isinstance(value, str) or not value:
            raise invalid(self._path(key), expected)
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        if not self._present(key):
            return default
        value = self.data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise invalid(self._path(key), f"integer >= {minimum}")
        return self._keep(key, value)

    def listish(self, key: str, default: Any, *, of_strings: bool = False) -> Any:
        """A JSON list, or a string holding one (kept as sent; see model.wire_value)."""
        if not self._present(key):
            return default
        value = self.data[key]
        if isinstance(value, str):
            return self._keep(key, value)
        expected = "list of strings" if of_strings else "list"
        if not isinstance(value, list) or (of_strings and not all(isinstance(v, str)
                                                                 for v in value)):
            raise invalid(self._path(key), expected)
        if not _depth_ok(value):
            raise invalid(self._path(key), f"{expected} of at most {MAX_ITEMS} items, "
                                           f"nested at most {MAX_DEPTH} deep")
        return self._keep(key, freeze_list(value))

    def args(self, key: str) -> Any:
        """``args``: a list (2022), a string holding one, or an object (2023:
        ``argv`` and ``env`` lists of strings, other keys for the runtime)."""
        value = self.data.get(key)
        if not isinstance(value, dict):
            if value is not None and not isinstance(value, (list, str)):
                raise invalid(self._path(key), "list or object")
            return self.listish(key, ())
        for part in ("argv", "env"):
            given = value.get(part)
            if given is not None and not (isinstance(given, list)
                                          and all(isinstance(v, str) for v in given)):
                raise invalid(f"{self._path(key)}/{part}", "list of strings")
        return self.json_value(key, ())

    def json_value(self, key: str, default: Any, *, object_only: bool = False) -> Any:
        """Any JSON value (or only an object), with bounded nesting."""
        if key not in self.data:
            return default
        value = self.data[key]
        if object_only and value is not None and not isinstance(value, dict):
            raise invalid(self._path(key), "object or null")
        if not _depth_ok(value):
            raise invalid(self._path(key), f"JSON nested at most {MAX_DEPTH} deep, "
                                           f"lists and objects of at most {MAX_ITEMS} items")
        return self._keep(key, value)

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> str:
        if not self._present(key):
            return default
        value = self.data[key]
        if value not in options:
            raise invalid(self._path(key), " or ".join(f'"{o}"' for o in options))
        return self._keep(key, value)

    def kind(self, *expected: str) -> str:
        """``data.type``, when given, must name a kind the topic handles."""
        value = self.data.get("type")
        if value is None:
            return expected[0]
        if value not in expected:
            raise ProtocolError("invalid type", value)
        return value


def runtime_fields(f: Fields, default_max_nmodules: int) -> dict[str, Any]:
    """Registration fields (docs/protocol.md 5.1), defaults applied; ``f.given`` has the sent ones."""
    return {
        "name": f.text("name", "runtime"),
        "apis": f.listish("apis", ("wasm", "wasi"), of_strings=True),
        "runtime_type": f.text("runtime_type", "linux"),
        "max_nmodules": f.integer("max_nmodules", default_max_nmodules),
        "page_size": f.integer("page_size", 65536),
        "aot_target": f.json_value("aot_target", "{}"),
        "metadata": f.json_value("metadata", None),
        "platform": f.json_value("platform", None),
        "manager": f.ident("parent"),
    }


def module_fields(f: Fields) -> dict[str, Any]:
    """Module create fields (docs/protocol.md 7.1), defaults applied; parent is read elsewhere."""
    return {
        "name": f.text("name", "module"),
        "filename": f.text("filename", "") or f.text("file", ""),
        "filetype": f.text("filetype", "WA"),
        "apis": f.listish("apis", ("wasm", "wasi"), of_strings=True),
        "args": f.args("args"),
        "env": f.listish("env", ()),
        "channels": f.listish("channels", ()),
        "peripherals": f.listish("peripherals", ()),
        "resources": f.json_value("resources", None, object_only=True),
        "metadata": f.json_value("metadata", None),
        "fault_crash": f.choice("fault_crash", "ignore", ("ignore", "restart")),
        # for a module on an ARENA runtime: its scene and where its files are
        "arena": _arena_place(f.ident("scene"), f.text("location", "") or None),
    }


def _arena_place(scene: str | None, location: str | None) -> dict[str, str] | None:
    place = {k: v for k, v in (("scene", scene), ("location", location)) if v is not None}
    return place or None
