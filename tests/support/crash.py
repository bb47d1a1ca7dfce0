"""Crash injection: SIGKILL the real twistd while it is busy, and audit what survives.

A listener on the broker records every acknowledgement the orchestrator
published (registration replies, forwarded creates, replies to requesters),
and the driver records every request the broker accepted (its PUBACK),
including those sent while the orchestrator was down. After each kill and
restart, once the broker's backlog is worked off: every accepted or
acknowledged runtime and module is in REST, exactly once, and each module
was forwarded to its runtime under one ``object_id`` only (a resend after a
crash repeats it). Used by the test suite and by ``bench/crash.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread

from tests.support.app import http_get
from tests.support.broker import free_port
from tests.support.peer import Msg, Peer
from tests.support.twistd import start_twistd

R = "realm/proc"


class CrashRig:
    def __init__(self, reactor: Any, broker_port: int, workdir: Path, seed: int = 1) -> None:
        self.reactor = reactor
        self.broker_port = broker_port
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.rng = random.Random(seed)
        self.proc: subprocess.Popen[bytes] | None = None
        self.acked_runtimes: set[str] = set()
        self.acked_modules: set[str] = set()
        self.accepted_runtimes: set[str] = set()
        self.accepted_modules: set[str] = set()
        self._in_flight: dict[int, tuple[str, str]] = {}    # driver mid -> (kind, uuid)
        self.forwards: dict[str, set[str]] = {}              # module -> forward object_ids
        self.forward_messages = 0
        self.kills = 0
        (self.dir / "config.json").write_text(json.dumps({
            "mqtt": "127.0.0.1", "mqtt_port": broker_port, "http": "127.0.0.1",
            "http_port": self.http_port, "state_dir": "state", "log_dir": None,
            "mqtt_username": None, "snapshot_every_changes": 40, "debug": False}))

    async def setup(self) -> None:
        self.listener = await Peer(self.reactor, self.broker_port, "listener",
                                   on_message=self._seen).connect()   # record, do not queue
        self.status: list[bytes] = []
        await self.listener.subscribe(f"{R}/reg", f"{R}/control", f"{R}/control/+",
                                      f"{R}/orchestrator/status")
        self.driver = await Peer(self.reactor, self.broker_port, "driver").connect()
        self.driver.on_puback = self._accepted

    def _accepted(self, mid: int, rc: Any) -> None:
        sent = self._in_flight.pop(mid, None)
        if sent is not None and not getattr(rc, "is_failure", False):
            kind, uuid_ = sent
            (self.accepted_runtimes if kind == "runtime" else self.accepted_modules).add(uuid_)

    def register(self) -> None:
        rt = str(uuid.uuid4())
        mid = self.driver.publish(f"{R}/reg", {
            "object_id": f"r-{uuid.uuid4()}", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": rt, "max_nmodules": 0}})
        self._in_flight[mid] = ("runtime", rt)

    def create(self, parent: str) -> None:
        module = str(uuid.uuid4())
        mid = self.driver.publish(f"{R}/control", {
            "object_id": f"c-{uuid.uuid4()}", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": module, "parent": parent}})
        self._in_flight[mid] = ("module", module)

    def _seen(self, msg: Msg) -> None:
        if msg.topic.endswith("/orchestrator/status"):
            self.status.append(msg.payload)
            return
        try:
            body = msg.json
            details = body["data"].get("details", body["data"])
        except (ValueError, KeyError, AttributeError, TypeError):
            return
        if msg.topic == f"{R}/reg" and body.get("type") == "arts_resp":
            self.acked_runtimes.add(details["uuid"])
        elif msg.topic == f"{R}/control" and body.get("type") == "arts_resp":
            self.acked_modules.add(details["uuid"])          # the reply to the requester
        elif msg.topic.startswith(f"{R}/control/") and body.get("action") == "create":
            self.acked_modules.add(details["uuid"])          # the create forwarded to a runtime
            self.forwards.setdefault(details["uuid"], set()).add(body["object_id"])
            self.forward_messages += 1

    async def _status(self, payload: bytes, timeout: float) -> None:
        waited = 0.0
        while payload not in self.status:
            if waited > timeout:
                raise AssertionError(f"no {payload!r} status within {timeout}s; "
                                     f"log: {self.output()[-3000:]}")
            await deferLater(self.reactor, 0.02, lambda: None)
            waited += 0.02
        self.status.clear()

    def output(self) -> str:
        path = self.dir / "twistd.out"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, kill_before_publishing: str | None = None) -> None:
        """Start the real twistd; with ``kill_before_publishing``, it SIGKILLs itself
        once a durable batch whose announcements mention that text is about to be
        published (tests/support/faults.py)."""
        self.status.clear()
        if kill_before_publishing is None:
            self.proc = start_twistd(self.dir, log=self.dir / "twistd.out")
        else:
            self.proc = start_twistd(self.dir, log=self.dir / "twistd.out",
                                     env={"SILVERLINE_TEST_KILL_BEFORE_PUBLISHING":
                                          kill_before_publishing},
                                     prelude="import tests.support.faults")
        await self._status(b"online", 30)

    async def kill_while_busy(self, busy_for: float) -> None:
        """Register and create at a steady rate; SIGKILL after ``busy_for`` seconds."""
        def burst() -> None:
            runtimes = sorted(self.acked_runtimes)
            if not runtimes or self.rng.random() < 0.05:
                self.register()
            for _ in range(3):
                if runtimes:
                    self.create(self.rng.choice(runtimes))
        traffic = LoopingCall(burst)
        traffic.clock = self.reactor
        traffic.start(0.005)
        await deferLater(self.reactor, busy_for, lambda: None)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        traffic.stop()
        await deferToThread(self.proc.wait, 10)
        self.kills += 1
        # the will is the broker's last word from that connection: everything
        # the dead process published has reached the listener before it
        await self._status(b"offline", 10)

    async def kill(self) -> None:
        """SIGKILL it now (idle or not) and wait for its will."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await deferToThread(self.proc.wait, 10)
        self.kills += 1
        await self._status(b"offline", 10)

    async def terminate(self) -> None:
        """A clean stop (SIGTERM)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        await deferToThread(self.proc.wait, 20)
        await self._status(b"offline", 10)

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until the broker accepted everything sent, and the orchestrator carried it
        out: every accepted runtime and module in REST, every module's forward heard."""
        url = f"http://127.0.0.1:{self.http_port}/api"
        waited, missing = 0.0, ["?"]
        while True:
            if not self._in_flight:
                code, runtimes = await http_get(f"{url}/runtimes/?status=all&children=false")
                code2, modules = await http_get(f"{url}/modules/?status=all&limit=1000")
                known_modules = {m["uuid"] for m in modules.get("modules", [])}
                cursor = modules.get("next")
                while cursor is not None:
                    _, page = await http_get(f"{url}/modules/?status=all&limit=1000&cursor={cursor}")
                    known_modules.update(m["uuid"] for m in page["modules"])
                    cursor = page["next"]
                known_runtimes = {r["uuid"] for r in runtimes.get("runtimes", [])}
                missing = sorted((self.accepted_runtimes - known_runtimes)
                                 | (self.accepted_modules - known_modules)
                                 | (self.accepted_modules - set(self.forwards)))
                if code == code2 == 200 and not missing:
                    return
            if waited > timeout:
                raise AssertionError(f"{len(self._in_flight)} requests not accepted by the "
                                     f"broker, {len(missing)} accepted ones not carried out "
                                     f"within {timeout}s, e.g. {missing[:3]}")
            await deferLater(self.reactor, 0.1, lambda: None)
            waited += 0.1

    async def audit(self) -> dict[str, int]:
        """Everything accepted or acknowledged is in REST, once; each module was told once."""
        await self.settle()
        url = f"http://127.0.0.1:{self.http_port}/api"
        code, runtimes = await http_get(f"{url}/runtimes/")
        assert code == 200
        code, modules = await http_get(f"{url}/modules/")
        assert code == 200
        runtime_ids = Counter(r["uuid"] for r in runtimes["runtimes"])
        module_ids = Counter(m["uuid"] for m in modules["modules"])
        children = Counter(c["uuid"] for r in runtimes["runtimes"] for c in r["children"])
        assert max(runtime_ids.values(), default=1) == 1, "duplicate runtime"
        assert max(module_ids.values(), default=1) == 1, "duplicate module"
        assert children == module_ids, "children and module list disagree"
        lost_runtimes = self.acked_runtimes - set(runtime_ids)
        lost_modules = self.acked_modules - set(module_ids)
        assert not lost_runtimes, f"lost {len(lost_runtimes)} acknowledged runtimes"
        if lost_modules:
            details = [await http_get(f"{url}/modules/{u}") for u in sorted(lost_modules)[:3]]
            raise AssertionError(f"lost {len(lost_modules)} acknowledged modules, e.g. {details}")
        twice = {m: ids for m, ids in self.forwards.items() if len(ids) > 1}
        assert not twice, f"{len(twice)} modules started twice, e.g. {list(twice.items())[:2]}"
        return {"runtimes": len(runtime_ids), "modules": len(module_ids),
                "acked_runtimes": len(self.acked_runtimes),
                "acked_modules": len(self.acked_modules),
                "accepted_modules": len(self.accepted_modules),
                "forwards_resent": self.forward_messages - len(self.forwards)}

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            await deferToThread(self.proc.wait, 20)
        self.listener.close()
        self.driver.close()

    async def run(self, kills: int, max_busy: float = 0.4) -> dict[str, int]:
        await self.setup()
        await self.start()
        figures: dict[str, int] = {}
        for _ in range(kills):
            await self.kill_while_busy(self.rng.uniform(0.0, max_busy))
            await self.start()
            figures = await self.audit()
        figures["kills"] = self.kills
        return figures
