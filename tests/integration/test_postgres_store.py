"""The PostgreSQL journal and the lease, in-process, against a private PostgreSQL cluster.

Each test gets a fresh database in one cluster started for this module.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from orchestrator.adapters.leadership import Leadership
from orchestrator.adapters.pgstore import PgJournal
from orchestrator.adapters.store import Store
from orchestrator.core.model import Module, Runtime
from orchestrator.core.registry import Registry
from tests.support.postgres import PostgresCluster, fresh_database, pg_bin
from tests.support.twisted import eventually, within

pytestmark = pytest.mark.skipif(pg_bin("initdb") is None, reason="PostgreSQL is not installed")

_names = itertools.count(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster().init()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def dsn(cluster: PostgresCluster) -> str:
    return fresh_database(cluster, f"store_{os.getpid()}_{next(_names)}")


def runtime(n: int) -> Runtime:
    return Runtime(uuid=f"00000000-0000-4000-8000-{n:012d}", serial=n, name=f"rt{n}",
                   registered_at=1000.0, changed_at=1000.0)


def module(n: int, parent: Runtime) -> Module:
    return Module(uuid=f"10000000-0000-4000-8000-{n:012d}", serial=100 + n, name=f"m{n}",
                  parent=parent.uuid, created_at=1000.0, changed_at=1000.0)


def journal_rows(dsn: str, realm: str = "realm") -> list[tuple[int, int, str]]:
    import psycopg
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT seq, epoch, batch FROM silverline_journal WHERE realm = %s "
                            "ORDER BY seq", (realm,)).fetchall()


def take_lease(dsn: str, epoch: int, realm: str = "realm") -> None:
    """What an election does to the lease row, by hand."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE silverline_leader SET epoch = %s, expires_at = now() + interval '1 h' "
                     "WHERE realm = %s", (epoch, realm))


def leading_journal(reactor: Any, dsn: str, registry: Registry, epoch: int = 1) -> PgJournal:
    journal = PgJournal(reactor, dsn, "realm")
    journal.load(registry)
    take_lease(dsn, epoch)
    journal.epoch = epoch
    return journal


@pytest_twisted.ensureDeferred
@within(30)
async def test_batches_are_the_file_journal_lines_and_load_back(reactor: Any, dsn: str,
                                                                tmp_path: Path) -> None:
    registry = Registry()
    journal = leading_journal(reactor, dsn, registry)
    files = Store(reactor, str(tmp_path / "state"), fsync=False)
    files.load(Registry())
    rt = runtime(1)
    changes: dict[Any, Any] = {("runtime", rt.uuid): rt, ("module", module(1, rt).uuid): module(1, rt)}
    await Deferred.fromCoroutine(_both(journal, files, changes, 200, {"events": 2}))
    gone: dict[Any, Any] = {("module", module(1, rt).uuid): None}
    await Deferred.fromCoroutine(_both(journal, files, gone, 201, {"events": 3}))
    files.close()
    line_bodies = [line.split(b" ", 1)[1].rstrip(b"\n").decode()
                   for line in sorted((tmp_path / "state").glob("journal-*.jsonl"))[0]
                   .read_bytes().splitlines(keepends=True)]
    rows = journal_rows(dsn)
    assert [body for _, _, body in rows] == line_bodies       # the same JSON, batch for batch
    assert [(seq, epoch) for seq, epoch, _ in rows] == [(1, 1), (2, 1)]
    journal.close()

    again = Registry()
    reader = PgJournal(reactor, dsn, "realm")
    report = reader.load(again)
    reader.close()
    assert report.replayed == 2 and report.seq == 2 and report.meta["events"] == 3
    assert set(again.runtimes) == {rt.uuid} and again.modules == {}
    assert again.next_serial == 201


async def _both(journal: PgJournal, files: Store, changes: dict[Any, Any], serial: int,
                meta: dict[str, Any]) -> None:
    await journal.commit(changes, serial, meta)
    await files.commit(changes, serial, meta)


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_write_under_an_old_epoch_is_refused_and_nothing_is_written(
        reactor: Any, dsn: str) -> None:
    registry = Registry()
    journal = leading_journal(reactor, dsn, registry, epoch=1)
    fenced: list[str] = []
    journal.on_fenced = fenced.append
    rt = runtime(1)
    await journal.commit({("runtime", rt.uuid): rt}, 2)
    take_lease(dsn, 2)                                   # another orchestrator was elected
    late = journal.commit({("runtime", runtime(2).uuid): runtime(2)}, 3)
    await eventually(lambda: fenced, 10, "the journal to notice it is fenced")
    assert not late.called                               # never announced
    assert [seq for seq, _, _ in journal_rows(dsn)] == [1]
    assert "epoch 1" in fenced[0]
    journal.close()


@pytest_twisted.ensureDeferred
@within(40)
async def test_snapshot_prunes_the_journal_and_loads_with_the_tail(reactor: Any, dsn: str) -> None:
    registry = Registry()
    journal = leading_journal(reactor, dsn, registry)
    rts = [runtime(n) for n in range(1, 2600)]          # more than one chunk of records
    for rt in rts[:2500]:
        registry.put_runtime(rt)
    await journal.commit(registry.take_changes(), registry.next_serial)
    await journal.snapshot(registry, lambda: {"events": 7})
    for rt in rts[2500:2550]:
        registry.put_runtime(rt)
    await journal.commit(registry.take_changes(), registry.next_serial)
    await journal.snapshot(registry, lambda: {"events": 8})
    for rt in rts[2550:]:
        registry.put_runtime(rt)
    await journal.commit(registry.take_changes(), registry.next_serial)
    assert [seq for seq, _, _ in journal_rows(dsn)] == [2, 3]   # batch 1 is in both snapshots
    journal.close()
    again = Registry()
    reader = PgJournal(reactor, dsn, "realm")
    report = reader.load(again)
    reader.close()
    assert report.snapshot_seq == 2 and report.replayed == 1
    assert set(again.runtimes) == set(registry.runtimes)


