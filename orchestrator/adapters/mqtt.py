"""paho-mqtt driven by the Twisted reactor: the broker link, and nothing else.

The reactor watches paho's socket and calls ``loop_read``/``loop_write``;
``loop_misc`` (pings) runs in a ``LoopingCall`` while a socket is open.
Connecting blocks (DNS, TCP, TLS), so ``reconnect()`` runs in the reactor's
thread pool and the socket callbacks it triggers are sent back to the
reactor thread. Reconnects back off exponentially up to a cap, and the backoff
resets only once the broker has granted our subscriptions (a broker that
accepts the connection but refuses the subscription is not "reached"); every
connect subscribes again and publishes the retained ``online`` status.
Publishes made while disconnected wait in a bounded buffer.

Several broker addresses (nodes of a cluster) are tried in order: a failed
attempt or a lost connection moves on to the next. With ``mqtt_protocol``
``"auto"`` each connection starts with MQTT 5 and falls back to 3.1.1 at once
when the broker refuses 5 (a 3.1.1-only broker answers "unacceptable protocol
version" or hangs up before CONNACK), so an upgraded broker gets 5 again.

Two processes with one client id knock each other off the broker. When our
session is taken over (MQTT 5 reason 142, or, where the broker gives no
reason, connections that keep dropping right after CONNACK), we say so once,
show it on ``/readyz`` and in metrics, and wait longer each time instead of
taking the session straight back.

This module decides nothing about the protocol: messages go to a callback.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import socket
import ssl
from typing import Any, Callable, Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

from ..config import Config, read_password

__all__ = ["MQTTService", "build_client", "default_client_id"]

log = Logger()

#: MQTT 5 DISCONNECT reason: a connection with our client id took our session
SESSION_TAKEN_OVER = 142
#: a connection that ends this soon after CONNACK, without a reason, looks taken over ...
SHORT_LIVED = 3.0
#: ... when it happens this many times in a row
SHORT_LIVED_IN_A_ROW = 3
#: the first wait after a takeover; it doubles each time, up to ``takeover_max_delay``
TAKEOVER_FIRST_DELAY = 5.0
#: a connection kept this long ends the conflict (its backoff and /readyz reason)
TAKEOVER_CLEARED_AFTER = 60.0
#: QoS 1 messages the broker may have in flight to us unacknowledged (MQTT 5
#: Receive Maximum): acks wait for an fsync, so the broker's default of 20
#: would cap intake at 20 messages per fsync
RECEIVE_MAXIMUM = 1000


def default_client_id(realm: str, shared: bool = False) -> str:
    """Stable per host; ``shared`` (active/standby): the same for every orchestrator of the realm."""
    if shared:
        return f"orchestrator-{realm}"
    host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    return f"orchestrator-{realm}-{host}"


def build_client(config: Config, status_topic: str) -> paho.Client:
    """A paho client set up from config: protocol, credentials, TLS, will."""
    v5 = config.mqtt_protocol != "3.1.1"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.mqtt_client_id or default_client_id(config.realm,
                                                             shared=config.postgres is not None),
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else False,
        reconnect_on_failure=False,
        manual_ack=True)
    client.suppress_exceptions = True
    client.connect_timeout = 5.0
    client.max_queued_messages_set(config.publish_buffer)
    # paho's default of 20 unacknowledged QoS 1 publishes throttled us to ~20 per
    # round trip (two publishes per create): latency grew to seconds at 1,000/s
    client.max_inflight_messages_set(1000)
    if config.mqtt_username:
        password = read_password(config.pwd) if config.pwd else None
        if password is None:
            log.warn("MQTT password file {pwd!r} not found: connecting as {user!r} "
                     "without a password", pwd=config.pwd, user=config.mqtt_username)
        client.username_pw_set(config.mqtt_username, password)
    if config.use_ssl:
        client.tls_set(ca_certs=config.mqtt_ca_file, certfile=config.mqtt_certfile,
                       keyfile=config.mqtt_keyfile,
                       cert_reqs=ssl.CERT_NONE if config.mqtt_tls_insecure else ssl.CERT_REQUIRED)
        if config.mqtt_tls_insecure:
            log.warn("mqtt_tls_insecure is set: the broker's certificate is NOT verified")
            client.tls_insecure_set(True)
    client.will_set(status_topic, b"offline", qos=1, retain=True)
    return client


@implementer(IReadDescriptor, IWriteDescriptor)
class _SocketWatcher:
    """What the reactor watches: paho's socket, with its fd cached (paho closes it)."""

    def __init__(self, client: paho.Client, sock: Any) -> None:
        self._client = client
        self._sock = sock
        self._fd = sock.fileno()

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "mqtt"

    def connectionLost(self, reason: Any) -> None:
        pass

    def doRead(self) -> None:
        self._client.loop_read()
        # TLS may hold decrypted bytes that will not make the fd readable again
        pending = getattr(self._sock, "pending", None)
        while pending is not None and self._client.socket() is self._sock and pending() > 0:
            self._client.loop_read()

    def doWrite(self) -> None:
        self._client.loop_write()


