"""Least-privilege broker configuration: the ACL builder, its CLI, and a real mosquitto.

The integration tests run mosquitto with ``contrib/mosquitto/production.conf``
itself (its paths and ports pointed at the test's files) and the files that
``python -m orchestrator.acl`` wrote, so what is shipped is what is tested.
A denied PUBLISH is seen twice: in the MQTT 5 PUBACK reason code, and as
absence at a subscriber with the orchestrator's login. Absence is proven by
order, never by waiting: the denied messages go first, an allowed one on the
same connection after them, and mosquitto delivers in order.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from orchestrator.acl import (ACL_FILE, CLIENT, CREDENTIALS_FILE, MANAGER, MONITOR, ORCHESTRATOR,
                              ORCHESTRATOR_PWD_FILE, PASSWD_FILE, RUNTIME, AclError, Identity,
                              build_acl, check_extra, check_identities, check_name, check_realm,
                              hash_password, main, password_line, read_inventory, topic_rules,
                              verify_password)
from orchestrator.config import Config
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto, free_port
from tests.support.peer import Peer
from tests.support.twisted import within

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib" / "mosquitto"
R = "realm/proc"
A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
NOT_AUTHORIZED = 135


def rules(acl: str) -> dict[str | None, list[str]]:
    """ACL text -> {user (None: anonymous): [its `topic`/`pattern` lines]}."""
    out: dict[str | None, list[str]] = {None: []}
    user: str | None = None
    for line in acl.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            user = rest
            out.setdefault(user, [])
        else:
            out[user].append(line)
    return out


def directives(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


# -- the ACL text ------------------------------------------------------------------------
def test_each_role_gets_exactly_its_topics() -> None:
    assert topic_rules("realm", Identity(ORCHESTRATOR, "arts")) == [("readwrite", f"{R}/#")]
    assert topic_rules("realm", Identity(RUNTIME, A, (A,))) == [
        ("readwrite", f"{R}/reg/{A}"), ("write", f"{R}/keepalive/{A}"),
        ("readwrite", f"{R}/control/{A}"),
        ("write", f"{R}/debug/stdout/+"), ("write", f"{R}/stdio/+")]        # module output
    assert topic_rules("realm", Identity(CLIENT, "alice")) == [
        ("readwrite", f"{R}/control"), ("read", f"{R}/notif"),
        ("read", f"{R}/log/orchestrator"), ("read", f"{R}/orchestrator/status")]
    assert topic_rules("realm", Identity(MONITOR, "ops")) == [("read", f"{R}/#")]
    manager = topic_rules("site/a", Identity(MANAGER, "m", ("m", A)))
    assert [t for _, t in manager] == [
        "site/a/proc/reg/m", "site/a/proc/keepalive/m", "site/a/proc/control/m",
        f"site/a/proc/reg/{A}", f"site/a/proc/keepalive/{A}", f"site/a/proc/control/{A}",
        "site/a/proc/debug/stdout/+", "site/a/proc/stdio/+"]


def test_acl_has_one_block_per_login_and_nothing_for_anonymous() -> None:
    acl = build_acl("realm", [Identity(ORCHESTRATOR, "arts"), Identity(RUNTIME, A, (A,)),
                              Identity(RUNTIME, B, (B,)), Identity(CLIENT, "alice")])
    by_user = rules(acl)
    assert by_user[None] == []                      # anonymous: no line at all
    assert list(by_user) == [None, "arts", A, B, "alice"]
    assert by_user[A] == [f"topic readwrite {R}/reg/{A}", f"topic write {R}/keepalive/{A}",
                          f"topic readwrite {R}/control/{A}",
                          f"topic write {R}/debug/stdout/+", f"topic write {R}/stdio/+"]
    assert not any(B in line for line in by_user[A])
    assert not any(line.startswith("pattern") for lines in by_user.values() for line in lines)
    assert acl.endswith("\n")


def test_the_shipped_template_is_what_the_builder_writes() -> None:
    template = CONTRIB / "silverline.acl.example"
    built = build_acl("realm", [
        Identity(ORCHESTRATOR, "arts"),
        Identity(RUNTIME, "RUNTIME_UUID", ("RUNTIME_UUID",)),
        Identity(MANAGER, "MANAGER_UUID", ("MANAGER_UUID", "HOSTED_RUNTIME_UUID")),
        Identity(CLIENT, "CLIENT_NAME"),
        Identity(MONITOR, "MONITOR_NAME")])
    assert rules(template.read_text()) == rules(built)


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#", "+", "#", "a b", "a\tb", "a\nb", " a",
                                 "a:b", "a\x00b", "a\x7f", "", "x" * 129])
def test_unsafe_uuids_are_refused(bad: str) -> None:
    with pytest.raises(AclError):
        check_name(bad, "runtime uuid")
    with pytest.raises(AclError):
        build_acl("realm", [Identity(ORCHESTRATOR, "arts"), Identity(RUNTIME, bad, (bad,))])


def test_safe_names_pass() -> None:
    for good in (A, A.upper(), "rt-1.local", "x" * 128, "ünïcode", "$dollar"):
        assert check_name(good, "runtime uuid") == good


@pytest.mark.parametrize("bad", ["", "a+", "a/#", "my realm", "r\x01"])
def test_unsafe_realms_are_refused(bad: str) -> None:
    with pytest.raises(AclError):
        check_realm(bad)


def test_one_owner_per_runtime_and_per_user_name() -> None:
    orch = Identity(ORCHESTRATOR, "arts")
    cases = {
        "listed twice": [orch, Identity(RUNTIME, A, (A,)), Identity(CLIENT, A)],
        # the orchestrator takes any spelling of a uuid for the same runtime
        "claimed by both": [orch, Identity(RUNTIME, A, (A,)),
                            Identity(RUNTIME, A.upper().replace("-", ""),
                                     (A.upper().replace("-", ""),))],
        "claimed by": [orch, Identity(RUNTIME, A, (A,)), Identity(MANAGER, "m", ("m", A))],
        "exactly one orchestrator": [Identity(RUNTIME, A, (A,))],
        "cannot own": [orch, Identity(CLIENT, "alice", (A,))],
    }
    for message, identities in cases.items():
        with pytest.raises(AclError, match=message):
            check_identities(identities)
    with pytest.raises(AclError, match="exactly one orchestrator"):
        check_identities([orch, Identity(ORCHESTRATOR, "other")])


def test_inventory_lines() -> None:
    text = f"""# a site
