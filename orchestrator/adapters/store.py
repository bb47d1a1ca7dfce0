"""The registry on disk: a journal of changes plus periodic snapshots.

Layout of ``state_dir``::

    snapshot-<seq>.json    the registry as of journal batch <seq> (two kept)
    journal-<seq>.jsonl    batches <seq>, <seq>+1, ... one per line

A journal line is ``<crc32 hex> <json>``: one batch (every change made by
the messages of one reactor turn), so a batch is replayed whole or not at
all. Lines are full records (``put``) or removals, so replaying them is
idempotent, which lets a snapshot be written a chunk at a time while the
registry keeps changing (a "fuzzy" snapshot): whatever changed after the
snapshot's ``seq`` is in the journal and replay makes it right.

Durability: :meth:`Store.commit` writes a batch and returns a Deferred that
fires once it is fsynced. fsyncs run in a thread, one at a time; every batch
written while one runs shares the next (group commit).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ..core.model import (MODULE_FIELDS, RUNTIME_FIELDS, Module, Runtime, compact_json, module_row,
                    row_reader, runtime_row)
from ..core.registry import Record, Registry

__all__ = ["Store", "LoadReport", "SCHEMA", "apply_batch", "decode_snapshot"]

SCHEMA = 1
#: snapshot layout: {"schema", "seq", "saved_at", "fields": {kind: [names]},
#: "runtimes": [[values in field order], ...], "modules": [...], "next_serial", "meta"}
_SNAPSHOT = re.compile(r"snapshot-(\d{12})\.json")
_JOURNAL = re.compile(r"journal-(\d{12})\.jsonl")
#: records serialized per cooperative step of a snapshot
CHUNK = 1000

log = Logger()
_T = TypeVar("_T")


class InThread(Protocol):
    """Runs a blocking call (an fsync) off the reactor thread; fires with its result."""

    def __call__(self, f: Callable[[], _T]) -> Deferred[_T]: ...


def reactor_threads(reactor: Any) -> InThread:
    """The reactor's own thread pool (the default)."""
    def run(f: Callable[[], _T]) -> Deferred[_T]:
        return deferToThreadPool(reactor, cast(IReactorThreads, reactor).getThreadPool(), f)
    return run


def _kind_code(kind: str) -> str:
    return "r" if kind == "runtime" else "m"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournaledTables(Protocol):
    """State kept beside the registry that rides in the batches and snapshots
    (the dedupe table and the outbox, :class:`orchestrator.core.delivery.Delivery`)."""

    def restore(self, doc: Any) -> None: ...

    def replay(self, batch: dict[str, Any]) -> None: ...

    def snapshot_json(self) -> bytes: ...


def encode_line(doc: dict[str, Any], tail: bytes = b"") -> bytes:
    """A journal line; ``tail`` is more JSON members (``,"k":v...``) already encoded."""
    body = compact_json(doc).encode()
    if tail:
        body = body[:-1] + tail + b"}"
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """A journal line's batch, or None if it is torn or damaged."""
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("seq"), int) else None


@dataclass
class LoadReport:
    """What start-up found on disk, for the log and for readiness."""

    snapshot_seq: int | None = None
    replayed: int = 0
    seq: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def apply_batch(runtimes: dict[str, Runtime], modules: dict[str, Module],
                batch: dict[str, Any]) -> None:
    """One journal batch onto plain tables (replaying is idempotent)."""
    for code, uuid, record in batch["changes"]:
        table: dict[str, Any] = runtimes if code == "r" else modules
        if record is None:
            table.pop(uuid, None)
        else:
            table[uuid] = (Runtime if code == "r" else Module).from_record(record)


