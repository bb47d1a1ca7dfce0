"""The orchestrator's configuration: one frozen value, loaded and checked once.

Every key of ``config.json`` is optional. A known key with a wrong type stops
start-up with a message that names the key; unknown keys (a shared cluster
config is often symlinked in) are only reported, so the caller can log them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Callable

from .core.topics import REALM_UNSAFE

__all__ = ["Config", "ConfigError", "broker_addresses", "parse_brokers", "load_config", "config_from_mapping",
           "read_password"]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


def _split_address(text: str, default_port: int) -> tuple[str, int] | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port); None if malformed."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        rest = ":" + digits
    else:
        host, rest = text, ""               # a name, IPv4, or a bare IPv6 address
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    port = int(rest[1:]) if rest else default_port
    if not host or any(c.isspace() or c in "/[]" for c in host) or not 0 < port < 65536:
        return None
    return host, port


def parse_brokers(value: Any, default_port: int = 1883) -> list[tuple[str, int]] | None:
    """One ``host[:port]`` or a list of them -> (host, port) pairs; None if malformed."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        return None
    addresses = [_split_address(v, default_port) if isinstance(v, str) else None for v in items]
    return None if any(a is None for a in addresses) else addresses  # type: ignore[return-value]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _topic_safe(v: Any) -> bool:
    return isinstance(v, str) and v != "" and REALM_UNSAFE.search(v) is None


