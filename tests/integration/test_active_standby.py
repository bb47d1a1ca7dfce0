"""Active/standby on PostgreSQL with the real twistd: two and three orchestrators
on one realm, a private mosquitto and a private PostgreSQL cluster.

SIGKILL of the leader under load, SIGSTOP/SIGCONT of the leader, a PostgreSQL
restart: one leader at a time, nothing acknowledged lost, a deposed leader
writes and publishes nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from tests.integration.test_dashboard import page  # noqa: F401  (the browser fixture)
from tests.support.app import http_get
from tests.support.broker import Mosquitto
from tests.support.ha import Group, Traffic
from tests.support.peer import Peer
from tests.support.postgres import PostgresCluster, fresh_database, pg_bin
from tests.support.twisted import eventually, within

pytestmark = pytest.mark.skipif(pg_bin("initdb") is None, reason="PostgreSQL is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster().init()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def verbose_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that logs every connection (to count who used the shared client id)."""
    b = Mosquitto(tmp_path / "broker", extra="connection_messages true\n")
    b.start()
    yield b
    b.stop()


@pytest_twisted.async_yield_fixture
async def group(reactor: Any, cluster: PostgresCluster, verbose_broker: Mosquitto,
                tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Group]:
    dsn = fresh_database(cluster, f"ha_{os.getpid()}_{request.node.name[:40]}")
    g = Group(reactor, tmp_path / "group", verbose_broker.port, dsn, lease=2.0)
    yield g
    await g.stop()


def shared_id_connections(broker: Mosquitto) -> int:
    return sum(1 for line in broker.log.read_text(errors="replace").splitlines()
               if "New client connected" in line and " as orchestrator-realm " in line)


def journal_epochs(dsn: str) -> list[tuple[int, int]]:
    import psycopg
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT seq, epoch FROM silverline_journal WHERE realm = 'realm' "
                            "ORDER BY seq").fetchall()


@pytest_twisted.ensureDeferred
@within(90)
async def test_three_orchestrators_one_leader_and_warm_standbys(reactor: Any, group: Group) -> None:
    for _ in range(3):
        group.add()
    leader = await group.leader(30)
    standbys = [m for m in group.members if m is not leader]
    health = await leader.health()
    assert health is not None and health["role"] == "leader" and health["epoch"] >= 1
    for m in standbys:
        code, body = await http_get(m.url + "/readyz")
        assert code == 503 and any("standby" in r for r in body["reasons"]), body
        standby_health = await m.health() or {}
        assert standby_health.get("epoch") == health["epoch"]
        assert standby_health.get("lag_batches") == 0, standby_health
    assert (await http_get(leader.url + "/readyz"))[0] == 200

    traffic = Traffic(reactor, group.config["mqtt_port"])
    await traffic.start(runtimes=2)
    object_id = traffic.create()
    await eventually(lambda: object_id in traffic.replied_at, 10, "the leader's reply")
    uuid = traffic.sent_modules[object_id]
    for m in standbys:                              # the standbys' copies are warm
        await eventually(lambda m=m: _found(m.url + f"/api/modules/{uuid}"), 5,
                         f"{m.name} to serve the module")
    code, metrics = await _text(standbys[0].url + "/metrics")
    assert 'silverline_role{role="standby"} 1.0' in metrics
    assert "silverline_standby_lag_batches 0.0" in metrics

    # a clean stop hands over at once: last batches and a snapshot, then the lease is released
    await leader.stop()
    # twistd ends a SIGTERM by re-raising it: -15 is its clean exit
    assert leader.proc is not None and leader.proc.returncode in (0, -15), leader.output()[-2000:]
    successor = await group.leader(10, among=standbys)
    assert "leadership of epoch" in leader.output() and "released" in leader.output()
    assert (await successor.health() or {})["epoch"] == health["epoch"] + 1
    await eventually(lambda: _found(successor.url + f"/api/modules/{uuid}"), 5, "the module")
    traffic.close()


async def _found(url: str) -> bool:
    return (await http_get(url))[0] == 200


async def _text(url: str) -> tuple[int, str]:
    import treq
    response = await treq.get(url, timeout=5)
    return response.code, (await response.content()).decode()


