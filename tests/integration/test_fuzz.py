"""Fuzzing through a real broker: the service never stops answering, and does exactly
what a pure mirror of the protocol core says: one error per malformed message, and a
registry holding only what the valid requests made.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestrator.core.model import Module, Runtime
from orchestrator.core.protocol import PENDING_ACKS
from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.harness import Harness
from tests.support.peer import Peer
from tests.support.twisted import within
from tests.unit.test_protocol_properties import TOPICS, VALID, json_values, mutated

R = "realm/proc"

payloads = st.one_of(
    st.tuples(st.sampled_from(TOPICS), st.binary(max_size=200)),
    st.tuples(st.sampled_from(TOPICS), json_values.map(lambda v: json.dumps(v).encode())),
    mutated().map(lambda m: (m[0], json.dumps(m[1]).encode())),
    st.tuples(st.sampled_from(TOPICS),
              st.sampled_from(VALID).map(lambda m: json.dumps(m[1]).encode())),
)


def plain(records: dict[str, Any]) -> dict[str, Any]:
    """Records without their times (the mirror's clock is not the service's)."""
    out = {}
    for uuid, r in records.items():
        if isinstance(r, Runtime):
            out[uuid] = replace(r, registered_at=0, changed_at=0)
        else:
            assert isinstance(r, Module)
            out[uuid] = replace(r, created_at=0, changed_at=0,
                                acked_at=None if r.acked_at is None else 1)
    return out


class Rig:
    def __init__(self, reactor: Any, app: App, sender: Peer, listener: Peer) -> None:
        self.reactor, self.app, self.sender, self.listener = reactor, app, sender, listener
        self.mirror = Harness(keepalive_misses=10_000)
        real_ids = (f"id-{n}" for n in itertools.count(1))
        app.service.core.new_id = lambda: next(real_ids)   # the same ids as the mirror's
        self.errors_expected: list[str] = []
        self.messages = 0
        self.rounds = 0

    async def run(self, batch: list[tuple[str, bytes]]) -> None:
        for topic, payload in batch:
            published = self.mirror.send(topic, payload)
            self.errors_expected += [p.payload["data"]["desc"] for p in published
                                     if p.topic == f"{R}/log/orchestrator"]
            self.sender.publish(f"{R}/{topic}", payload)
        self.messages += len(batch)
        # a valid request after the batch: its answer means the batch was handled
        self.rounds += 1
        sentinel = f"sentinel-{self.rounds}"
        body = {"object_id": sentinel, "action": "create", "type": "arts_req",
                "data": {"type": "runtime", "uuid": sentinel}}
        self.mirror.send(f"reg/{sentinel}", body)
        self.sender.publish(f"{R}/reg/{sentinel}", body)
        await self.listener.expect(f"{R}/reg/{sentinel}",
                                   lambda m: m.json.get("type") == "arts_resp", timeout=20)
        errors = [e.json["data"]["desc"] for e in self.listener.on(f"{R}/log/orchestrator")]
        # exactly one error per malformed message, the one the pure core gives
        assert Counter(errors) == Counter(self.errors_expected)
        assert "Uncaught exception" not in errors
        real = self.app.registry
        assert plain(real.runtimes) == plain(self.mirror.registry.runtimes)
        assert plain(real.modules) == plain(self.mirror.registry.modules)
        assert len(self.app.service.core._pending_acks) <= PENDING_ACKS


def generated_batches(count: int) -> list[list[tuple[str, bytes]]]:
    """Hypothesis as a deterministic generator of batches (the replay below is async:
    a @given test body cannot wait for the reactor it runs in)."""
    batches: list[list[tuple[str, bytes]]] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(payloads, min_size=20, max_size=60))
    def collect(batch: list[tuple[str, bytes]]) -> None:
        batches.append(batch)
    collect()
    return batches


@pytest_twisted.ensureDeferred
@within(300)
async def test_generated_payloads_through_a_real_broker(reactor: Any, broker: Mosquitto,
                                                        tmp_path: Path) -> None:
    app = await App(reactor, make_config(broker.port, tmp_path / "state",
                                         keepalive_misses=10_000)).start()
    sender = await Peer(reactor, broker.port, "fuzzer").connect()
    listener = await Peer(reactor, broker.port, "listener").connect()
    await listener.subscribe(f"{R}/log/orchestrator", f"{R}/reg/#")
    rig = Rig(reactor, app, sender, listener)
    try:
        for batch in generated_batches(120):
            try:
                await rig.run(batch)
            except AssertionError as e:
                raise AssertionError(f"after the batch {batch!r}: {e}") from None
    finally:
        sender.close()
        listener.close()
        await app.stop()
    print(f"fuzz: {rig.messages} generated messages in {rig.rounds} batches, "
          f"{len(rig.errors_expected)} malformed, each answered by exactly one error")
    assert rig.messages >= 3000


def test_rest_has_no_server_errors_under_schemathesis(tmp_path: Path) -> None:
    """Property-based REST requests generated from /api/openapi.json: no 5xx, ever."""
    pytest.importorskip("schemathesis")
    script = Path(__file__).parents[1] / "support" / "rest_fuzz.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
