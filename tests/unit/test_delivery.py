"""Delivery on the pure core and the glue: dedupe, the outbox, acks after durability."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from orchestrator.adapters.store import Store
from orchestrator.config import Config
from orchestrator.core.delivery import Delivery, request_key
from orchestrator.core.effects import Event, Publish
from orchestrator.core.protocol import Orchestrator
from orchestrator.service import Journal, OrchestratorService
from orchestrator.testing import MemoryJournal
from tests.support.harness import RT1, Harness

M1 = "b241e483-0000-4000-8000-000000000001"


def create_bytes(object_id: str = "c-1", **data: Any) -> bytes:
    return json.dumps({"object_id": object_id, "action": "create", "type": "arts_req",
                       "data": {"type": "module", "parent": RT1, **data}}).encode()


def handle(h: Harness, topic: str, payload: bytes) -> list[Any]:
    effects = h.core.handle(f"realm/proc/{topic}", payload, h.now).effects
    h.core.take_changes()
    return effects


def publishes(effects: list[Any]) -> list[Publish]:
    return [e for e in effects if isinstance(e, Publish)]


# -- the tables on their own -------------------------------------------------------------------

def test_the_dedupe_table_keeps_the_newest_entries_of_its_window() -> None:
    d = Delivery(window=2)
    for n in range(3):
        d.remember(b"k%d" % n, (("t", b"%d" % n),))
    assert d.replies_to(b"k0") is None
    assert d.replies_to(b"k2") == (("t", b"2"),)
    assert d.remembered == 2


def test_the_outbox_keeps_announcements_until_acknowledged_and_is_bounded() -> None:
    d = Delivery(limit=2)
    a, b = d.announce("t/a", b'{"a":1}'), d.announce("t/b", b'{"b":1}')
    assert d.acknowledged(a) and not d.acknowledged(a)
    c = d.announce("t/c", b'{"c":1}')
    d.announce("t/d", b'{"d":1}')                 # over the limit: b is given up
    assert [i for i, _, _ in d.pending()] == [c, c + 1] and d.dropped == 1
    assert d.entry(b) is None


def test_a_key_is_the_topic_and_the_exact_bytes() -> None:
    assert request_key("t", b"x") == request_key("t", b"x")
    assert request_key("t", b"x") != request_key("u", b"x")
    assert request_key("t", b"x") != request_key("t", b"x ")


def replayed(*fragments: bytes) -> Delivery:
    fresh = Delivery()
    for n, fragment in enumerate(fragments):
        fresh.replay(json.loads(b'{"seq":%d%s}' % (n, fragment)))
    return fresh


def test_journal_fragments_replay_to_the_same_tables() -> None:
    d = Delivery()
    first = d.announce("realm/proc/control", b'{"object_id":"o1"}')
    second = d.announce("realm/proc/notif", b'{"object_id":"o2"}')
    d.remember(b"\x01" * 16, (("realm/proc/control", b'{"object_id":"r"}'),))
    one = d.journal_fragment()
    assert d.journal_fragment() == b"" and not d.has_delta()
    d.acknowledged(first)
    two = d.journal_fragment()
    again = replayed(one, two)
    assert [(i, t, json.loads(p)) for i, t, p in again.pending()] == [
        (second, "realm/proc/notif", {"object_id": "o2"})]
    assert again.replies_to(b"\x01" * 16) == (("realm/proc/control", b'{"object_id":"r"}'),)
    assert again.announce("x", b"{}") == second + 1          # ids never repeat


def test_a_snapshot_holds_only_what_is_still_pending() -> None:
    d = Delivery()
    ids = [d.announce("t", b'{"n":%d}' % n) for n in range(5)]
    for ident in ids[:4]:
        d.acknowledged(ident)
    d.remember(b"\x02" * 16, ())
    restored = Delivery()
    restored.restore(json.loads(d.snapshot_json()))
    assert [i for i, _, _ in restored.pending()] == [ids[4]]
    assert restored.replies_to(b"\x02" * 16) == ()
    assert restored.announce("t", b"{}") == ids[4] + 1


# -- the dedupe rule in the core -------------------------------------------------------------

def registered() -> Harness:
    h = Harness()
    h.register(RT1)
    return h


def test_a_repeated_create_has_its_effect_once_and_gets_its_reply_again() -> None:
    h = registered()
    first = publishes(handle(h, "control", create_bytes(uuid=M1)))
    reply = [p for p in first if p.topic == "realm/proc/control"]
    assert len(first) == 2 and all(p.outbox for p in first)       # forward and reply
    serial = h.registry.next_serial
    again = handle(h, "control", create_bytes(uuid=M1))
    assert [(p.topic, p.body(), p.outbox) for p in again] == [
        ("realm/proc/control", reply[0].body(), False)]
    assert not any(isinstance(e, Event) for e in again)
    assert h.registry.next_serial == serial and not h.registry.has_changes()


def test_a_repeated_create_without_uuid_makes_one_module() -> None:
    h = registered()
    handle(h, "control", create_bytes())
    handle(h, "control", create_bytes())
    assert len(h.registry.modules) == 1


def test_the_same_object_id_with_other_content_is_another_request() -> None:
    h = registered()
    handle(h, "control", create_bytes("same", name="a"))
    handle(h, "control", create_bytes("same", name="b"))
    assert sorted(m.name for m in h.registry.modules.values()) == ["a", "b"]


def test_a_refused_request_is_not_remembered_and_is_answered_again() -> None:
    h = Harness()                                       # no runtime: the parent is invalid
    for _ in range(2):
        out = publishes(handle(h, "control", create_bytes()))
        assert [p.topic for p in out] == ["realm/proc/log/orchestrator"]
        assert not out[0].outbox
    assert h.core.delivery.remembered == 0


def test_a_repeated_delete_forwards_one_delete() -> None:
    h = registered()
    handle(h, "control", create_bytes(uuid=M1))
    delete = json.dumps({"object_id": "d-1", "action": "delete", "type": "arts_req",
                         "data": {"type": "module", "uuid": M1}}).encode()
    first = publishes(handle(h, "control", delete))
    again = publishes(handle(h, "control", delete))
    assert len(first) == 2 and len(again) == 1 and again[0].topic == "realm/proc/control"


def test_wills_and_registrations_are_never_taken_for_repeats() -> None:
    """A runtime's will is the same bytes every time it fires; a rebooted runtime may
    register with the same bytes: both must take effect every time."""
    h = Harness()
    will = json.dumps({"object_id": "will", "action": "delete", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT1}}).encode()
    reg = json.dumps({"object_id": "reg", "action": "create", "type": "arts_req",
                      "data": {"type": "runtime", "uuid": RT1}}).encode()
    for _ in range(2):
        handle(h, "reg", reg)
        assert h.registry.runtimes[RT1].alive
        handle(h, "reg", will)
        assert not h.registry.runtimes[RT1].alive
    assert h.core.delivery.remembered == 0


def test_answers_that_announce_no_change_skip_the_outbox() -> None:
    h = registered()
    h.deregister(RT1)
    out = publishes(handle(h, "reg", json.dumps({
        "object_id": "again", "action": "delete", "type": "arts_req",
        "data": {"type": "runtime", "uuid": RT1}}).encode()))
    assert len(out) == 1 and not out[0].outbox


# -- the glue: acks after durability, the outbox across a restart ----------------------------------

class StopCounter(Clock):
    stops = 0

    def stop(self) -> None:
        self.stops += 1


class Link:
    """A publisher that is up or down, recording the bytes and tags it was handed."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, bytes, int | None]] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        if not self.up and tag is not None:
            return False
        self.sent.append((topic, payload, tag))
        return True