runtime {A}   # the first one
manager m1 {B} rt-c
client alice

monitor ops
"""
    assert read_inventory(text.splitlines()) == [
        Identity(RUNTIME, A, (A,)), Identity(MANAGER, "m1", ("m1", B, "rt-c")),
        Identity(CLIENT, "alice"), Identity(MONITOR, "ops")]
    for bad in ("runtime", "runtime a b", "manager m1", "client", "robot r1"):
        with pytest.raises(AclError, match="inventory:1"):
            read_inventory([bad])


def test_appended_rules_cannot_extend_the_last_login() -> None:
    assert check_extra("# modules' channels\nuser rt-x\ntopic read realm/ch/#\n")
    assert check_extra("pattern write realm/ch/%u/#\n")
    with pytest.raises(AclError, match="user"):
        check_extra("# oops\ntopic readwrite realm/#\n")
    acl = build_acl("realm", [Identity(ORCHESTRATOR, "arts")], "user rt-x\ntopic read realm/ch/#\n")
    assert rules(acl)["rt-x"] == ["topic read realm/ch/#"]


# -- passwords -----------------------------------------------------------------------------
def test_password_line_is_mosquittos_format() -> None:
    line = password_line("alice", "s3cret")
    assert re.fullmatch(r"alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", line)
    hashed = line.split(":", 1)[1]
    assert verify_password(hashed, "s3cret") and not verify_password(hashed, "s3cret ")
    assert hash_password("x") != hash_password("x")           # a fresh salt each time


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_hash_agrees_with_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "bob", "pässword"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert verify_password(theirs, "pässword") and not verify_password(theirs, "password")
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("pässword", salt) == theirs


# -- the command line ------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def logins(out: Path) -> dict[str, dict[str, Any]]:
    return {c["username"]: c for c in json.loads((out / CREDENTIALS_FILE).read_text())["logins"]}


def test_cli_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "creds"
    code, stdout, _ = run_cli(capsys, "--out", str(out), "--runtime", A, "--runtime", B,
                              "--client", "alice", "--manager", f"m1:{A.replace('a', 'c')}",
                              "--monitor", "ops")
    assert code == 0 and "6 logins" in stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / CREDENTIALS_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((out / ORCHESTRATOR_PWD_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((out / PASSWD_FILE).stat().st_mode) == 0o600
    creds = logins(out)
    assert {n: c["role"] for n, c in creds.items()} == {
        "arts": ORCHESTRATOR, A: RUNTIME, B: RUNTIME, "alice": CLIENT, "m1": MANAGER,
        "ops": MONITOR}
    assert creds["m1"]["runtimes"] == ["m1", A.replace("a", "c")]
    assert (out / ORCHESTRATOR_PWD_FILE).read_text() == creds["arts"]["password"] + "\n"
    hashes = dict(line.split(":", 1) for line in (out / PASSWD_FILE).read_text().splitlines())
    assert set(hashes) == set(creds)
    assert all(verify_password(hashes[n], c["password"]) for n, c in creds.items())
    assert len({c["password"] for c in creds.values()}) == 6
    assert list(rules((out / ACL_FILE).read_text())) == [None, "arts", A, B, "m1", "alice", "ops"]
    assert not list(out.glob(".*"))                        # no temporary files left


def test_cli_rerun_keeps_rotates_and_revokes(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "creds"
    assert run_cli(capsys, "--out", str(out), "--runtime", A, "--runtime", B,
                   "--client", "alice")[0] == 0
    first = logins(out)
    code, stdout, _ = run_cli(capsys, "--out", str(out), "--runtime", A, "--client", "alice",
                              "--client", "bob", "--rotate", "alice")
    assert code == 0 and "dropped: " + B in stdout
    second = logins(out)
    assert set(second) == {"arts", A, "alice", "bob"}
    assert second["arts"]["password"] == first["arts"]["password"]     # deployed: kept
    assert second[A]["password"] == first[A]["password"]
    assert second["alice"]["password"] != first["alice"]["password"]   # rotated
    assert B not in (out / PASSWD_FILE).read_text() and B not in (out / ACL_FILE).read_text()
    assert run_cli(capsys, "--out", str(out), "--runtime", A, "--rotate-all")[0] == 0
    assert logins(out)[A]["password"] != second[A]["password"]


def test_cli_defaults_from_the_orchestrator_config(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"realm": "site7", "mqtt_username": "orch7"}))
    assert run_cli(capsys, "--out", str(tmp_path / "o"), "--config", str(config),
                   "--runtime", A)[0] == 0
    acl = (tmp_path / "o" / ACL_FILE).read_text()
    assert rules(acl)["orch7"] == ["topic readwrite site7/proc/#"]
    assert f"topic readwrite site7/proc/reg/{A}" in acl


@pytest.mark.parametrize("argv, message", [
    (["--runtime", "a/b"], "must not contain '/'"),
    (["--runtime", "rt 1"], "whitespace"),
    (["--runtime", "rt#"], "must not contain '#'"),
    (["--client", "arts"], "listed twice"),
    (["--manager", "m1"], "MANAGER_UUID:RUNTIME_UUID"),
    (["--realm", "a+b"], "realm"),
    (["--rotate", "nobody"], "no such login"),
])
def test_cli_errors_are_clear_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                argv: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"), *argv)
    assert code == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_damaged_credentials_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / CREDENTIALS_FILE).write_text("{not json")
    code, _, err = run_cli(capsys, "--out", str(out), "--runtime", A)
    assert code == 1 and "cannot read" in err
    assert (out / CREDENTIALS_FILE).read_text() == "{not json"    # nothing silently replaced
    assert not (out / ACL_FILE).exists()


def test_module_entry_point(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator.acl", "--out", str(tmp_path / "o"),
                           "--runtime", A], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / ACL_FILE).exists()
    bad = subprocess.run([sys.executable, "-m", "orchestrator.acl", "--out", str(tmp_path / "p"),
                          "--runtime", "x+y"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "x+y" in bad.stderr


# -- the shipped broker configs ---------------------------------------------------------------
def test_production_config_locks_the_broker_down() -> None:
    lines = directives(CONTRIB / "production.conf")
    first = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    general = lines[:first]
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[first:]:
        if line.startswith("listener "):
            current = blocks.setdefault(line, [])
        else:
            current.append(line)
    assert "allow_anonymous false" in general
    assert f"message_size_limit {Config().max_payload_bytes}" in general
    assert {line.split()[0] for line in general} == {
        "allow_anonymous", "password_file", "acl_file", "message_size_limit",
        # queued requests kept across a broker restart (docs/security.md)
        "persistence", "autosave_on_changes", "autosave_interval",
        "max_queued_messages", "max_inflight_messages"}
    # (a listener option before the first listener would open a default one on 1883)
    assert list(blocks) == ["listener 8883", "listener 1883 127.0.0.1"]   # plain: loopback only
    assert {line.split()[0] for line in blocks["listener 8883"]} == {
        "certfile", "keyfile", "use_username_as_clientid"}
    for block in blocks.values():
        assert "use_username_as_clientid true" in block


def test_dev_config_is_local_only() -> None:
    lines = directives(CONTRIB / "dev.conf")
    assert "listener 1883 127.0.0.1" in lines and "allow_anonymous true" in lines
    assert f"message_size_limit {Config().max_payload_bytes}" in lines
    assert [line for line in lines if line.startswith("listener")] == ["listener 1883 127.0.0.1"]


# -- a real mosquitto -------------------------------------------------------------------------
_ids = itertools.count(1)


class Login(Peer):
    """A Peer with a user name whose connect and publish return reason codes."""

    def __init__(self, reactor: Any, port: int, username: str | None = None,
                 password: str | None = None, *, client_id: str | None = None,
                 will: tuple[str, Any] | None = None, cafile: str | None = None) -> None:
        super().__init__(reactor, port, will=will, username=username, password=password,
                         client_id=client_id or f"acl-{username}-{next(_ids)}",
                         cafile=cafile, reconnect=False)
        self.reactor = reactor

    async def connect(self, timeout: float = 5.0) -> Any:  # type: ignore[override]
        await super().connect(timeout)
        return self.connack

    async def publish(self, topic: str, payload: Any,  # type: ignore[override]
                      timeout: float = 5.0) -> int:
        return await self.publish_acked(topic, payload, timeout)


class Site:
    """A mosquitto run from the shipped production.conf with generated credentials."""

    def __init__(self, reactor: Any, broker: Mosquitto, creds: Path, cafile: Path,
                 tls_port: int) -> None:
        self.reactor = reactor
        self.broker = broker
        self.creds = creds
        self.cafile = cafile
        self.tls_port = tls_port
        self.passwords = {n: c["password"] for n, c in logins(creds).items()}
        self.made: list[Login] = []

    async def login(self, username: str | None, password: str | None = None, *,
                    tls: bool = False, expect_ok: bool = True, **kw: Any) -> Login:
        if username is not None and password is None:
            password = self.passwords[username]
        peer = Login(self.reactor, self.tls_port if tls else self.broker.port, username,
                     password, cafile=str(self.cafile) if tls else None, **kw)
        self.made.append(peer)
        peer.connack = await peer.connect()             # type: ignore[attr-defined]
        if expect_ok:
            assert not peer.connack.is_failure, f"{username}: {peer.connack}"  # type: ignore
        return peer


def render_production_conf(creds: Path, pki: Path, tls_port: int, plain_port: int) -> str:
    """contrib/mosquitto/production.conf with this test's files and ports."""
    paths = {"/etc/mosquitto/silverline.passwd": creds / PASSWD_FILE,
             "/etc/mosquitto/silverline.acl": creds / ACL_FILE,
             "/etc/mosquitto/certs/server.crt": pki / "server.crt",
             "/etc/mosquitto/certs/server.key": pki / "server.key"}
    out = []
    for line in (CONTRIB / "production.conf").read_text().splitlines():
        for shipped, here in paths.items():
            line = line.replace(shipped, str(here))
        if line == "listener 8883":
            line = f"listener {tls_port} 127.0.0.1"
        elif line == "listener 1883 127.0.0.1":
            line = f"listener {plain_port} 127.0.0.1"
        out.append(line)
    live = [line for line in out if line.strip() and not line.lstrip().startswith("#")]
    assert not any("/etc/" in line for line in live), live           # every path replaced
    assert [line for line in live if line.startswith("listener")] == [
        f"listener {tls_port} 127.0.0.1", f"listener {plain_port} 127.0.0.1"]
    return "\n".join(out) + "\n"