@pytest_twisted.ensureDeferred
@within(120)
async def test_sigkill_of_the_leader_under_load(reactor: Any, group: Group) -> None:
    group.add()
    first = await group.leader(30)
    group.add()
    await group.leader(30)
    traffic = Traffic(reactor, group.config["mqtt_port"])
    await traffic.start(runtimes=3)
    await eventually(lambda: len(traffic.acked_runtimes) == 3, 10, "the registrations")
    traffic.run(0.01)
    await deferLater(reactor, 2.0, lambda: None)
    killed_at = time.monotonic()
    first.signal(signal.SIGKILL)
    await deferToThread(first.proc.wait, 10)        # type: ignore[union-attr]
    second = await group.leader(10)
    await eventually(lambda: traffic.first_reply_after(killed_at), 10, "a reply from the new leader")
    failover = traffic.first_reply_after(killed_at) - killed_at    # type: ignore[operator]
    await deferLater(reactor, 1.0, lambda: None)
    traffic.pause()
    # every request the broker took is carried out: the shared persistent session kept
    # what was sent during the takeover, and what the old leader took but had not
    # acknowledged to the broker is delivered again
    await eventually(lambda: set(traffic.sent_modules) <= set(traffic.replied_at), 15,
                     "a reply to every create")
    figures = await traffic.audit(second)
    traffic.close()
    print(f"failover after SIGKILL: {failover:.3f}s; {figures}")
    assert failover < 5.0
    assert figures["acked_modules"] > 100


@pytest_twisted.ensureDeferred
@within(120)
async def test_a_frozen_leader_is_replaced_and_fenced_when_it_wakes(
        reactor: Any, group: Group, verbose_broker: Mosquitto) -> None:
    group.add()
    first = await group.leader(30)
    group.add()
    await group.leader(30)
    epoch = (await first.health() or {})["epoch"]
    traffic = Traffic(reactor, group.config["mqtt_port"])
    await traffic.start(runtimes=2)
    await eventually(lambda: len(traffic.acked_runtimes) == 2, 10, "the registrations")
    traffic.run(0.02)
    await deferLater(reactor, 1.0, lambda: None)
    first.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    second = await group.leader(10, among=[m for m in group.members if m is not first])
    took = time.monotonic() - frozen_at
    assert took < 2.0 + 2.0, took                   # within the lease (2 s), plus polling
    await eventually(lambda: traffic.first_reply_after(frozen_at + took), 10,
                     "the new leader to answer")
    await eventually(lambda: _ready(second.url), 10, "the new leader to be ready")
    connections = shared_id_connections(verbose_broker)
    takeover_seq = max(seq for seq, e in journal_epochs(group.config["postgres"]) if e == epoch)

    first.signal(signal.SIGCONT)                    # it wakes up believing it leads
    code = await deferToThread(first.proc.wait, 15)  # type: ignore[union-attr]
    assert code == 3, first.output()[-2000:]
    assert "no longer the leader" in first.output()
    await deferLater(reactor, 1.0, lambda: None)
    traffic.pause()
    # it wrote nothing after the takeover and never connected again as the shared client
    rows = journal_epochs(group.config["postgres"])
    assert not [seq for seq, e in rows if e == epoch and seq > takeover_seq]
    assert shared_id_connections(verbose_broker) == connections
    assert await _ready(second.url)
    await traffic.audit(second)
    traffic.close()


async def _ready(url: str) -> bool:
    return (await http_get(url + "/readyz"))[0] == 200


@pytest_twisted.ensureDeferred
@within(120)
async def test_a_postgres_restart_holds_announcements_until_durable(
        reactor: Any, group: Group, cluster: PostgresCluster) -> None:
    group.config["leader_lease_sec"] = 6.0          # longer than the outage
    leader = group.add()
    leader = await group.leader(30)
    group.add()
    await group.leader(30)
    epoch = (await leader.health() or {})["epoch"]
    traffic = Traffic(reactor, group.config["mqtt_port"])
    await traffic.start(runtimes=1)
    await eventually(lambda: len(traffic.acked_runtimes) == 1, 10, "the registration")
    listener = await Peer(reactor, group.config["mqtt_port"], "pg-restart").connect()
    await listener.subscribe("realm/proc/control")

    await deferToThread(cluster.stop)
    try:
        during = traffic.create()
        await deferLater(reactor, 2.0, lambda: None)
        assert during not in traffic.replied_at     # not durable: not announced
        code, body = await http_get(leader.url + "/readyz")
        assert code == 503, body
    finally:
        await deferToThread(cluster.start)
    await eventually(lambda: during in traffic.replied_at, 15, "the reply once durable")
    after = await group.leader(10)
    assert after is leader and (await leader.health() or {})["epoch"] == epoch
    await eventually(lambda: _ready(leader.url), 10, "the leader to be ready again")
    listener.close()
    traffic.close()


@pytest_twisted.ensureDeferred
@within(120)
async def test_the_dashboard_says_leader_or_standby(reactor: Any, group: Group, page: Any) -> None:
    leader = group.add()
    await group.leader(30)
    standby = group.add()
    await group.leader(30)
    epoch = (await leader.health() or {})["epoch"]
    for member, role in ((leader, "Leader"), (standby, "Standby")):
        await page.open(member.url + "/")
        text = await page.until("const r = document.getElementById('role');"
                                "return !r.hidden && r.textContent", f"the {role} badge")
        assert text.startswith(role) and f"epoch {epoch}" in text, text
        if role == "Standby":
            assert " 0 behind" in text, text
    assert not await page.console_errors()
