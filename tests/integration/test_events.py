"""The event log and /api/events: order, resume, resync, filters, heartbeats, slow watchers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.web.server import Site

from orchestrator.core.effects import Event
from orchestrator.core.events import EventLog, Gap, event_renderer
from orchestrator.core.model import Module
from orchestrator.adapters.sse import EventStreams
from orchestrator.adapters.web import RestApi
from tests.support.app import App
from tests.support.harness import RT1, Harness
from tests.support.sse import connect
from tests.support.twisted import eventually, within

R = "realm/proc"


def module_event(n: int, kind: str = "module.created") -> Event:
    return Event(kind, Module(uuid=f"m{n}", serial=n))


def render(stored: Any) -> bytes:
    return json.dumps({"id": stored.id, "type": stored.type}).encode()


# -- the log ----------------------------------------------------------------------------------
def test_after_gives_exactly_what_was_missed() -> None:
    log = EventLog(render)
    for n in range(1, 11):
        log.append(n, module_event(n), now=n)
    assert [e.id for e in log.after(7)] == [8, 9, 10]
    assert list(log.after(10)) == []
    assert [e.id for e in log.after(0)] == list(range(1, 11))


def test_retention_keeps_a_minimum_count_and_a_time_window_under_a_hard_cap() -> None:
    log = EventLog(render, keep=5, keep_seconds=100, hard_cap=20)
    for n in range(1, 31):
        log.append(n, module_event(n), now=n)             # all within 100 s: hard cap wins
    assert (log.oldest, log.latest, len(log)) == (11, 30, 20)
    log.append(31, module_event(31), now=500)             # old ones expire, 5 stay
    assert len(log) == 5 and log.oldest == 27
    with pytest.raises(Gap) as gap:
        list(log.after(20))
    assert (gap.value.oldest, gap.value.latest) == (27, 31)
    assert [e.id for e in log.after(26)] == [27, 28, 29, 30, 31]


def test_ids_from_before_a_restart_need_a_resync() -> None:
    log = EventLog(render, latest=500)                    # restored from the journal
    assert list(log.after(500)) == []                     # nothing missed
    with pytest.raises(Gap):
        list(log.after(450))                              # those are gone with the old process
    with pytest.raises(Gap):
        list(log.after(900))                              # an id we never gave out
    log.append(501, module_event(501), now=0)
    assert [e.id for e in log.after(500)] == [501]


# -- the streams, with a fake connection --------------------------------------------------------
class FakeRequest:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.headers: dict[bytes, bytes] = {}
        from twisted.internet.defer import Deferred
        self.finished: Deferred[None] = Deferred()

    def setHeader(self, k: bytes, v: bytes) -> None:
        self.headers[k] = v

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def notifyFinish(self) -> Any:
        return self.finished

    def finish(self) -> None:
        pass

    @property
    def ids(self) -> list[int]:
        text = b"".join(self.written).decode()
        return [int(line[4:]) for line in text.split("\n") if line.startswith("id: ")]


def streams_with(log: EventLog) -> tuple[EventStreams, Clock]:
    clock = Clock()
    return EventStreams(clock, log), clock


def test_one_write_per_watcher_per_window_and_catch_up_after_a_pause() -> None:
    log = EventLog(render)
    streams, clock = streams_with(log)
    request = FakeRequest()
    streams.attach(request, None, None)
    clock.advance(0.01)               # one coalescing window
    request.written.clear()
    for n in range(1, 51):
        log.append(n, module_event(n), now=0)
    clock.advance(0.005)
    assert request.written == []      # held until the window ends ...
    clock.advance(0.005)
    assert len(request.written) == 1 and request.ids == list(range(1, 51))   # ... then one write
    request.producer.pauseProducing()                     # the client is slow
    for n in range(51, 61):
        log.append(n, module_event(n), now=0)
    clock.advance(0.01)               # one coalescing window
    assert request.ids == list(range(1, 51))
    request.producer.resumeProducing()
    clock.advance(0.01)               # one coalescing window
    assert request.ids == list(range(1, 61))


def test_a_watcher_that_falls_out_of_the_window_gets_resync() -> None:
    log = EventLog(render, keep=5, keep_seconds=0, hard_cap=5)
    streams, clock = streams_with(log)
    request = FakeRequest()
    streams.attach(request, None, None)
    request.producer.pauseProducing()
    for n in range(1, 21):
        log.append(n, module_event(n), now=n)
    request.producer.resumeProducing()
    clock.advance(0.01)               # one coalescing window
    text = b"".join(request.written).decode()
    assert "event: resync\nid: 20\n" in text
    log.append(21, module_event(21), now=21)
    clock.advance(0.01)               # one coalescing window
    assert request.ids == [20, 21]


def test_watchers_leave_when_their_connection_closes() -> None:
    streams, clock = streams_with(EventLog(render))
    request = FakeRequest()
    streams.attach(request, None, None)
    [watcher] = streams.watchers
    request.finished.callback(None)
    assert watcher.closed.called and not streams.watchers
    assert request.unregistered           # else twisted.web logs an error per disconnect


# -- over a real connection ---------------------------------------------------------------------
@pytest_twisted.async_yield_fixture
async def served(reactor: Any):
    h = Harness()
    log = EventLog(event_renderer(h.registry, h.core.liveness.last_seen),
                   keep=50, keep_seconds=0, hard_cap=50)
    streams = EventStreams(reactor, log, heartbeat=0.2)
    streams.start()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(RestApi(h.core, streams=streams).resource()))
    state = {"next": 1}

    def produce(n: int, kind: str = "module.created") -> None:
        for _ in range(n):
            log.append(state["next"], module_event(state["next"], kind), now=0)
            state["next"] += 1
    yield port.getHost().port, produce, streams
    streams.stop()
    await port.stopListening()


@pytest_twisted.ensureDeferred
@within(15)
async def test_resume_with_last_event_id_gets_exactly_what_was_missed(reactor: Any,
                                                                      served: Any) -> None:
    port, produce, streams = served
    first = await connect(reactor, port, "/api/events")
    produce(5)
    events = await first.until_events(5, reactor)
    assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
    assert events[0]["data"]["module"]["uuid"] == "m1"
    first.close()
    await first.closed
    await eventually(lambda: not streams.watchers, 5, "the server to let the watcher go")
    produce(7)                                           # missed while away
    again = await connect(reactor, port, "/api/events", **{"Last-Event-ID": "5"})
    produce(1)                                           # and one live
    events = await again.until_events(8, reactor)
    assert [int(e["id"]) for e in events] == list(range(6, 14))
    assert not any(f.get("event") == "resync" for f in again.frames)
    again.close()


@pytest_twisted.ensureDeferred
@within(15)
async def test_resume_beyond_the_window_gets_resync_first(reactor: Any, served: Any) -> None:
    port, produce, _ = served
    produce(80)                                          # the log keeps the last 50
    client = await connect(reactor, port, "/api/events?last_event_id=3")
    await client.wait(lambda frames: any(f.get("event") == "resync" for f in frames), reactor)
    resync = next(f for f in client.frames if f.get("event") == "resync")
    assert resync["data"] == {"type": "resync", "oldest": 31, "latest": 80}
    produce(1)
    events = await client.until_events(2, reactor)
    assert events[-1]["id"] == "81"
    client.close()


@pytest_twisted.ensureDeferred
@within(15)
async def test_types_filter_and_heartbeats(reactor: Any, served: Any) -> None:
    port, produce, _ = served
    client = await connect(reactor, port, "/api/events?types=module.exited,runtime")
    produce(3, "module.created")
    produce(2, "module.exited")
    events = await client.until_events(2, reactor)
    assert [e["data"]["type"] for e in events] == ["module.exited", "module.exited"]
    await client.wait(lambda frames: any(f.get("comment") == " ping" or f.get("comment") == "ping"
                                         for f in frames), reactor, timeout=3)
    client.close()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("query,param", [("?types=bogus", "types"),
                                         ("?last_event_id=x", "Last-Event-ID")])
async def test_bad_stream_parameters(reactor: Any, served: Any, query: str, param: str) -> None:
    port, _, _ = served
    response = await treq.get(f"http://127.0.0.1:{port}/api/events{query}", timeout=5)
    assert response.code == 400
    assert json.loads(await response.content())["parameter"] == param


@pytest_twisted.ensureDeferred
@within(30)
async def test_changes_made_over_mqtt_arrive_on_the_stream(app: App, peers: Any,
                                                           reactor: Any) -> None:
    client = await connect(reactor, app.config.http_port, "/api/events")
    runtime = await peers("rt", f"{R}/reg")
    runtime.publish(f"{R}/reg", {"object_id": "o", "action": "create", "type": "arts_req",
                                 "data": {"type": "runtime", "uuid": RT1, "name": "rt"}})
    runtime.publish(f"{R}/control", {"object_id": "c", "action": "create", "type": "arts_req",
                                     "data": {"type": "module", "uuid": "m1", "parent": RT1}})
    events = await client.until_events(2, reactor)
    assert [e["data"]["type"] for e in events] == ["runtime.registered", "module.created"]
    assert events[0]["data"]["runtime"]["name"] == "rt"
    assert int(events[1]["id"]) == int(events[0]["id"]) + 1
    client.close()
