"""The web console in real headless Chromium (Debian's, driven by Playwright; no browser is ever
downloaded) against the real API over a real engine on SQLite, served from a thread on a free
loopback port. One browser and one server for the whole session, a fresh browser context (so a
fresh cookie jar) per test."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from soar.api.auth import Role
from soar.api.testing import running_api
from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.store import open_store
from tests.servers import unavailable

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

PLAYBOOKS = Path(__file__).parent / "playbooks"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 800}
# Chromium as a test harness: nothing outside loopback, no first-run chatter.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


# -- the API --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ConsoleServer:
    """The API (and so the console) running in its own thread's event loop."""

    url: str
    tokens: dict[Role, str]
    loop: asyncio.AbstractEventLoop
    engine: Engine
    playbooks_dir: Path
    stop: asyncio.Event = field(repr=False)

    def request(
        self, method: str, path: str, *, role: Role = Role.ADMIN, body: Any = None
    ) -> tuple[int, Any]:
        """One API call with a role's bearer token: `(status, parsed JSON body)`."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {self.tokens[role]}"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, f"/api/v1{path}", body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read()
            return response.status, json.loads(text) if text else None
        finally:
            connection.close()

    def post_alert(self, alert: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
        """Ingest one alert (or a batch) as the `ingest` role; the ids of the runs started."""
        status, body = self.request("POST", "/alerts", role=Role.INGEST, body=alert)
        assert status == 202, body
        assert not body["rejected"], body
        return [run for accepted in body["accepted"] for run in accepted["runs"]]

    def wait_run(self, run_id: str, statuses: set[str], timeout: float = 10) -> dict[str, Any]:
        """Poll the API until the run has one of `statuses`; its RunDetail."""
        deadline = time.monotonic() + timeout
        while True:
            status, detail = self.request("GET", f"/runs/{run_id}")
            assert status == 200, detail
            if detail["run"]["status"] in statuses:
                return detail
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is {detail['run']['status']}, not {statuses}")
            time.sleep(0.05)


async def _serve(root: Path, started: Future[ConsoleServer]) -> None:
    stop = asyncio.Event()
    playbooks_dir = root / "playbooks"
    shutil.copytree(PLAYBOOKS, playbooks_dir)
    registry = Registry.of([core])
    files, _ = find_playbook_files([playbooks_dir])
    loaded = [r.loaded for r in validate_files(files, registry=registry) if r.loaded is not None]
    async with open_store(f"sqlite:///{root / 'soar.db'}") as store:
        engine = Engine(store, registry, loaded, lease_ttl=5)
        await engine.start()
        try:
            async with running_api(engine, registry, playbooks_dir=playbooks_dir) as api:
                started.set_result(
                    ConsoleServer(
                        api.url,
                        dict(api.tokens),
                        asyncio.get_running_loop(),
                        engine,
                        playbooks_dir,
                        stop,
                    )
                )
                await stop.wait()
        finally:
            await engine.stop()


@pytest.fixture(scope="package")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """The real API on 127.0.0.1 over an engine with the playbooks of tests/browser/playbooks."""
    root = tmp_path_factory.mktemp("console")
    started: Future[ConsoleServer] = Future()
    failed: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(_serve(root, started))
        except BaseException as exc:  # handed to the fixture, which fails the tests
            failed.append(exc)
            if not started.done():
                started.set_exception(exc)

    thread = threading.Thread(target=main, name="console-api", daemon=True)
    thread.start()
    server = started.result(timeout=30)
    try:
        yield server
    finally:
        server.loop.call_soon_threadsafe(server.stop.set)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the API thread did not stop"
        if failed:
            raise failed[0]


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if sync_playwright is None:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium (`apt-get install chromium`, see .ci/install-chromium), headless."""
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("chromium is not installed (.ci/install-chromium)")
    browser = playwright.chromium.launch(
        executable_path=executable, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@dataclass(slots=True)
class PageProblems:
    """What went wrong in the page: script errors, CSP violations, dialogs (an XSS would open
    one). Every test ends by checking there were none."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    problems = PageProblems()

    def on_console(message: Any) -> None:
        # A 4xx the console expects (a refused token, the 401 of "no session yet") is logged
        # by Chromium as a failed resource; anything else at error level is a bug.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.errors.append(message.text)

    def on_dialog(dialog: Any) -> None:
        problems.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.errors.append(str(exc)))
    page.on("dialog", on_dialog)
    yield page
    assert problems.dialogs == [], "the page opened a dialog (script injection?)"
    assert problems.errors == [], "the page logged errors"


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Page, str], Path]:
    """`shoot(page, "runs")`: a PNG of the page, in docs/console/ when SOAR_SCREENSHOTS=1
    (the pictures of docs/console.md) and in the test's tmp_path otherwise."""

    def take(page: Page, name: str, *, full_page: bool = False) -> Path:
        if os.environ.get("SOAR_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            path = DOCS_SHOTS / f"{name}.png"
        else:
            path = tmp_path / f"{name}.png"
        page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
        return path

    return take


@pytest.fixture
def login(console_server: ConsoleServer) -> Callable[[Page, Role], None]:
    """Open the console and log in with the token of a role."""

    def log_in(page: Page, role: Role = Role.ADMIN) -> None:
        page.goto(f"{console_server.url}/console/")
        page.get_by_test_id("login-token").fill(console_server.tokens[role])
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("user-role").filter(has_text=role.value).wait_for()

    return log_in
