"""The floor: the least an orchestrator could possibly do, to measure ours against.

    .venv/bin/python bench/floor.py --port 1883 [--host 127.0.0.1] [--realm realm] [--wire]

A stateless paho script on its own network loop. It answers every
registration on the topic it came on (echoing the request's ``object_id`` in
an ``arts_resp``) and forwards every module create to
``R/proc/control/{parent}`` with a new ``object_id``, the way the
orchestrator does. Nothing else: no registry, no field checks, no journal,
no reply to the requester, no REST. A create without a ``parent`` goes to
the registered runtimes in turn (round robin over the uuids it has seen
register, a trivial stand-in for a scheduler; with none registered it is
dropped). Keepalives are received (subscribed like the orchestrator does)
and ignored.

With ``--wire`` it does the same wire work as the orchestrator, and still
nothing else: a persistent session (``clean_start`` off, a session expiry,
Receive Maximum 1000), every create also answered to the requester on
``R/proc/control`` (same ``object_id``, ``arts_resp``), and every incoming
message acknowledged by hand (paho's manual ack) once what it caused is
published. It is the floor of an orchestrator that keeps the delivery
guarantees; the plain floor is the floor of any orchestrator at all.

Since nothing real can be cheaper per message than this, on the same
machine, broker and load generator, the orchestrator's figures are read as
ratios to the floor's (see bench/perf.py). Like the orchestrator it uses
MQTT 5 with No-Local subscriptions at QoS 1, publishes at QoS 1, keeps
paho's default in-flight window, and announces itself with a retained
``online`` on ``R/proc/orchestrator/status`` (will: ``offline``), so the
load generator waits for both the same way. Unlike paho's default it sets
TCP_NODELAY on its broker socket: with Nagle on, a small publish written
right after a PUBACK waits for the broker's delayed ACK (~40 ms on Linux),
which measured as 2-3x fewer registrations per second and twice the p99 on
this machine; a floor must not be slowed by that.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


class Floor:
    """The message handler; all its state is the list of runtime uuids seen."""

    def __init__(self, client: paho.Client, realm: str, wire: bool = False) -> None:
        self.client = client
        self.wire = wire
        self.proc = f"{realm}/proc"
        self.status = f"{self.proc}/orchestrator/status"
        self.runtimes: list[str] = []
        self._known: set[str] = set()
        self._next = 0
        self.handled = 0

    def topics(self) -> list[str]:
        p = self.proc
        return [f"{p}/reg", f"{p}/reg/+", f"{p}/control", f"{p}/keepalive", f"{p}/keepalive/+"]

    def on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                   props: Any = None) -> None:
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opts = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe([(t, opts) for t in self.topics()])

    def on_subscribe(self, client: paho.Client, *args: Any) -> None:
        client.publish(self.status, b"online", qos=1, retain=True)

    def on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.handled += 1
        self.handle(client, msg)
        if self.wire:
            client.ack(msg.mid, msg.qos)        # after what it caused is published

    def handle(self, client: paho.Client, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic.startswith(f"{self.proc}/keepalive"):
            return
        try:
            req = json.loads(msg.payload)
            if req.get("type") != "arts_req":
                return
            data = req["data"]
            action = req.get("action")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if topic.startswith(f"{self.proc}/reg"):
            if action == "create":
                rt = data.get("uuid")
                if rt and rt not in self._known:
                    self._known.add(rt)
                    self.runtimes.append(rt)
            reply = {"object_id": req.get("object_id"), "type": "arts_resp",
                     "data": {"result": "ok", "details": data}}
            client.publish(topic, json.dumps(reply, separators=(",", ":")), qos=1)
        elif action == "create" and isinstance(data, dict):
            parent = data.get("parent")
            if isinstance(parent, dict):
                parent = parent.get("uuid")
            if not parent:
                if not self.runtimes:
                    return
                parent = self.runtimes[self._next % len(self.runtimes)]
                self._next += 1
            fwd = {"object_id": str(uuid.uuid4()), "action": "create", "type": "arts_req",
                   "data": {**data, "parent": parent, "alive": True, "status": "alive"}}
            client.publish(f"{self.proc}/control/{parent}",
                           json.dumps(fwd, separators=(",", ":")), qos=1)
            if self.wire:
                reply = {"object_id": req.get("object_id"), "type": "arts_resp",
                         "data": {"result": "ok", "details": fwd["data"]}}
                client.publish(f"{self.proc}/control", json.dumps(reply, separators=(",", ":")),
                               qos=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--realm", default="realm")
    parser.add_argument("--wire", action="store_true",
                        help="the orchestrator's wire work: persistent session, replies, manual acks")
    args = parser.parse_args(argv)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"floor-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv5, manual_ack=args.wire)
    floor = Floor(client, args.realm, args.wire)
    client.on_connect = floor.on_connect
    client.on_subscribe = floor.on_subscribe
    client.on_message = floor.on_message
    client.will_set(floor.status, b"offline", qos=1, retain=True)

    def stop(*_: Any) -> None:
        # a clean stop, like the orchestrator's: say offline, then leave
        client.publish(floor.status, b"offline", qos=1, retain=True)
        client.disconnect()        # queued after it: loop_forever sends both, then returns

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    connect: dict[str, Any] = {}
    if args.wire:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400
        props.ReceiveMaximum = 1000
        connect = {"clean_start": False, "properties": props}
    client.connect(args.host, args.port, keepalive=30, **connect)
    client.loop_forever()
    print(json.dumps({"floor": "stopped", "handled": floor.handled,
                      "runtimes": len(floor.runtimes)}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
