"""The dashboard (``GET /``) in a real browser: headless Debian Chromium driven by
Selenium through Debian's chromedriver, against a private mosquitto and the real
orchestrator in-process.

Selenium calls block and the orchestrator under test runs on this same reactor, so
every browser call runs in a thread (``deferToThread``) and is awaited; waits poll the
page from that thread until a condition holds or a timeout passes (no fixed sleeps).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.support.app import App, make_config
from tests.support.broker import Mosquitto
from tests.support.twisted import within

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"
#: we run as root on a closed network: no sandbox, and nothing that phones home
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")

R = "realm/proc"
RT = "7d0c3d4e-2f3b-4a51-9c1e-0b6a8f2d9e11"
M1 = "c5e2a9b0-6d1f-4e8a-b7c3-91f0d2a4e6b8"
#: user data with markup in it: it must show as text, never become HTML
MODULE_NAME = "thermo <b>probe</b> & co"
TOKEN = "tok-3f9a1c7e5b2d4068"
TOKEN_KEY = "silverline.orchestrator.token"
ESCAPE = "\ue00c"                  # WebDriver's Escape key


def _start_chromium(profile: Path, driver_log: Path) -> Any:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the dashboard test needs Debian's "
                    f"Chromium and its driver; install them with `{INSTALL}` "
                    f"(CI's .ci/run installs them when missing)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the selenium package is missing from the virtualenv: "
                    "`.venv/bin/pip install selenium` (a test dependency)", pytrace=False)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # explicit paths: Selenium then never tries to download a browser or a driver
    service = Service(executable_path=CHROMEDRIVER, log_output=str(driver_log))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


class Page:
    """The browser, with every blocking Selenium call moved off the reactor thread."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return await deferToThread(f, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def until(self, script: str, what: str, *args: Any, timeout: float = 20.0) -> Any:
        """Poll ``script`` (JavaScript returning a value) until it is truthy; its value."""
        from selenium.webdriver.support.ui import WebDriverWait

        def wait() -> Any:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda d: d.execute_script(script, *args), f"the page never showed {what}")
        return await deferToThread(wait)

    async def keys(self, element_id: str, *keys: str, replace: bool = False) -> None:
        """Type into a field as a person does (replace: select all, Backspace first)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        def type_() -> None:
            field = self.driver.find_element(By.ID, element_id)
            if replace:
                field.send_keys(Keys.CONTROL, "a")
                field.send_keys(Keys.BACKSPACE)
            field.send_keys(*keys)
        await self.call(type_)

    async def console_errors(self) -> list[str]:
        return [entry["message"] for entry in await self.call(self.driver.get_log, "browser")
                if entry["level"] == "SEVERE"]

    async def screenshot(self, path: Path) -> None:
        assert await self.call(self.driver.save_screenshot, str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest_twisted.async_yield_fixture
async def page(tmp_path: Path) -> Any:
    driver = await deferToThread(_start_chromium, tmp_path / "chromium",
                                 tmp_path / "chromedriver.log")
    try:
        yield Page(driver)
    finally:
        await deferToThread(driver.quit)


# -- what the tests read from the page (one script per poll: one round trip) ---------------

LIVE = "return document.body.dataset.conn === 'live'"

RUNTIME_CARD = """
const card = document.querySelector(`.rt[data-runtime="${arguments[0]}"]`);
if (!card || card.hidden) return null;
return {name: card.querySelector('.rt-name').textContent,
        status: card.dataset.status,
        badge: card.querySelector('.badge').textContent,
        grid: card.parentElement.id,
        short_uuid: card.querySelector('.rt-meta .uuid').textContent,
        capacity: card.querySelector('.cap-text').textContent,
        seen: card.querySelector('.seen').textContent};
"""

MODULE_ROW = """
const row = document.querySelector(`.mod[data-module="${arguments[0]}"]`);
if (!row) return null;
const card = row.closest('.rt');
return {runtime: card ? card.dataset.runtime : null,
        status: row.dataset.status,
        badge: row.querySelector('.badge').textContent,
        name: row.querySelector('.m-name').textContent,
        name_html: row.querySelector('.m-name').innerHTML,
        elements_in_name: row.querySelector('.m-name').children.length,
        file: row.querySelector('.m-file').textContent,
        short_uuid: row.querySelector('.uuid').textContent};
