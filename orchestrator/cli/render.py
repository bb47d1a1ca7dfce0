"""How things look on a terminal: tables, details, events, times."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

__all__ = ["short", "table", "detail", "age", "as_json", "event_line", "listing"]


def short(uuid: Any) -> str:
    """The short id: the uuid's last 8 characters (what REST lookups match)."""
    return str(uuid or "")[-8:]


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def age(iso: str | None, now: datetime | None = None) -> str:
    """``2026-12-02T01:00:00.000Z`` -> ``5m ago``."""
    if not iso:
        return "-"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    if seconds < 0:
        seconds = 0
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def listing(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return "-" if value in (None, "") else str(value)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """Columns padded to their widest cell, like kubectl's."""
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)


def detail(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {listing(v)}" for k, v in pairs)


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('name')} ({short(obj.get('uuid'))})"


def event_line(event: dict[str, Any], runtime_name: Callable[[str | None], str]) -> str:
    """One event as one readable line: ``01:02:03  runtime.dead  edge-b (…) reason=…``."""
    when = str(event.get("time") or "")[11:19]
    kind = str(event.get("type"))
    parts = [when, kind.ljust(20)]
    if "runtime" in event:
        parts.append(_name(event["runtime"]))
    if "module" in event:
        module = event["module"]
        parts.append(_name(module))
        if module.get("parent"):
            parts.append(f"on {runtime_name(module['parent'])}")
    for key in ("reason", "was", "previous"):
        if event.get(key):
            value = event[key]
            parts.append(f"{key}={runtime_name(value) if key == 'previous' else value}")
    waiting = (event.get("module") or {}).get("waiting")
    if waiting and not event.get("reason"):
        parts.append(f"({waiting})")
    return "  ".join(parts)