@pytest.fixture
def site_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the broker's test certificate")
    creds = tmp_path / "creds"
    assert main(["--out", str(creds), "--runtime", A, "--runtime", B, "--client", "alice",
                 "--monitor", "ops"]) == 0
    capsys.readouterr()
    pki = tmp_path / "pki"
    pki.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", "server.key", "-out", "server.crt"],
                   cwd=pki, check=True, capture_output=True)
    return creds, pki


@pytest_twisted.async_yield_fixture
async def site(reactor: Any, tmp_path: Path, site_files: tuple[Path, Path]) -> Any:
    creds, pki = site_files
    plain, tls = free_port(), free_port()
    broker = Mosquitto(tmp_path / "broker", port=plain)
    # production.conf turns persistence on and leaves its place to the main config
    # (Debian's sets /var/lib/mosquitto/): here, the test's own directory
    head = ["log_dest stderr", "log_type error", "log_type warning", "log_type notice",
            f"persistence_location {tmp_path / 'broker'}/"]
    if os.geteuid() == 0:
        head.append("user root")       # else mosquitto drops to a user that may not exist
    broker.conf.write_text("\n".join(head) + "\n" + render_production_conf(creds, pki, tls, plain))
    broker.start()
    s = Site(reactor, broker, creds, pki / "server.crt", tls)
    yield s
    for peer in s.made:
        peer.close()
    broker.stop()


