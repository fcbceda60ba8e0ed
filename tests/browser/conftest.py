"""Real headless Chromium (Debian's `chromium`, driven by Playwright) against the app on a real
port, a blog post on another origin holding the pasted snippet, and a real SMTP server.

One browser and one set of servers for this package: launching is the slow part. Both end with
the package, because Playwright's sync API keeps an event loop running in the main thread, and
the asyncio tests that follow need it gone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from service.core.migrations import migrate
from service.core.settings import load_settings
from service.runtime import build_runtime
from service.web.embed import snippet
from tests.browser.live import LiveApp, Site, listening_socket
from tests.helpers import PROJECT_ROOT, MailSink, free_port, links_in

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"

POST_PATH = "/2014/01/sacro-iliac-joint-pain.html"
# The shipped content's placeholder links, over plain HTTP: Chromium sends them to a local
# stand-in acting as its proxy (there is no network here), so they keep their own address.
PLACEHOLDER = "https://example.com/replace-me"
STAND_IN = "http://example.com/replace-me"

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}


@dataclass
class World:
    app: LiveApp
    blog: Site
    elsewhere: Site
    inbox: MailSink

    @property
    def base_url(self) -> str:
        return self.app.runtime.settings.base_url

    @property
    def post_url(self) -> str:
        return self.blog.origin + POST_PATH


def _stand_in(path: str) -> str:
    return (f'<!doctype html><html lang="en"><title>Stand-in for {path}</title>'
            f"<main><h1>Stand-in page</h1><p>{path}</p></main></html>")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tour's screenshots go: a temporary folder, or the README's own
    (docs/screenshots) when `make screenshots` sets REGIMEN_SCREENSHOTS."""
    chosen = os.environ.get("REGIMEN_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("browser")
    inbox = MailSink()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    elsewhere = Site(fallback=_stand_in)
    blog = Site()
    # The whole shipped content (site.yaml and every regimen), its placeholders made local.
    content = Path(shutil.copytree(PROJECT_ROOT / "content", tmp / "content"))
    for file in content.rglob("*.yaml"):
        file.write_text(file.read_text(encoding="utf-8").replace(PLACEHOLDER, STAND_IN),
                        encoding="utf-8")
    sock = listening_socket()
    database_url = f"sqlite+aiosqlite:///{tmp / 'regimen.db'}"
    settings = load_settings(
        _env_file=None, database_url=database_url, data_dir=tmp,
        base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        secret_keys=["browser-test-key-" + "x" * 40],
        mail_url=f"smtp://127.0.0.1:{smtp_port}",
        mail_from="Lawrence Gold <regimen@regimen.test>",
        content_path=content, allowed_origins=[blog.origin],
        # Every signup of every test comes from 127.0.0.1, within a minute or so; so does every
        # opening of a personal link and every Done button pressed, dozens a minute.
        signups_per_ip="100/minute", link_opens_per_ip="1000/minute",
    )
    migrate(database_url)
    # Exactly what `regimen embed --source …` prints, pasted into the post.
    blog.pages[POST_PATH] = Template((HERE / "blog_post.html").read_text()).substitute(
        snippet=snippet(settings.base_url, blog.origin + POST_PATH))
    app = LiveApp(build_runtime(settings), sock)
    controller.start()
    elsewhere.start()
    blog.start()
    app.start()
    try:
        yield World(app=app, blog=blog, elsewhere=elsewhere, inbox=inbox)
    finally:
        app.stop()
        blog.stop()
        elsewhere.stop()
        controller.stop()


@pytest.fixture(scope="package")
def browser(world: World) -> Iterator[Browser]:
    """Starts after `world`, whose set-up runs asyncio (migrations) in this thread."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            # The proxy flag itself, not Playwright's option, which would send 127.0.0.1 (the
            # app and the blog) through the proxy too.
            args=["--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                  f"--proxy-server={world.elsewhere.origin}",
                  # The same pixels on every run, so the committed screenshots stay put.
                  "--force-color-profile=srgb", "--disable-partial-raster",
                  "--num-raster-threads=1", "--disable-lcd-text"],
        )
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page, and every console error or script error it met (a CSP refusal is one)."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def watch(self) -> Tab:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{self.page.url}: {message.text}")

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda error: self.errors.append(f"{self.page.url}: {error}"))
        return self


def open_tab(browser: Browser, *, phone: bool = True, dark: bool = False,
             javascript: bool = True) -> tuple[BrowserContext, Tab]:
    options: dict[str, Any] = dict(PHONE if phone else DESKTOP)
    context = browser.new_context(color_scheme="dark" if dark else "light",
                                  java_script_enabled=javascript, **options)
    context.set_default_timeout(15_000)
    return context, Tab(context.new_page()).watch()


@cache
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `npm ci --prefix tests/browser` (make test does)")
    return AXE.read_text()


def axe_violations(page: Page) -> list[str]:
    """Serious and critical accessibility problems axe-core finds on the page as shown.
    Injected through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(axe_source())
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['impact']}: {v['id']} ({v['help']}) at "
            f"{json.dumps([node['target'] for node in v['nodes']])}"
            for v in found if v["impact"] in ("serious", "critical")]


def mail_link(world: World, address: str, path: str, count: int = 1) -> str:
    """The first link containing `path` in the `count`-th mail to `address`."""
    mail = world.inbox.wait(count, to=address)[count - 1]
    return next(url for url in links_in(mail) if path in url)


def regimen_mail_link(world: World, address: str, title: str, path: str,
                      count: int) -> str:
    """The first link containing `path` in the regimen mail about `title`, among the first
    `count` mails to `address` (regimen mails confirmed together may arrive in any order)."""
    mails = world.inbox.wait(count, to=address)
    mail = next(mail for mail in mails if mail["Subject"].endswith(title))
    return next(url for url in links_in(mail) if path in url)


def unexpected(errors: list[str]) -> list[str]:
    """Console errors other than Chromium's note that a page came with an error status (the
    error pages do, on purpose)."""
    return [error for error in errors
            if "Failed to load resource: the server responded with a status of" not in error]