"""

#: {event type: [entry text, ...]} once every wanted type is in the feed
FEED = """
const wanted = arguments[0];
const seen = {};
for (const li of document.querySelectorAll('#feed li')) {
  (seen[li.dataset.type] = seen[li.dataset.type] || []).push(li.textContent);
}
return wanted.every((t) => seen[t]) ? seen : null;
"""



def of(script: str) -> str:
    """A script's result as an expression, to use inside another script."""
    return f"(function () {{{script}}}).apply(null, arguments)"


TOTALS = """
const n = (id) => document.getElementById(id).textContent;
return {rt_alive: n('n-rt-alive'), rt_dead: n('n-rt-dead'), alive: n('n-m-alive'),
        queued: n('n-m-queued'), exiting: n('n-m-exiting'), killed: n('n-m-killed')};
"""


def registration(name: str = "edge-cam-01", **data: Any) -> dict[str, Any]:
    return {"object_id": "o-reg", "action": "create", "type": "arts_req",
            "data": {"type": "runtime", "uuid": RT, "name": name, "max_nmodules": 4, **data}}


def create_module() -> dict[str, Any]:
    return {"object_id": "o-create", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": M1, "name": MODULE_NAME, "parent": RT,
                     "filename": "wasm/sensors/thermo.wasm", "filetype": "WA"}}


async def register(runtime: Any, **data: Any) -> None:
    runtime.publish(f"{R}/reg", registration(**data))
    await runtime.expect(f"{R}/reg", lambda m: m.json.get("type") == "arts_resp")


