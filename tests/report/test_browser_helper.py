"""Tests of the headless Chromium page check itself, on tiny pages written into tmp_path.

One browser is launched for the module; every test is skipped, with the reason in pytest's -ra
summary, where Playwright or Chromium is missing.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import Browser, check_page, chromium_path, skip_reason

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10">'
    '<rect width="20" height="10" fill="teal"/></svg>'
)
SVG_URI = "data:image/svg+xml;base64," + base64.b64encode(SVG.encode()).decode()

SORTABLE = """<!doctype html>
<html><head><meta charset="utf-8"><title>runs</title></head><body>
<table id="runs">
  <thead><tr><th>name</th><th>loss</th></tr></thead>
  <tbody>
    <tr><td>b</td><td>0.5</td></tr>
    <tr><td>a</td><td>10</td></tr>
    <tr><td>c</td><td>2</td></tr>
  </tbody>
</table>
<script>
  // numeric where both cells are numbers, so "10" sorts after "2"
  document.querySelectorAll("#runs th").forEach((th, col) => th.addEventListener("click", () => {
    const body = document.querySelector("#runs tbody");
    const key = (row) => row.cells[col].textContent.trim();
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      return isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
    });
    rows.forEach((row) => body.appendChild(row));
  }));
</script>
</body></html>
"""


def write_png(path: Path, width: int = 4, height: int = 3) -> None:
    """Write a small solid RGB PNG by hand, so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    # each scanline starts with filter type 0 (none)
    raw = b"".join(b"\x00" + b"\x20\x80\xc0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_page(folder: Path, body: str, title: str = "page") -> Path:
    """Write `index.html` with inline CSS around `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / "index.html"
    html.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body { font-family: sans-serif; margin: 2em; }</style></head>"
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return html


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with Browser() as b:
        yield b


def test_skip_reason_names_a_missing_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_CHROMIUM", "/nonexistent/chromium")
    assert chromium_path() is None
    reason = skip_reason()
    assert reason is not None
    assert reason.startswith("headless Chromium check skipped:")
    assert "/nonexistent/chromium" in reason or "playwright" in reason


def test_good_page_has_no_problems(browser: Browser, tmp_path: Path) -> None:
    figures = tmp_path / "report" / "figures"
    figures.mkdir(parents=True)
    write_png(figures / "curve.png")
    html = write_page(
        tmp_path / "report",
        f'<h1>Report</h1><img src="figures/curve.png" alt="curve"><img src="{SVG_URI}" alt="svg">',
        title="good report",
    )

    check = browser.check_page(html, tmp_path / "shots" / "good.png")

    assert check.problems == []
    assert check.images == 2
    assert check.title == "good report"
    assert check.screenshot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow  # the report page tests cover the helper's common path
def test_script_error_is_a_console_error(browser: Browser, tmp_path: Path) -> None:
    html = write_page(tmp_path, "<p>hi</p><script>undefinedFunction()</script>")

    check = browser.check_page(html, tmp_path / "shot.png")

    assert any("undefinedFunction" in e for e in check.console_errors), check.console_errors
    assert check.failed_requests == []


@pytest.mark.slow  # the report page tests cover the helper's common path
def test_missing_image_is_broken_and_a_failed_request(browser: Browser, tmp_path: Path) -> None:
    html = write_page(tmp_path, '<img src="missing.png" alt="gone">')

    check = browser.check_page(html, tmp_path / "shot.png")

    assert check.broken_images == ["missing.png"]
    assert check.images == 1
    assert any("missing.png" in r for r in check.failed_requests), check.failed_requests


def test_network_script_is_blocked_and_reported(browser: Browser, tmp_path: Path) -> None:
    url = "https://example.com/x.js"
    html = write_page(tmp_path, f'<p>hi</p><script src="{url}"></script>')

    check = browser.check_page(html, tmp_path / "shot.png")

    assert any(r.startswith(url) for r in check.failed_requests), check.failed_requests


@pytest.mark.slow  # the report page tests cover the helper's common path
def test_header_click_sorts_the_column(browser: Browser, tmp_path: Path) -> None:
    html = tmp_path / "index.html"
    html.write_text(SORTABLE, encoding="utf-8")

    assert browser.sort_by_header(html, "runs", "loss") == ["0.5", "2", "10"]
    assert browser.sort_by_header(html, "runs", "name") == ["a", "b", "c"]
    with pytest.raises(LookupError, match="headers: \\['name', 'loss'\\]"):
        browser.sort_by_header(html, "runs", "accuracy")


@pytest.mark.slow  # the report page tests cover the helper's common path
def test_check_page_launches_its_own_browser(tmp_path: Path) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    html = write_page(tmp_path, "<p>hi</p>", title="standalone")

    check = check_page(html, tmp_path / "shot.png", width=400)

    assert check.problems == []
    assert check.title == "standalone"
