"""Several real ``twistd silverline`` processes on one realm, one broker and one
private PostgreSQL: active/standby as it is deployed. Used by the tests and by
``bench/ha.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from tests.support.app import http_get
from tests.support.broker import free_port
from tests.support.twistd import start_twistd


class Member:
    """One orchestrator process of the group."""

    def __init__(self, workdir: Path, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        (self.dir / "config.json").write_text(json.dumps({**config, "http_port": self.http_port}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_twistd(self.dir, log=self.dir / "twistd.out")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        path = self.dir / "twistd.out"
        return path.read_text(errors="replace") if path.exists() else ""

    async def health(self) -> dict[str, Any] | None:
        if not self.alive:
            return None
        try:
            code, body = await http_get(self.url + "/healthz")
        except Exception:
            return None
        return body if code == 200 else None

    async def role(self) -> str | None:
        health = await self.health()
        return None if health is None else health.get("role")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                await deferToThread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await deferToThread(self.proc.wait, 10)


class Group:
    """Members sharing one config (realm, broker, PostgreSQL)."""

    def __init__(self, reactor: Any, workdir: Path, broker_port: int, dsn: str,
                 lease: float = 2.0, **extra: Any) -> None:
        self.reactor = reactor
        self.dir = workdir
        self.config = {"mqtt": "127.0.0.1", "mqtt_port": broker_port, "http": "127.0.0.1",
                       "postgres": dsn, "leader_lease_sec": lease, "log_dir": None,
                       "mqtt_username": None, "debug": False, **extra}
        self.members: list[Member] = []

    def add(self, name: str | None = None) -> Member:
        member = Member(self.dir, name or f"o{len(self.members) + 1}", self.config)
        self.members.append(member)
        member.start()
        return member

    async def roles(self) -> dict[str, str | None]:
        return {m.name: await m.role() for m in self.members if m.alive}

    async def leader(self, timeout: float = 20.0, among: list[Member] | None = None) -> Member:
        """The one member that says it leads, once every other living one says standby."""
        deadline = time.monotonic() + timeout
        while True:
            candidates = [m for m in (among or self.members) if m.alive]
            roles = [(m, await m.role()) for m in candidates]
            leaders = [m for m, r in roles if r == "leader"]
            if len(leaders) == 1 and all(r == "standby" for m, r in roles if m is not leaders[0]):
                return leaders[0]
            if time.monotonic() > deadline:
                outputs = "\n".join(f"--- {m.name}\n{m.output()[-2000:]}" for m in self.members)
                raise AssertionError(f"no single leader after {timeout}s: "
                                     f"{[(m.name, r) for m, r in roles]}\n{outputs}")
            await deferLater(self.reactor, 0.05, lambda: None)

    async def stop(self) -> None:
        for member in self.members:
            await member.stop()


R = "realm/proc"


async def _all(member: Member, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        code, page = await http_get(f"{member.url}/api/{kind}/?status=all&limit=1000{cursor}")
        assert code == 200, page
        items += page[kind]
        if page.get("next") is None:
            return items
        cursor = f"&cursor={page['next']}"


class Traffic:
    """Registrations and creates at a steady rate, and every acknowledgement seen.

    An acknowledgement is what only the leader publishes after the change is
    durable: a registration reply, a create forwarded to a runtime, a reply to
    the requester. ``replied_at`` maps each request's object_id to when its
    reply was seen (monotonic), to time a failover.
    """

    def __init__(self, reactor: Any, broker_port: int) -> None:
        from tests.support.peer import Peer
        self.reactor = reactor
        self.listener = Peer(reactor, broker_port, "ha-listener", on_message=self._seen)
        self.driver = Peer(reactor, broker_port, "ha-driver")
        self.acked_runtimes: set[str] = set()
        self.acked_modules: set[str] = set()
        self.sent_modules: dict[str, str] = {}        # object_id -> module uuid
        self.sent_at: dict[str, float] = {}           # object_id -> when it was published
        self.replied_at: dict[str, float] = {}
        self._n = 0
        self._loop: Any = None

    async def start(self, runtimes: int = 3) -> None:
        await self.listener.connect()
        await self.listener.subscribe(f"{R}/reg", f"{R}/control", f"{R}/control/+")
        await self.driver.connect()
        self.runtime_ids = [f"0000aaaa-0000-4000-8000-{i:012d}" for i in range(runtimes)]
        for uuid in self.runtime_ids:
            self.driver.publish(f"{R}/reg", {
                "object_id": f"reg-{uuid}", "action": "create", "type": "arts_req",
                "data": {"type": "runtime", "uuid": uuid, "name": f"rt-{uuid[-4:]}",
                         "max_nmodules": 0}})

    def _seen(self, msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
            data = body["data"]
            details: dict[str, Any] = data.get("details", data) if isinstance(data, dict) else {}
            uuid = str(details.get("uuid"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if body.get("type") != "arts_resp" and not (
                msg.topic.startswith(f"{R}/control/") and body.get("action") == "create"):
            return
        if msg.topic == f"{R}/reg":
            self.acked_runtimes.add(uuid)
        elif msg.topic == f"{R}/control":
            self.acked_modules.add(uuid)
            self.replied_at.setdefault(str(body.get("object_id")), time.monotonic())
        elif msg.topic.startswith(f"{R}/control/"):
            self.acked_modules.add(uuid)

    def create(self) -> str:
        self._n += 1
        object_id = f"ha-create-{self._n}"
        uuid = f"0000bbbb-0000-4000-8000-{self._n:012d}"
        self.sent_modules[object_id] = uuid
        self.sent_at[object_id] = time.monotonic()
        self.driver.publish(f"{R}/control", {
            "object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": uuid, "name": f"m{self._n}",
                     "parent": self.runtime_ids[self._n % len(self.runtime_ids)]}})
        return object_id

    def run(self, interval: float = 0.01) -> None:
        from twisted.internet.task import LoopingCall
        self._loop = LoopingCall(self.create)
        self._loop.clock = self.reactor
        self._loop.start(interval)

    def pause(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def first_reply_after(self, t: float) -> float | None:
        """When the first request sent after ``t`` was answered (a process that was
        stopped or killed at ``t`` cannot have answered it)."""
        after = [at for oid, at in self.replied_at.items() if self.sent_at.get(oid, 0.0) > t]
        return min(after) if after else None

    async def audit(self, member: Member) -> dict[str, int]:
        """Every acknowledged runtime and module is in ``member``'s registry, once."""
        have_rt = [r["uuid"] for r in await _all(member, "runtimes")]
        have_m = [m["uuid"] for m in await _all(member, "modules")]
        assert len(have_m) == len(set(have_m)), "a module twice"
        lost_rt = self.acked_runtimes - set(have_rt)
        lost_m = self.acked_modules - set(have_m)
        assert not lost_rt, f"lost {len(lost_rt)} acknowledged runtimes"
        assert not lost_m, f"lost {len(lost_m)} acknowledged modules, e.g. {sorted(lost_m)[:3]}"
        return {"runtimes": len(have_rt), "modules": len(have_m),
                "acked_modules": len(self.acked_modules)}

    def close(self) -> None:
        self.pause()
        self.listener.close()
        self.driver.close()