def service(path: Path, clock: Clock, store: Journal | None = None
            ) -> tuple[OrchestratorService, Link]:
    config = replace(Config(), state_dir=str(path), journal_fsync=False)
    link = Link()
    svc = OrchestratorService(clock, Orchestrator(config),
                              store or Store(clock, str(path), False), publisher=link)
    svc.startService()
    return svc, link


def registration() -> bytes:
    return json.dumps({"object_id": "r-1", "action": "create", "type": "arts_req",
                       "data": {"type": "runtime", "uuid": RT1}}).encode()


def test_a_message_is_acknowledged_only_once_its_batch_is_durable(tmp_path: Path) -> None:
    clock = StopCounter()
    store = MemoryJournal()
    svc, link = service(tmp_path, clock, store)
    acks: list[str] = []
    svc.message_received("realm/proc/reg", registration(), lambda: acks.append("reg"))
    svc.message_received("realm/proc/keepalive", b"{}", lambda: acks.append("ka"))  # an error
    clock.advance(0)
    assert acks == [] and link.sent == []           # nothing before the fsync
    store.fire()
    assert acks == ["reg", "ka"] and len(link.sent) == 2


def test_losing_durability_stops_the_reactor_exactly_once(tmp_path: Path) -> None:
    clock = StopCounter()
    store = MemoryJournal()
    svc, link = service(tmp_path, clock, store)
    acks: list[int] = []
    for n in range(3):
        svc.message_received("realm/proc/reg", registration().replace(b"r-1", b"r-%d" % n),
                             lambda: acks.append(1))
        clock.advance(0)
    assert len(store.pending) == 3
    store.fail()
    assert clock.stops == 1 and acks == [] and link.sent == []