@pytest_twisted.ensureDeferred
@within(60)
async def test_announcements_wait_while_postgres_is_down(reactor: Any, cluster: PostgresCluster,
                                                         dsn: str) -> None:
    registry = Registry()
    journal = leading_journal(reactor, dsn, registry)
    await journal.commit({("runtime", runtime(1).uuid): runtime(1)}, 2)
    await _threaded(reactor, cluster.stop)
    try:
        pending = journal.commit({("runtime", runtime(2).uuid): runtime(2)}, 3)
        await eventually(lambda: journal.problem, 10, "the write to fail")
        await deferLater(reactor, 1.0, lambda: None)
        assert not pending.called
    finally:
        await _threaded(reactor, cluster.start)
    await eventually(lambda: pending.called, 15, "the batch to be durable after the restart")
    assert journal.problem is None
    assert [seq for seq, _, _ in journal_rows(dsn)] == [1, 2]
    journal.close()


async def _threaded(reactor: Any, f: Any) -> None:
    from twisted.internet.threads import deferToThread
    await deferToThread(f)


class _Candidate:
    """One orchestrator's lease loop over a registry of its own."""

    def __init__(self, reactor: Any, dsn: str, name: str, lease: float = 2.0) -> None:
        self.registry = Registry()
        self.journal = PgJournal(reactor, dsn, "realm")
        self.journal.load(self.registry)
        self.elected_at: float | None = None
        self.deposed: list[str] = []
        self.lead = Leadership(
            reactor, dsn, self.journal, holder=name, lease=lease,
            follow=lambda rows: self.journal.follow(self.registry, rows),
            elected=lambda: setattr(self, "elected_at", time.monotonic()),
            deposed=self.deposed.append)

    async def stop(self) -> None:
        await self.lead.stopService()
        self.journal.close()


@pytest_twisted.ensureDeferred
@within(60)
async def test_one_leader_standbys_follow_and_take_over(reactor: Any, dsn: str) -> None:
    first = _Candidate(reactor, dsn, "first")
    first.lead.startService()
    await eventually(lambda: first.lead.role == "leader", 10, "the first to lead")
    others = [_Candidate(reactor, dsn, n) for n in ("second", "third")]
    for c in others:
        c.lead.startService()
    await eventually(lambda: all(c.lead.epoch == first.lead.epoch for c in others), 10,
                     "the standbys to see the leader's epoch")
    assert [c.lead.role for c in others] == ["standby", "standby"]
    assert json.loads(json.dumps(first.lead.health()))["role"] == "leader"

    rt = runtime(5)
    first.registry.put_runtime(rt)
    await first.journal.commit(first.registry.take_changes(), first.registry.next_serial)
    await eventually(lambda: all(rt.uuid in c.registry.runtimes for c in others), 5,
                     "the standbys to apply the batch")
    assert all(c.lead.lag_batches == 0 for c in others)

    # the leader's session ends (as when its process dies): a standby takes over at once
    epoch = first.lead.epoch
    first.lead._link.close()
    first.lead._loop.stop()
    gone = time.monotonic()
    await eventually(lambda: any(c.lead.role == "leader" for c in others), 5, "a takeover")
    new = next(c for c in others if c.lead.role == "leader")
    assert new.lead.epoch == epoch + 1
    assert new.elected_at is not None and new.elected_at - gone < 2.0     # not the lease's 2 s
    assert [c.lead.role for c in others].count("leader") == 1
    assert rt.uuid in new.registry.runtimes
    # the old leader's journal is fenced
    fenced: list[str] = []
    first.journal.on_fenced = fenced.append
    first.journal.commit({("runtime", runtime(6).uuid): runtime(6)}, 9)
    await eventually(lambda: fenced, 5, "the old leader to be fenced")
    assert runtime(6).uuid not in {json.loads(b)["changes"][0][1] for _, _, b in journal_rows(dsn)}
    first.journal.close()
    for c in others:
        await c.stop()


@pytest_twisted.ensureDeferred
@within(60)
async def test_a_frozen_leader_is_replaced_after_the_lease_and_deposed_when_it_renews(
        reactor: Any, dsn: str) -> None:
    first = _Candidate(reactor, dsn, "first", lease=1.5)
    first.lead.startService()
    await eventually(lambda: first.lead.role == "leader", 10, "the first to lead")
    second = _Candidate(reactor, dsn, "second", lease=1.5)
    second.lead.startService()
    first.lead._loop.stop()                     # frozen: no renewal, its session stays open
    frozen = time.monotonic()
    await eventually(lambda: not first.lead.may_act(), 3, "the frozen leader to stop trusting")
    await eventually(lambda: second.lead.role == "leader", 5, "the standby to take over")
    assert time.monotonic() - frozen >= 1.0     # it waited for the lease
    first.lead._loop.start(0.25)                # it wakes up and renews
    await eventually(lambda: first.deposed, 5, "the old leader to learn it is deposed")
    assert first.lead.role == "deposed" and not first.lead.may_act()
    first.journal.close()
    await second.stop()
