from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_twisted

from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.peer import Peer


@pytest.fixture(scope="session")
def reactor() -> Any:
    from twisted.internet import reactor
    return reactor


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest_twisted.async_yield_fixture
async def app(reactor: Any, broker: Mosquitto, tmp_path: Path) -> AsyncIterator[App]:
    a = App(reactor, make_config(broker.port, tmp_path / "state"))
    await a.start()
    yield a
    await a.stop()


@pytest_twisted.async_yield_fixture
async def peers(reactor: Any, broker: Mosquitto) -> AsyncIterator[Any]:
    """A factory of connected peers: ``await peers("runtime", "realm/proc/#")``."""
    made: list[Peer] = []

    async def make(name: str, *topics: str, **kw: Any) -> Peer:
        p = await Peer(reactor, broker.port, name, **kw).connect()
        if topics:
            await p.subscribe(*topics)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()