@pytest_twisted.ensureDeferred
@within(30)
async def test_only_known_logins_get_in(site: Site) -> None:
    for username, password in ((None, None), ("alice", "wrong"), ("mallory", "x"),
                               (A, site.passwords[B])):
        peer = await site.login(username, password, expect_ok=False)
        assert peer.connack.is_failure, (username, peer.connack)   # type: ignore[attr-defined]
    for username in ("arts", A, "alice", "ops"):
        await site.login(username)
    # the TLS listener: same logins, the broker's certificate verified
    await site.login("arts", tls=True)
    anonymous = await site.login(None, tls=True, expect_ok=False)
    assert anonymous.connack.is_failure                            # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_runtime_cannot_publish_for_another(site: Site) -> None:
    orch = await site.login("arts")
    await orch.subscribe(f"{R}/#")
    a = await site.login(A)
    denied = [f"{R}/reg/{B}", f"{R}/keepalive/{B}", f"{R}/control/{B}",
              f"{R}/reg", f"{R}/keepalive", f"{R}/control",     # shared topics: anyone's
              f"{R}/notif", f"{R}/log/orchestrator", f"{R}/orchestrator/status",
              f"{R}/reg/{A}/x", "realm/other", f"{R}/control/{A.upper()}"]
    for topic in denied:
        delete_b = {"object_id": "x", "action": "delete", "type": "arts_req",
                    "data": {"type": "runtime", "uuid": B}}
        assert await a.publish(topic, delete_b) == NOT_AUTHORIZED, topic
    own = [f"{R}/reg/{A}", f"{R}/keepalive/{A}", f"{R}/control/{A}",
           f"{R}/stdio/some-module", f"{R}/debug/stdout/some-module"]     # + module output
    for topic in own:
        assert await a.publish(topic, {"from": "A"}) == 0, topic
    for topic in own:                                   # in order, after every denied one
        assert (await orch.expect(topic)).json == {"from": "A"}
    assert orch.inbox == []


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_runtime_reads_only_its_own_topics(site: Site) -> None:
    orch = await site.login("arts")
    a = await site.login(A)
    # mosquitto's acl_file does not check SUBSCRIBE itself (it grants it); what it
    # checks is every delivery, which is what this test asserts.
    codes = await a.subscribe(f"{R}/control/{B}", f"{R}/reg/{B}", f"{R}/control", f"{R}/notif",
                              f"{R}/log/orchestrator", f"{R}/#", f"{R}/control/{A}",
                              f"{R}/reg/{A}")
    assert not codes[-1].is_failure and not codes[-2].is_failure
    for topic in (f"{R}/control/{B}", f"{R}/reg/{B}", f"{R}/control", f"{R}/notif",
                  f"{R}/log/orchestrator", f"{R}/keepalive/{B}", f"{R}/keepalive/{A}",
                  f"{R}/stdio/some-module"):               # output is written, never read
        assert await orch.publish(topic, "not for A") == 0
    assert await orch.publish(f"{R}/control/{A}", "create for A") == 0
    assert await orch.publish(f"{R}/reg/{A}", "reply for A") == 0
    assert (await a.expect(f"{R}/control/{A}")).payload == b"create for A"
    assert (await a.expect(f"{R}/reg/{A}")).payload == b"reply for A"
    # (the overlapping subscriptions may deliver A's two messages twice)
    assert {m.topic for m in a.inbox} <= {f"{R}/control/{A}", f"{R}/reg/{A}"}
    assert all(m.payload != b"not for A" for m in a.inbox)


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_runtime_last_will_only_on_its_own_topic(site: Site) -> None:
    orch = await site.login("arts")
    await orch.subscribe(f"{R}/#")

    def will(uuid: str) -> tuple[str, Any]:
        return f"{R}/reg/{uuid}", {"object_id": "w", "action": "delete", "type": "arts_req",
                                   "data": {"type": "runtime", "uuid": uuid}}
    # One login is one client id here (use_username_as_clientid), so each new
    # connection of A takes the previous one over, which publishes its will
    # before the new CONNACK: first the forged will, then A's own.
    await site.login(A, will=will(B))
    await site.login(A, will=will(A))
    await site.login(A)
    assert (await orch.expect(f"{R}/reg/{A}")).json["data"]["uuid"] == A
    assert orch.on(f"{R}/reg/{B}") == []


