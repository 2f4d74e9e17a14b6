"""Open a static report page in headless Chromium and collect what a reader would see go wrong.

A generated report is an `index.html` with `figures/*.svg` and `figures/*.png` next to it and
must be self-contained: it is opened from disk, often offline, so any request that is not
`file://` or `data:` is a bug. Every such request is blocked before it leaves the browser and
recorded as a failed request, so a check never depends on (or touches) the network.

The browser is the system Chromium (`apt-get install chromium`) driven by Playwright's bundled
driver; `playwright install` is never needed. Use `skip_reason()` to skip when either is missing:

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with Browser() as browser:
        check = browser.check_page(out / "index.html", tmp_path / "page.png")
    assert not check.problems, check.problems
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from playwright.sync_api import Browser as PlaywrightBrowser
    from playwright.sync_api import BrowserContext, Page, Playwright, Route, WebSocketRoute

ENV_VAR = "MLX_CHROMIUM"
# Headless and quiet: as root Chromium needs --no-sandbox, and without the background-networking
# flags it phones home (component updates, sync, QUIC probes), which shows up as refused
# connections on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# blob: and about: never leave the browser (object URLs made by the page's own JS, empty
# iframes), so they are as self-contained as file: and data:.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
VIEWPORT_HEIGHT = 800
TIMEOUT_MS = 15_000
# How long to wait for images to finish loading after scrolling; anything still loading by
# then is what a reader would see as a missing figure.
IMAGE_WAIT_MS = 5_000
# Bounds the scroll loop for pages that keep growing as they scroll.
MAX_SCROLL_STEPS = 200

_SCROLL_JS = """
async (maxSteps) => {
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const step = Math.max(window.innerHeight, 200);
  for (let i = 0, y = 0; i < maxSteps && y < document.documentElement.scrollHeight; i++) {
    window.scrollTo(0, y);
    await frame();
    y += step;
  }
  window.scrollTo(0, document.documentElement.scrollHeight);
  await frame();
}
"""
# A missing or undecodable file still ends up complete, but with naturalWidth 0.
_BROKEN_IMAGES_JS = """
() => Array.from(document.images)
  .filter((img) => !img.complete || img.naturalWidth === 0)
  .map((img) => img.getAttribute("src") || img.currentSrc || "(no src)")
"""
_COLUMN_JS = """
(th) => {
  const table = th.closest("table");
  const index = th.cellIndex;
  return Array.from(table.rows)
    .filter((row) => row !== th.parentElement)
    .filter((row) => !["THEAD", "TFOOT"].includes(row.parentElement.tagName))
    .map((row) => row.cells[index])
    .filter((cell) => cell !== undefined)
    .map((cell) => cell.innerText.trim());
}
"""


def chromium_path() -> str | None:
    """Find the system Chromium.

    Returns:
        The executable named by `MLX_CHROMIUM` if set (a path or a command name), else
        `chromium` or `chromium-browser` from PATH; None when there is none.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return shutil.which(override)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def skip_reason() -> str | None:
    """Say why the headless Chromium check cannot run here.

    Returns:
        None when Playwright is importable and Chromium was found, else a one-line reason meant
        for `pytest.skip`, so it shows in pytest's `-ra` summary.
    """
    prefix = "headless Chromium check skipped:"
    if importlib.util.find_spec("playwright") is None:
        return f"{prefix} the playwright package is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        override = os.environ.get(ENV_VAR)
        if override:
            return f"{prefix} {ENV_VAR}={override} is not an executable"
        return (
            f"{prefix} chromium not found on PATH "
            f"(apt-get install chromium, or set {ENV_VAR} to the executable)"
        )
    return None


@dataclass
class PageCheck:
    """What went wrong on one page, as seen from a real browser.

    Attributes:
        console_errors: Console messages of type error, then uncaught page errors.
        failed_requests: `url: reason` for each request that failed, answered with HTTP status
            >= 400, or was blocked for leaving the page's folder (not file: or data:).
        broken_images: The src of each `<img>` that had not loaded, or had no decodable
            content, once the page was scrolled through.
        images: How many `<img>` elements the page has.
        title: The document title.
        screenshot: The full-page PNG screenshot.
    """

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    title: str = ""
    screenshot: Path = Path()

    @property
    def problems(self) -> list[str]:
        """Every error, failed request and broken image, each prefixed by its kind."""
        return [
            *(f"console: {e}" for e in self.console_errors),
            *(f"request: {r}" for r in self.failed_requests),
            *(f"image: {i}" for i in self.broken_images),
        ]


