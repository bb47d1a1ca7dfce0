"""The silverline command's pure parts: how things print, how flags and config combine."""

from __future__ import annotations

import json
from argparse import Namespace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator.cli.errors import USAGE, CliError
from orchestrator.cli.main import parser
from orchestrator.cli.render import age, event_line, short, table
from orchestrator.cli.settings import settings_from

NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=timezone.utc)


def test_short_id_is_the_end_of_the_uuid() -> None:
    assert short("11111111-1111-4111-8111-1111abcd1234") == "abcd1234"
    assert short(None) == ""


@pytest.mark.parametrize("iso,text", [("2026-12-02T00:59:55.000Z", "5s ago"),
                                      ("2026-12-02T00:58:00.000Z", "2m ago"),
                                      ("2026-12-01T22:00:00.000Z", "3h ago"),
                                      ("2026-11-29T01:00:00.000Z", "3d ago"),
                                      (None, "-"), ("garbage", "garbage")])
def test_age(iso: str | None, text: str) -> None:
    assert age(iso, NOW) == text


def test_table_pads_columns() -> None:
    assert table([("a", "longer"), ("bbb", "x")], ("ID", "NAME")).splitlines() == [
        "ID    NAME", "a     longer", "bbb   x"]


def test_event_line_names_runtimes_and_says_why() -> None:
    names = {"r-1": "edge-a"}.get
    line = event_line({"type": "module.killed", "time": "2026-12-02T01:02:03.000Z",
                       "module": {"uuid": "m-000000000001", "name": "cam", "parent": "r-1",
                                  "waiting": "waiting for runtime edge-a"},
                       "reason": "not moved: fault_crash is not restart"},
                      lambda u: names(u or "") or "?")
    assert line.split("  ")[0] == "01:02:03"
    assert "cam (00000001)" in line and "on edge-a" in line
    assert line.endswith("reason=not moved: fault_crash is not restart")   # reason, not both


def test_config_then_flags(tmp_path: Path) -> None:
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps({"mqtt": "broker.example", "mqtt_port": 1884, "realm": "site",
                                "http": "0.0.0.0", "http_port": 9000, "mqtt_username": None,
                                "rest_token": "t"}))
    args = parser().parse_args(["--config", str(conf), "runtimes"])
    s = settings_from(args)
    assert (s.brokers, s.realm, s.rest, s.token, s.username) == (
        [("broker.example", 1884)], "site", "http://localhost:9000", "t", None)
    args = parser().parse_args(["--config", str(conf), "--broker", "[::1]:1999", "--realm", "x",
                                "--rest", "http://h:1/", "runtimes"])
    s = settings_from(args)
    assert (s.brokers, s.realm, s.rest) == ([("::1", 1999)], "x", "http://h:1")
    for flag, expected in (("::1", [("::1", 1884)]), ("[::1]", [("::1", 1884)]),
                           ("h:7", [("h", 7)])):
        args = parser().parse_args(["--config", str(conf), "--broker", flag, "runtimes"])
        assert settings_from(args).brokers == expected, flag
    with pytest.raises(CliError) as e:
        settings_from(parser().parse_args(["--config", str(conf), "--broker", "h:x", "runtimes"]))
    assert e.value.status == USAGE


def test_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    conf = tmp_path / "config.json"
    conf.write_text('{"mqtt_port": "x"}')
    with pytest.raises(CliError) as e:
        settings_from(Namespace(config=str(conf), broker=None, user=None, password_file=None,
                                realm=None, rest=None, token=None, timeout=1.0))
    assert e.value.status == USAGE and "mqtt_port" in str(e.value)
