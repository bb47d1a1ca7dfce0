"""The journal + snapshot store on a real file system."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from orchestrator.core.model import Module, ModuleStatus, Runtime
from orchestrator.core.registry import Registry
from orchestrator.adapters.store import Store, decode_line, encode_line
from tests.support.twisted import within

RT = "11111111-1111-4111-8111-111111111111"


def fill(registry: Registry, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        registry.put_module(Module(uuid=f"m-{i}", serial=registry.new_serial(), parent=RT))


def load(path: Path) -> tuple[Store, Registry]:
    store = Store(reactor, str(path))
    registry = Registry()
    store.report = store.load(registry)
    return store, registry


async def commit(store: Store, registry: Registry) -> None:
    await store.commit(registry.take_changes(), registry.next_serial, {"events": 1})


def test_line_format_detects_damage() -> None:
    line = encode_line({"seq": 1, "changes": []})
    assert decode_line(line) == {"seq": 1, "changes": []}
    assert decode_line(line[:-1]) is None                     # torn (no newline)
    assert decode_line(line.replace(b"[]", b"[0]")) is None   # crc mismatch
    assert decode_line(b"garbage\n") is None


@pytest_twisted.ensureDeferred
@within(10)
async def test_journal_round_trip_and_restart(tmp_path: Path) -> None:
    store, registry = load(tmp_path)
    registry.put_runtime(Runtime(uuid=RT, serial=registry.new_serial(), name="rt"))
    fill(registry, 3)
    await commit(store, registry)
    registry.put_module(replace(registry.modules["m-1"], status=ModuleStatus.DEAD))
    registry.drop_module("m-2")
    await commit(store, registry)
    store.close()

    _, again = load(tmp_path)
    assert again.runtimes == registry.runtimes and again.modules == registry.modules
    assert again.next_serial == registry.next_serial


@pytest_twisted.ensureDeferred
@within(10)
async def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    store, registry = load(tmp_path)
    fill(registry, 2)
    await commit(store, registry)
    fill(registry, 1, start=2)
    await commit(store, registry)
    store.close()
    [journal] = list(tmp_path.glob("journal-*"))
    journal.write_bytes(journal.read_bytes()[:-7])           # crash mid-write
    store2, again = load(tmp_path)
    assert set(again.modules) == {"m-0", "m-1"}
    assert store2.report.replayed == 1 and store2.report.problems
    # new batches go to a fresh journal and survive the next restart
    fill(again, 1, start=5)
    await commit(store2, again)
    store2.close()
    _, third = load(tmp_path)
    assert set(third.modules) == {"m-0", "m-1", "m-5"}


@pytest_twisted.ensureDeferred
@within(20)
async def test_snapshot_then_journal_then_corrupt_snapshot_falls_back(tmp_path: Path) -> None:
    store, registry = load(tmp_path)
    fill(registry, 10)
    await commit(store, registry)
    await store.snapshot(registry, lambda: {"liveness": {}})
    fill(registry, 10, start=10)
    await commit(store, registry)
    await store.snapshot(registry, lambda: {})
    fill(registry, 5, start=20)
    await commit(store, registry)
    store.close()
    snapshots = sorted(tmp_path.glob("snapshot-*"))
    assert len(snapshots) == 2
    _, again = load(tmp_path)
    assert len(again.modules) == 25

    snapshots[-1].write_text('{"schema": 1, "runtimes": [')  # damage the newest
    store3, third = load(tmp_path)
    assert len(third.modules) == 25                           # older snapshot + journal
    assert any(".corrupt-" in name for name in os.listdir(tmp_path))
    assert store3.report.problems


@pytest_twisted.ensureDeferred
@within(20)
async def test_fuzzy_snapshot_with_changes_during_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("orchestrator.adapters.store.CHUNK", 7)
    store, registry = load(tmp_path)
    fill(registry, 100)
    await commit(store, registry)
    snap = store.snapshot(registry, lambda: {})
    # while it is being written a chunk at a time, records change and go away
    for i in range(0, 100, 3):
        registry.put_module(replace(registry.modules[f"m-{i}"], status=ModuleStatus.DEAD))
    registry.drop_module("m-50")
    fill(registry, 5, start=200)
    await commit(store, registry)
    await snap
    store.close()
    _, again = load(tmp_path)
    assert again.modules == registry.modules


def test_unknown_newer_schema_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "snapshot-000000000001.json").write_text(
        json.dumps({"schema": 99, "runtimes": [], "modules": []}))
    with pytest.raises(RuntimeError, match="newer"):
        load(tmp_path)


def test_garbage_files_never_stop_start_up(tmp_path: Path) -> None:
    (tmp_path / "snapshot-000000000003.json").write_bytes(b"\x00\xff" * 100)
    (tmp_path / "journal-000000000001.jsonl").write_bytes(b"nonsense\n" * 3)
    (tmp_path / ".snapshot-000000000009.json.tmp").write_text("partial")
    store, registry = load(tmp_path)
    assert registry.modules == {} and store.report.problems
    assert not list(tmp_path.glob("*.tmp"))


@pytest_twisted.ensureDeferred
@within(10)
async def test_a_torn_journal_from_a_previous_life_is_never_appended_to(tmp_path: Path) -> None:
    store, registry = load(tmp_path)
    fill(registry, 2)
    await commit(store, registry)            # batch 1 in journal-1
    await store.snapshot(registry, dict)     # rotates to journal-2
    store.close()
    # the process died while writing the first line of journal-2
    (tmp_path / "journal-000000000002.jsonl").write_bytes(b"0badc0de {\"seq\": 2, \"cha")
    store2, again = load(tmp_path)
    assert store2.seq == 1
    fill(again, 1, start=7)
    await commit(store2, again)              # batch 2, acknowledged
    store2.close()
    _, third = load(tmp_path)
    assert "m-7" in third.modules
    assert any(".corrupt-" in p.name for p in tmp_path.iterdir())


def test_restarting_idle_leaves_no_quarantined_files(tmp_path: Path) -> None:
    for _ in range(3):
        store, _ = load(tmp_path)
        store.close()
    assert not [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def test_a_clock_drives_the_store_with_fsync_on_when_syncs_run_in_place(tmp_path: Path) -> None:
    """Nothing waits on a thread: a batch is durable at once, a snapshot after clock turns."""
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import Clock

    clock = Clock()
    synced: list[float] = []
    store = Store(clock, str(tmp_path), True, on_sync=synced.append,
                  in_thread=lambda f: maybeDeferred(f))
    registry = Registry()
    store.load(registry)
    fill(registry, 3)
    durable = store.commit(registry.take_changes(), registry.next_serial, {"events": 1})
    assert durable.called and store.durable_seq == 1 and len(synced) == 1
    done = store.snapshot(registry, lambda: {"events": 1})
    for _ in range(100):                    # one chunk per reactor turn
        if done.called:
            break
        clock.advance(0)
    assert store.snapshot_seq == 1
    store.close()
    again, reloaded = load(tmp_path)
    assert sorted(reloaded.modules) == ["m-0", "m-1", "m-2"] and again.report.snapshot_seq == 1
    again.close()