class _Recorder:
    """Collects console errors and failed requests for one browser context."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed_requests: list[str] = []
        # Blocked requests also fire `requestfailed`; recording them once, with the reason they
        # were blocked, reads better than Chromium's ERR_BLOCKED_BY_CLIENT.
        self._blocked: set[str] = set()

    def attach(self, context: BrowserContext, page: Page) -> None:
        context.route("**/*", self._route)
        # WebSockets bypass `route`; left unconnected they never reach the server. Playwright
        # before 1.48 cannot intercept them, so there they are only recorded.
        if hasattr(context, "route_web_socket"):
            context.route_web_socket(re.compile(r".*"), self._route_web_socket)
        else:
            page.on("websocket", lambda ws: self._block(ws.url))
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def _block(self, url: str) -> None:
        if url not in self._blocked:
            self._blocked.add(url)
            self.failed_requests.append(
                f"{url}: blocked (a self-contained page must not fetch from the network)"
            )

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            self._block(url)
            route.abort("blockedbyclient")

    def _route_web_socket(self, ws: WebSocketRoute) -> None:
        self._block(ws.url)
        ws.close()

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        location = message.location or {}
        url, line = location.get("url"), location.get("lineNumber", 0)
        # lineNumber is 0-based, and 0 also for messages without a line (failed resource loads)
        if url:
            text = f"{text} ({url}:{line + 1})" if line else f"{text} ({url})"
        self.console_errors.append(text)

    def _on_page_error(self, error: Any) -> None:
        self.page_errors.append(f"uncaught {error.name}: {error.message}")

    def _on_request_failed(self, request: Any) -> None:
        if request.url not in self._blocked:
            self.failed_requests.append(f"{request.url}: {request.failure or 'failed'}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed_requests.append(f"{response.url}: HTTP {response.status}")


class _Driver:
    """The Playwright driver, shared by every open `Browser` in this thread.

    Playwright's sync API refuses to start a second driver while one runs in the same thread,
    so a module-scoped `Browser` fixture and a one-off `check_page()` call must share one.
    """

    playwright: Playwright | None = None
    users = 0

    @classmethod
    def acquire(cls) -> Playwright:
        if cls.playwright is None:
            from playwright.sync_api import sync_playwright

            cls.playwright = sync_playwright().start()
        cls.users += 1
        return cls.playwright

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.playwright is not None:
            cls.playwright.stop()
            cls.playwright = None


class Browser:
    """A headless system Chromium, started once and reused for several pages.

    Each page is opened in a fresh browser context, so pages cannot affect each other.

    Example:
        with Browser() as browser:
            check = browser.check_page(html, tmp_path / "shot.png")
    """

    def __init__(self, executable: str | None = None) -> None:
        """Prepare (but do not start) the browser.

        Args:
            executable: The Chromium to run; `chromium_path()` when None.
        """
        self.executable = executable or chromium_path()
        self._browser: PlaywrightBrowser | None = None

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Launch Chromium.

        Raises:
            RuntimeError: When no Chromium was found (see `skip_reason()`).
        """
        if self._browser is not None:
            return
        if self.executable is None:
            raise RuntimeError(skip_reason() or "chromium not found")
        playwright = _Driver.acquire()
        try:
            self._browser = playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=CHROMIUM_ARGS
            )
        except Exception:
            _Driver.release()
            raise

    def close(self) -> None:
        """Shut Chromium and the Playwright driver down; safe to call twice."""
        if self._browser is not None:
            try:
                self._browser.close()
            finally:
                self._browser = None
                _Driver.release()

    def _open(
        self, html: Path, width: int, wait_until: Literal["load", "networkidle"] = "networkidle"
    ) -> tuple[BrowserContext, Page, _Recorder]:
        html = Path(html).resolve()
        if not html.is_file():
            raise FileNotFoundError(html)
        self.start()
        assert self._browser is not None
        context = self._browser.new_context(
            viewport={"width": width, "height": VIEWPORT_HEIGHT}, service_workers="block"
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        recorder = _Recorder()
        recorder.attach(context, page)
        page.goto(html.as_uri(), wait_until=wait_until)
        return context, page, recorder

    def check_page(self, html: Path, screenshot: Path, width: int = 1280) -> PageCheck:
        """Open a page, scroll through it, check its images and take a full-page screenshot.

        Args:
            html: The page, e.g. a report's `index.html`.
            screenshot: Where to write the full-page PNG (parent folders are created).
            width: Viewport width in CSS pixels.

        Returns:
            The errors, failed requests and broken images found, with the title and screenshot.

        Raises:
            FileNotFoundError: When `html` does not exist.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        context, page, recorder = self._open(html, width)
        try:
            # Lazy images off screen or in hidden tabs would otherwise never load, and a broken
            # figure in a collapsed section is still broken.
            page.evaluate("() => { for (const img of document.images) img.loading = 'eager'; }")
            page.evaluate(_SCROLL_JS, MAX_SCROLL_STEPS)
            # images still loading after the wait are reported as broken below
            with contextlib.suppress(PlaywrightTimeoutError):
                page.wait_for_function(
                    "() => Array.from(document.images).every((img) => img.complete)",
                    timeout=IMAGE_WAIT_MS,
                )
            broken = page.evaluate(_BROKEN_IMAGES_JS)
            images = page.evaluate("() => document.images.length")
            page.evaluate("() => window.scrollTo(0, 0)")
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            title = page.title()
        finally:
            context.close()
        return PageCheck(
            console_errors=[*recorder.console_errors, *recorder.page_errors],
            failed_requests=recorder.failed_requests,
            broken_images=broken,
            images=images,
            title=title,
            screenshot=screenshot,
        )

    def sort_by_header(self, html: Path, table_id: str, header_text: str) -> list[str]:
        """Click a table header and read the clicked column back, to check the page's sorting.

        Args:
            html: The page.
            table_id: The id of the `<table>`.
            header_text: The exact (whitespace-trimmed) text of the `<th>` to click.

        Returns:
            The text of that column's body cells, top to bottom, after the click.

        Raises:
            FileNotFoundError: When `html` does not exist.
            LookupError: When the table has no such header, or more than one.
        """
        # "load" is enough here: handlers are attached by then, and network idle costs 0.5 s
        context, page, _ = self._open(html, 1280, wait_until="load")
        try:
            # an attribute selector copes with ids that are not valid CSS identifiers (e.g. "1st")
            headers = page.locator(f'table[id="{table_id}"] th')
            exact = re.compile(rf"^\s*{re.escape(header_text)}\s*$")
            matches = headers.filter(has_text=exact)
            if matches.count() != 1:
                found = [t.strip() for t in headers.all_inner_texts()]
                raise LookupError(
                    f"expected one <th> {header_text!r} in table#{table_id}, "
                    f"found {matches.count()}; headers: {found}"
                )
            matches.click()
            return matches.evaluate(_COLUMN_JS)
        finally:
            context.close()


def check_page(
    html: Path, screenshot: Path, width: int = 1280, browser: Browser | None = None
) -> PageCheck:
    """Check one page; see `Browser.check_page`.

    Args:
        html: The page, e.g. a report's `index.html`.
        screenshot: Where to write the full-page PNG.
        width: Viewport width in CSS pixels.
        browser: A started `Browser` to reuse; when None one is launched for this call.

    Returns:
        The errors, failed requests and broken images found, with the title and screenshot.
    """
    if browser is not None:
        return browser.check_page(html, screenshot, width)
    with Browser() as own:
        return own.check_page(html, screenshot, width)


def sort_by_header(
    html: Path, table_id: str, header_text: str, browser: Browser | None = None
) -> list[str]:
    """Click a table header and return the clicked column; see `Browser.sort_by_header`.

    Args:
        html: The page.
        table_id: The id of the `<table>`.
        header_text: The exact text of the `<th>` to click.
        browser: A started `Browser` to reuse; when None one is launched for this call.

    Returns:
        The text of that column's body cells, top to bottom, after the click.
    """
    if browser is not None:
        return browser.sort_by_header(html, table_id, header_text)
    with Browser() as own:
        return own.sort_by_header(html, table_id, header_text)
