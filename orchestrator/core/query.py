"""Filtered, paged lists of runtimes and modules (README "Filters and pages"), as pure logic.

Items come in creation order (serial), and a cursor is the serial of the last
item of a page: new objects always get higher serials, so pages stay stable
while objects are added (nothing skipped, nothing repeated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence, Union

from .model import Module, ModuleStatus, Runtime, RuntimeStatus, api_set
from .registry import Registry, same_id

__all__ = ["ListQuery", "QueryError", "parse_query", "select", "MAX_LIMIT"]

MAX_LIMIT = 1000
PARAMS = ("status", "parent", "name", "api", "limit", "cursor", "children")
Record = Union[Runtime, Module]


class QueryError(ValueError):
    """A bad query parameter; the message names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class ListQuery:
    statuses: frozenset[str] | None      # None: any status
    parent: str | None = None
    name: str | None = None
    api: str | None = None
    limit: int | None = None
    cursor: int = 0
    #: runtimes only: include each one's modules (false: a much smaller reply)
    children: bool = True


def _one(args: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = args.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(key, "give it once")
    if values[0] == "":
        raise QueryError(key, "must not be empty")
    return values[0]


def parse_query(args: Mapping[str, Sequence[str]], kind: str) -> ListQuery:
    """Check the query parameters of ``/api/runtimes/`` or ``/api/modules/``."""
    unknown = sorted(set(args) - set(PARAMS))
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter (known: {', '.join(PARAMS)})")
    known = RuntimeStatus.ALL if kind == "runtime" else ModuleStatus.ALL
    statuses: frozenset[str] | None = frozenset(("alive",))
    if "status" in args:
        words = {w.strip() for v in args["status"] for w in v.split(",")}
        if "all" in words:
            statuses = None
        else:
            bad = sorted(w for w in words if w not in known)
            if bad:
                raise QueryError("status", f"unknown status {bad[0]!r} "
                                           f"(one of {', '.join(known)}, or all)")
            statuses = frozenset(words)
    limit = None
    if (text := _one(args, "limit")) is not None:
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise QueryError("limit", f"an integer from 1 to {MAX_LIMIT}")
        limit = int(text)
    cursor = 0
    if (text := _one(args, "cursor")) is not None:
        if limit is None:
            raise QueryError("cursor", "needs limit")
        if not text.isdigit() or len(text) > 18:
            raise QueryError("cursor", "not a cursor this server gave out")
        cursor = int(text)
    children = True
    if (text := _one(args, "children")) is not None:
        if kind != "runtime":
            raise QueryError("children", "only for runtimes")
        if text not in ("true", "false"):
            raise QueryError("children", "true or false")
        children = text == "true"
    return ListQuery(statuses=statuses, parent=_one(args, "parent"), name=_one(args, "name"),
                     api=_one(args, "api"), limit=limit, cursor=cursor, children=children)


def _parent_uuid(registry: Registry, q: str) -> str:
    runtime = registry.runtime_by_uuid(q) or registry.newest_runtime_named(q)
    return runtime.uuid if runtime is not None else q


def _matches(record: Record, q: ListQuery, parent: str | None) -> bool:
    if q.statuses is not None and record.status not in q.statuses:
        return False
    if q.name is not None and record.name != q.name:
        return False
    if q.api is not None and q.api not in api_set(record.apis):
        return False
    if parent is not None:
        owner = record.manager if isinstance(record, Runtime) else record.parent
        if owner is None or not same_id(owner, parent):
            return False
    return True


def _candidates(registry: Registry, q: ListQuery, kind: str,
                parent: str | None) -> Iterable[Record]:
    if kind == "runtime":
        return (r for r in registry.runtimes.values() if r.serial > q.cursor)
    if (parent is not None and q.statuses is not None
            and q.statuses <= ModuleStatus.IN_USE):
        kids = registry.children(parent)
        return (m for m in kids if m.serial > q.cursor)       # the runtime's own index
    return registry.modules_after(q.cursor)


def select(registry: Registry, q: ListQuery, kind: str) -> tuple[list[Record], str | None]:
    """One page of matching records, and the cursor of the next page (or None)."""
    parent = _parent_uuid(registry, q.parent) if q.parent is not None else None
    found: Iterator[Record] = (r for r in _candidates(registry, q, kind, parent)
                               if _matches(r, q, parent))
    if q.limit is None:
        return list(found), None
    page: list[Record] = []
    for record in found:
        if len(page) == q.limit:
            return page, str(page[-1].serial)
        page.append(record)
    return page, None
