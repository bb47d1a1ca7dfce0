"""Everything in this folder talks to real processes: mosquitto, twistd, Chromium, systemd tools."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from twisted.logger import formatEvent, globalLogPublisher

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line (formatted) emitted while the test runs."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)