# key -> (check, what the check expects, in words)
_Check = tuple[Callable[[Any], bool], str]
_STR: _Check = (lambda v: isinstance(v, str), "a string")
_OPT_STR: _Check = (lambda v: v is None or isinstance(v, str), "a string or null")
_BOOL: _Check = (lambda v: isinstance(v, bool), "true or false")
_PORT: _Check = (lambda v: _is_int(v) and 0 < v < 65536, "an integer port 1-65535")
_POS_INT: _Check = (lambda v: _is_int(v) and v > 0, "a positive integer")
_NONNEG_INT: _Check = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_POS_NUM: _Check = (lambda v: _is_number(v) and v > 0, "a positive number")


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one orchestrator process (the README lists every key)."""

    # [compat] keys of the Django original
    http: str = "localhost"
    http_port: int = 8000
    debug: bool = True
    realm: str = "realm"
    mqtt: str | tuple[str, ...] = "localhost"      # one address or several: "host[:port]"
    mqtt_port: int = 1883
    use_ssl: bool = False
    mqtt_username: str | None = "arts"
    pwd: str = "mqtt_pwd.txt"
    log_dir: str | None = "."
    # the operator's log
    log_format: str = "text"
    access_log_slow_sec: float = 1.0
    # MQTT connection
    mqtt_protocol: str = "auto"
    mqtt_client_id: str | None = None
    mqtt_keepalive: int = 30
    mqtt_ca_file: str | None = None
    mqtt_certfile: str | None = None
    mqtt_keyfile: str | None = None
    mqtt_tls_insecure: bool = False
    reconnect_max_delay: float = 30.0
    takeover_max_delay: float = 300.0
    publish_buffer: int = 10000
    mqtt_session_expiry_sec: int = 86400
    # delivery
    dedupe_window: int = 10000
    outbox_limit: int = 100000
    # behaviour
    ka_interval_sec: int = 5
    keepalive_misses: int = 3
    revive_after_sec: float = 2.0
    partition_share: float = 0.5
    partition_min_silent: int = 3
    partition_hold_max_sec: float = 300.0
    max_nmodules: int = 100
    scheduler: str = "least_loaded"
    max_payload_bytes: int = 262144
    #: also speak ARENA's R/g/... and R/s/... topics (applauncher-runtime, arena-web-core)
    arena: bool = True
    # state
    state_dir: str = "./state"
    journal_fsync: bool = True
    snapshot_every_changes: int = 50000
    snapshot_every_sec: float = 300.0
    retention_days: float = 7.0
    # active/standby: journal, snapshots and the leader lease in PostgreSQL
    postgres: str | None = None
    leader_lease_sec: float = 5.0
    # REST
    rest_token: str | None = None
    events_retained: int = 10000
    events_retained_sec: float = 900.0


_CHECKS: dict[str, _Check] = {
    "http": _STR,
    "http_port": (lambda v: _is_int(v) and 0 <= v < 65536, "an integer port 0-65535"),
    "debug": _BOOL,
    "realm": (_topic_safe, "a non-empty string without '+', '#'"),
    "mqtt": (lambda v: parse_brokers(v) is not None,
             'a "host[:port]" or a non-empty list of them'),
    "mqtt_port": _PORT,
    "use_ssl": _BOOL,
    "mqtt_username": _OPT_STR,
    "pwd": _STR,
    "log_dir": _OPT_STR,
    "log_format": (lambda v: v in ("text", "json"), '"text" or "json"'),
    "access_log_slow_sec": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "mqtt_protocol": (lambda v: v in ("auto", "5", "3.1.1"), '"auto", "5" or "3.1.1"'),
    "mqtt_client_id": _OPT_STR,
    "mqtt_keepalive": _POS_INT,
    "mqtt_ca_file": _OPT_STR,
    "mqtt_certfile": _OPT_STR,
    "mqtt_keyfile": _OPT_STR,
    "mqtt_tls_insecure": _BOOL,
    "reconnect_max_delay": _POS_NUM,
    "takeover_max_delay": _POS_NUM,
    "publish_buffer": _POS_INT,
    "mqtt_session_expiry_sec": (lambda v: _is_int(v) and 60 <= v <= 4294967295,
                                "an integer of seconds from 60 to 4294967295"),
    "dedupe_window": _POS_INT,
    "outbox_limit": _POS_INT,
    "ka_interval_sec": _POS_INT,
    "keepalive_misses": _POS_INT,
    "revive_after_sec": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "partition_share": _POS_NUM,
    "partition_min_silent": _POS_INT,
    "partition_hold_max_sec": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "max_nmodules": _NONNEG_INT,
    "scheduler": (lambda v: v in ("least_loaded", "round_robin"), '"least_loaded" or "round_robin"'),
    "max_payload_bytes": (lambda v: _is_int(v) and v >= 1024, "an integer >= 1024"),
    "arena": _BOOL,
    "state_dir": _STR,
    "journal_fsync": _BOOL,
    "snapshot_every_changes": _POS_INT,
    "snapshot_every_sec": _POS_NUM,
    "retention_days": _POS_NUM,
    "postgres": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
                 "a libpq connection string or null"),
    "leader_lease_sec": (lambda v: _is_number(v) and 1 <= v <= 600, "a number of seconds 1-600"),
    "rest_token": _OPT_STR,
    "events_retained": _POS_INT,
    "events_retained_sec": _POS_NUM,
}

assert set(_CHECKS) == {f.name for f in dataclasses.fields(Config)}


def broker_addresses(config: Config) -> list[tuple[str, int]]:
    """The brokers to try, in order; ``mqtt_port`` is the port of those without one."""
    addresses = parse_brokers(config.mqtt, config.mqtt_port)
    assert addresses is not None, "checked when the config was loaded"
    return addresses


def config_from_mapping(raw: Any) -> tuple[Config, list[str]]:
    """Check a parsed config document; return it and the unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        check = _CHECKS.get(key)
        if check is None:
            unknown.append(key)
            continue
        ok, expected = check
        if not ok(value):
            raise ConfigError(f"config key {key!r}: expected {expected}, got {json.dumps(value)}")
        if isinstance(value, list):
            value = tuple(value)
        values[key] = float(value) if isinstance(Config.__dataclass_fields__[key].default, float) else value
    return Config(**values), sorted(unknown)


def load_config(path: str | os.PathLike[str] | None) -> tuple[Config, list[str]]:
    """Read and check a config file; ``None`` means all defaults."""
    if path is None:
        return Config(), []
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config {os.fspath(path)!r}: {e.strerror}") from None
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config {os.fspath(path)!r} is not valid JSON: {e}") from None
    return config_from_mapping(raw)


def read_password(path: str) -> str | None:
    """The MQTT password from its file (trailing newline stripped), or None if absent."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except FileNotFoundError:
        return None

