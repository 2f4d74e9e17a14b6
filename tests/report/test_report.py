"""`mlx report` on tiny real runs: the tables' numbers against the run records, the page in a
real headless browser, bad input, and the report folder never half-written."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from mlx.errors import MlxError
from mlx.report import build as build_module
from mlx.report.collect import collect
from tests.conftest import run_cli

from .browser import Browser, skip_reason

ROOT = Path(__file__).resolve().parents[2]
# screenshots of the generated pages, kept for a person to look at after the test run
ARTIFACTS = ROOT / "outputs" / "test-artifacts"


def records(folder: Path) -> dict[str, dict]:
    """metrics.json of every run folder below ``folder``, by its path relative to ``folder``."""
    return {
        str(p.parent.relative_to(folder)): json.loads(p.read_text())
        for p in sorted(folder.rglob("metrics.json"))
    }


def read_table(report: Path, name: str) -> dict:
    return json.loads((report / "tables" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def report(tiny_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report over every tiny run, made by the real `mlx report` executable."""
    out = tmp_path_factory.mktemp("reports") / "tiny"
    res = run_cli(
        "report", str(tiny_runs), "--name", "tiny", "--out", str(out), "--wandb", "disabled"
    )
    assert res.returncode == 0, res.output
    assert str(out / "index.html") in res.stdout and str(out / "report.md") in res.stdout
    return out


def test_report_folder_holds_page_markdown_figures_and_tables(report: Path) -> None:
    assert (report / "index.html").is_file() and (report / "report.md").is_file()
    assert (report / "figures" / "learning_curves.svg").is_file()
    for name in ("runs", "seeds", "provenance", "packages"):
        assert (report / "tables" / f"{name}.csv").is_file()
        assert (report / "tables" / f"{name}.json").is_file()
    meta = json.loads((report / "report.json").read_text())
    assert meta["format"] == "mlx.report" and len(meta["runs"]) == 4
    # nothing left beside it from the atomic write
    assert [p.name for p in report.parent.iterdir()] == ["tiny"]


def test_runs_table_numbers_are_the_records(report: Path, tiny_runs: Path) -> None:
    table = read_table(report, "runs")
    rows = {r["run"]: r for r in table["rows"]}
    recs = records(tiny_runs)
    assert set(rows) == set(recs) == {"multirun/0", "multirun/1", "single", "failed"}
    all_metrics = {m for rec in recs.values() for m in rec["metrics"]}
    for name, rec in recs.items():
        row = rows[name]
        assert row["status"] == rec["status"]
        for metric in all_metrics:
            if metric in rec["metrics"]:
                assert row[metric] == pytest.approx(rec["metrics"][metric], rel=1e-12)
            else:
                assert row[metric] is None  # missing, never zero
    # only the keys that differ: seed and lr (output folders are not config differences)
    assert {"seed", "model.lr"} <= set(table["columns"])
    assert not any(c.startswith(("paths.", "trainer.default_root_dir")) for c in table["columns"])
    assert rows["failed"]["model.lr"] == 1e6 and rows["single"]["model.lr"] == 0.01
    failed = recs["failed"]
    assert failed["status"] == "failed" and "diverged" in failed["error"]
    assert rows["failed"]["error"] == failed["error"]
    assert "did not finish" in table["note"]


def test_seed_aggregation_matches_the_records(report: Path, tiny_runs: Path) -> None:
    from scipy import stats

    rows = read_table(report, "seeds")["rows"]
    recs = records(tiny_runs)
    seeds = [recs["multirun/0"]["metrics"], recs["multirun/1"]["metrics"]]
    (row,) = [r for r in rows if r["metric"] == "test/acc" and r["runs"] == 2]
    xs = [m["test/acc"] for m in seeds]
    half = stats.t.ppf(0.975, 1) * statistics.stdev(xs) / math.sqrt(2)
    assert row["mean"] == pytest.approx(statistics.fmean(xs))
    assert row["sd"] == pytest.approx(statistics.stdev(xs))
    assert row["ci95 low"] == pytest.approx(statistics.fmean(xs) - half)
    assert row["ci95 high"] == pytest.approx(statistics.fmean(xs) + half)
    assert row["seeds"] == "1, 2"
    # the lr=0.01 run is its own configuration with one seed (no spread to show): not a row;
    # the failed run is left out; the note says both
    assert {r["configuration"] for r in rows} == {"model.lr=0.003"}
    note = read_table(report, "seeds")["note"]
    assert "1 run(s) that did not complete are left out" in note
    assert "1 configuration(s) that ran with one seed only" in note