@pytest_twisted.ensureDeferred
@within(30)
async def test_no_login_can_take_over_another_ones_session(site: Site) -> None:
    orch = await site.login("arts")
    await orch.subscribe(f"{R}/#")
    b = await site.login(B, client_id="runtime-b", will=(f"{R}/reg/{B}", "B died"))
    for username in (A, "alice"):
        await site.login(username, client_id="runtime-b")      # B's client id: ignored
    assert await b.publish(f"{R}/keepalive/{B}", "still here") == 0
    assert (await orch.expect(f"{R}/keepalive/{B}")).payload == b"still here"
    assert orch.on(f"{R}/reg/{B}") == [] and b.disconnects == 0


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_client_sends_requests_and_reads_replies_only(site: Site) -> None:
    orch = await site.login("arts")
    await orch.subscribe(f"{R}/#")
    alice = await site.login("alice")
    codes = await alice.subscribe(f"{R}/control", f"{R}/notif", f"{R}/log/orchestrator",
                                  f"{R}/orchestrator/status", f"{R}/control/{A}", f"{R}/reg/{A}")
    assert not any(rc.is_failure for rc in codes[:4])
    for topic in (f"{R}/control/{A}", f"{R}/reg/{A}", f"{R}/reg", f"{R}/keepalive/{A}",
                  f"{R}/keepalive", f"{R}/notif", f"{R}/log/orchestrator",
                  f"{R}/orchestrator/status"):
        assert await alice.publish(topic, "forged") == NOT_AUTHORIZED, topic
    assert await alice.publish(f"{R}/control", {"object_id": "c1", "action": "create"}) == 0
    assert (await orch.expect(f"{R}/control")).json["object_id"] == "c1"
    assert orch.inbox == []
    # what the orchestrator says to a runtime stays between them
    assert await orch.publish(f"{R}/control/{A}", "create for A") == 0
    assert await orch.publish(f"{R}/reg/{A}", "reply for A") == 0
    for topic in (f"{R}/control", f"{R}/notif", f"{R}/log/orchestrator"):
        assert await orch.publish(topic, {"object_id": "c1", "to": topic}) == 0
        assert (await alice.expect(topic, lambda m: m.json.get("to") == topic)).topic == topic
    assert alice.on(f"{R}/control/{A}") == [] and alice.on(f"{R}/reg/{A}") == []