# paho has no public way to change the protocol of a client; it switches
# ``_protocol`` itself (3.1.1 -> 3.1 on refusal), and so do we, between attempts.
def _speak(client: paho.Client, version: MQTTProtocolVersion) -> None:
    if client._protocol == version:
        return
    client._protocol = version
    if version != paho.MQTTv5:
        # 3.1.1 has a clean-session flag where 5 has clean-start: keep what was asked
        client._clean_session = client._clean_start is not False


def _refused_version(reason_code: Any) -> bool:
    """A CONNACK that means "not MQTT 5" (a 3.1.1 broker's code 1 reads as 0x84)."""
    return getattr(reason_code, "value", None) in (0x01, 0x84)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MQTTService(Service):
    """Keeps one broker connection up for as long as the service runs."""

    # reactor: IReactorTime + IReactorFDSet + IReactorThreads + IReactorFromThreads
    # (no one interface has them all, and mypy has no intersection types)
    def __init__(self, reactor: Any, client: paho.Client, *,
                 brokers: Sequence[tuple[str, int]], keepalive: int,
                 subscriptions: list[str], status_topic: str,
                 on_message: Callable[[str, bytes, Callable[[], None] | None], None],
                 on_connected: Callable[[], None] = lambda: None,
                 on_disconnected: Callable[[], None] = lambda: None,
                 on_published: Callable[[int], None] = lambda tag: None,
                 buffer_size: int = 10000, max_delay: float = 30.0,
                 no_local: bool = True, protocol: str = "auto",
                 takeover_max_delay: float = 300.0, session_expiry: int = 86400) -> None:
        self._reactor = reactor
        self.client = client
        if not brokers:
            raise ValueError("at least one broker address is needed")
        self._brokers = list(brokers)
        self._index = 0                 # the broker tried last, or in use
        self._keepalive = keepalive
        self._auto = protocol == "auto"
        self._version = paho.MQTTv311 if protocol == "3.1.1" else paho.MQTTv5
        self._spoken: dict[int, MQTTProtocolVersion] = {}   # broker -> version that worked
        self._opened = False            # the current attempt reached the broker (TCP)
        self._connack = False           # ... and it answered our CONNECT
        self._refused_v5 = False        # ... saying it does not speak MQTT 5
        self._subscriptions = subscriptions
        self._status_topic = status_topic
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.may_connect: Callable[[], bool] = lambda: True
        self._no_local = no_local
        self._on_published = on_published
        self._session_expiry = session_expiry
        self._tags: dict[int, int] = {}         # mid -> tag of a tagged publish awaiting PUBACK
        self._link = 0                          # counts connections: acks are per connection
        self._retry = backoffPolicy(initialDelay=0.5, maxDelay=max_delay)
        self._buffer: collections.deque[tuple[str, bytes, bool]] = collections.deque(
            maxlen=buffer_size)
        self.dropped = 0            # publishes lost to a full buffer
        self.reconnects = 0         # successful connects after the first
        self.connected = False
        self.subscribed = False         # SUBACK seen on the current connection
        self._sub_mid: int | None = None
        self.client_id = getattr(client, "_client_id", b"").decode(errors="replace")
        self.takeovers = 0          # times another connection took our session
        self.taken_over: str | None = None   # why we think so, while it lasts
        self._takeover_max_delay = takeover_max_delay
        self._takeover_streak = 0
        self._short_lived = 0
        self._connected_at = 0.0
        self._conflict_over: Any = None
        self._ever_connected = False
        self._connecting = False
        self._attempt = 0
        self._timer: Any = None
        self._watcher: _SocketWatcher | None = None
        self._misc = LoopingCall(client.loop_misc)
        self._misc.clock = reactor
        self._stop_waiters: list[Deferred[None]] = []
        for name, handler in [("on_socket_open", self._socket_open),
                              ("on_socket_close", self._socket_close),
                              ("on_socket_register_write", self._want_write),
                              ("on_socket_unregister_write", self._no_write)]:
            setattr(client, name, self._in_reactor(handler))
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_subscribe = self._subscribed
        client.on_publish = self._puback

    # -- socket plumbing (always on the reactor thread) ----------------------------
    def _in_reactor(self, handler: Callable[[Any], None]) -> Callable[..., None]:
        def callback(client: Any, userdata: Any, sock: Any) -> None:
            if isInIOThread():
                handler(sock)
            else:
                self._reactor.callFromThread(handler, sock)
        return callback

    def _socket_open(self, sock: socket.socket) -> None:
        if sock.fileno() == -1 or self.client.socket() is not sock:
            return                      # closed or replaced before we got here
        if self._watcher is not None:
            self._forget_socket()
        try:
            # small publishes right after a PUBACK must not wait for delayed ACKs
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self._opened = True
        self._watcher = _SocketWatcher(self.client, sock)
        self._reactor.addReader(self._watcher)
        if not self._misc.running:
            self._misc.start(1.0, now=False)

    def _want_write(self, sock: Any) -> None:
        if self._watcher is not None and self.client.socket() is sock:
            self._reactor.addWriter(self._watcher)

    def _no_write(self, sock: Any) -> None:
        if self._watcher is not None:
            self._reactor.removeWriter(self._watcher)

    def _socket_close(self, sock: Any) -> None:
        self._forget_socket()

    def _forget_socket(self) -> None:
        if self._watcher is not None:
            self._reactor.removeReader(self._watcher)
            self._reactor.removeWriter(self._watcher)
            self._watcher = None
        if self._misc.running:
            self._misc.stop()

    # -- connecting ---------------------------------------------------------------------
    @property
    def broker(self) -> str:
        """The address in use (or being tried): ``host:port``."""
        return _address(*self._brokers[self._index])

    @property
    def backoff_step(self) -> int:
        """Failed attempts since the broker last granted our subscriptions."""
        return self._attempt

    @property
    def protocol(self) -> str:
        return "5" if self._version == paho.MQTTv5 else "3.1.1"

    def startService(self) -> None:
        super().startService()
        self._connect_now()

    def _connect_now(self) -> None:
        self._timer = None
        if not self.running or self._connecting or self.connected:
            return
        if not self.may_connect():
            # active/standby: only a leader on a fresh lease may use the shared client id
            self._timer = self._reactor.callLater(0.5, self._connect_now)
            return
        self._connecting = True
        self._opened = self._connack = self._refused_v5 = False
        host, port = self._brokers[self._index]
        _speak(self.client, self._version)
        # a persistent session: the broker keeps what arrives for us while we are away
        # (for 3.1.1, _speak turns clean_start=False into clean_session=False)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(host, port, self._keepalive, clean_start=False,
                                  properties=props)
        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                              self.client.reconnect)

        def done(rc: Any) -> None:
            self._connecting = False
            if not self.running:
                self.client.disconnect()
            elif rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._unreachable(f"rc={rc}")

        def failed(failure: Any) -> None:
            self._connecting = False
            self._unreachable(failure.getErrorMessage())

        d.addCallbacks(done, failed)

    def _unreachable(self, why: str) -> None:
        # a broker that cannot be reached (restarting, say) is no sign that another
        # connection holds our client id: quick drops before this do not add up
        self._short_lived = 0
        self._retry_later(why)

    def _retry_later(self, why: str) -> None:
        if not self.running or self._timer is not None or self._connecting:
            return
        if self._auto and self._version == paho.MQTTv5 and (
                self._refused_v5 or (self._opened and not self._connack)):
            self._version = paho.MQTTv311           # the same broker again, at once
            self._timer = self._reactor.callLater(0, self._connect_now)
            return
        failed = self.broker
        self._index = (self._index + 1) % len(self._brokers)
        if len(self._brokers) > 1:
            self._short_lived = 0   # a takeover is on one broker; drops across several are not
        if self._auto:
            self._version = paho.MQTTv5
        delay = self._retry(self._attempt)
        self._attempt += 1
        log.warn("MQTT broker {failed} unreachable ({why}); trying {next} in {delay:.1f}s",
                 failed=failed, why=why, next=self.broker, delay=delay)
        self._timer = self._reactor.callLater(delay, self._connect_now)

    # -- another connection with our client id ---------------------------------------
    def _takeover(self, reason_code: Any) -> str | None:
        """Why this disconnect looks like our session taken over, or None."""
        code = getattr(reason_code, "value", None)
        if code == SESSION_TAKEN_OVER:
            return "the broker says: session taken over"
        if code == 0:
            return None         # a normal disconnection (ours, e.g. a refused subscription)
        if self._reactor.seconds() - self._connected_at >= SHORT_LIVED:
            self._short_lived = 0
            return None
        self._short_lived += 1
        if self._short_lived < SHORT_LIVED_IN_A_ROW:
            return None
        return (f"{self._short_lived} connections in a row dropped within "
                f"{SHORT_LIVED:.0f}s of being accepted")

    def _back_off_from(self, how: str) -> None:
        """Leave the session to the other connection for a while (same broker: the
        conflict is about the client id, not the address)."""
        self.takeovers += 1
        delay = min(TAKEOVER_FIRST_DELAY * 2 ** self._takeover_streak, self._takeover_max_delay)
        self._takeover_streak += 1
        self.taken_over = (f"MQTT client id {self.client_id!r} is in use by another "
                           f"connection ({how}); backing off")
        log.error("MQTT client id {cid!r} is in use by another connection ({how}): another "
                  "orchestrator with the same mqtt_client_id? Not taking the session back "
                  "for {delay:.0f}s (give each instance its own mqtt_client_id)",
                  cid=self.client_id, how=how, delay=delay)
        if self.running and self._timer is None and not self._connecting:
            self._timer = self._reactor.callLater(delay, self._connect_now)

    def _conflict_ended(self) -> None:
        self._conflict_over = None
        if self.taken_over is not None:
            log.info("MQTT client id {cid!r}: connection held for {s:.0f}s, no longer taken "
                     "over", cid=self.client_id, s=TAKEOVER_CLEARED_AFTER)
        self.taken_over = None
        self._takeover_streak = self._short_lived = 0

    # -- paho callbacks (reactor thread, inside loop_read/loop_write/loop_misc) ------
    def _connected(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                   properties: Any) -> None:
        self._connack = True
        if reason_code.is_failure:
            self._refused_v5 = self._version == paho.MQTTv5 and _refused_version(reason_code)
            if not (self._auto and self._refused_v5):
                log.error("MQTT broker {broker} refused the connection: {rc}",
                          broker=self.broker, rc=str(reason_code))
            return                      # the broker closes; _disconnected retries
        if self.connected:
            return
        self.connected = True
        self._connected_at = self._reactor.seconds()
        if self._conflict_over is None and (self.taken_over or self._short_lived):
            self._conflict_over = self._reactor.callLater(TAKEOVER_CLEARED_AFTER,
                                                          self._conflict_ended)
        self._link += 1
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._say_which_version()
        log.info("MQTT connected to {broker} (MQTT {protocol}, {session})", broker=self.broker,
                 protocol=self.protocol,
                 session="session resumed" if getattr(flags, "session_present", False)
                 else "new session")
        v5 = self._version == paho.MQTTv5
        opts = SubscribeOptions(qos=1, noLocal=True) if self._no_local and v5 else 1
        _, self._sub_mid = client.subscribe([(t, opts) for t in self._subscriptions])
        client.publish(self._status_topic, b"online", qos=1, retain=True)
        while self._buffer and self.connected:
            topic, payload, retain = self._buffer.popleft()
            self.publish(topic, payload, retain)

    def _say_which_version(self) -> None:
        before = self._spoken.get(self._index)
        self._spoken[self._index] = self._version
        if not self._auto or before == self._version:
            return
        if self._version != paho.MQTTv5:
            log.warn("MQTT broker {broker} does not speak MQTT 5: using 3.1.1 (no No-Local: "
                     "our own publishes are recognised and ignored)", broker=self.broker)
        elif before is not None:
            log.info("MQTT broker {broker} speaks MQTT 5 again: using it", broker=self.broker)

    def _subscribed(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                    properties: Any) -> None:
        if mid != self._sub_mid or not self.connected:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            # connected but deaf (e.g. the cluster node holding our queue is gone):
            # not a reached broker; hang up and go on with the backoff still growing
            log.error("MQTT broker {broker} refused our subscriptions ({refused}); "
                      "disconnecting to try again", broker=self.broker, refused=refused)
            client.disconnect()
            return
        self._attempt = 0
        self.subscribed = True
        self._call(self._on_connected)

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                      properties: Any) -> None:
        was_connected, self.connected = self.connected, False
        self.subscribed = False
        if self._conflict_over is not None and self._conflict_over.active():
            self._conflict_over.cancel()
        self._conflict_over = None
        taken = self._takeover(reason_code) if was_connected and self.running else None
        if was_connected:
            if taken is None:
                log.warn("MQTT disconnected: {rc}", rc=str(reason_code))
            self._call(self._on_disconnected)
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
        # never reconnect() inside a paho callback (it deadlocks): schedule it
        if taken is not None:
            self._back_off_from(taken)
        else:
            self._retry_later(str(reason_code))

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        ack = (functools.partial(self._ack, self._link, message.mid, message.qos)
               if message.qos else None)
        try:
            self._on_message(message.topic, message.payload, ack)
        except Exception:
            log.failure("message handler failed on {topic}", topic=message.topic)
            if ack is not None:
                ack()           # it would fail again on every redelivery

    def _ack(self, link: int, mid: int, qos: int) -> None:
        if self.connected and link == self._link:
            self.client.ack(mid, qos)

    def _puback(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                properties: Any) -> None:
        tag = self._tags.pop(mid, None)
        if tag is None:
            return
        if getattr(reason_code, "is_failure", False):
            log.error("MQTT broker refused an announcement ({rc}); not sending it again",
                      rc=str(reason_code))
        self._call(functools.partial(self._on_published, tag))

    def _call(self, f: Callable[[], None]) -> None:
        try:
            f()
        except Exception:
            log.failure("MQTT connection listener failed")

    # -- publishing ---------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool = False,
                tag: int | None = None) -> bool:
        """Send at QoS 1 now, or once connected (bounded buffer; oldest dropped).

        With a ``tag`` nothing is buffered: True if paho has it on a live
        connection (it sends it again itself after a reconnect, and its PUBACK
        is reported with the tag), False if it was not taken.
        """
        if self.connected:
            try:
                info = self.client.publish(topic, payload, qos=1, retain=retain)
            except ValueError:
                log.error("refusing to publish to invalid topic {topic!r}", topic=topic)
                if tag is not None:
                    self._call(functools.partial(self._on_published, tag))
                return True
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # NO_CONN: paho keeps it and sends it after the next CONNACK
                if tag is not None:
                    self._tags[info.mid] = tag
                return True
        if tag is not None:
            return False
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append((topic, payload, retain))
        return True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- stopping -------------------------------------------------------------------------
    def stopService(self) -> Deferred[None]:
        super().stopService()
        for call in (self._timer, self._conflict_over):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._conflict_over = None
        if not self.connected or self.client.socket() is None:
            self._forget_socket()
            return succeed(None)
        # a clean disconnect does not fire the will: say "offline" ourselves
        self.client.publish(self._status_topic, b"offline", qos=1, retain=True)
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        self.client.disconnect()
        d.addTimeout(5, self._reactor)
        d.addErrback(lambda _: self._forget_socket())
        return d
