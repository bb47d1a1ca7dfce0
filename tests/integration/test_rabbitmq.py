"""The orchestrator on a three-node RabbitMQ MQTT cluster (RabbitMQ 3.10: MQTT 3.1.1 only,
so no No-Local), through the real service tree: runtime and client on different
nodes, then a ``kill -9`` of the node the orchestrator is connected to.

Three nodes, not two: RabbitMQ's MQTT plugin tracks client ids in a Raft cluster
of its nodes, and with one of two nodes gone there is no majority, so the
survivor accepts a connection and drops it at once until the other returns.
And ``mqtt.durable_queue_type = quorum``: by default the queue behind our QoS 1
subscription is a classic queue on the node we first connected to; once that
node is gone, every node refuses our client id ("home node ... of durable queue
... is down") until it returns. A quorum queue has replicas on the others."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted


from tests.support.app import App, make_config
from tests.support.peer import Peer
from tests.support.rabbit import RabbitCluster, available
from tests.support.twisted import eventually, within

pytestmark = pytest.mark.skipif(not available(), reason="rabbitmq-server is not installed")

R = "realm/proc"
RT = "6b0f3b53-7f57-4e0c-9d27-3a2f8c1b9e10"


def registration(object_id: str) -> dict:
    return {"object_id": object_id, "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": RT, "name": "edge"}}




@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    c = RabbitCluster(tmp_path_factory.mktemp("rabbit"), nodes=3,
                      extra="mqtt.durable_queue_type = quorum\n")
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.mark.timeout(900)      # three Erlang nodes start first, in the fixture
@pytest_twisted.ensureDeferred
@within(200)
async def test_a_cluster_carries_the_protocol_and_survives_a_node_kill(
        reactor: Any, cluster: RabbitCluster, tmp_path: Path, logged: list[str]) -> None:
    a, b, c = cluster.nodes
    config = make_config(a.mqtt_port, tmp_path / "state",
                         mqtt=[f"127.0.0.1:{n.mqtt_port}" for n in cluster.nodes],
                         reconnect_max_delay=2.0)
    app = await App(reactor, config).start()
    runtime = client = None
    try:
        assert app.mqtt.broker == f"127.0.0.1:{a.mqtt_port}" and app.mqtt.protocol == "3.1.1"
        # the runtime on node b, the client on node c: the cluster routes between them
        runtime = await Peer(reactor, b.mqtt_port, "runtime", v5=False).connect()
        await runtime.subscribe(f"{R}/reg", f"{R}/control/{RT}", f"{R}/log/orchestrator")
        client = await Peer(reactor, c.mqtt_port, "client", v5=False).connect()
        await client.subscribe(f"{R}/control")
        runtime.publish(f"{R}/reg", registration("reg-1"))
        await runtime.expect(f"{R}/reg", lambda m: m.json.get("object_id") == "reg-1"
                             and m.json.get("type") == "arts_resp", timeout=15)
        client.publish(f"{R}/control", {
            "object_id": "c-1", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": "m-1", "name": "hello",
                     "filename": "hello.wasm", "parent": RT}})
        forward = await runtime.expect(f"{R}/control/{RT}", timeout=15)
        assert forward.json["data"]["uuid"] == "m-1"
        first_forward_id = forward.json["object_id"]
        await client.expect(f"{R}/control", lambda m: m.json.get("object_id") == "c-1"
                            and m.json.get("type") == "arts_resp", timeout=15)
        # without No-Local the orchestrator hears its own forward and reply: ignored
        assert not runtime.on(f"{R}/log/orchestrator")

        killed_at = time.monotonic()
        a.kill()                                   # kill -9 of the node in use
        # sent while the orchestrator has no connection: its session queue (a quorum
        # queue, replicated) keeps it for the orchestrator's next connection
        client.publish(f"{R}/control", {
            "object_id": "c-2", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": "m-2", "name": "again",
                     "filename": "hello.wasm", "parent": RT}})
        try:
            await eventually(lambda: app.mqtt.subscribed and
                             app.mqtt.broker == f"127.0.0.1:{b.mqtt_port}", 30,
                             "the orchestrator on the surviving node")
        except Exception:
            raise AssertionError("\n".join(line for line in logged if "MQTT" in line))
        took = time.monotonic() - killed_at
        runtime.publish(f"{R}/reg", registration("reg-2"))
        await runtime.expect(f"{R}/reg", lambda m: m.json.get("object_id") == "reg-2"
                             and m.json.get("type") == "arts_resp", timeout=15)
        assert took < 20, f"took {took:.1f}s to carry on through the other node"
        await runtime.expect(f"{R}/control/{RT}",
                             lambda m: m.json["data"].get("uuid") == "m-2", timeout=15)
        # a forward the dead node had not acknowledged may come again: with its object_id
        again = [m.json["object_id"] for m in runtime.on(f"{R}/control/{RT}")
                 if m.json["data"].get("uuid") == "m-1"]
        assert set(again) <= {first_forward_id}
        code, body = await app.get(f"/api/runtimes/{RT}/")
        assert code == 200 and body["status"] == "alive"
    finally:
        for peer in (runtime, client):
            if peer is not None:
                peer.close()
        await app.stop()