@pytest_twisted.ensureDeferred
@within(30)
async def test_payload_limit_matches_the_orchestrator(site: Site) -> None:
    limit = Config().max_payload_bytes
    orch = await site.login("arts")
    await orch.subscribe(f"{R}/control")
    alice = await site.login("alice")
    # mosquitto 2.0.11 drops it and answers PUBACK 0x95, a code MQTT 5 does not
    # allow in a PUBACK, so paho hangs up on the broker: that is the signal.
    alice.client.publish(f"{R}/control", b"x" * (limit + 1), qos=1)
    await alice.gone.addTimeout(5, site.reactor)
    again = await site.login("alice")
    assert await again.publish(f"{R}/control", b"y" * limit) == 0
    assert len((await orch.expect(f"{R}/control")).payload) == limit
    assert orch.inbox == []


@pytest_twisted.ensureDeferred
@within(30)
async def test_a_monitor_reads_everything_and_writes_nothing(site: Site) -> None:
    ops = await site.login("ops")
    await ops.subscribe(f"{R}/#")
    orch = await site.login("arts")
    assert await ops.publish(f"{R}/control", "x") == NOT_AUTHORIZED
    assert await orch.publish(f"{R}/control/{A}", "seen") == 0
    assert (await ops.expect(f"{R}/control/{A}")).payload == b"seen"


