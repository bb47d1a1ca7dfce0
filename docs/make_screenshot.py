"""Makes docs/dashboard.png: the dashboard with a realistic fleet, in headless Chromium.

    .venv/bin/python docs/make_screenshot.py [--out docs/dashboard.png]

Starts a private mosquitto and the real orchestrator (in-process, in a temporary
directory), opens the dashboard in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) and then plays a small fleet over MQTT:
twelve runtimes sending keepalives, about forty modules, a few of them queued or
exiting, one runtime that falls silent and is declared dead (its modules killed or
moved), so that the event feed has a story to tell. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid as uuidlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from tests.support.app import App, make_config  # noqa: E402
from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.peer import Peer  # noqa: E402
from tests.support.twisted import eventually  # noqa: E402

R = "realm/proc"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")

#: name, runtime_type, max_nmodules, apis
FLEET = [
    ("edge-cam-lobby", "linux", 8, ["wasm", "wasi"]),
    ("edge-cam-dock-2", "linux", 8, ["wasm", "wasi"]),
    ("jetson-vision-01", "linux", 16, ["wasm", "wasi", "cuda"]),
    ("rpi-greenhouse-1", "linux", 4, ["wasm", "wasi"]),
    ("rpi-greenhouse-2", "linux", 4, ["wasm", "wasi"]),        # falls silent: dead
    ("gateway-north", "linux", 0, ["wasm", "wasi"]),
    ("gateway-south", "linux", 0, ["wasm", "wasi"]),
    ("esp32-door-3", "embedded", 2, ["wasm"]),                   # full: some queued
    ("nuc-lab-a", "linux", 12, ["wasm", "wasi"]),
    ("nuc-lab-b", "linux", 12, ["wasm", "wasi"]),
    ("arena-headset-07", "browser", 6, ["wasm", "wasi"]),
    ("arena-headset-12", "browser", 6, ["wasm", "wasi"]),
]

#: runtime index, module name, file, fault_crash
MODULES = [
    (0, "motion-detect", "wasm/vision/motion.wasm", "restart"),
    (0, "frame-sampler", "wasm/vision/sampler.wasm", "ignore"),
    (0, "mqtt-bridge", "wasm/net/bridge.wasm", "ignore"),
    (1, "motion-detect", "wasm/vision/motion.wasm", "restart"),
    (1, "plate-reader", "wasm/vision/plates.wasm", "ignore"),
    (2, "object-detect", "wasm/vision/yolo-tiny.wasm", "restart"),
    (2, "pose-estimate", "wasm/vision/pose.wasm", "ignore"),
    (2, "depth-fusion", "wasm/vision/depth.wasm", "ignore"),
    (2, "frame-sampler", "wasm/vision/sampler.wasm", "ignore"),
    (3, "soil-moisture", "wasm/sensors/soil.wasm", "ignore"),
    (3, "temp-humidity", "wasm/sensors/dht22.wasm", "ignore"),
    (3, "irrigation-ctl", "wasm/control/irrigation.wasm", "restart"),
    (4, "soil-moisture", "wasm/sensors/soil.wasm", "ignore"),
    (4, "co2-monitor", "wasm/sensors/co2.wasm", "restart"),
    (4, "vent-ctl", "wasm/control/vent.wasm", "ignore"),
    (5, "telemetry-agg", "wasm/net/aggregate.wasm", "restart"),
    (5, "ota-relay", "wasm/net/ota.wasm", "ignore"),
    (5, "log-shipper", "wasm/net/logship.wasm", "ignore"),
    (5, "mqtt-bridge", "wasm/net/bridge.wasm", "ignore"),
    (6, "telemetry-agg", "wasm/net/aggregate.wasm", "restart"),
    (6, "log-shipper", "wasm/net/logship.wasm", "ignore"),
    (7, "door-sensor", "wasm/sensors/reed.wasm", "ignore"),
    (7, "badge-reader", "wasm/sensors/nfc.wasm", "ignore"),
    (7, "door-chime", "wasm/control/chime.wasm", "ignore"),      # queued: no room
    (7, "door-camera", "wasm/vision/doorcam.wasm", "ignore"),    # queued: no room
    (8, "polybench-2mm", "wasm/polybench/2mm_s.wasm", "ignore"),
    (8, "polybench-atax", "wasm/polybench/atax_s.wasm", "ignore"),
    (8, "polybench-gemm", "wasm/polybench/gemm_s.wasm", "ignore"),
    (8, "hello", "wasm/tests/helloworld.wasm", "ignore"),
    (9, "polybench-lu", "wasm/polybench/lu_s.wasm", "ignore"),
    (9, "polybench-syrk", "wasm/polybench/syrk_s.wasm", "ignore"),
    (9, "wasi-fs-test", "wasm/tests/fs.wasm", "ignore"),
    (10, "scene-sync", "wasm/arena/scene-sync.wasm", "restart"),
    (10, "hand-tracker", "wasm/arena/hands.wasm", "ignore"),
    (10, "spatial-audio", "wasm/arena/audio.wasm", "ignore"),
    (11, "scene-sync", "wasm/arena/scene-sync.wasm", "restart"),
    (11, "hand-tracker", "wasm/arena/hands.wasm", "ignore"),
    (11, "physics-step", "wasm/arena/physics.wasm", "ignore"),
]


def start_browser(profile: Path, dark: bool = False, size: tuple[int, int] = (1400, 900)) -> Any:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                            "mobile": False})
    if dark:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    return driver


class Fleet(Peer):
    """All the runtimes' MQTT traffic; like real runtimes, it confirms every create."""

    def _arrived(self, msg: Any) -> None:
        body = msg.json
        if body.get("action") == "create" and body.get("type") == "arts_req":
            self.publish(msg.topic, {"object_id": body["object_id"], "type": "runtime_resp",
                                     "data": {"result": "ok", "details": {}}})


