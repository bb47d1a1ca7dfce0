"""The registry in PostgreSQL: the same journal batches and snapshots as the
file store, in tables, written only under the leader's fencing epoch.

Tables (created on first use, shared by every orchestrator of every realm
pointed at the database)::

    silverline_leader    realm -> epoch, holder, lease expiry (see leadership.py)
    silverline_journal   (realm, seq) -> epoch, batch: the JSON of one file-store journal line
    silverline_snapshot  (realm, seq) -> epoch, doc: the JSON of one file-store snapshot

Fencing: every write is one statement that first takes a share lock on the
realm's lease row *with the writer's epoch*. A takeover updates that row, so
it waits for a write in progress, and a write after it finds no row with its
epoch and inserts nothing (:class:`Fenced`). Whatever a leader had committed
is therefore visible to the one that replaces it, and a deposed leader can
never add to the journal.

Group commit: while one write is in the server, later batches wait and go in
the next statement together, as with the file store's fsync.
"""

from __future__ import annotations

import errno
import json
import time
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Cooperator
from twisted.logger import Logger

from ..core.model import (MODULE_FIELDS, RUNTIME_FIELDS, Module, Runtime, compact_json, module_row,
                          runtime_row)
from ..core.registry import Record, Registry
from .pg import PgError, PgLink
from .store import CHUNK, SCHEMA, LoadReport, apply_batch, decode_snapshot

__all__ = ["PgJournal", "Fenced", "SCHEMA_SQL", "read_tail", "create_schema"]

log = Logger()

#: seconds between attempts while PostgreSQL cannot take a write
RETRY_DELAY = 0.5

SCHEMA_SQL = [
    """CREATE TABLE IF NOT EXISTS silverline_leader (
        realm text PRIMARY KEY, epoch bigint NOT NULL, holder text NOT NULL,
        holder_pid integer NOT NULL, renewed_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS silverline_journal (
        realm text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL, batch text NOT NULL,
        PRIMARY KEY (realm, seq))""",
    """CREATE TABLE IF NOT EXISTS silverline_snapshot (
        realm text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL,
        saved_at timestamptz NOT NULL, doc bytea NOT NULL, PRIMARY KEY (realm, seq))""",
]

_FENCED_INSERT = """
WITH lease AS (SELECT 1 FROM silverline_leader WHERE realm = %(realm)s AND epoch = %(epoch)s
               FOR SHARE),
     ins AS (INSERT INTO silverline_journal (realm, seq, epoch, batch)
             SELECT %(realm)s, s, %(epoch)s, b
             FROM lease, unnest(%(seqs)s::bigint[], %(bodies)s::text[]) AS u(s, b)
             ON CONFLICT (realm, seq) DO NOTHING RETURNING 1)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM ins)"""

_FENCED_SNAPSHOT = """
WITH lease AS (SELECT 1 FROM silverline_leader WHERE realm = %(realm)s AND epoch = %(epoch)s
               FOR SHARE)
INSERT INTO silverline_snapshot (realm, seq, epoch, saved_at, doc)
SELECT %(realm)s, %(seq)s, %(epoch)s, now(), %(doc)s FROM lease
ON CONFLICT (realm, seq) DO NOTHING RETURNING 1"""


class Fenced(Exception):
    """Our epoch is no longer the realm's: another orchestrator leads now."""


def create_schema(conn: Any, realm: str) -> None:
    with conn.transaction():
        # concurrent CREATE TABLE IF NOT EXISTS can still collide: one at a time
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('silverline schema'))")
        for statement in SCHEMA_SQL:
            conn.execute(statement)
        conn.execute("INSERT INTO silverline_leader VALUES (%s, 0, '', 0, '-infinity', "
                     "'-infinity') ON CONFLICT (realm) DO NOTHING", (realm,))


def read_tail(conn: Any, realm: str, after: int, limit: int | None = None
              ) -> list[tuple[int, str]]:
    """Journal batches after ``after``, in order (at most ``limit``)."""
    sql = "SELECT seq, batch FROM silverline_journal WHERE realm = %s AND seq > %s ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows: list[tuple[int, str]] = conn.execute(sql, (realm, after)).fetchall()
    return rows


