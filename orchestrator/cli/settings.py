"""Where the orchestrator is: the service's config.json, overridden by flags."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import (Config, ConfigError, broker_addresses, load_config, parse_brokers,
                      read_password)
from .errors import USAGE, CliError

__all__ = ["Settings", "settings_from"]


@dataclass(frozen=True)
class Settings:
    brokers: list[tuple[str, int]]
    realm: str
    username: str | None
    password: str | None
    config: Config
    rest: str
    token: str | None
    timeout: float


def _rest_url(config: Config) -> str:
    host = config.http
    if host in ("", "0.0.0.0", "::"):       # listening everywhere: ask it locally
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http_port}"


def settings_from(args: object) -> Settings:
    """Config file (``--config``, ``$SILVERLINE_CONFIG``, ``./config.json``), then flags."""
    path = getattr(args, "config") or os.environ.get("SILVERLINE_CONFIG")
    if path is None and os.path.exists("config.json"):
        path = "config.json"
    try:
        config, _ = load_config(path)
    except ConfigError as e:
        raise CliError(str(e), USAGE) from None
    broker = getattr(args, "broker")
    # read as the config's "mqtt" is: host, host:port, [v6] or [v6]:port
    brokers = parse_brokers(broker, config.mqtt_port) if broker else broker_addresses(config)
    if brokers is None:
        raise CliError(f"--broker {broker!r}: expected host[:port]", USAGE)
    username = getattr(args, "user") or config.mqtt_username
    password_file = getattr(args, "password_file") or config.pwd
    password = read_password(password_file) if username and password_file else None
    return Settings(brokers=brokers, realm=getattr(args, "realm") or config.realm,
                    username=username, password=password, config=config,
                    rest=(getattr(args, "rest") or _rest_url(config)).rstrip("/"),
                    token=getattr(args, "token") or os.environ.get("SILVERLINE_TOKEN")
                    or config.rest_token,
                    timeout=getattr(args, "timeout"))