@pytest_twisted.ensureDeferred
@within(30)
async def test_the_dev_config_runs_anonymous_on_loopback(reactor: Any, tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "dev", port=port)
    text = (CONTRIB / "dev.conf").read_text().replace("listener 1883 127.0.0.1",
                                                       f"listener {port} 127.0.0.1")
    broker.conf.write_text(("user root\n" if os.geteuid() == 0 else "") + text)
    broker.start()
    anyone = Login(reactor, port)
    try:
        assert not (await anyone.connect()).is_failure
        await anyone.subscribe(f"{R}/#")
        assert await anyone.publish(f"{R}/reg/{B}", "anything goes") == 0
        assert (await anyone.expect(f"{R}/reg/{B}")).payload == b"anything goes"
    finally:
        anyone.close()
        broker.stop()


def module_create(object_id: str, uuid: str, parent: str) -> dict[str, Any]:
    return {"object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": uuid, "name": "hello", "parent": parent,
                     "filename": "wasm/tests/helloworld.wasm"}}


def registration(uuid: str, action: str = "create", object_id: str = "r") -> dict[str, Any]:
    return {"object_id": object_id, "action": action, "type": "arts_req",
            "data": {"type": "runtime", "uuid": uuid, "name": f"rt-{uuid[:4]}"}}


