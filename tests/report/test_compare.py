"""`mlx compare` on real run records: two tiny trained runs and a failed one made from a copy.

Every number the comparison prints is checked against the records' own files (metrics.json,
config.yaml), not against the code that formats them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from mlx.cli import main as mlx_main
from mlx.report.compare import compare, direction

ERROR = "FloatingPointError: train/loss is nan at epoch 1"
COLUMNS = 200


def copy_run(src: Path, dst: Path) -> None:
    """A copy of a run folder that points at itself (its config names its own folder)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "csv", "wandb"))
    config = dst / "config.yaml"
    config.write_text(config.read_text().replace(str(src), str(dst)))


@pytest.fixture(scope="module")
def runs(tiny_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding runs a (seed 1), b (seed 2, lr 0.01) and c (b's copy, failed, no test/*),
    copied from the shared tiny runs (trained once per test session)."""
    root = tmp_path_factory.mktemp("compare")
    copy_run(tiny_runs / "multirun" / "0", root / "a")
    copy_run(tiny_runs / "single", root / "b")
    failed = root / "c"
    copy_run(root / "b", failed)
    summary = json.loads((failed / "metrics.json").read_text())
    summary["status"] = "failed"
    summary["error"] = ERROR
    summary["metrics"] = {k: v for k, v in summary["metrics"].items() if not k.startswith("test/")}
    (failed / "metrics.json").write_text(json.dumps(summary))
    return root


def metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def printed(paths: list[Path], styles: bool = False, **kwargs) -> str:
    console = Console(record=True, width=COLUMNS)
    compare([str(p) for p in paths], console=console, **kwargs)
    return console.export_text(styles=styles)


def row(text: str, label: str) -> list[str]:
    """The cells after the first of the table row whose first cell is ``label``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def parse(cell: str) -> tuple[str, str | None]:
    """``'0.9815 (+0.0111)'`` -> ``('0.9815', '+0.0111')``."""
    match = re.fullmatch(r"(\S+)(?: \((\S+)\))?", cell)
    assert match, cell
    return match[1], match[2]


def close_to(text: str, value: float) -> bool:
    """Whether ``text`` is ``value`` rounded to the digits ``text`` shows."""
    mantissa, _, exponent = text.replace(",", "").partition("e")
    decimals = len(mantissa.partition(".")[2])
    half_unit = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(mantissa) * 10.0 ** int(exponent or 0) - value) <= half_unit * 1.001


def test_values_and_deltas_are_the_records(runs: Path) -> None:
    a, b = metrics(runs / "a"), metrics(runs / "b")
    text = printed([runs / "a", runs / "b"])
    styled = printed([runs / "a", runs / "b"], styles=True)

    assert set(a) == set(b) and {"test/acc", "val/loss", "model/params"} <= set(a)
    for name in a:
        (value_a, none), (value_b, delta) = map(parse, row(text, name))
        assert none is None
        assert close_to(value_a, a[name]) and close_to(value_b, b[name]), (name, value_a, value_b)
        assert close_to(delta, b[name] - a[name]), (name, delta, b[name] - a[name])
        assert delta[0] in "+-"
        # green (32) when b is better, red (31) when worse, no colour when equal or neutral
        colour = re.search(rf"\x1b\[(\d+)m \({re.escape(delta)}\)", styled)
        better = direction(name) * (b[name] - a[name])
        if better > 0:
            assert colour and colour[1] == "32", (name, delta)
        elif better < 0:
            assert colour and colour[1] == "31", (name, delta)
        else:
            assert not colour or colour[1] not in ("31", "32"), (name, delta)
    # an integer count is printed whole, with thousands separators, and so is its delta
    assert row(text, "model/params")[0] == f"{a['model/params']:,}"
    assert row(text, "model/params")[1].endswith(f"(+{b['model/params'] - a['model/params']:,})")


def test_direction_of_metric_names() -> None:
    assert [direction(m) for m in ("val/acc", "test/r2", "test/f1_macro", "val/auroc")] == [1] * 4
    lower = ("val/loss", "test/rmse", "model/params", "model/macs", "compressed/latency_b1_p50_ms")
    assert [direction(m) for m in lower] == [-1] * len(lower)
    assert direction("train/lr") == 0


def test_config_differences_leave_out_output_paths(runs: Path) -> None:
    text = printed([runs / "a", runs / "b"])
    config = text.partition("Config differences")[2]
    lr_a = OmegaConf.load(runs / "a" / "config.yaml").model.lr

    assert row(config, "seed") == ["1", "2"]
    assert row(config, "model.lr") == [str(lr_a), "0.01"]
    keys = [cells[0] for line in config.splitlines() if (cells := line.split("│")[1:-1])]
    assert [k.strip() for k in keys] == ["seed", "model.lr"]
    assert str(runs) not in config
    # the header names each run and its folder
    assert "baseline a" in text
    assert str(runs / "a") in text and str(runs / "b") in text


def test_identical_configs_are_said_so(runs: Path) -> None:
    text = printed([runs / "b", runs / "c"])
    assert "Config differences" not in text
    assert "The configs are identical" in text


def test_failed_run_shows_status_error_and_missing_metrics(runs: Path) -> None:
    text = printed([runs])  # one folder holding all three runs
    a, c = metrics(runs / "a"), metrics(runs / "c")

    assert "Comparing 3 runs" in text
    assert re.search(r"^c\s+failed\s", text, re.M), text
    assert re.search(r"^a \(baseline\)\s+completed\s", text, re.M), text
    assert f"c failed: {ERROR}" in text
    for name in a:
        cell = row(text, name)[2]
        if name.startswith("test/"):
            assert cell == "—", (name, cell)
        else:
            assert close_to(parse(cell)[0], c[name])


def test_only_the_metrics_asked_for(runs: Path) -> None:
    text = printed([runs / "a", runs / "b"], metrics=["val/loss", "test/acc"])
    table = text.partition("Metrics")[2].partition("Config differences")[0]
    shown = [c[0].strip() for line in table.splitlines() if (c := line.split("│")[1:-1])]
    assert shown == ["val/loss", "test/acc"]


def test_main_exit_codes(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mlx_main(["compare", str(runs / "a"), str(runs / "b")]) == 0
    assert "test/acc" in capsys.readouterr().out

    assert mlx_main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlx: error:") and "holds no mlx run records" in err

    assert mlx_main(["compare", str(runs / "a")]) == 2
    err = capsys.readouterr().err
    assert "needs at least two runs" in err and "holds 1" in err

    assert mlx_main(["compare", str(runs / "a"), str(runs / "b"), "--metric", "test/acuracy"]) == 2
    err = capsys.readouterr().err
    assert "no run has a metric 'test/acuracy'; did you mean 'test/acc'?" in err


def test_import_stays_light() -> None:
    code = (
        "import sys, mlx.report.compare; "
        "print([m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
