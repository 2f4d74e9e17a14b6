"""The example reports committed in reports/: each names the command that regenerates it (the
same line `make reports` runs), and each page opens cleanly in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .browser import Browser, skip_reason
from .test_report import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = sorted(p.parent for p in (ROOT / "reports").glob("*/report.json"))


def make_reports_lines() -> list[str]:
    """The commands of the Makefile's `reports` target, as a user types them."""
    text = (ROOT / "Makefile").read_text()
    body = text.split("\nreports:", 1)[1].split("\n\n", 1)[0]
    return [line.strip().replace("$(BIN)/", "") for line in body.splitlines()[1:]]


def test_every_published_report_is_regenerated_by_make_reports() -> None:
    assert len(PUBLISHED) >= 6, PUBLISHED
    lines = make_reports_lines()
    for folder in PUBLISHED:
        meta = json.loads((folder / "report.json").read_text())
        assert meta["format"] == "mlx.report"
        assert meta["command"] in lines, (folder.name, meta["command"])
        md = (folder / "report.md").read_text()
        assert f"```bash\n{meta['command']}\n```" in md  # written at its top
        # published reports name folders relative to the repository, never one machine's
        assert not re.search(r"/(work|home|tmp|root)/", md), folder.name
        for figure in meta["figures"]:
            assert (folder / "figures" / f"{figure}.svg").is_file()


@pytest.mark.slow
def test_published_pages_open_cleanly() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        for folder in PUBLISHED:
            page = browser.check_page(
                folder / "index.html", ARTIFACTS / f"published_{folder.name}.png"
            )
            assert page.problems == [], folder.name
            assert page.images == len(json.loads((folder / "report.json").read_text())["figures"])
