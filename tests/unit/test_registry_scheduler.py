"""Registry lookups and transactions; placement and queue against a brute-force oracle."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.model import Module, ModuleStatus, Runtime, RuntimeStatus, api_set
from orchestrator.core.registry import Registry, canonical_uuid
from orchestrator.core.scheduler import Scheduler

U = "43a664a6-5c99-4b08-9d00-eeabc0d1f7f7"


def rt(uuid: str, serial: int, **kw) -> Runtime:
    return Runtime(uuid=uuid, serial=serial, **kw)


def test_canonical_uuid() -> None:
    assert canonical_uuid(U.upper()) == U
    assert canonical_uuid(U.replace("-", "")) == U
    assert canonical_uuid("nope") is None


def test_lookup_order_uuid_then_newest_alive_name_then_suffix() -> None:
    r = Registry()
    r.put_runtime(rt(U, 1, name="test"))
    r.put_runtime(rt("other-1", 2, name="test", status=RuntimeStatus.DEAD))
    r.put_runtime(rt("other-2", 3, name="test"))
    assert r.lookup_runtime(U.upper().replace("-", "")).uuid == U
    assert r.lookup_runtime("test").uuid == "other-2"       # newest alive
    assert r.lookup_runtime("f7f7").uuid == U                # uuid suffix
    assert r.lookup_runtime("other-1").uuid == "other-1"     # dead, by full uuid
    assert r.lookup_runtime("zzzz") is None


def test_transaction_rolls_back_records_indexes_and_serials() -> None:
    r = Registry()
    s = Scheduler(r)
    r.put_runtime(rt(U, r.new_serial()))
    r.take_changes()
    with pytest.raises(RuntimeError):
        with r.transaction():
            r.put_module(Module(uuid="m", serial=r.new_serial(), parent=U))
            r.put_runtime(replace(r.runtimes[U], status=RuntimeStatus.DEAD))
            raise RuntimeError
    assert "m" not in r.modules and r.runtimes[U].alive
    assert r.nalive(U) == 0 and r.next_serial == 2 and not r.has_changes()
    assert s.pick(frozenset()) is r.runtimes[U]


def test_module_dict_order_follows_serial_after_replacement() -> None:
    r = Registry()
    r.put_module(Module(uuid="a", serial=1))
    r.put_module(Module(uuid="b", serial=2))
    r.put_module(Module(uuid="a", serial=3))
    assert list(r.modules) == ["b", "a"]


# -- placement ------------------------------------------------------------------------
def brute_least_loaded(r: Registry, apis: frozenset) -> Runtime | None:
    fits = [x for x in r.runtimes.values()
            if x.alive and apis <= api_set(x.apis) and x.has_room(r.nalive(x.uuid))]
    return min(fits, key=lambda x: (r.nalive(x.uuid), x.serial), default=None)


ops = st.lists(st.tuples(
    st.sampled_from(["reg", "die", "place", "exit"]),
    st.integers(0, 7),
    st.sampled_from([("wasm",), ("wasm", "wasi"), ("py",), ()]),
    st.integers(0, 3)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_least_loaded_matches_brute_force(operations) -> None:
    r = Registry()
    s = Scheduler(r, "least_loaded")
    for op, n, apis, cap in operations:
        uuid = f"rt-{n}"
        if op == "reg":
            old = r.runtimes.get(uuid)
            r.put_runtime(replace(old, status="alive", apis=apis, max_nmodules=cap) if old
                          else rt(uuid, r.new_serial(), apis=apis, max_nmodules=cap))
        elif op == "die" and uuid in r.runtimes:
            r.put_runtime(replace(r.runtimes[uuid], status=RuntimeStatus.DEAD))
        elif op == "place":
            want = frozenset(apis)
            got = s.pick(want)
            assert got == brute_least_loaded(r, want)
            if got is not None:
                r.put_module(Module(uuid=f"m-{r.next_serial}", serial=r.new_serial(),
                                    parent=got.uuid))
        elif op == "exit":
            alive = [m for m in r.modules.values() if m.alive]
            if alive:
                m = alive[n % len(alive)]
                r.put_module(replace(m, status=ModuleStatus.DEAD))


def test_round_robin_cycles_over_compatible_runtimes() -> None:
    r = Registry()
    s = Scheduler(r, "round_robin")
    for i, apis in enumerate([("wasm",), ("py",), ("wasm",)]):
        r.put_runtime(rt(f"r{i}", i + 1, apis=apis, max_nmodules=0))
    picks = [s.pick(frozenset({"wasm"})).uuid for _ in range(4)]
    assert picks == ["r0", "r2", "r0", "r2"]


def test_queue_is_fifo_and_respects_pins_and_apis() -> None:
    r = Registry()
    s = Scheduler(r)
    a = r.put_runtime(rt("a", 1, apis=("wasm",), max_nmodules=1))
    b = r.put_runtime(rt("b", 2, apis=("py",), max_nmodules=1))
    q = [Module(uuid="q-py", serial=3, apis=("py",), status=ModuleStatus.QUEUED),
         Module(uuid="q-pin-b", serial=4, apis=(), status=ModuleStatus.QUEUED,
                parent="b", pinned=True),
         Module(uuid="q-wasm", serial=5, apis=("wasm",), status=ModuleStatus.QUEUED)]
    for m in q:
        r.put_module(m)
    assert s.next_queued_for(a).uuid == "q-wasm"
    assert s.next_queued_for(b).uuid == "q-py"
    r.put_module(replace(r.modules["q-py"], status=ModuleStatus.ALIVE, parent="b"))
    assert s.next_queued_for(b) is None                   # full now
    r.put_module(replace(r.modules["q-py"], status=ModuleStatus.DEAD))
    assert s.next_queued_for(b).uuid == "q-pin-b"
