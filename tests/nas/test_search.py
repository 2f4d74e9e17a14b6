"""`mlx nas` end to end, through the real command: multi-trial searches as sweeps of candidates,
the hardware budget, one-shot searches in the run's search stage, the exported architecture that
retrains, and bad input refused before any candidate trains."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUIET, run_cli

REPO = Path(__file__).resolve().parents[2]

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "tracking=none", *QUIET]
# a small macro space: quick candidates whose parameter counts differ widely
SMALL_MACRO = [
    "search_space=macro_cnn",
    "search_space.widths=[8,32]",
    "search_space.depth=[1,2]",
    "search_space.ops=[identity,sepconv3x3,conv3x3]",
]


ONE_SHOT = ("darts", "gumbel_darts", "enas", "proxyless", "random_one_shot")


def nas(folder: Path, *args: str, timeout: float = 900):
    """`mlx nas` writing under ``folder``: a multi-trial search's sweep in ``folder/search``."""
    one_shot = any(a in {f"strategy={s}" for s in ONE_SHOT} for a in args)
    where = (
        [f"hydra.run.dir={folder}/run"]
        if one_shot
        else [f"hydra.sweep.dir={folder}/search", f"hydra.sweeper.export_dir={folder}/experiments"]
    )
    return run_cli("nas", *QUICK, f"paths.outputs={folder}", *where, *args, timeout=timeout)


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "search" / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_multi_trial_search_records_candidates_and_exports_an_architecture_that_retrains(
    tmp_path: Path,
) -> None:
    r = nas(tmp_path, *SMALL_MACRO, "strategy=regularized_evolution", "hydra.sweeper.n_trials=3")
    assert r.returncode == 0, r.output[-3000:]
    found = rows(tmp_path)
    assert [row["state"] for row in found] == ["complete"] * 3
    # one line per candidate while it searches
    assert r.output.count("complete val/acc=") == 3
    for row in found:
        assert int(row["params"]) > 0 and int(row["macs"]) > 0
        assert float(row["seconds"]) > 0
    summary = json.loads((tmp_path / "search" / "sweep.json").read_text())
    top = summary["top_k"]
    assert len(top) == 3 and top[0]["val/acc"] >= top[-1]["val/acc"]
    assert set(top[0]["arch"]) >= {"stage0_width", "stage0_depth", "stage0_layer0_op"}
    assert summary["rejected_over_budget"] == 0

    exported = tmp_path / "experiments" / "nas_macro_cnn_regularized_evolution.yaml"
    text = exported.read_text()
    assert "override /model: nas" in text
    # full fidelity: the estimation's and the search's settings are not in the experiment
    assert "limit_train_batches: 4" in text  # the user's own override stays
    body = yaml.safe_load(text)
    assert body["model"]["net"]["arch"] == top[0]["arch"]
    assert body["model"]["net"]["space"]["_target_"] == "mlx.nas.MacroCNN"

    # the round trip: the exported experiment retrains the same architecture from scratch; run
    # in tmp_path, whose experiments/ folder joins the experiment group (the current folder is
    # the project when no mlx.yaml is found)
    run = run_cli(
        "run",
        "experiment=nas_macro_cnn_regularized_evolution",
        *QUICK,
        f"hydra.run.dir={tmp_path / 'retrain'}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.output[-3000:]
    metrics = json.loads((tmp_path / "retrain" / "metrics.json").read_text())["metrics"]
    assert metrics["model/params"] == top[0]["params"]
    assert metrics["model/macs"] == top[0]["macs"]


def test_budget_rejects_candidates_before_they_train_and_counts_them(tmp_path: Path) -> None:
    r = nas(
        tmp_path,
        *SMALL_MACRO,
        "strategy=random",
        "hydra.sweeper.n_trials=3",
        "budget.max_params=6000",
    )
    assert r.returncode == 0, r.output[-3000:]
    found = rows(tmp_path)
    trained = [row for row in found if row["state"] != "rejected"]
    rejected = [row for row in found if row["state"] == "rejected"]
    assert len(trained) == 3  # rejected candidates do not use the budget of trials
    assert rejected, "this space has candidates over 6,000 parameters: some must be rejected"
    assert all(int(row["params"]) > 6000 for row in rejected)
    assert all(int(row["params"]) <= 6000 for row in trained)
    for row in rejected:  # rejected before training: no run folder
        assert not row["output_dir"]
        assert "budget.max_params" in row["error"]
    summary = json.loads((tmp_path / "search" / "sweep.json").read_text())
    assert summary["rejected_over_budget"] == len(rejected)
    assert "rejected before training" in r.output


def test_a_latency_budget_measures_each_candidate_on_cpu(tmp_path: Path) -> None:
    r = nas(
        tmp_path,
        "search_space=macro_mlp",
        "data=breast_cancer",
        "strategy=random",
        "hydra.sweeper.n_trials=2",
        "budget.max_latency_ms=1000",
        "budget.max_macs=10000000",
    )
    assert r.returncode == 0, r.output[-3000:]
    found = rows(tmp_path)
    assert [row["state"] for row in found] == ["complete", "complete"]
    assert all(0 < float(row["latency_ms"]) < 1000 for row in found)


@pytest.mark.slow
def test_rl_searches_the_cell_space_with_the_proxy_estimation(tmp_path: Path) -> None:
    r = nas(
        tmp_path,
        "search_space=cell",
        "strategy=rl",
        "estimation=proxy",
        "hydra.sweeper.n_trials=2",
    )
    assert r.returncode == 0, r.output[-3000:]
    found = rows(tmp_path)
    assert [row["state"] for row in found] == ["complete", "complete"]
    # the proxy trains a smaller network than the exported one
    run_cfg = yaml.safe_load((Path(found[0]["output_dir"]) / "config.yaml").read_text())
    assert run_cfg["model"]["net"]["space"]["num_cells"] == 3
    exported = yaml.safe_load(
        (tmp_path / "experiments" / "nas_cell_rl.yaml").read_text().split("\n", 3)[-1]
    )
    assert exported["model"]["net"]["space"]["num_cells"] == 5
    assert exported["model"]["net"]["space"]["channels"] == 16


def test_one_shot_search_trains_a_supernet_then_retrains_the_architecture(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    r = run_cli(
        "nas",
        "search_space=cell",
        "search_space.num_cells=2",
        "search_space.reductions=1",
        "strategy=darts",
        *QUICK,
        f"hydra.run.dir={run_dir}",
        f"paths.outputs={tmp_path}",
        timeout=900,
        cwd=tmp_path,  # the project: the architecture is exported to its experiments/
    )
    assert r.returncode == 0, r.output[-3000:]
    search = json.loads((run_dir / "search.json").read_text())
    assert search["kind"] == "one-shot" and search["strategy"] == "darts"
    candidate = search["candidates"][0]
    assert candidate["params"] > 0 and candidate["seconds"] > 0
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed"
    # the search is a stage of the run: timed in the record, before setup and training
    assert list(record["stages"]) == ["search", "setup", "train"]
    assert record["search"]["architecture"] == candidate["arch"]
    # the train stage retrained the architecture found, whose size the search recorded
    assert record["metrics"]["model/params"] == candidate["params"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["net"]["arch"] == candidate["arch"]
    exported = tmp_path / "experiments" / "nas_cell_darts.yaml"
    assert Path(search["experiment"]).resolve() == exported.resolve()
    body = yaml.safe_load(exported.read_text())
    assert body["model"]["net"]["arch"] == candidate["arch"]
    assert not (REPO / "experiments" / "nas_cell_darts.yaml").exists()


def test_a_search_that_fails_leaves_a_failed_record(make_cfg, tmp_path: Path) -> None:
    from mlx import run
    from mlx.nas.spaces import NasError

    # inside the job (no command-line pre-check), the search itself finds the bad input
    cfg = make_cfg(["model=nas", "search_space=cell", "strategy=darts", "budget.max_params=50000"])
    with pytest.raises(NasError, match="one-shot strategy trains all of them"):
        run.main(cfg)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "one-shot strategy" in record["error"]
    assert list(record["stages"]) == ["search"]


@pytest.mark.parametrize("strategy", ["grid", "tpe", "evolution"])
def test_the_other_sweep_strategies_search_architectures(strategy: str, tmp_path: Path) -> None:
    r = nas(
        tmp_path,
        "search_space=macro_mlp",
        "data=breast_cancer",
        f"strategy={strategy}",
        "hydra.sweeper.n_trials=2",
    )
    assert r.returncode == 0, r.output[-3000:]
    assert [row["state"] for row in rows(tmp_path)] == ["complete", "complete"]
    assert (tmp_path / "experiments" / f"nas_macro_mlp_{strategy}.yaml").is_file()


# ---- bad input: refused before any candidate trains, with no sweep folder --------------------

BAD = {
    "cnn space on tabular data": (
        ["search_space=macro_cnn", "data=breast_cancer", "strategy=random"],
        ["macro_mlp"],
    ),
    "reductions shrink 8x8 below 1x1": (
        [
            "search_space=cell",
            "search_space.reductions=4",
            "search_space.num_cells=5",
            "strategy=random",
        ],
        ["reductions"],
    ),
    "empty operation list": (
        ["search_space=cell", "search_space.ops=[]", "strategy=random"],
        ["search_space.ops"],
    ),
    "unknown operation": (
        ["search_space=cell", "search_space.ops=[sepconv3x3,sepcnv5x5]", "strategy=random"],
        ["sepcnv5x5", "sepconv5x5"],
    ),
    "a budget no candidate meets": (
        [*SMALL_MACRO, "strategy=random", "budget.max_params=10"],
        ["no candidate", "budget"],
    ),
    "a budget with a one-shot strategy": (
        ["search_space=cell", "strategy=darts", "budget.max_params=50000"],
        ["one-shot", "multi-trial"],
    ),
    "a one-shot strategy on a space it cannot handle": (
        ["search_space=macro_mlp", "data=breast_cancer", "strategy=darts"],
        ["dropout"],
    ),
    "a grid too large to list": (
        ["search_space=cell", "strategy=grid"],
        ["strategy grid", "combinations"],
    ),
    "a typo in the budget": (
        ["search_space=cell", "strategy=random", "+budget.max_param=5"],
        ["budget.max_param", "max_params"],
    ),
    "a pruner with a one-shot strategy": (
        ["search_space=cell", "strategy=enas", "estimation=median"],
        ["one-shot", "estimation"],
    ),
    "the proxy estimation on a space without cells": (
        [*SMALL_MACRO, "strategy=random", "estimation=proxy"],
        ["search_space.num_cells", "cell"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_before_the_search_starts(case: str, tmp_path: Path) -> None:
    args, words = BAD[case]
    r = nas(tmp_path, *args, timeout=300)
    assert r.returncode == 2, r.output[-3000:]
    assert "mlx: error:" in r.stderr
    assert "Traceback" not in r.output
    for word in words:
        assert word in r.stderr, (word, r.stderr)
    assert not (tmp_path / "search").exists()
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "nas").exists()


def test_a_plain_run_with_a_nas_space_is_told_to_use_mlx_nas(tmp_path: Path) -> None:
    r = run_cli("run", "model=nas", "search_space=cell", *QUICK, f"paths.outputs={tmp_path}")
    assert r.returncode != 0
    assert "mlx nas" in r.output


def test_a_fixed_model_with_a_nas_space_is_refused(tmp_path: Path) -> None:
    r = run_cli(
        "run",
        "-m",
        "hydra/sweeper=mlx",
        "search_space=cell",
        "strategy=random",
        *QUICK,
        f"hydra.sweep.dir={tmp_path / 'search'}",
    )
    assert r.returncode == 2, r.output[-3000:]
    assert "model=nas" in r.stderr
