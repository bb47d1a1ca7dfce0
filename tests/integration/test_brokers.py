"""Several broker addresses, MQTT version fallback, and refused subscriptions, against
real brokers: private mosquittos and a private nats-server (whose MQTT is 3.1.1 only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
import treq

from orchestrator.adapters.mqtt import MQTTService, build_client
from orchestrator.config import Config, broker_addresses
from tests.support.broker import Mosquitto, free_port
from tests.support.nats import NatsServer
from tests.support.peer import Peer
from tests.support.twisted import eventually, within

STATUS = "realm/proc/orchestrator/status"
TOPIC = "realm/proc/control"


def link(reactor: Any, config: Config, heard: list[bytes] | None = None) -> MQTTService:
    sink: list[bytes] = [] if heard is None else heard
    return MQTTService(reactor, build_client(config, STATUS),
                       brokers=broker_addresses(config), protocol=config.mqtt_protocol,
                       keepalive=config.mqtt_keepalive, subscriptions=[TOPIC],
                       status_topic=STATUS, max_delay=4.0,
                       on_message=lambda topic, payload, ack: heard_one(sink, payload, ack))


def heard_one(sink: list[bytes], payload: bytes, ack: Any) -> None:
    sink.append(payload)
    if ack is not None:
        ack()


def config(mqtt: Any, **kw: Any) -> Config:
    # a short keepalive: paho gives up on a CONNECT nats-server leaves unanswered (it can,
    # while it sets up a JetStream session) within seconds instead of 45
    return replace(Config(), **{"mqtt": mqtt, "mqtt_username": None, "mqtt_keepalive": 3, **kw})




@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
@within(40)
async def test_auto_falls_back_to_3_1_1_on_a_broker_that_refuses_5(
        reactor: Any, nats: NatsServer, logged: list[str]) -> None:
    heard: list[bytes] = []
    svc = link(reactor, config(f"127.0.0.1:{nats.port}"), heard)
    try:
        svc.startService()
        await eventually(lambda: svc.subscribed, 20, "a 3.1.1 session on nats-server")
        assert svc.protocol == "3.1.1" and svc.broker == f"127.0.0.1:{nats.port}"
        said = [line for line in logged if "does not speak MQTT 5" in line]
        assert len(said) == 1, said
        assert not any("refused the connection" in line for line in logged)
        # and it works: a message published to the broker reaches the service
        peer = await Peer(reactor, nats.port, "client", v5=False).connect()
        peer.publish(TOPIC, {"hello": 1})
        await eventually(lambda: heard, 10, "the message through nats-server")
        peer.close()
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_pinned_version_is_kept_even_when_refused(
        reactor: Any, nats: NatsServer, logged: list[str]) -> None:
    svc = link(reactor, config(f"127.0.0.1:{nats.port}", mqtt_protocol="5"))
    try:
        svc.startService()
        await eventually(lambda: any("refused the connection" in line for line in logged), 10)
        assert not svc.connected and svc.protocol == "5"
    finally:
        await svc.stopService()


@pytest_twisted.ensureDeferred
@within(30)
async def test_auto_speaks_5_where_it_is_offered(reactor: Any, tmp_path: Path,
                                                 logged: list[str]) -> None:
    broker = Mosquitto(tmp_path / "m")
    broker.start()
    svc = link(reactor, config("127.0.0.1", mqtt_port=broker.port))
    try:
        svc.startService()
        await eventually(lambda: svc.subscribed, 10)
        assert svc.protocol == "5"
        assert not any("does not speak MQTT 5" in line for line in logged)
    finally:
        await svc.stopService()
        broker.stop()


@pytest_twisted.ensureDeferred
@within(60)
async def test_several_addresses_first_reachable_then_the_next_on_loss(
        reactor: Any, tmp_path: Path, logged: list[str]) -> None:
    first = Mosquitto(tmp_path / "first")          # not started: nothing listens there
    second = Mosquitto(tmp_path / "second")
    third = Mosquitto(tmp_path / "third")
    second.start()
    third.start()
    addresses = [f"127.0.0.1:{first.port}", f"localhost:{second.port}",
                 f"127.0.0.1:{third.port}"]
    svc = link(reactor, config(addresses))
    try:
        svc.startService()
        await eventually(lambda: svc.subscribed, 20, "the second address")
        assert svc.broker == f"localhost:{second.port}" and svc.protocol == "5"
        second.kill()                               # on loss: on to the next address
        try:
            await eventually(lambda: svc.subscribed and svc.broker.endswith(f":{third.port}"),
                             30, "the third address")
        except Exception:
            raise AssertionError("\n".join(logged))
        assert svc.reconnects == 1
    finally:
        await svc.stopService()
        second.stop()
        third.stop()


def test_broker_addresses_from_config() -> None:
    port = free_port()
    c = config(["a", f"b:{port}", "[::1]:7", "[fe80::1]"], mqtt_port=1999)
    assert broker_addresses(c) == [("a", 1999), ("b", port), ("::1", 7), ("fe80::1", 1999)]
    assert broker_addresses(config("h")) == [("h", 1883)]


@pytest_twisted.ensureDeferred
@within(150)
async def test_nats_keeps_requests_sent_while_the_orchestrator_is_away(
        reactor: Any, nats: NatsServer, tmp_path: Path) -> None:
    """The persistent session over nats-server's MQTT (JetStream): creates published
    while the orchestrator is stopped are carried out once it is back."""
    from tests.support.app import App, make_config
    rt = "7d1c2f3e-0000-4000-8000-00000000a7a7"
    # nats-server can be slow to hand a persistent session back (JetStream): a short
    # keepalive makes paho give up on an unanswered CONNECT soon and try again
    config = make_config(nats.port, tmp_path / "state", mqtt_client_id="orch-nats",
                         mqtt_keepalive=3)
    app = await App(reactor, config).start(timeout=60)
    runtime = await Peer(reactor, nats.port, "runtime", v5=False).connect()
    client = await Peer(reactor, nats.port, "client", v5=False).connect()
    try:
        await runtime.subscribe(f"realm/proc/reg/{rt}", f"realm/proc/control/{rt}")
        await client.subscribe("realm/proc/control")
        runtime.publish(f"realm/proc/reg/{rt}", {
            "object_id": "reg", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": rt, "name": "edge"}})
        await runtime.expect(f"realm/proc/reg/{rt}", lambda m: m.json.get("type") == "arts_resp",
                             timeout=10)
        await app.stop()
        for n in range(5):
            assert await client.publish_acked("realm/proc/control", {
                "object_id": f"away-{n}", "action": "create", "type": "arts_req",
                "data": {"type": "module", "uuid": f"m-away-{n}", "name": f"m{n}",
                         "filename": "m.wasm", "parent": rt}}) == 0
        app = await App(reactor, config).start(timeout=60)
        got = sorted([(await runtime.expect(f"realm/proc/control/{rt}", timeout=15)).json["data"]
                      ["uuid"] for _ in range(5)])
        assert got == [f"m-away-{n}" for n in range(5)]
    finally:
        runtime.close()
        client.close()
        await app.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_healthz_names_the_broker_in_use(reactor: Any, tmp_path: Path,
                                               nats: NatsServer) -> None:
    from tests.support.app import App, make_config
    dead = free_port()
    app = await App(reactor, make_config(nats.port, tmp_path / "s", mqtt=[
        f"127.0.0.1:{dead}", f"127.0.0.1:{nats.port}"])).start()
    try:
        code, body = await app.get("/healthz")
        assert code == 200 and body["broker"] == {
            "address": f"127.0.0.1:{nats.port}", "protocol": "3.1.1", "connected": True}
        assert body["liveness_hold"] is None
        metrics = (await (await treq.get(app.url + "/metrics")).content()).decode()
        assert (f'silverline_broker_info{{address="127.0.0.1:{nats.port}",protocol="3.1.1"}} 1.0'
                in metrics)
    finally:
        await app.stop()