@pytest_twisted.ensureDeferred
@within(60)
async def test_the_orchestrator_end_to_end_with_its_generated_login(
        reactor: Any, site: Site, tmp_path: Path) -> None:
    app = App(reactor, replace(make_config(site.broker.port, tmp_path / "state"),
                               mqtt_username="arts", pwd=str(site.creds / ORCHESTRATOR_PWD_FILE)))
    await app.start()                                   # subscribed: its login was accepted
    try:
        alice = await site.login("alice")
        await alice.subscribe(f"{R}/control", f"{R}/notif", f"{R}/log/orchestrator")
        runtimes = {}
        for uuid in (A, B):
            rt = await site.login(uuid, will=(f"{R}/reg/{uuid}", registration(uuid, "delete")))
            await rt.subscribe(f"{R}/reg/{uuid}", f"{R}/control/{uuid}")
            assert await rt.publish(f"{R}/reg/{uuid}", registration(uuid)) == 0
            reply = await rt.expect(f"{R}/reg/{uuid}", lambda m: m.json["type"] == "arts_resp")
            assert reply.json["data"]["result"] == "ok"
            assert reply.json["data"]["details"]["uuid"] == uuid
            runtimes[uuid] = rt
        a = runtimes[A]

        # a client's request reaches the runtime; the client gets its reply
        module = "0d0d0d0d-0000-4000-8000-000000000001"
        assert await alice.publish(f"{R}/control", module_create("c1", module, A)) == 0
        create = await a.expect(f"{R}/control/{A}", lambda m: m.json.get("action") == "create")
        assert create.json["data"]["uuid"] == module
        reply = await alice.expect(f"{R}/control", lambda m: m.json["type"] == "arts_resp")
        assert reply.json["object_id"] == "c1"

        # A tries to kill B: the broker stops it on B's topic, the orchestrator on A's own
        assert await a.publish(f"{R}/reg/{B}", registration(B, "delete", "k1")) == NOT_AUTHORIZED
        assert await a.publish(f"{R}/reg/{A}", registration(B, "delete", "k2")) == 0
        error = await alice.expect(f"{R}/log/orchestrator")
        assert error.json["object_id"] == "k2" and error.json["data"]["desc"] == "invalid field"
        code, body = await app.get(f"/api/runtimes/{B}/")
        assert code == 200 and body["status"] == "alive"

        # A's exit report on its own topic; then A dies and its will is heard
        exited = {"object_id": "e1", "action": "exited", "type": "arts_req",
                  "data": {"type": "module", "uuid": module}}
        assert await a.publish(f"{R}/control/{A}", exited) == 0
        note = await alice.expect(f"{R}/notif", lambda m: m.json["action"] == "exited")
        assert note.json["data"]["uuid"] == module
        a.vanish()
        dead = await alice.expect(f"{R}/notif", lambda m: m.json["action"] == "dead", timeout=10)
        assert dead.json["data"]["uuid"] == A and dead.json["data"]["reason"] == "delete"
        code, body = await app.get(f"/api/runtimes/{B}/")
        assert body["status"] == "alive"
    finally:
        await app.stop()