def decode_snapshot(data: bytes) -> tuple[dict[str, Any], dict[str, Runtime], dict[str, Module]]:
    """A snapshot document and its records; ValueError if it cannot be used."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ValueError(f"unreadable: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), int):
        raise ValueError("not a snapshot document")
    if doc["schema"] > SCHEMA:
        raise RuntimeError(f"snapshot {doc.get('seq')} has schema {doc['schema']}, newer than "
                           f"this orchestrator ({SCHEMA}); refusing to start rather than lose data")
    try:
        header = doc.get("fields") or {}
        runtime_of = row_reader(Runtime, header.get("runtimes", RUNTIME_FIELDS))
        module_of = row_reader(Module, header.get("modules", MODULE_FIELDS))
        runtimes = {r.uuid: r for r in map(runtime_of, doc["runtimes"])}
        modules = {m.uuid: m for m in map(module_of, doc["modules"])}
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        raise ValueError(f"bad record: {e!r}"[:200]) from None
    return doc, runtimes, modules


class Store:
    """Snapshots and journal in one directory; the reactor thread owns it."""

    def __init__(self, reactor: IReactorTime, path: str, fsync: bool = True, *,
                 on_sync: Callable[[float], None] = lambda seconds: None,
                 in_thread: InThread | None = None) -> None:
        """``on_sync`` gets the seconds of each journal fsync (for metrics); fsyncs run
        through ``in_thread`` (default: the reactor's thread pool; a test may run them
        in place, so a ``task.Clock`` drives the store with fsync on)."""
        self._reactor = reactor
        self._in_thread = in_thread if in_thread is not None else reactor_threads(reactor)
        self.path = path
        #: False only for benchmarks: batches count as durable once written
        self.fsync = fsync
        self.seq = 0                    # last batch written
        self.durable_seq = 0            # last batch known to be on disk
        self.snapshot_seq: int | None = None   # batch of the newest snapshot on disk
        self._fd: int | None = None
        self._retired: list[int] = []   # rotated journal fds still to fsync and close
        self._syncing = False
        self._waiters: list[tuple[int, Deferred[None]]] = []
        self._snapshotting: Deferred[None] | None = None
        self.on_sync = on_sync

    # -- start-up ----------------------------------------------------------------
    def load(self, registry: Registry, tables: JournaledTables | None = None) -> LoadReport:
        """Fill ``registry`` (and ``tables``) from disk; never raises on damaged files
        (they are set aside)."""
        started = time.perf_counter()
        os.makedirs(self.path, exist_ok=True)
        report = LoadReport()
        for name in os.listdir(self.path):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.path, name))
        runtimes: dict[str, Runtime] = {}
        modules: dict[str, Module] = {}
        next_serial = 1
        for seq, name in sorted(self._files(_SNAPSHOT), reverse=True):
            found = self._read_snapshot(name, report)
            if found is None:
                continue
            doc, runtimes, modules = found
            next_serial = doc.get("next_serial", 1)
            report.snapshot_seq = seq
            report.meta = doc.get("meta") or {}
            if tables is not None:
                tables.restore(doc.get("delivery"))
            break
        base = report.snapshot_seq or 0
        last = base
        for batch in self._replay(base, report):
            apply_batch(runtimes, modules, batch)
            next_serial = max(next_serial, batch.get("serial", 1))
            events = max(report.meta.get("events", 0), batch.get("meta", {}).get("events", 0))
            report.meta["events"] = events
            if tables is not None:
                tables.replay(batch)
            last = batch["seq"]
            report.replayed += 1
        registry.load(list(runtimes.values()), list(modules.values()), next_serial)
        self.seq = self.durable_seq = report.seq = last
        self.snapshot_seq = report.snapshot_seq
        self._open_journal(last + 1)
        report.seconds = time.perf_counter() - started
        return report

    def _files(self, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
        found = []
        for name in os.listdir(self.path):
            m = pattern.fullmatch(name)
            if m:
                found.append((int(m.group(1)), name))
        return sorted(found)

    def _quarantine(self, name: str, why: str, report: LoadReport | None = None) -> None:
        aside = f"{name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.replace(os.path.join(self.path, name), os.path.join(self.path, aside))
        if report is not None:
            report.quarantined.append(aside)
            report.problems.append(f"{name}: {why}; moved aside to {aside}")
        log.error("state file {name} is damaged ({why}); moved aside to {aside}, "
                  "starting from what remains", name=name, why=why, aside=aside)

    def _read_snapshot(self, name: str, report: LoadReport
                       ) -> tuple[dict[str, Any], dict[str, Runtime], dict[str, Module]] | None:
        try:
            with open(os.path.join(self.path, name), "rb") as f:
                data = f.read()
        except OSError as e:
            self._quarantine(name, f"unreadable: {e}"[:200], report)
            return None
        try:
            return decode_snapshot(data)
        except ValueError as e:
            self._quarantine(name, str(e)[:200], report)
            return None

    def _replay(self, after: int, report: LoadReport) -> Iterator[dict[str, Any]]:
        """Batches with seq > ``after``, in order, stopping at the first gap or damage."""
        expected = after + 1
        journals = self._files(_JOURNAL)
        if journals and after == 0 and journals[0][0] > 1:
            report.problems.append(f"journal starts at batch {journals[0][0]}; earlier state is gone")
            log.error("no usable snapshot and the journal starts at batch {first}: "
                      "starting from partial state", first=journals[0][0])
            expected = journals[0][0]
        for first, name in journals:
            if first > expected:
                break
            with open(os.path.join(self.path, name), "rb") as f:
                for line in f:
                    batch = decode_line(line)
                    if batch is None:
                        report.problems.append(f"{name}: damaged or torn line after batch {expected - 1}; "
                                               "later lines of this file ignored")
                        break
                    if batch["seq"] < expected:
                        continue
                    if batch["seq"] > expected:
                        break
                    yield batch
                    expected += 1

    # -- journal -------------------------------------------------------------------
    def _open_journal(self, first_seq: int) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
        name = f"journal-{first_seq:012d}.jsonl"
        path = os.path.join(self.path, name)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            # left by an earlier life and not replayed (torn or damaged):
            # appending to it would glue new batches onto a broken line
            self._quarantine(name, "holds batches that could not be replayed")
        self._fd = os.open(os.path.join(self.path, name),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.path)

    def commit(self, changes: dict[tuple[str, str], Record | None], next_serial: int,
               meta: dict[str, Any] | None = None, tail: bytes = b"") -> Deferred[None]:
        """Write one batch; the Deferred fires when it is durable.

        ``tail``: more members of the batch, already JSON (the delivery tables' delta).
        """
        assert self._fd is not None, "load() first"
        self.seq += 1
        doc: dict[str, Any] = {
            "seq": self.seq, "serial": next_serial,
            "changes": [[_kind_code(kind), uuid, None if rec is None else rec.to_record()]
                        for (kind, uuid), rec in changes.items()]}
        if meta:
            doc["meta"] = meta
        os.write(self._fd, encode_line(doc, tail))
        if not self.fsync:
            self.durable_seq = self.seq
            return succeed(None)
        return self._durable(self.seq)

    def _open_fds(self) -> list[int]:
        """The journal files not closed yet: the retired ones and the current one."""
        return [*self._retired, *([] if self._fd is None else [self._fd])]

    def _durable(self, seq: int) -> Deferred[None]:
        """Fires once batch ``seq`` is fsynced (joining the next group sync)."""
        d: Deferred[None] = Deferred()
        self._waiters.append((seq, d))
        if not self._syncing:
            self._start_sync()
        return d

    def _start_sync(self) -> None:
        self._syncing = True
        upto = self.seq
        fds = self._open_fds()
        retired, self._retired = self._retired, []

        def sync_all() -> float:
            t0 = time.perf_counter()
            for fd in fds:
                os.fdatasync(fd)
            return time.perf_counter() - t0

        def done(seconds: float) -> None:
            for fd in retired:
                os.close(fd)
            self.durable_seq = upto
            self.on_sync(seconds)
            ready = [d for s, d in self._waiters if s <= upto]
            self._waiters = [(s, d) for s, d in self._waiters if s > upto]
            self._syncing = False
            if self._waiters or self._retired:
                self._start_sync()
            for d in ready:
                d.callback(None)

        def failed(failure: Any) -> None:
            self._syncing = False
            waiters, self._waiters = self._waiters, []
            log.failure("fsync of the journal failed", failure)
            for _, d in waiters:
                d.errback(failure)

        d = self._in_thread(sync_all)
        d.addCallbacks(done, failed)

    def flush(self) -> Deferred[None]:
        """Fires once everything written so far is durable."""
        if self.durable_seq >= self.seq and not self._retired:
            return succeed(None)
        return self._durable(self.seq)

    # -- snapshots -------------------------------------------------------------------
    def snapshot(self, registry: Registry, meta: Callable[[], dict[str, Any]],
                 tables: JournaledTables | None = None) -> Deferred[None]:
        """Write a snapshot a chunk at a time; the journal restarts at the next batch.

        ``meta`` (and ``tables``) are read at the end, so what they hold is fresh.
        """
        if self._snapshotting is not None:
            return self._snapshotting
        seq = self.seq
        self._open_journal(seq + 1)
        snap = _SnapshotFile(self.path, seq, registry, meta, self._reactor.seconds,
                              tables)
        coop = Cooperator(scheduler=lambda f: self._reactor.callLater(0, f), started=True)
        d: Deferred[None] = coop.coiterate(snap.steps()).addCallback(
            lambda _: self._finish_snapshot(snap))
        d.addBoth(self._snapshot_ended, snap)
        self._snapshotting = d
        return d

    def _finish_snapshot(self, snap: "_SnapshotFile") -> Deferred[None]:
        """Written: make it durable, and the journal up to its batch, then put it in place."""
        d = self._in_thread(snap.sync)
        d.addCallback(lambda _: self.flush())
        d.addCallback(lambda _: self._install(snap.tmp, snap.final, snap.seq))
        d.addCallback(lambda _: log.info("snapshot of batch {seq} written", seq=snap.seq))
        return d

    def _snapshot_ended(self, result: _T, snap: "_SnapshotFile") -> _T:
        self._snapshotting = None
        snap.discard()
        return result

    def _install(self, tmp: str, final: str, seq: int) -> None:
        os.replace(tmp, final)
        fsync_dir(self.path)
        self.snapshot_seq = seq
        snapshots = self._files(_SNAPSHOT)
        keep = [s for s, _ in snapshots][-2:]
        for s, name in snapshots:
            if s not in keep:
                os.unlink(os.path.join(self.path, name))
        if len(keep) < 2:
            return          # no older snapshot to fall back on: keep the whole journal
        oldest_kept = keep[0]
        journals = self._files(_JOURNAL)
        for (first, name), (next_first, _) in zip(journals, journals[1:]):
            if next_first <= oldest_kept + 1:
                os.unlink(os.path.join(self.path, name))

    def close(self) -> None:
        for fd in self._open_fds():
            os.close(fd)
        self._retired, self._fd = [], None


class _SnapshotFile:
    """One snapshot being written: the records present when it began, a chunk per step."""

    def __init__(self, directory: str, seq: int, registry: Registry,
                 meta: Callable[[], dict[str, Any]], now: Callable[[], float],
                 tables: JournaledTables | None = None) -> None:
        self.seq = seq
        self._tables = tables
        self.final = os.path.join(directory, f"snapshot-{seq:012d}.json")
        self.tmp = self.final + ".tmp"
        self.out = open(self.tmp, "wb")
        self._registry, self._meta, self._now = registry, meta, now
        self._runtime_ids = list(registry.runtimes)
        self._module_ids = list(registry.modules)

    def steps(self) -> Iterator[None]:
        """Write it all, yielding between chunks so that the reactor keeps serving."""
        registry, out = self._registry, self.out
        fields = json.dumps({"runtimes": RUNTIME_FIELDS, "modules": MODULE_FIELDS})
        out.write(b'{"schema":%d,"seq":%d,"saved_at":%.3f,"fields":%s,"runtimes":[' %
                  (SCHEMA, self.seq, self._now(), fields.encode()))
        yield from self._records(registry.runtimes, self._runtime_ids, runtime_row)
        out.write(b'],"modules":[')
        yield from self._records(registry.modules, self._module_ids, module_row)
        tail = {"next_serial": registry.next_serial, "meta": self._meta()}
        out.write(b"],")
        if self._tables is not None:
            out.write(b'"delivery":' + self._tables.snapshot_json() + b",")
        out.write(json.dumps(tail, separators=(",", ":")).encode()[1:])
        out.flush()

    def _records(self, table: dict[str, Any], ids: list[str],
                 row: Callable[[Any], tuple[Any, ...]]) -> Iterator[None]:
        """The rows of those of ``ids`` still in ``table``, comma-separated, a chunk a step."""
        first = True
        for i in range(0, len(ids), CHUNK):
            recs = [row(table[u]) for u in ids[i:i + CHUNK] if u in table]
            if recs:
                body = compact_json(recs)[1:-1]
                self.out.write(((b"" if first else b",") + body.encode()))
                first = False
            yield None

    def sync(self) -> None:
        """In a thread: the file's bytes on disk."""
        os.fsync(self.out.fileno())
        self.out.close()

    def discard(self) -> None:
        """Done (installed, or failed): close it, and remove it if it is still the temp file."""
        if not self.out.closed:
            self.out.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