def test_markdown_shows_missing_cells_and_how_to_regenerate(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert md.startswith("# tiny")
    assert "mlx report" in md and "--name tiny" in md
    # the runs table's row of the failed run: status failed, its missing metrics as "—"
    failed_row = next(line for line in md.splitlines() if line.startswith("| failed | failed |"))
    assert "| — |" in failed_row and "diverged" in failed_row
    assert "![Learning curves](figures/learning_curves.svg)" in md


def test_page_opens_in_headless_chromium(report: Path) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        page = browser.check_page(report / "index.html", ARTIFACTS / "report_tiny.png")
        assert page.problems == []
        assert page.images == len(list((report / "figures").glob("*.svg"))) >= 1
        assert page.title.startswith("tiny")
        assert page.screenshot.stat().st_size > 10_000
        # sorting the runs table by a metric orders the runs by it, missing values last
        cells = browser.sort_by_header(report / "index.html", "runs", "test/acc")
    values = [float(c) for c in cells if c != "—"]
    assert values == sorted(values) and cells[-1] == "—"


def test_failed_write_keeps_the_previous_report(
    report: Path, tiny_runs: Path, monkeypatch, tmp_path: Path
) -> None:
    out = tmp_path / "again"
    shutil.copytree(report, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(_report):
        raise RuntimeError("disk full")

    monkeypatch.setattr("mlx.report.render.render_markdown", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_module.build([str(tiny_runs / "multirun")], "again", out, [])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


@pytest.mark.parametrize(
    "setup, message",
    [
        ("empty", "holds no mlx run records"),
        ("missing", "does not exist"),
        ("glob", "matches no files"),
        ("newer", "has record version 2, but this mlx reads version 1"),
        ("not_report", "is not an mlx report"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    setup: str, message: str, tiny_runs: Path, tmp_path: Path
) -> None:
    from mlx.cli import main

    out = tmp_path / "reports" / "r"
    paths = [str(tiny_runs / "multirun")]
    if setup == "empty":
        (tmp_path / "empty").mkdir()
        paths = [str(tmp_path / "empty")]
    elif setup == "missing":
        paths = [str(tmp_path / "nowhere")]
    elif setup == "glob":
        paths = [str(tmp_path / "nowhere-*")]
    elif setup == "newer":
        run = tmp_path / "newer"
        shutil.copytree(
            tiny_runs / "single", run, ignore=shutil.ignore_patterns("checkpoints", "csv")
        )
        summary = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**summary, "version": 2}))
        paths = [str(tiny_runs / "multirun"), str(run)]
    elif setup == "not_report":
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    # a record's own error (RecordError) or the report's (ReportError): both are user errors
    with pytest.raises(MlxError, match=message):
        build_module.build(paths, "r", out, [])
    # the command line prints the report area's error, as for every area
    assert main(["report", *paths, "--out", str(out), "--wandb", "disabled"]) == 2
    if setup == "not_report":
        assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    else:
        assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_collect_names_and_orders_runs(tiny_runs: Path) -> None:
    found = collect(
        [str(tiny_runs / "multirun"), str(tiny_runs / "single"), str(tiny_runs / "multirun" / "0")]
    )
    assert [r.name for r in found.runs] == ["multirun/0", "multirun/1", "single"]  # deduplicated
    assert collect([str(tiny_runs / "multirun" / "*")]).runs[1].name == "1"


def test_killed_run_is_shown_as_interrupted(tiny_runs: Path, tmp_path: Path) -> None:
    """A run folder with provenance but no metrics.json (the process was killed mid-run)."""
    killed = tmp_path / "runs" / "killed"
    shutil.copytree(
        tiny_runs / "single", killed, ignore=shutil.ignore_patterns("checkpoints", "csv")
    )
    (killed / "metrics.json").unlink()
    shutil.copytree(
        tiny_runs / "multirun" / "0",
        tmp_path / "runs" / "ok",
        ignore=shutil.ignore_patterns("checkpoints", "csv"),
    )
    out = tmp_path / "r"
    build_module.build([str(tmp_path / "runs")], "r", out, [])
    rows = {r["run"]: r for r in read_table(out, "runs")["rows"]}
    assert rows["killed"]["status"] == "interrupted"
    assert all(rows["killed"][m] is None for m in ("test/acc", "val/acc"))
    assert rows["ok"]["status"] == "completed"
    assert "did not finish" in read_table(out, "runs")["note"]
    # its history so far still draws its learning curve
    assert (out / "figures" / "learning_curves.svg").is_file()
