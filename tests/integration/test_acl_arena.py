"""python -m orchestrator.acl for ARENA: the rules, the token claims, and a real
mosquitto holding an applauncher-runtime login to them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted

from orchestrator.acl import (ACL_FILE, ARENA_RUNTIME, ARENA_TOPICS_FILE, CREDENTIALS_FILE,
                              ORCHESTRATOR, PASSWD_FILE, AclError, Identity, build_acl,
                              read_inventory, main, topic_rules)
from tests.support import arena as wire
from tests.support.broker import Mosquitto
from tests.support.peer import Peer
from tests.support.twisted import within

A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
M = "cccccccc-0000-4000-8000-00000000000c"
NOT_AUTHORIZED = 135


def test_the_orchestrator_gets_the_arena_topics_only_when_asked() -> None:
    orchestrator = Identity(ORCHESTRATOR, "arts")
    assert topic_rules("realm", orchestrator) == [("readwrite", "realm/proc/#")]
    assert topic_rules("realm", orchestrator, arena=True)[1:] == [
        ("readwrite", "realm/g/+/p/+"), ("readwrite", "realm/s/+/+/p/+/+"),
        ("read", "realm/s/+/+/p/+"), ("read", "realm/s/+/+/p/+/-/stdout"),
        ("read", "realm/s/+/+/p/+/-/stderr")]


def test_an_arena_runtime_writes_only_its_own_runtime_topic() -> None:
    rules = topic_rules("realm", Identity(ARENA_RUNTIME, A, (A,), "lab"))
    assert [t for access, t in rules if access == "readwrite"] == [f"realm/g/lab/p/{A}"]
    assert not any(t.startswith("realm/g/") and access != "readwrite" for access, t in rules)
    assert not any(t.startswith("realm/proc") for _, t in rules)
    assert ("read", "realm/s/+/+/p/+/+") in rules and ("write", "realm/s/+/+/p/+") in rules


def test_inventory_and_bad_namespaces() -> None:
    assert read_inventory([f"arena-runtime {A} lab", f"arena-runtime {B}"]) == [
        Identity(ARENA_RUNTIME, A, (A,), "lab"), Identity(ARENA_RUNTIME, B, (B,), "public")]
    with pytest.raises(AclError, match="namespace"):
        build_acl("realm", [Identity(ORCHESTRATOR, "arts"),
                            Identity(ARENA_RUNTIME, A, (A,), "a/b")])


def test_cli_writes_the_token_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "creds"
    assert main(["--out", str(out), "--arena-runtime", f"{A}:lab"]) == 0
    assert ARENA_TOPICS_FILE in capsys.readouterr().out
    claims = {c["username"]: c for c in json.loads((out / ARENA_TOPICS_FILE).read_text())["logins"]}
    assert claims[A]["publ"][0] == f"realm/g/lab/p/{A}"
    assert "realm/s/+/+/p/+/+" in claims[A]["subs"]
    assert "realm/s/+/+/p/+/+" in claims["arts"]["publ"]
    assert main(["--out", str(tmp_path / "plain"), "--runtime", B]) == 0
    assert not (tmp_path / "plain" / ARENA_TOPICS_FILE).exists()     # proc only: no ARENA file


@pytest_twisted.async_yield_fixture
async def locked(reactor: Any, tmp_path: Path,
                 capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Any]:
    """A mosquitto holding the generated ARENA logins, and a way to log in."""
    creds = tmp_path / "creds"
    assert main(["--out", str(creds), "--arena-runtime", A, "--arena-runtime", B]) == 0
    capsys.readouterr()
    passwords = {c["username"]: c["password"]
                 for c in json.loads((creds / CREDENTIALS_FILE).read_text())["logins"]}
    broker = Mosquitto(tmp_path / "broker")
    lines = [f"listener {broker.port} 127.0.0.1", "allow_anonymous false",
             "persistence false", "log_dest stderr", "log_type error",
             f"password_file {creds / PASSWD_FILE}", f"acl_file {creds / ACL_FILE}"]
    if os.geteuid() == 0:
        lines.append("user root")
    broker.conf.write_text("\n".join(lines) + "\n")
    broker.start()
    made: list[Peer] = []

    async def login(user: str, *topics: str) -> Peer:
        peer = Peer(reactor, broker.port, name=f"acl-{user[:4]}", username=user,
                    password=passwords[user], reconnect=False)
        made.append(peer)
        await peer.connect()
        assert not peer.connack.is_failure, peer.connack
        if topics:
            await peer.subscribe(*topics)
        return peer
    yield login
    for peer in made:
        peer.close()
    broker.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_an_arena_runtime_speaks_for_itself_only(locked: Any) -> None:
    orchestrator = await locked("arts", "realm/g/+/p/+", "realm/s/+/+/p/+")
    runtime = await locked(A, "realm/s/+/+/p/+/+")
    for topic in (wire.runtime_topic(B), f"realm/proc/reg/{A}", f"realm/g/other/p/{A}",
                  "realm/s/public/lab/p/x/y"):
        assert await runtime.publish_acked(topic, wire.registration(A)) == NOT_AUTHORIZED, topic
    assert await runtime.publish_acked(wire.runtime_topic(A), wire.registration(A)) == 0
    assert (await orchestrator.expect("realm/g/+/p/+")).topic == wire.runtime_topic(A)
    # the orchestrator's create reaches the runtime; its confirmation comes back
    create = {"object_id": "o1", "action": "create", "type": "req", "from": "orch",
              "data": {"type": "module", "uuid": M, "name": "m", "parent": A, "file": "a.py",
                       "filetype": "PY", "scene": "lab"}}
    assert await orchestrator.publish_acked(f"realm/s/public/lab/p/{A}/{M}", create) == 0
    heard = await runtime.expect("realm/s/+/+/p/+/+")
    module_topic = wire.module_topic(heard.json["data"])
    assert await runtime.publish_acked(module_topic, wire.confirmation(heard.json, A)) == 0
    assert (await orchestrator.expect("realm/s/+/+/p/+")).json["type"] == "resp"