def req(action: str, data: dict[str, Any], object_id: str | None = None) -> dict[str, Any]:
    return {"object_id": object_id or str(uuidlib.uuid4()), "action": action,
            "type": "arts_req", "data": data}


async def play(reactor: Any, out: Path, dark: bool = False,
               size: tuple[int, int] = (1400, 900)) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    work = Path(tempfile.mkdtemp(prefix="silverline-shot-"))
    broker = Mosquitto(work / "broker")
    broker.start()
    app = await App(reactor, make_config(broker.port, work / "state", ka_interval_sec=3,
                                         keepalive_misses=2)).start()
    driver = await deferToThread(start_browser, work / "chromium", dark, size)
    fleet = await Fleet(reactor, broker.port, "fleet").connect()
    client = await Peer(reactor, broker.port, "client").connect()
    beat: Any = None
    try:
        await deferToThread(driver.get, app.url + "/")
        await deferToThread(WebDriverWait(driver, 20, 0.1).until,
                            lambda d: d.execute_script("return document.body.dataset.conn") == "live")

        await fleet.subscribe(f"{R}/control/+")

        uuids = [str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.example")) for name, *_ in FLEET]
        alive = set(range(len(FLEET)))
        for i, (name, rtype, cap, apis) in enumerate(FLEET):
            fleet.publish(f"{R}/reg", req("create", {"type": "runtime", "uuid": uuids[i],
                                                     "name": name, "runtime_type": rtype,
                                                     "max_nmodules": cap, "apis": apis}))
        await eventually(lambda: len(app.registry.runtimes) == len(FLEET), 10, "registrations")

        tick = [0]

        def keepalives() -> None:      # every 3 s, each runtime at its own moment
            tick[0] += 1
            for i in sorted(alive):
                if (i + tick[0]) % 6 == 0:
                    fleet.publish(f"{R}/keepalive", req("update", {
                        "type": "runtime", "uuid": uuids[i], "name": FLEET[i][0], "children": []}))
        beat = task.LoopingCall(keepalives)
        beat.clock = reactor
        beat.start(0.5)

        module_ids = []
        for n, (i, name, filename, fault) in enumerate(MODULES):
            mid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"module-{n}"))
            module_ids.append(mid)
            client.publish(f"{R}/control", req("create", {
                "type": "module", "uuid": mid, "name": name, "parent": uuids[i],
                "filename": filename, "filetype": "WA", "fault_crash": fault}))
            await task.deferLater(reactor, 0.03, lambda: None)
        # one that no runtime can take: it waits in the queue for any runtime
        client.publish(f"{R}/control", req("create", {
            "type": "module", "uuid": str(uuidlib.uuid4()), "name": "gpu-transcoder",
            "filename": "wasm/media/transcode.wasm", "apis": ["wasm", "wasi", "nvenc"]}))
        await eventually(lambda: len(app.registry.modules) == len(MODULES) + 1, 10, "creates")

        # a few finish, one is being stopped (its runtime never reports the exit)
        for n in (2, 17, 31):
            fleet.publish(f"{R}/control/{uuids[MODULES[n][0]]}", req("exited", {
                "type": "module", "uuid": module_ids[n]}))
        client.publish(f"{R}/control", req("delete", {"type": "module", "uuid": module_ids[30]}))
        # rpi-greenhouse-2 falls silent: dead after two missed keepalive periods (a
        # runtime is judged by its keepalives from its second one on)
        liveness = app.service.core.liveness
        await eventually(lambda: liveness.timeout(uuids[4]) is not None, 15, "keepalives")
        alive.discard(4)
        await eventually(lambda: not app.registry.runtimes[uuids[4]].alive, 20, "the silent runtime")
        # and a little more life afterwards
        for n, (name, filename) in enumerate([("hello", "wasm/tests/helloworld.wasm"),
                                              ("frame-sampler", "wasm/vision/sampler.wasm")]):
            client.publish(f"{R}/control", req("create", {
                "type": "module", "uuid": str(uuidlib.uuid4()), "name": name,
                "filename": filename}))
        await task.deferLater(reactor, 2.5, lambda: None)      # let the ages spread a little

        await deferToThread(WebDriverWait(driver, 20, 0.1).until,
                            lambda d: d.execute_script(
                                "return document.querySelectorAll('#dead-grid .rt').length") == 1)
        await deferToThread(driver.execute_script, "window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = await deferToThread(driver.save_screenshot, str(out))
        if not ok:
            raise RuntimeError("the screenshot failed")
        print(f"wrote {out}")
    finally:
        if beat is not None and beat.running:
            beat.stop()
        fleet.close()
        client.close()
        await deferToThread(driver.quit)
        await app.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    parser.add_argument("--size", default="1400x900", help="viewport, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    task.react(lambda reactor: defer.ensureDeferred(
        play(reactor, args.out.resolve(), args.dark, (width, height))))


if __name__ == "__main__":
    main()
