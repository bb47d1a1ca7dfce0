"""The MQTT adapter recognises a taken-over session and backs off (task.Clock, no broker)."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from twisted.internet.task import Clock

from orchestrator.adapters import mqtt as adapter
from orchestrator.adapters.mqtt import MQTTService

ACCEPTED = ReasonCode(PacketTypes.CONNACK, "Success")
TAKEN_OVER = ReasonCode(PacketTypes.DISCONNECT, identifier=142)
NORMAL = ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection")
LOST = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")


class Link:
    """An MQTTService whose connects and drops the test plays by hand."""

    def __init__(self, max_delay: float = 40.0) -> None:
        self.clock = Clock()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="orch-1",
                             protocol=paho.MQTTv5)
        self.svc = MQTTService(self.clock, client, brokers=[("broker", 1883)], keepalive=30,
                               subscriptions=["realm/proc/#"], status_topic="realm/status",
                               on_message=lambda topic, payload, ack: None,
                               takeover_max_delay=max_delay)
        self.svc.running = True
        self.svc._connect_now = self.connect_due      # type: ignore[method-assign]
        self.connects_due = 0

    def connect_due(self) -> None:
        self.svc._timer = None
        self.connects_due += 1

    def up(self) -> None:
        self.svc._connected(self.svc.client, None, None, ACCEPTED, None)
        assert self.svc.connected

    def down(self, reason: Any = LOST) -> None:
        self.svc._disconnected(self.svc.client, None, None, reason, None)

    def up_then_down(self, lasted: float, reason: Any = LOST) -> None:
        self.up()
        self.clock.advance(lasted)
        self.down(reason)

    def elapse(self) -> None:
        """Let the pending wait run out exactly (``wait()`` is rounded, for asserting)."""
        timer = self.svc._timer
        assert timer is not None and timer.active()
        self.clock.advance(timer.getTime() - self.clock.seconds())

    def wait(self) -> float:
        timer = self.svc._timer
        assert timer is not None and timer.active()
        return round(timer.getTime() - self.clock.seconds(), 6)


def test_reason_142_is_a_takeover_at_once() -> None:
    link = Link()
    link.up_then_down(100.0, TAKEN_OVER)
    assert link.svc.takeovers == 1
    assert link.svc.taken_over is not None and "'orch-1'" in link.svc.taken_over
    assert link.wait() == adapter.TAKEOVER_FIRST_DELAY


def test_an_ordinary_drop_is_not_a_takeover() -> None:
    link = Link()
    link.up_then_down(100.0)
    assert link.svc.taken_over is None and link.svc.takeovers == 0
    assert link.wait() < 2.0                      # the usual quick reconnect (0.5 s + jitter)


def test_drops_right_after_connack_are_a_takeover_from_the_third_in_a_row() -> None:
    link = Link()
    for _ in range(adapter.SHORT_LIVED_IN_A_ROW - 1):
        link.up_then_down(0.5)
        assert link.svc.taken_over is None
        link.elapse()
    link.up_then_down(0.5)
    assert link.svc.taken_over is not None and link.svc.takeovers == 1
    assert link.wait() == adapter.TAKEOVER_FIRST_DELAY


def test_our_own_quick_hang_ups_are_not_a_takeover() -> None:
    """E.g. a refused subscription: we disconnect right after CONNACK, again and again."""
    link = Link()
    for _ in range(adapter.SHORT_LIVED_IN_A_ROW + 2):
        link.up_then_down(0.2, NORMAL)
        link.elapse()
    assert link.svc.taken_over is None and link.svc.takeovers == 0


def test_a_broker_that_restarts_is_not_a_takeover() -> None:
    """A broker killed again and again: quick drops, but each reconnect is refused
    at first while it restarts; another holder of our client id never does that."""
    link = Link()
    for _ in range(adapter.SHORT_LIVED_IN_A_ROW + 2):
        link.up_then_down(0.5)
        link.elapse()
        link.svc._unreachable("[Errno 111] Connection refused")
        link.elapse()
    assert link.svc.taken_over is None and link.svc.takeovers == 0


def test_quick_drops_across_several_brokers_are_not_a_takeover() -> None:
    link = Link()
    link.svc._brokers = [("node-a", 1883), ("node-b", 1883)]
    for _ in range(adapter.SHORT_LIVED_IN_A_ROW + 2):
        link.up_then_down(0.5)
        link.elapse()
    assert link.svc.taken_over is None and link.svc.takeovers == 0


def test_a_connection_that_lasted_resets_the_count() -> None:
    link = Link()
    link.up_then_down(0.5)
    link.up_then_down(0.5)
    link.up_then_down(adapter.SHORT_LIVED + 1)
    link.up_then_down(0.5)
    assert link.svc.taken_over is None


def test_each_takeover_waits_twice_as_long_up_to_the_cap() -> None:
    link = Link(max_delay=40.0)
    waits = []
    for _ in range(5):
        link.up_then_down(1.0, TAKEN_OVER)
        waits.append(link.wait())
        link.elapse()
    assert waits == [5.0, 10.0, 20.0, 40.0, 40.0]


def test_holding_the_connection_ends_the_conflict() -> None:
    link = Link()
    link.up_then_down(1.0, TAKEN_OVER)
    link.elapse()
    link.up()
    link.clock.advance(adapter.TAKEOVER_CLEARED_AFTER - 1)
    assert link.svc.taken_over is not None        # still within the fight
    link.clock.advance(1)
    assert link.svc.taken_over is None
    link.down(TAKEN_OVER)
    assert link.wait() == adapter.TAKEOVER_FIRST_DELAY   # a new conflict starts over


@pytest.mark.parametrize("reason", [TAKEN_OVER, LOST])
def test_stopping_is_never_a_takeover(reason: Any) -> None:
    link = Link()
    link.svc.running = False
    for _ in range(adapter.SHORT_LIVED_IN_A_ROW + 1):
        link.up_then_down(0.1, reason)
    assert link.svc.taken_over is None and link.svc.takeovers == 0


def test_a_refused_subscription_keeps_the_backoff_growing() -> None:
    """Connected but deaf (the broker refused our SUBSCRIBE): not a reached broker.
    The link hangs up and the backoff step grows; only a granted SUBACK resets it."""
    link = Link()
    refused = [ReasonCode(PacketTypes.SUBACK, identifier=0x80)]
    granted = [ReasonCode(PacketTypes.SUBACK, identifier=1)]
    for step in range(1, 4):
        link.up()
        link.svc._subscribed(link.svc.client, None, link.svc._sub_mid, refused, None)
        assert not link.svc.subscribed
        link.down(NORMAL)                           # our own hang-up
        assert link.svc.backoff_step == step and link.svc.taken_over is None
        link.elapse()
    link.up()
    link.svc._subscribed(link.svc.client, None, link.svc._sub_mid, granted, None)
    assert link.svc.subscribed and link.svc.backoff_step == 0