def test_announcements_wait_for_the_link_and_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    svc, link = service(tmp_path, clock)
    link.up = False
    svc.message_received("realm/proc/reg", registration())
    clock.advance(0)
    assert link.sent == []                          # journaled, not sent
    link.up = True
    svc.broker_connected()
    (topic, first, tag), = link.sent
    assert topic == "realm/proc/reg" and tag is not None
    svc.store.close()                               # a crash: no PUBACK came
    clock2 = Clock()
    again, link2 = service(tmp_path, clock2)
    again.broker_connected()
    assert link2.sent == [(topic, first, tag)]      # byte for byte, same object_id
    again.published(tag)
    clock2.advance(1.0)                             # the trimming is journaled
    again.store.close()
    third, link3 = service(tmp_path, Clock())
    third.broker_connected()
    assert link3.sent == []


def test_acknowledged_announcements_are_trimmed_by_a_batch_of_their_own(tmp_path: Path) -> None:
    clock = Clock()
    svc, link = service(tmp_path, clock)
    svc.message_received("realm/proc/reg", registration())
    clock.advance(0)
    seq = svc.store.seq
    svc.published(link.sent[0][2])
    clock.advance(1.0)
    assert svc.store.seq == seq + 1 and svc.core.delivery.unacknowledged == 0


def test_a_repeat_after_a_restart_is_recognised(tmp_path: Path) -> None:
    clock = Clock()
    svc, link = service(tmp_path, clock)
    svc.message_received("realm/proc/reg", registration())
    svc.message_received("realm/proc/control", create_bytes(uuid=M1))
    clock.advance(0)
    reply = [p for t, p, _ in link.sent if t == "realm/proc/control"]
    svc.store.close()                               # killed before the PUBACKs went out
    again, link2 = service(tmp_path, Clock())
    again.message_received("realm/proc/control", create_bytes(uuid=M1))
    again._reactor.advance(0)
    again.broker_connected()
    forwards = [t for t, _, _ in link2.sent if t == f"realm/proc/control/{RT1}"]
    assert len(forwards) == 1                       # the outbox's resend, not a second create
    assert [p for t, p, _ in link2.sent if t == "realm/proc/control"].count(reply[0]) >= 1
    assert len(again.core.registry.modules) == 1


def test_a_backlog_refused_while_connected_goes_out_on_the_next_puback(tmp_path: Path) -> None:
    """paho refuses a publish when its own queue is full, though connected: what
    waits behind it must go out as soon as a PUBACK makes room, not at a reconnect."""
    clock = Clock()
    svc, link = service(tmp_path, clock)
    svc.message_received("realm/proc/reg", registration())
    clock.advance(0)
    (_, _, first), = link.sent
    link.up = False                                  # full: refuses tagged publishes
    for n in range(3):
        svc.message_received("realm/proc/reg", registration().replace(b"r-1", b"q-%d" % n))
        clock.advance(0)
    assert len(link.sent) == 1
    link.up = True                                   # room again, but no reconnect
    assert first is not None
    svc.published(first)
    assert len(link.sent) == 4
