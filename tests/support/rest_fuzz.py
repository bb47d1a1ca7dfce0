"""Run schemathesis against a real ``twistd silverline`` and its OpenAPI document.

    python tests/support/rest_fuzz.py WORKDIR

Starts a private mosquitto and the orchestrator in WORKDIR, gives it some
runtimes and modules over MQTT, then lets schemathesis generate requests from
``/api/openapi.json`` (valid and invalid parameters, odd path values) and check
that no answer is a server error and that answers match the document. Exits
non-zero on any failure. The event stream is left out: it never ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from tests.support.broker import Mosquitto, free_port  # noqa: E402
from tests.support.twistd import start_twistd  # noqa: E402

R = "realm/proc"


def populate(port: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="rest-fuzz-seed")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i in range(5):
        rt = f"00000000-0000-4000-8000-00000000000{i}"
        client.publish(f"{R}/reg", json.dumps({
            "object_id": f"r{i}", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": rt, "name": f"rt{i}", "max_nmodules": 2}}),
            qos=1).wait_for_publish(5)
        for j in range(3):
            client.publish(f"{R}/control", json.dumps({
                "object_id": f"c{i}{j}", "action": "create", "type": "arts_req",
                "data": {"type": "module", "uuid": f"m{i}{j}", "name": f"mod{j}",
                         "parent": rt, "fault_crash": "restart"}}), qos=1).wait_for_publish(5)
    client.publish(f"{R}/reg", json.dumps({
        "object_id": "d", "action": "delete", "type": "arts_req",
        "data": {"type": "runtime", "uuid": "00000000-0000-4000-8000-000000000004"}}),
        qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def main(workdir: Path) -> int:
    broker = Mosquitto(workdir / "broker")
    broker.start()
    http = free_port()
    (workdir / "config.json").write_text(json.dumps({
        "mqtt": "127.0.0.1", "mqtt_port": broker.port, "http": "127.0.0.1",
        "http_port": http, "state_dir": "state", "log_dir": None, "mqtt_username": None}))
    proc = start_twistd(workdir, log=workdir / "twistd.out")
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print("orchestrator not ready", (workdir / "twistd.out").read_text()[-2000:])
                return 2
            time.sleep(0.05)
        populate(broker.port)
        result = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run",
             f"{base}/api/openapi.json",
             "--checks", "not_a_server_error,status_code_conformance,"
                         "content_type_conformance,response_schema_conformance",
             "--exclude-path", "/api/events", "--exclude-path", "/api/modules/{q}/logs",
             "--max-examples", "150",
             "--seed", "20261127", "--workers", "1", "--request-timeout", "10"],
            cwd=workdir, capture_output=True, text=True, timeout=500)
        print(result.stdout[-6000:], result.stderr[-2000:])
        if "Traceback" in (workdir / "twistd.out").read_text():
            print("the orchestrator logged a traceback:",
                  (workdir / "twistd.out").read_text()[-4000:])
            return 3
        return result.returncode
    finally:
        proc.terminate()
        proc.wait(20)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