@pytest_twisted.ensureDeferred
@within(120)
async def test_dashboard_shows_a_runtime_and_its_module_as_they_happen(
        app: App, peers: Any, page: Page, tmp_path: Path) -> None:
    await page.open(app.url + "/")
    await page.until(LIVE, "the live state")
    assert await page.js("return document.querySelectorAll('.rt').length") == 0
    assert await page.js("return document.getElementById('empty').hidden") is False
    await page.js("window.notReloaded = true")      # a reload would forget this
    link = await page.until("const l = document.getElementById('link');"
                            "return !l.hidden && l.textContent", "the broker badge")
    assert link == f"Broker 127.0.0.1:{app.config.mqtt_port} · MQTT 5"

    runtime = await peers("runtime", f"{R}/reg", f"{R}/control/{RT}")
    client = await peers("client", f"{R}/control")
    await register(runtime)
    card = await page.until(RUNTIME_CARD, "the runtime's card", RT)
    assert card["name"] == "edge-cam-01" and card["status"] == card["badge"] == "alive"
    assert card["grid"] == "alive-grid" and card["short_uuid"] == RT[-8:]
    assert re.fullmatch(r"seen \d+ s ago", card["seen"])

    client.publish(f"{R}/control", create_module())
    await runtime.expect(f"{R}/control/{RT}", lambda m: m.json["action"] == "create")
    row = await page.until(MODULE_ROW, "the module's row", M1)
    assert row["runtime"] == RT and row["status"] == row["badge"] == "alive"
    assert row["name"] == MODULE_NAME and row["elements_in_name"] == 0       # text, not HTML
    assert "&lt;b&gt;" in row["name_html"]
    assert row["file"] == "thermo.wasm" and row["short_uuid"] == M1[-8:]
    await page.until(f"return {of(RUNTIME_CARD)}.capacity === '1 / 4 modules'",
                     "the runtime's module count", RT)

    feed = await page.until(FEED, "the events in the feed", ["runtime.registered", "module.created"])
    assert any("edge-cam-01 registered" in text for text in feed["runtime.registered"])
    assert any(f"{MODULE_NAME} created on edge-cam-01" in text for text in feed["module.created"])
    assert await page.js(TOTALS) == {"rt_alive": "1", "rt_dead": "0", "alive": "1",
                                     "queued": "0", "exiting": "0", "killed": "0"}

    # the filter box: by module name, then something nothing matches
    await page.keys("filter", "PROBE")
    await page.until(f"return {of(RUNTIME_CARD)} && document.getElementById('no-match').hidden",
                     "the card kept by the filter", RT)
    await page.keys("filter", "no-such-thing", replace=True)
    await page.until(f"return !{of(RUNTIME_CARD)} && !document.getElementById('no-match').hidden",
                     "the 'nothing matches' message", RT)
    await page.keys("filter", ESCAPE)                                # Escape clears it
    await page.until(f"return {of(RUNTIME_CARD)} && !document.getElementById('filter').value",
                     "the card again, filter cleared", RT)
    await page.screenshot(tmp_path / "dashboard.png")

    # keepalives are not events: the page re-reads last-seen times by itself
    age = f"const c = {of(RUNTIME_CARD)}; return c && Number(c.seen.match(/\\d+/)[0])"
    # (last-seen times are re-read every 5 s: after a keepalive the age shown drops
    # to at most that; without the re-read it would only have grown)
    await page.until(f"{age} >= 7", "the runtime to look silent for 7 s", RT)
    runtime.publish(f"{R}/keepalive/{RT}", {"object_id": "ka", "action": "update",
                                             "type": "arts_req",
                                             "data": {"type": "runtime", "uuid": RT}})
    await page.until(f"{age} <= 6", "the keepalive to show, without a reload", RT, timeout=10)

    # the runtime goes away: its card moves among the dead, its module is killed
    runtime.publish(f"{R}/reg", {"object_id": "o-del", "action": "delete", "type": "arts_req",
                                 "data": {"type": "runtime", "uuid": RT}})
    await page.until(f"const c = {of(RUNTIME_CARD)}; return c && c.grid === 'dead-grid'",
                     "the runtime among the dead", RT)
    await page.until(f"const r = {of(MODULE_ROW)}; return r && r.status === 'killed'",
                     "the killed module", M1)
    feed = await page.until(FEED, "the death in the feed", ["runtime.dead", "module.killed"])
    assert any("edge-cam-01 died: delete" in text for text in feed["runtime.dead"])
    assert await page.js(TOTALS) == {"rt_alive": "0", "rt_dead": "1", "alive": "0",
                                     "queued": "0", "exiting": "0", "killed": "1"}
    assert await page.js("return window.notReloaded") is True
    await page.screenshot(tmp_path / "dashboard-dead.png")

    # offline-proof: everything the page loaded came from the orchestrator, and the
    # browser complained about nothing (a blocked resource or a script error would show)
    assert await page.js("return performance.getEntriesByType('resource')"
                         ".every((e) => e.name.startsWith(location.origin + '/'))") is True
    assert await page.console_errors() == []


@pytest_twisted.ensureDeferred
@within(120)
async def test_dashboard_asks_for_the_token_and_keeps_it_for_the_session(
        reactor: Any, broker: Mosquitto, peers: Any, page: Page, tmp_path: Path) -> None:
    app = await App(reactor, make_config(broker.port, tmp_path / "state",
                                         rest_token=TOKEN)).start()
    try:
        assert (await app.get("/api/runtimes/"))[0] == 401
        runtime = await peers("runtime", f"{R}/reg")
        await register(runtime, name="gateway-north")

        await page.open(app.url + "/")
        await page.until("return document.body.dataset.conn === 'auth' && "
                         "!document.getElementById('auth').hidden && "
                         "document.activeElement.id === 'auth-token'", "the token prompt")
        assert await page.js("return document.querySelectorAll('.rt').length") == 0

        await page.keys("auth-token", "not-the-token\n")          # Enter submits
        error = await page.until("const e = document.getElementById('auth-error');"
                                 "return !e.hidden && e.textContent", "the refusal")
        assert "not accepted" in error

        await page.keys("auth-token", TOKEN + "\n", replace=True)
        await page.until(LIVE, "the live state, with the token")
        card = await page.until(RUNTIME_CARD, "the runtime registered before", RT)
        assert card["name"] == "gateway-north"
        assert await page.js(f"return sessionStorage.getItem('{TOKEN_KEY}')") == TOKEN
        assert await page.js("return document.getElementById('auth').hidden") is True

        # what happens next comes through the event stream, which sent the token too
        await register(runtime, name="gateway-north-renamed")
        await page.until(f"const c = {of(RUNTIME_CARD)}; return c && c.name === 'gateway-north-renamed'",
                         "the re-registration", RT)
        feed = await page.until(FEED, "the re-registration in the feed", ["runtime.reregistered"])
        assert any("gateway-north-renamed registered again" in t
                   for t in feed["runtime.reregistered"])

        # kept for the tab's session: a reload asks nothing
        await page.call(page.driver.refresh)
        await page.until(LIVE, "the live state after a reload")
        await page.until(RUNTIME_CARD, "the runtime after a reload", RT)
        assert await page.js("return document.getElementById('auth').hidden") is True
        await page.screenshot(tmp_path / "dashboard-token.png")
    finally:
        await page.open("about:blank")       # closes the event stream before the server stops
        await app.stop()


