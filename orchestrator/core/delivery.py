"""Delivery bookkeeping: requests already carried out, announcements not yet acknowledged.

Two bounded tables that travel with the journal. Pure: the glue decides when
they are written and the store writes them; nothing here does I/O.

- **The dedupe table.** A client request that changed the registry is
  remembered by a digest of its topic and bytes (the bytes hold its
  ``object_id``), with the replies it got. The same message again, a
  broker's redelivery after a crash or a client's resend, has no effect a
  second time: it gets its replies again. The oldest entries are forgotten
  first (``window`` entries are kept).
- **The outbox.** Every announcement (forward, reply, notification) gets an
  id and is kept, byte for byte, from the batch that made the change until
  the broker acknowledged it. Whatever is still here after a restart is sent
  again, with the same ``object_id``. At most ``limit`` are kept; beyond
  that the oldest are given up (and counted in ``dropped``).

What changed since the last journal batch is taken as one JSON fragment
(``journal_fragment``) that the store splices into the batch line::

    ,"out":[[id,topic,payload],...],"seen":[[key,[[topic,payload],...]],...],"acked":[[first,last],...]

Payloads are spliced as the JSON they already are (no second encoding).
Replaying a batch applies the same three parts in that order; every part is
idempotent, so a snapshot taken a chunk at a time and the journal after it
replay to the right tables.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Iterator

from twisted.logger import Logger

from .model import compact_json

__all__ = ["Delivery", "Reply", "request_key", "DEDUPE_WINDOW", "OUTBOX_LIMIT"]

#: a reply as sent: topic and payload bytes
Reply = tuple[str, bytes]

DEDUPE_WINDOW = 10_000
OUTBOX_LIMIT = 100_000

log = Logger()


def request_key(topic: str, payload: bytes) -> bytes:
    """What identifies a request: its topic and its exact bytes (object_id included)."""
    h = hashlib.blake2b(topic.encode(), digest_size=16)
    h.update(b"\0")
    h.update(payload)
    return h.digest()


def _json_bytes(value: Any) -> bytes:
    return compact_json(value).encode()


def _ranges(ids: list[int]) -> list[list[int]]:
    """[3, 1, 2, 7] -> [[1, 3], [7, 7]]"""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        elif not out or i > out[-1][1]:
            out.append([i, i])
    return out


class Delivery:
    """The dedupe table and the outbox, with their journal deltas."""

    def __init__(self, window: int = DEDUPE_WINDOW, limit: int = OUTBOX_LIMIT) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[bytes, tuple[Reply, ...]] = OrderedDict()
        self._out: dict[int, Reply] = {}            # id -> (topic, payload); insertion = id order
        self._next_id = 1
        self.dropped = 0                            # announcements given up (outbox full)
        # deltas not yet journaled
        self._new_out: list[tuple[int, str, bytes]] = []
        self._new_seen: list[tuple[bytes, tuple[Reply, ...]]] = []
        self._acked: list[int] = []

    # -- the dedupe table ---------------------------------------------------------------
    def replies_to(self, key: bytes) -> tuple[Reply, ...] | None:
        """The replies a request already got, if it was carried out before."""
        return self._seen.get(key)

    def remember(self, key: bytes, replies: tuple[Reply, ...]) -> None:
        """Record a request that changed the registry, with its replies."""
        self._store_seen(key, replies)
        self._new_seen.append((key, replies))

    def _store_seen(self, key: bytes, replies: tuple[Reply, ...]) -> None:
        self._seen[key] = replies
        self._seen.move_to_end(key)
        while len(self._seen) > self.window:
            self._seen.popitem(last=False)

    @property
    def remembered(self) -> int:
        return len(self._seen)

    # -- the outbox -------------------------------------------------------------------------
    def announce(self, topic: str, payload: bytes) -> int:
        """Keep an announcement until the broker acknowledges it; its id."""
        ident = self._next_id
        self._next_id += 1
        self._out[ident] = (topic, payload)
        self._new_out.append((ident, topic, payload))
        while len(self._out) > self.limit:
            oldest = next(iter(self._out))
            del self._out[oldest]
            self._acked.append(oldest)          # journaled as done: never re-sent
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("outbox full ({limit}): giving up the oldest announcement "
                         "({n} so far)", limit=self.limit, n=self.dropped)
        return ident

    def acknowledged(self, ident: int) -> bool:
        """The broker has it: forget it. False if it was not pending."""
        if self._out.pop(ident, None) is None:
            return False
        self._acked.append(ident)
        return True

    def entry(self, ident: int) -> Reply | None:
        return self._out.get(ident)

    def pending(self) -> Iterator[tuple[int, str, bytes]]:
        """Announcements not acknowledged yet, oldest first."""
        for ident, (topic, payload) in self._out.items():
            yield ident, topic, payload

    @property
    def unacknowledged(self) -> int:
        return len(self._out)

    # -- journal and snapshots -----------------------------------------------------------------
    def has_delta(self) -> bool:
        return bool(self._new_out or self._new_seen or self._acked)

    def journal_fragment(self) -> bytes:
        """What changed since the last call, as JSON members to splice into a batch."""
        parts: list[bytes] = []
        if self._new_out:
            parts.append(b',"out":[' + b",".join(
                b"[%d,%s,%s]" % (i, _json_bytes(t), p) for i, t, p in self._new_out) + b"]")
            self._new_out = []
        if self._new_seen:
            parts.append(b',"seen":[' + b",".join(
                self._seen_json(k, r) for k, r in self._new_seen) + b"]")
            self._new_seen = []
        if self._acked:
            parts.append(b',"acked":' + _json_bytes(_ranges(self._acked)))
            self._acked = []
        return b"".join(parts)

    @staticmethod
    def _seen_json(key: bytes, replies: tuple[Reply, ...]) -> bytes:
        return b'["%s",[%s]]' % (key.hex().encode(), b",".join(
            b"[%s,%s]" % (_json_bytes(t), p) for t, p in replies))

    def replay(self, batch: dict[str, Any]) -> None:
        """Apply one journal batch's delivery parts (as parsed JSON)."""
        for ident, topic, payload in batch.get("out", ()):
            self._out[ident] = (topic, _json_bytes(payload))
            self._next_id = max(self._next_id, ident + 1)
        for key, replies in batch.get("seen", ()):
            self._store_seen(bytes.fromhex(key),
                             tuple((t, _json_bytes(p)) for t, p in replies))
        for first, last in batch.get("acked", ()):
            for ident in range(first, last + 1):
                self._out.pop(ident, None)

    def snapshot_json(self) -> bytes:
        """Both tables as one JSON object (for a snapshot)."""
        out = b",".join(b"[%d,%s,%s]" % (i, _json_bytes(t), p) for i, (t, p) in self._out.items())
        seen = b",".join(self._seen_json(k, r) for k, r in self._seen.items())
        return b'{"next":%d,"out":[%s],"seen":[%s]}' % (self._next_id, out, seen)

    def restore(self, doc: Any) -> None:
        """Load what :meth:`snapshot_json` wrote (parsed); ``None``: nothing was saved."""
        if not isinstance(doc, dict):
            return
        self.replay(doc)
        self._next_id = max(self._next_id, int(doc.get("next", 1)))
