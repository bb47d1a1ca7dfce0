"""Two orchestrators with one MQTT client id, on one real mosquitto: recognised, not fought."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.logger import formatEvent, globalLogPublisher

from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.twisted import eventually, within

CLIENT_ID = "orchestrator-twice"


@pytest_twisted.async_yield_fixture
async def log_lines() -> AsyncIterator[list[str]]:
    lines: list[str] = []

    def observer(event: dict) -> None:
        text = formatEvent(event)
        if text:
            lines.append(text)
    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


async def two_apps(reactor: Any, broker: Mosquitto, tmp_path: Path,
                   protocol: str) -> tuple[App, App]:
    apps = []
    for name in ("first", "second"):
        config = make_config(broker.port, tmp_path / name, mqtt_client_id=CLIENT_ID,
                             mqtt_protocol=protocol, takeover_max_delay=20.0)
        apps.append(await App(reactor, config).start())
    return apps[0], apps[1]


def backoff_left(app: App, reactor: Any) -> float:
    timer = app.mqtt._timer
    assert timer is not None and timer.active(), "a reconnect should be scheduled"
    return timer.getTime() - reactor.seconds()


async def metrics(app: App) -> str:
    response = await treq.get(app.url + "/metrics", timeout=5)
    return (await response.content()).decode()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest_twisted.ensureDeferred
@within(60)
async def test_two_orchestrators_with_one_client_id_back_off_instead_of_fighting(
        reactor: Any, broker: Mosquitto, tmp_path: Path, log_lines: list[str],
        protocol: str) -> None:
    first, second = await two_apps(reactor, broker, tmp_path, protocol)
    try:
        # paho sees no DISCONNECT 142 from mosquitto 2.0.11, MQTT 5 or not: only connections
        # that keep dropping right after CONNACK (reason 142 itself: tests/unit/test_takeover.py)
        loser = await eventually(
            lambda: next((a for a in (first, second) if a.mqtt.taken_over), None), 20,
            "one of them to notice its session taken over")
        said = [line for line in log_lines if "is in use by another connection" in line]
        assert said and CLIENT_ID in said[0], said
        # it waits (5 s first, then longer) instead of taking the session straight back
        assert backoff_left(loser, reactor) > 4.0
        code, body = await loser.get("/readyz")
        assert code == 503
        assert any(CLIENT_ID in r and "in use by another connection" in r
                   for r in body["reasons"])
        text = await metrics(loser)
        assert "silverline_broker_client_id_conflict 1.0" in text
        assert "silverline_broker_takeovers_total 1.0" in text
        # each takeover makes the next wait longer: the fight slows down, it does not go on
        await eventually(lambda: first.mqtt.takeovers + second.mqtt.takeovers >= 2, 20,
                         "the second takeover")
        waits = [backoff_left(a, reactor) for a in (first, second) if a.mqtt._timer]
        assert waits and max(waits) > 4.0
        assert first.mqtt.reconnects + second.mqtt.reconnects <= 6
    finally:
        await first.stop()
        await second.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_one_orchestrator_alone_is_never_taken_for_a_conflict(
        app: App, reactor: Any) -> None:
    code, body = await app.get("/readyz")
    assert code == 200
    assert app.mqtt.taken_over is None and app.mqtt.takeovers == 0
    assert "silverline_broker_client_id_conflict 0.0" in await metrics(app)