M2 = "c5e2a9b0-6d1f-4e8a-b7c3-91f0d2a4e6b9"
M3 = "c5e2a9b0-6d1f-4e8a-b7c3-91f0d2a4e6ba"

OUTPUT = """
const d = document.getElementById('output');
return {open: d.open, module: d.dataset.module || null,
        title: document.getElementById('output-title').textContent,
        lines: document.getElementById('output-lines').textContent.split('\\n').filter(Boolean)};
"""


@pytest_twisted.ensureDeferred
@within(120)
async def test_dashboard_shows_history_why_modules_wait_and_their_output(
        app: App, peers: Any, page: Page) -> None:
    # all of this happens before the page is opened: it must show as recent history
    runtime = await peers("runtime", f"{R}/reg", f"{R}/control/{RT}")
    client = await peers("client", f"{R}/control")
    await register(runtime, max_nmodules=1)
    for uuid, name, extra in ((M1, "printer", {"parent": RT}), (M2, "second", {"parent": RT}),
                              (M3, "gpu-job", {"apis": ["cuda"]})):
        await client.publish_acked(f"{R}/control", {
            "object_id": f"o-{name}", "action": "create", "type": "arts_req",
            "data": {"type": "module", "uuid": uuid, "name": name, "filename": f"{name}.wasm",
                     **extra}})
        await client.expect(f"{R}/control", lambda m, n=name: m.json.get("object_id") == f"o-{n}"
                            and m.json.get("type") == "arts_resp")
    await runtime.publish_acked(f"{R}/stdio/{M1}", b"hello from the module\nsecond line")

    await page.open(app.url + "/")
    await page.until(LIVE, "the live state")
    feed = await page.until(FEED, "the history in the feed",
                            ["runtime.registered", "module.created", "module.queued"])
    assert any("edge-cam-01 registered" in t for t in feed["runtime.registered"])
    assert any("gpu-job queued for any runtime (no compatible runtime: none alive offers cuda)"
               in t for t in feed["module.queued"])
    assert len(await page.js("return Array.from(document.querySelectorAll('#feed li'))"
                             ".map((li) => li.dataset.type)")) == 4      # each once

    why = "return (document.querySelector(`.mod[data-module='${arguments[0]}'] .m-why`) || {}).textContent"
    assert await page.until(why, "why the pinned module waits", M2) == \
        "waiting for room on runtime edge-cam-01 (1/1 running)"
    assert await page.until(why, "why the gpu module waits", M3) == \
        "waiting: no compatible runtime: none alive offers cuda"

    # one click on a module: its output, then what it prints next
    await page.js(f"document.querySelector(`.mod[data-module='{M1}'] .m-out`).click()")
    shown = await page.until(f"const o = {of(OUTPUT)}; return o.lines.length >= 2 && o",
                             "the module's output")
    assert shown["open"] and shown["module"] == M1 and shown["title"] == "Output of printer"
    assert shown["lines"] == ["hello from the module", "second line"]
    await runtime.publish_acked(f"{R}/debug/stdout/{M1}", b"a live line")
    await page.until(f"return {of(OUTPUT)}.lines.includes('a live line')", "the live line")
    await page.js("document.getElementById('output-close').click()")
    await page.until(f"return !{of(OUTPUT)}.open", "the output closed")
    assert await page.console_errors() == []
