"""The real service tree, in-process, against a test broker."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import treq

from orchestrator.config import Config
from orchestrator.tap import build
from tests.support.broker import free_port
from tests.support.twisted import eventually


def make_config(broker_port: int, state_dir: Path, **overrides: Any) -> Config:
    settings: dict[str, Any] = dict(mqtt="127.0.0.1", mqtt_port=broker_port, http="127.0.0.1",
                                    http_port=free_port(), state_dir=str(state_dir),
                                    log_dir=None, mqtt_username=None)
    return replace(Config(), **{**settings, **overrides})


class App:
    """Start, stop and query one orchestrator built by ``orchestrator.tap.build``."""

    def __init__(self, reactor: Any, config: Config) -> None:
        self.reactor = reactor
        self.config = config
        self.root: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}"

    @property
    def service(self) -> Any:
        return self.root.getServiceNamed("orchestrator")

    @property
    def mqtt(self) -> Any:
        return self.root.getServiceNamed("mqtt")

    @property
    def registry(self) -> Any:
        return self.service.core.registry

    async def start(self, timeout: float = 10.0) -> "App":
        self.root = build(self.config, self.reactor, log_to_dir=False)
        self.root.privilegedStartService()
        self.root.startService()
        await eventually(lambda: self.mqtt.subscribed, timeout, "the orchestrator to subscribe")
        return self

    async def stop(self) -> None:
        if self.root is not None and self.root.running:
            await self.root.stopService()

    async def get(self, path: str) -> tuple[int, Any]:
        return await http_get(self.url + path)


async def http_get(url: str) -> tuple[int, Any]:
    response = await treq.get(url, timeout=5)
    body = await response.content()
    return response.code, json.loads(body) if body else None
