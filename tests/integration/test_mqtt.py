"""The MQTT link on its own, against real mosquitto brokers (plain, auth, TLS)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import LoopingCall

from orchestrator.config import Config, broker_addresses
from orchestrator.adapters.mqtt import MQTTService, build_client
from tests.support.blackhole import BlackHole
from tests.support.broker import Mosquitto
from tests.support.peer import Peer
from tests.support.twisted import eventually, within

STATUS = "realm/proc/orchestrator/status"


def link(reactor: Any, config: Config, **kw: Any) -> MQTTService:
    return MQTTService(reactor, build_client(config, STATUS),
                       brokers=broker_addresses(config), protocol=config.mqtt_protocol,
                       keepalive=config.mqtt_keepalive,
                       subscriptions=["realm/proc/control"], status_topic=STATUS,
                       on_message=lambda topic, payload, ack: None, max_delay=1.0, **kw)


def plain(port: int, **kw: Any) -> Config:
    return replace(Config(), mqtt="127.0.0.1", mqtt_port=port, mqtt_username=None, **kw)




@pytest_twisted.ensureDeferred
@within(40)
async def test_publishes_wait_in_a_bounded_buffer_while_the_broker_is_away(
        reactor: Any, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "b")             # not started yet
    svc = link(reactor, plain(broker.port), buffer_size=2)
    ticks = []
    ticker = LoopingCall(lambda: ticks.append(1))
    ticker.clock = reactor
    svc.startService()
    ticker.start(0.05)
    try:
        for n in range(3):
            svc.publish(f"t/{n}", b"%d" % n, retain=True)
        assert svc.buffered == 2 and svc.dropped == 1
        await eventually(lambda: len(ticks) > 20, 5, "the reactor to keep ticking")
        broker.start()
        await eventually(lambda: svc.subscribed, 15, "the link to connect")
        peer = await Peer(reactor, broker.port, "check").connect()
        await peer.subscribe("t/#")
        got = sorted([(await peer.expect("t/#")).topic for _ in range(2)])
        assert got == ["t/1", "t/2"] and svc.buffered == 0
        peer.close()
    finally:
        ticker.stop()
        await svc.stopService()
        broker.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_reactor_keeps_running_while_connects_hang(reactor: Any) -> None:
    # a black-holed port on loopback: the TCP connect waits for its timeout, in a thread
    hole = BlackHole()
    svc = link(reactor, plain(hole.port))
    ticks = []
    ticker = LoopingCall(lambda: ticks.append(reactor.seconds()))
    ticker.clock = reactor
    svc.startService()
    ticker.start(0.05)
    try:
        await eventually(lambda: len(ticks) >= 40, 6, "40 ticks of 50 ms")
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) < 0.5
    finally:
        ticker.stop()
        await svc.stopService()
        hole.close()


@pytest_twisted.ensureDeferred
@within(30)
async def test_password_file(reactor: Any, tmp_path: Path, logged: list[str]) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "arts", "s3cret"], check=True)
    broker = Mosquitto(tmp_path / "b", extra=f"password_file {passwords}\n")
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true",
                                                           "allow_anonymous false"))
    broker.start()
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    good = link(reactor, replace(plain(broker.port), mqtt_username="arts",
                                 pwd=str(tmp_path / "good")))
    bad = link(reactor, replace(plain(broker.port), mqtt_username="arts",
                                pwd=str(tmp_path / "bad"), mqtt_client_id="bad"))
    missing = replace(plain(broker.port), mqtt_username="arts", pwd=str(tmp_path / "none"))
    try:
        good.startService()
        bad.startService()
        await eventually(lambda: good.subscribed, 10, "the right password to work")
        await eventually(lambda: any("refused the connection" in line for line in logged), 10)
        assert not bad.connected
        build_client(missing, STATUS)
        assert any("not found" in line and "without a password" in line for line in logged)
    finally:
        await good.stopService()
        await bad.stopService()
        broker.stop()


# -- TLS ---------------------------------------------------------------------------------
def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d: Path, ca: str, name: str, cn: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt", cwd=d)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", "localhost")
    make_cert(d, "ca", "client", "orchestrator")
    return d


def tls_broker(tmp_path: Path, pki: Path, require_client_cert: bool = False) -> Mosquitto:
    extra = (f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
             f"keyfile {pki / 'server.key'}\n")
    if require_client_cert:
        extra += "require_certificate true\n"
    broker = Mosquitto(tmp_path / "tls", extra=extra)
    broker.start()
    return broker


def tls(port: int, **kw: Any) -> Config:
    return replace(plain(port), mqtt="localhost", use_ssl=True, **kw)


@pytest_twisted.ensureDeferred
@within(40)
async def test_tls_verifies_the_broker(reactor: Any, tmp_path: Path, pki: Path,
                                       logged: list[str]) -> None:
    broker = tls_broker(tmp_path, pki)
    trusted = link(reactor, tls(broker.port, mqtt_ca_file=str(pki / "ca.crt")))
    untrusted = link(reactor, tls(broker.port, mqtt_ca_file=str(pki / "other-ca.crt"),
                                  mqtt_client_id="untrusted"))
    insecure = link(reactor, tls(broker.port, mqtt_ca_file=str(pki / "other-ca.crt"),
                                 mqtt_tls_insecure=True, mqtt_client_id="insecure"))
    services = [trusted, untrusted, insecure]
    try:
        for svc in services:
            svc.startService()
        await eventually(lambda: trusted.subscribed and insecure.subscribed, 15)
        await eventually(lambda: any("CERTIFICATE_VERIFY_FAILED" in line for line in logged), 10,
                         "a log line naming the certificate failure")
        assert not untrusted.connected
        assert any("NOT verified" in line for line in logged)
    finally:
        for svc in services:
            await svc.stopService()
        broker.stop()


@pytest_twisted.ensureDeferred
@within(40)
async def test_tls_client_certificate(reactor: Any, tmp_path: Path, pki: Path) -> None:
    broker = tls_broker(tmp_path, pki, require_client_cert=True)
    svc = link(reactor, tls(broker.port, mqtt_ca_file=str(pki / "ca.crt"),
                            mqtt_certfile=str(pki / "client.crt"),
                            mqtt_keyfile=str(pki / "client.key")))
    try:
        svc.startService()
        await eventually(lambda: svc.subscribed, 15, "a connection with a client certificate")
    finally:
        await svc.stopService()
        broker.stop()