class PgJournal:
    """Journal and snapshots of one realm in PostgreSQL; the reactor thread owns it."""

    def __init__(self, reactor: Any, conninfo: str, realm: str, fsync: bool = True,
                 on_sync: Callable[[float], None] = lambda seconds: None) -> None:
        self._reactor = reactor
        self.realm = realm
        self.path = f"PostgreSQL (realm {realm!r})"     # where, for the log
        settings = {"statement_timeout": "10s", "idle_in_transaction_session_timeout": "5s"}
        if not fsync:
            settings["synchronous_commit"] = "off"     # benchmarks only, like journal_fsync
        self.fsync = fsync
        self._writer = PgLink(reactor, conninfo, "journal", settings)
        self._snapshots = PgLink(reactor, conninfo, "snapshot", settings)
        self.epoch = 0                  # ours while we lead; every write carries it
        self.seq = 0                    # last batch handed to commit() or applied from the tail
        self.durable_seq = 0            # last batch known committed
        self.snapshot_seq: int | None = None
        self.events = 0                 # newest event id seen in the batches (followers)
        self.problem: str | None = None     # why writes are not durable right now
        self.on_sync = on_sync
        self.on_fenced: Callable[[str], None] = lambda why: None
        self._pending: list[tuple[int, str]] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._writing = False
        self._snapshotting: Deferred[None] | None = None

    # -- start-up ----------------------------------------------------------------
    def load(self, registry: Registry, tables: Any = None) -> LoadReport:
        """Fill ``registry`` from the newest usable snapshot and the journal after it."""
        started = time.perf_counter()
        report = LoadReport()

        def read(conn: Any) -> tuple[list[tuple[int, bytes]], list[tuple[int, str]]]:
            create_schema(conn, self.realm)
            snaps = conn.execute("SELECT seq, doc FROM silverline_snapshot WHERE realm = %s "
                                 "ORDER BY seq DESC", (self.realm,)).fetchall()
            oldest = min([s for s, _ in snaps], default=0)   # fall back on it if need be
            return snaps, read_tail(conn, self.realm, oldest)

        try:
            snaps, rows = self._writer.run_here(read)
        except PgError as e:
            raise OSError(errno.EIO, f"cannot read the journal: {str(e).strip()[:300]}") from None
        runtimes: dict[str, Runtime] = {}
        modules: dict[str, Module] = {}
        next_serial = 1
        for seq, data in snaps:
            try:
                doc, runtimes, modules = decode_snapshot(bytes(data))
            except ValueError as e:
                report.problems.append(f"snapshot {seq}: {e}; using an older one")
                continue
            next_serial = doc.get("next_serial", 1)
            report.snapshot_seq = seq
            report.meta = doc.get("meta") or {}
            if tables is not None:
                tables.restore(doc.get("delivery"))
            break
        last = report.snapshot_seq or 0
        for seq, body in rows:
            if seq <= last:
                continue
            if seq != last + 1:
                report.problems.append(f"journal jumps from batch {last} to {seq}")
                break
            batch = json.loads(body)
            apply_batch(runtimes, modules, batch)
            next_serial = max(next_serial, batch.get("serial", 1))
            report.meta["events"] = max(report.meta.get("events", 0),
                                        batch.get("meta", {}).get("events", 0))
            if tables is not None:
                tables.replay(batch)
            last = seq
            report.replayed += 1
        registry.load(list(runtimes.values()), list(modules.values()), next_serial)
        self.seq = self.durable_seq = report.seq = last
        self.snapshot_seq = report.snapshot_seq
        self.events = int(report.meta.get("events", 0))
        report.seconds = time.perf_counter() - started
        return report

    def follow(self, registry: Registry, rows: Iterable[tuple[int, str]],
               tables: Any = None) -> int:
        """Apply batches read from the journal's tail (a standby's warm copy).

        Returns how many were applied; raises LookupError on a gap (the tail
        was pruned past us: only a reload can catch up).
        """
        applied = 0
        for seq, body in rows:
            if seq <= self.seq:
                continue
            if seq != self.seq + 1:
                raise LookupError(f"journal jumps from batch {self.seq} to {seq}")
            batch = json.loads(body)
            for code, uuid, record in batch["changes"]:
                if code == "r":
                    if record is not None:
                        registry.put_runtime(Runtime.from_record(record))
                    elif uuid in registry.runtimes:
                        registry.drop_runtime(uuid)
                elif record is not None:
                    registry.put_module(Module.from_record(record))
                elif uuid in registry.modules:
                    registry.drop_module(uuid)
            registry.next_serial = max(registry.next_serial, batch.get("serial", 1))
            self.events = max(self.events, batch.get("meta", {}).get("events", 0))
            if tables is not None:
                tables.replay(batch)
            self.seq = self.durable_seq = seq
            applied += 1
        registry.take_changes()         # already in the journal: nothing to write back
        return applied

    # -- journal -------------------------------------------------------------------
    def commit(self, changes: dict[tuple[str, str], Record | None], next_serial: int,
               meta: dict[str, Any] | None = None, tail: bytes = b"") -> Deferred[None]:
        """Queue one batch; the Deferred fires once it is committed under our epoch."""
        self.seq += 1
        doc: dict[str, Any] = {
            "seq": self.seq, "serial": next_serial,
            "changes": [["r" if kind == "runtime" else "m", uuid,
                         None if rec is None else rec.to_record()]
                        for (kind, uuid), rec in changes.items()]}
        if meta:
            doc["meta"] = meta
        body = compact_json(doc)
        if tail:
            body = body[:-1] + tail.decode() + "}"
        self._pending.append((self.seq, body))
        return self._durable(self.seq)

    def _durable(self, seq: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append((seq, d))
        if not self._writing:
            self._write()
        return d

    def _write(self) -> None:
        if not self._pending:
            return
        self._writing = True
        batch, self._pending = self._pending, []
        seqs = [s for s, _ in batch]
        params = {"realm": self.realm, "epoch": self.epoch, "seqs": seqs,
                  "bodies": [b for _, b in batch]}

        def insert(conn: Any) -> float:
            t0 = time.perf_counter()
            leased, inserted = conn.execute(_FENCED_INSERT, params).fetchone()
            if not leased:
                raise Fenced(f"epoch {self.epoch} is no longer the realm's")
            if inserted < len(seqs):
                # a retry of a write whose answer was lost: ours if our epoch wrote them
                (ours,) = conn.execute(
                    "SELECT count(*) FROM silverline_journal WHERE realm = %s AND "
                    "seq = ANY(%s) AND epoch = %s", (self.realm, seqs, self.epoch)).fetchone()
                if ours < len(seqs):
                    raise Fenced(f"batches {seqs[0]}-{seqs[-1]} were written by another epoch")
            return time.perf_counter() - t0

        def done(seconds: float) -> None:
            self._writing = False
            if self.problem is not None:
                log.info("journal writes are durable again in PostgreSQL")
                self.problem = None
            self.durable_seq = max(self.durable_seq, seqs[-1])
            self.on_sync(seconds)
            ready = [d for s, d in self._waiters if s <= self.durable_seq]
            self._waiters = [(s, d) for s, d in self._waiters if s > self.durable_seq]
            self._write()
            for d in ready:
                d.callback(None)

        def failed(failure: Any) -> None:
            self._writing = False
            if failure.check(Fenced):
                self._pending = []
                self.on_fenced(failure.getErrorMessage())
                return
            self._pending = batch + self._pending
            why = failure.getErrorMessage().strip().splitlines()[0][:200] if \
                failure.getErrorMessage() else failure.type.__name__
            if self.problem is None:
                log.error("PostgreSQL did not take journal batch {first}-{last} ({why}); "
                          "announcing nothing until it does, retrying every {delay}s",
                          first=seqs[0], last=seqs[-1], why=why, delay=RETRY_DELAY)
            self.problem = why
            self._writing = True          # nothing else starts until the retry
            self._reactor.callLater(RETRY_DELAY, self._retry)
            if not failure.check(PgError):
                log.failure("journal write failed", failure)

        self._writer.run(insert).addCallbacks(done, failed)

    def _retry(self) -> None:
        self._writing = False
        self._write()

    def flush(self) -> Deferred[None]:
        """Fires once everything handed to commit() is committed."""
        if self.durable_seq >= self.seq:
            return succeed(None)
        return self._durable(self.seq)

    # -- snapshots -------------------------------------------------------------------
    def snapshot(self, registry: Registry, meta: Callable[[], dict[str, Any]],
                 tables: Any = None) -> Deferred[None]:
        """Serialize a chunk at a time (fuzzy, as on disk), then store it under our epoch."""
        if self._snapshotting is not None:
            return self._snapshotting
        seq = self.seq
        parts: list[bytes] = []
        runtime_ids = list(registry.runtimes)
        module_ids = list(registry.modules)

        def records(table: dict[str, Any], ids: list[str],
                    row: Callable[[Any], tuple[Any, ...]]) -> Iterable[None]:
            first = True
            for i in range(0, len(ids), CHUNK):
                recs = [row(table[u]) for u in ids[i:i + CHUNK] if u in table]
                if recs:
                    parts.append((b"" if first else b",") + compact_json(recs)[1:-1].encode())
                    first = False
                yield None

        def steps() -> Iterable[None]:
            fields = json.dumps({"runtimes": RUNTIME_FIELDS, "modules": MODULE_FIELDS})
            parts.append(b'{"schema":%d,"seq":%d,"saved_at":%.3f,"fields":%s,"runtimes":[' %
                         (SCHEMA, seq, self._reactor.seconds(), fields.encode()))
            yield from records(registry.runtimes, runtime_ids, runtime_row)
            parts.append(b'],"modules":[')
            yield from records(registry.modules, module_ids, module_row)
            parts.append(b"],")
            if tables is not None:
                parts.append(b'"delivery":' + tables.snapshot_json() + b",")
            tail = {"next_serial": registry.next_serial, "meta": meta()}
            parts.append(json.dumps(tail, separators=(",", ":")).encode()[1:])

        def store(_: object) -> Deferred[None]:
            doc = b"".join(parts)
            params = {"realm": self.realm, "epoch": self.epoch, "seq": seq, "doc": doc}

            def insert(conn: Any) -> None:
                if conn.execute(_FENCED_SNAPSHOT, params).fetchone() is None:
                    if conn.execute("SELECT 1 FROM silverline_snapshot WHERE realm = %s AND "
                                    "seq = %s", (self.realm, seq)).fetchone() is None:
                        raise Fenced(f"epoch {self.epoch} is no longer the realm's")
                kept = [s for (s,) in conn.execute(
                    "SELECT seq FROM silverline_snapshot WHERE realm = %s ORDER BY seq DESC "
                    "LIMIT 2", (self.realm,)).fetchall()]
                if len(kept) == 2:
                    conn.execute("DELETE FROM silverline_snapshot WHERE realm = %s AND seq < %s",
                                 (self.realm, kept[1]))
                    conn.execute("DELETE FROM silverline_journal WHERE realm = %s AND seq <= %s",
                                 (self.realm, kept[1]))
            d = self.flush()            # the journal up to `seq` is committed first
            d.addCallback(lambda _: self._snapshots.run(insert))
            d.addCallback(lambda _: setattr(self, "snapshot_seq", seq))
            d.addCallback(lambda _: log.info("snapshot of batch {seq} stored in PostgreSQL",
                                             seq=seq))
            return d

        def cleanup(result: object) -> object:
            self._snapshotting = None
            return result

        coop = Cooperator(scheduler=lambda f: self._reactor.callLater(0, f), started=True)
        done: Deferred[Any] = coop.coiterate(iter(steps()))
        done.addCallback(store)
        done.addBoth(cleanup)
        self._snapshotting = done
        return done

    def close(self) -> None:
        self._writer.close()
        self._snapshots.close()
