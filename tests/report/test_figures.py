"""The report's figures and sweep tables on small hand-made sweep summaries: what each draws
(read back from the matplotlib objects) and when it has nothing to draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx.report import figures as F
from mlx.report import tables as T
from mlx.report.collect import Sweep, _parse_cell


def make_sweep(trials: list[dict], objectives: list[dict], **summary) -> Sweep:
    space = summary.pop("search_space", {"lr": {}, "hidden": {}})
    return Sweep(
        path=Path("/tmp/s"),
        summary={"name": "s", "objectives": objectives, "search_space": space, **summary},
        trials=trials,
        ledger=None,
    )


def test_best_so_far_is_the_running_best_and_marks_pruned_and_failed() -> None:
    trials = [
        {"number": 0, "state": "complete", "val/acc": 0.5},
        {"number": 1, "state": "complete", "val/acc": 0.8},
        {"number": 2, "state": "pruned", "val/acc": None},
        {"number": 3, "state": "complete", "val/acc": 0.7},
        {"number": 4, "state": "fail", "val/acc": None},
        {"number": 5, "state": "complete", "val/acc": 0.9},
    ]
    fig = F.best_so_far(make_sweep(trials, [{"metric": "val/acc", "mode": "max"}]), "s")
    ax = fig.figure.axes[0]
    (step,) = ax.lines
    assert list(step.get_ydata()) == [0.5, 0.8, 0.8, 0.9]
    labels = {c.get_label() for c in ax.collections}
    assert {"completed trial", "pruned", "failed"} <= labels
    # minimising: the running minimum
    fig = F.best_so_far(make_sweep(trials, [{"metric": "val/acc", "mode": "min"}]), "s")
    assert list(fig.figure.axes[0].lines[0].get_ydata()) == [0.5, 0.5, 0.5, 0.5]


def test_parallel_coordinates_place_conditional_parameters_below_their_axis() -> None:
    trials = [
        {"number": i, "state": "complete", "val/acc": acc, "lr": lr, "momentum": m, "opt": opt}
        for i, (acc, lr, m, opt) in enumerate(
            [(0.9, 1e-4, None, "adam"), (0.8, 1e-2, 0.5, "sgd"), (0.7, 1e-1, 0.9, "sgd")]
        )
    ]
    sweep = make_sweep(
        trials,
        [{"metric": "val/acc", "mode": "max"}],
        search_space={"lr": {}, "momentum": {}, "opt": {}},
    )
    fig = F.parallel_coordinates(sweep, "s")
    ax = fig.figure.axes[0]
    # lines are drawn worst first; the best (adam, no momentum) last, on top
    best = ax.lines[2]
    lr, momentum, opt, acc = best.get_ydata()
    assert lr == pytest.approx(0.0)  # lowest lr on a log axis
    assert momentum == pytest.approx(-0.08)  # not set for adam
    assert opt == 0.0 and acc == 1.0
    texts = {t.get_text() for t in ax.texts}
    assert {"not set", "adam", "sgd", "log scale"} <= texts
    assert F.parallel_coordinates(make_sweep(trials[:1], sweep.objectives), "s") is None


def test_pareto_front_is_the_summary_best_in_cost_order() -> None:
    trials = [
        {"number": 0, "state": "complete", "val/acc": 0.95, "model/params": 5000},
        {"number": 1, "state": "complete", "val/acc": 0.90, "model/params": 1000},
        {"number": 2, "state": "complete", "val/acc": 0.85, "model/params": 3000},
        {"number": 3, "state": "fail", "val/acc": None, "model/params": None},
    ]
    objectives = [{"metric": "val/acc", "mode": "max"}, {"metric": "model/params", "mode": "min"}]
    fig = F.pareto(make_sweep(trials, objectives, best=[{"number": 0}, {"number": 1}]), "s")
    ax = fig.figure.axes[0]
    (front,) = ax.lines
    assert list(front.get_xdata()) == [1000, 5000] and list(front.get_ydata()) == [0.90, 0.95]
    (dominated,) = [c for c in ax.collections if c.get_label() == "dominated trial"]
    assert dominated.get_offsets().tolist() == [[3000, 0.85]]
    assert F.pareto(make_sweep(trials, objectives[:1]), "s") is None


def test_compression_tradeoffs_and_table(tmp_path: Path) -> None:
    from mlx.record import RunRecord
    from mlx.report.collect import Run

    stages = [
        {
            "stage": "baseline",
            "test/acc": 0.98,
            "size_bytes": 400 * 1024,
            "latency_b64_p50_ms": 8.0,
            "file": None,
        },
        {
            "stage": "prune",
            "test/acc": 0.97,
            "size_bytes": 200 * 1024,
            "latency_b64_p50_ms": 5.0,
            "file": "x.pt",
            "details": {"a": 1},
        },
        {
            "stage": "quantize",
            "test/acc": 0.97,
            "size_bytes": 70 * 1024,
            "latency_b64_p50_ms": 1.5,
            "file": "y.pt",
        },
    ]
    record = RunRecord(tmp_path, "completed", {}, {}, {}, {"compression": stages}, [])
    run = Run(record, "r")
    fig = F.compression_tradeoffs(run, "r")
    latency, size = fig.figure.axes
    assert list(latency.lines[0].get_xdata()) == [8.0, 5.0, 1.5]
    assert list(size.lines[0].get_xdata()) == [400, 200, 70]  # KB
    assert [t.get_text() for t in size.texts] == ["baseline", "prune", "quantize"]
    path = F.save(fig, tmp_path)
    assert (
        path.read_text().startswith("<?xml") and "quantize" in path.read_text()
    )  # text kept as text
    table = T.compression_table(run)
    assert table.columns == ["stage", "test/acc", "size_bytes", "latency_b64_p50_ms"]
    assert [r["stage"] for r in table.rows] == ["baseline", "prune", "quantize"]


def test_trials_csv_cells_are_parsed_back_to_values() -> None:
    assert _parse_cell("") is None
    assert _parse_cell("3") == 3 and _parse_cell("0.5") == 0.5 and _parse_cell("1e-05") == 1e-05
    assert _parse_cell("[128, 64]") == [128, 64]
    assert _parse_cell("torch.optim.SGD") == "torch.optim.SGD"
