"""Acting over MQTT as a client: one request out, its reply or its error back.

The orchestrator answers on ``R/proc/control`` with the request's
``object_id``, or reports an error with it on ``R/proc/log/orchestrator``
(docs/protocol.md 7 and 9). paho's own blocking loop runs in its thread: fine
for a process that lives for one request.
"""

from __future__ import annotations

import json
import queue
import ssl
import uuid as uuidlib
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .errors import REFUSED, TIMEOUT, UNREACHABLE, CliError
from .settings import Settings

__all__ = ["Bus", "new_id"]


def new_id() -> str:
    return str(uuidlib.uuid4())


class Bus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.config
        self.base = f"{settings.realm}/proc"
        # a short client id: some MQTT 3.1.1 brokers accept no more than 23 characters
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sl-cli-{new_id()[:12]}",
            protocol=paho.MQTTv311 if config.mqtt_protocol == "3.1.1" else paho.MQTTv5)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if config.use_ssl:
            self.client.tls_set(ca_certs=config.mqtt_ca_file, certfile=config.mqtt_certfile,
                                keyfile=config.mqtt_keyfile,
                                cert_reqs=(ssl.CERT_NONE if config.mqtt_tls_insecure
                                           else ssl.CERT_REQUIRED))
            if config.mqtt_tls_insecure:
                self.client.tls_insecure_set(True)
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self._inbox.put(("connack", rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._inbox.put(("suback", rcs))
        self.client.on_message = lambda c, u, m: self._inbox.put(("message", m))

    def __enter__(self) -> "Bus":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _next(self, kind: str, timeout: float, what: str) -> Any:
        while True:
            try:
                got, value = self._inbox.get(timeout=timeout)
            except queue.Empty:
                raise CliError(f"no {what} within {timeout:g}s", TIMEOUT) from None
            if got == kind:
                return value

    def connect(self) -> None:
        errors = []
        for host, port in self.settings.brokers:
            try:
                self.client.connect(host, port, keepalive=30)
                break
            except (OSError, ValueError) as e:
                errors.append(f"{host}:{port}: {getattr(e, 'strerror', None) or e}")
        else:
            raise CliError("cannot reach the MQTT broker " + "; ".join(errors), UNREACHABLE)
        self.client.loop_start()
        rc = self._next("connack", self.settings.timeout, "answer from the MQTT broker")
        if rc.is_failure:
            raise CliError(f"the MQTT broker refused the connection: {rc}", UNREACHABLE)
        self.client.subscribe([(f"{self.base}/control", 1),
                               (f"{self.base}/log/orchestrator", 1)])
        self._next("suback", self.settings.timeout, "subscription acknowledgement")

    def request(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a request on ``R/proc/control``; its reply's ``details``, or a CliError."""
        object_id = new_id()
        message = {"object_id": object_id, "action": action, "type": "arts_req", "data": data}
        self.client.publish(f"{self.base}/control", json.dumps(message), qos=1)
        timeout = self.settings.timeout
        while True:
            m = self._next("message", timeout, f"reply from the orchestrator (realm "
                                               f"{self.settings.realm!r}: is it running?)")
            try:
                body = json.loads(m.payload)
            except ValueError:
                continue
            if not isinstance(body, dict) or body.get("object_id") != object_id:
                continue
            if body.get("action") == "error":
                err = body.get("data") or {}
                detail = err.get("data")
                shown = detail if isinstance(detail, str) else json.dumps(detail)
                raise CliError(f"refused: {err.get('desc')}: {shown}", REFUSED)
            if body.get("type") == "arts_resp" and m.topic == f"{self.base}/control":
                return (body.get("data") or {}).get("details") or {}
