"""The mlx sweeper end to end, through the real `mlx` command: strategies, resume after SIGKILL,
failure isolation, pruning inside Lightning jobs, launchers, sweep files, results and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import MLX, QUIET, run_cli

QUICK = ["model=mlp", "trainer.max_epochs=1", "tracking=none", *QUIET]


def sweep_args(folder: Path, *args: str) -> list[str]:
    return [
        *QUICK,
        f"hydra.sweep.dir={folder}",
        f"hydra.sweeper.export_dir={folder}/experiment",
        *args,
    ]


def mlx_sweep(folder: Path, *args: str, timeout: float = 600):
    return run_cli("run", "-m", "hydra/sweeper=mlx", *sweep_args(folder, *args), timeout=timeout)


def trials(folder: Path) -> list[dict[str, str]]:
    with (folder / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def states(folder: Path) -> list[str]:
    return [t["state"] for t in trials(folder)]


# ---- strategies ------------------------------------------------------------------------------

STRATEGIES = {
    "grid": ["model.lr=choice(0.003,0.01)", "model.net.hidden=choice([32],[64])"],
    "random": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.dropout=interval(0.0,0.3)"],
    "tpe": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.hidden=choice([32],[64])"],
    "gp": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.dropout=interval(0.0,0.3)"],
    "cmaes": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.dropout=interval(0.0,0.3)"],
    "regularized_evolution": [
        "model.lr=choice(0.003,0.01,0.03)",
        "model.net.hidden=choice([32],[64])",
        "strategy.population_size=2",
    ],
    "evolution": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.hidden=choice([32],[64])"],
    "anneal": ["model.lr=tag(log,interval(1e-3,3e-2))", "model.net.hidden=choice([32],[64])"],
    "hyperband": ["model.lr=tag(log,interval(1e-3,3e-2))", "trainer.max_epochs=3"],
    "bohb": ["model.lr=tag(log,interval(1e-3,3e-2))", "trainer.max_epochs=3"],
}


def slow_except(values, fast, ids=None):
    """Parametrize values, all but those in ``fast`` marked slow (the default suite keeps a few
    representatives; CI runs them all)."""
    return [
        pytest.param(
            v,
            marks=() if (ids[i] if ids else v) in fast else pytest.mark.slow,
            id=ids[i] if ids else None,
        )
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize("strategy", slow_except(sorted(STRATEGIES), {"random", "tpe"}))
def test_each_strategy_runs_trials_and_writes_results(strategy, tmp_path):
    folder = tmp_path / "sweep"
    r = mlx_sweep(folder, f"strategy={strategy}", "hydra.sweeper.n_trials=3", *STRATEGIES[strategy])
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    assert len(rows) == 3
    assert all(s in ("complete", "pruned") for s in states(folder)), rows
    summary = json.loads((folder / "sweep.json").read_text())
    assert summary["counts"].get("complete", 0) >= 1
    best = summary["best"][0]
    assert best["values"]["val/acc"] == max(
        float(t["val/acc"]) for t in rows if t["state"] == "complete"
    )
    assert (folder / "experiment" / "sweep_best.yaml").is_file()
    assert "trial 2 " in r.output  # one line per finished trial


@pytest.mark.slow
def test_nsga2_gives_a_pareto_front_of_accuracy_and_size(tmp_path):
    folder = tmp_path / "pareto"
    r = mlx_sweep(
        folder,
        "strategy=nsga2",
        "hydra.sweeper.n_trials=4",
        "model.net.hidden=choice([8],[16],[128],[256,128])",
        "+hydra.sweeper.objectives=[{metric:val/acc,mode:max},{metric:model/params,mode:min}]",
    )
    assert r.returncode == 0, r.output[-3000:]
    summary = json.loads((folder / "sweep.json").read_text())
    front = summary["best"]
    assert front and all(set(b["values"]) == {"val/acc", "model/params"} for b in front)
    # no point of the front is dominated by another trial
    rows = [t for t in trials(folder) if t["state"] == "complete"]
    for b in front:
        acc, size = b["values"]["val/acc"], b["values"]["model/params"]
        assert not any(float(t["val/acc"]) > acc and float(t["model/params"]) < size for t in rows)
    assert "Pareto front" in r.output


# ---- resume ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials(tmp_path):
    folder = tmp_path / "resume"
    args = [
        MLX,
        "run",
        "-m",
        "hydra/sweeper=mlx",
        *sweep_args(
            folder,
            "strategy=random",
            "hydra.sweeper.n_trials=4",
            "trainer.max_epochs=6",
            "model.lr=tag(log,interval(1e-3,3e-2))",
        ),
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.time() + 300
    try:
        # kill while trial 2 trains, after trials 0 and 1 finished
        while time.time() < deadline:
            if (folder / "2" / "history.csv").is_file():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the sweep never reached trial 2")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (folder / "2" / "metrics.json").exists()  # killed mid-trial
    before = {n: (folder / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1")}
    first = {t["number"]: t for t in trials(folder)}
    assert [first[n]["state"] for n in ("0", "1")] == ["complete", "complete"]

    r = run_cli(*args[1:])
    assert r.returncode == 0, r.output[-3000:]
    assert "1 interrupted and queued again (2)" in r.output
    rows = {t["number"]: t for t in trials(folder)}
    # finished trials kept their numbers, values and folders and did not run again
    for n in ("0", "1"):
        assert rows[n]["val/acc"] == first[n]["val/acc"]
        assert (folder / n / "metrics.json").stat().st_mtime_ns == before[n]
    assert rows["2"]["state"] == "fail" and "interrupted" in rows["2"]["error"]
    assert rows["3"]["model.lr"] == rows["2"]["model.lr"]  # the interrupted trial ran again
    assert sum(t["state"] == "complete" for t in rows.values()) == 4  # n_trials counts the total


@pytest.mark.slow
def test_resume_with_another_question_is_refused(tmp_path):
    folder = tmp_path / "changed"
    r = mlx_sweep(
        folder, "strategy=random", "hydra.sweeper.n_trials=1", "model.lr=interval(0.001,0.01)"
    )
    assert r.returncode == 0, r.output[-3000:]
    ledger = folder / "sweep.db"
    stamp = ledger.stat().st_mtime_ns
    r = mlx_sweep(
        folder, "strategy=random", "hydra.sweeper.n_trials=2", "model.lr=interval(0.001,0.1)"
    )
    assert r.returncode != 0
    assert "cannot be resumed" in r.output and "'model.lr'" in r.output and "0.1" in r.output
    r = mlx_sweep(
        folder, "strategy=tpe", "hydra.sweeper.n_trials=2", "model.lr=interval(0.001,0.01)"
    )
    assert r.returncode != 0 and "strategy: '_target_' was" in r.output
    assert ledger.stat().st_mtime_ns == stamp
    assert len(trials(folder)) == 1


@pytest.mark.parametrize("kind", ["corrupt", "other"])
def test_corrupt_or_foreign_ledger_is_refused_untouched(kind, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    ledger = folder / "sweep.db"
    if kind == "corrupt":
        ledger.write_bytes(b"this is not a database" * 50)
    else:
        con = sqlite3.connect(ledger)
        con.executescript(
            "create table studies(study_name text); create table trials(x);"
            "create table version_info(v); insert into studies values ('someone_else');"
        )
        con.commit()
        con.close()
    content = ledger.read_bytes()
    r = mlx_sweep(
        folder, "strategy=random", "hydra.sweeper.n_trials=1", "model.lr=interval(0.001,0.01)"
    )
    assert r.returncode != 0
    assert str(ledger) in r.output
    assert ("corrupt" in r.output) if kind == "corrupt" else ("another sweep" in r.output)
    assert ledger.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.db"]


# ---- failures and pruning --------------------------------------------------------------------


def test_failed_trials_are_isolated_and_recorded(tmp_path):
    folder = tmp_path / "failures"
    r = mlx_sweep(
        folder,
        "strategy=grid",
        "hydra.sweeper.max_failure_rate=1.0",
        "model.optimizer._target_=torch.optim.SGD",
        "model.lr=choice(0.05,1e6)",  # 1e6 diverges to a NaN loss
        "model.net.hidden=choice([32],[10000000000])",  # 2.5 TB of weights: out of memory
    )
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    assert len(rows) == 4
    by = {(t["model.lr"], t["model.net.hidden"]): t for t in rows}
    assert by[("0.05", "[32]")]["state"] == "complete"
    assert by[("1000000.0", "[32]")]["state"] == "fail"
    assert "nan" in by[("1000000.0", "[32]")]["error"].lower()
    for lr in ("0.05", "1000000.0"):
        oom = by[(lr, "[10000000000]")]
        assert oom["state"] == "fail" and "allocate memory" in oom["error"]
    # every failed trial's own run record says so too
    for t in rows:
        record = json.loads((Path(t["output_dir"]) / "metrics.json").read_text())
        assert record["status"] == ("completed" if t["state"] == "complete" else "failed")


def test_max_failure_rate_stops_the_sweep_with_a_summary(tmp_path):
    folder = tmp_path / "stop"
    r = mlx_sweep(
        folder,
        "strategy=random",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.max_failure_rate=0.5",
        "model.net.hidden=choice([10000000000],[20000000000])",
    )
    assert r.returncode != 0
    assert "stopped: 3 of 3 finished trials failed" in r.output
    assert "allocate memory" in r.output and str(folder / "trials.csv") in r.output
    assert len(trials(folder)) == 3


def test_pruning_stops_bad_trials_inside_lightning(tmp_path):
    folder = tmp_path / "pruned"
    r = mlx_sweep(
        folder,
        "strategy=grid",
        "estimation=median",
        "estimation.pruner.n_startup_trials=1",
        "estimation.pruner.n_warmup_steps=0",
        "trainer.max_epochs=4",
        "model.lr=choice(0.01,0.003,1e-6,1e-7)",
    )
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    pruned = [t for t in rows if t["state"] == "pruned"]
    assert pruned, rows
    for t in pruned:
        assert float(t["model.lr"]) < 1e-5
        epoch = int(t["pruned_at_epoch"])
        record = json.loads((Path(t["output_dir"]) / "metrics.json").read_text())
        assert record["status"] == "pruned" and record["pruned_at_epoch"] == epoch
        assert "test/acc" not in record["metrics"]  # a pruned trial skips its test
        assert record["epochs_trained"] == epoch + 1 < 4


# ---- launchers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "launcher",
    slow_except(
        [
            ["hydra/launcher=basic"],
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
            ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"],
        ],
        {"basic"},
        ids=["basic", "joblib", "submitit", "ray"],
    ),
)
def test_each_launcher_runs_two_trials_with_pruning_handle(launcher, tmp_path):
    folder = tmp_path / "launch"
    r = mlx_sweep(
        folder,
        *launcher,
        "strategy=random",
        "estimation=median",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "trainer.max_epochs=2",
        "model.lr=tag(log,interval(1e-3,3e-2))",
    )
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    assert [t["state"] for t in rows] == ["complete", "complete"]
    # each job reported its validation curve to the ledger from its own process
    con = sqlite3.connect(folder / "sweep.db")
    steps = con.execute("select count(*) from trial_intermediate_values").fetchone()[0]
    con.close()
    assert steps == 4


# ---- sweep files, results, bad input ---------------------------------------------------------

SWEEP_FILES = sorted(
    p.stem for p in Path(__file__).resolve().parents[2].joinpath("sweeps").glob("*.yaml")
)


@pytest.mark.parametrize("name", slow_except(SWEEP_FILES, {"digits_tpe"}))
def test_every_sweep_file_runs_with_debug_fdr(name, tmp_path):
    folder = tmp_path / name
    r = run_cli(
        "sweep",
        name,
        *sweep_args(folder, "debug=fdr", "hydra.sweeper.n_trials=2"),
    )
    assert r.returncode == 0, r.output[-3000:]
    assert len(trials(folder)) == 2


@pytest.mark.slow
def test_status_and_exported_experiment_reproduce_the_best_trial(tmp_path):
    folder = tmp_path / "best"
    r = run_cli(
        "sweep",
        "digits_grid",
        *sweep_args(folder, "hydra.sweeper.n_trials=2", "trainer.max_epochs=2"),
    )
    assert r.returncode == 0, r.output[-3000:]
    summary = json.loads((folder / "sweep.json").read_text())
    best = summary["best"][0]
    status = run_cli("sweep", "status", str(folder))
    assert status.returncode == 0
    assert "2 complete of n_trials 2" in status.output and "best trial (*)" in status.output
    exported = folder / "experiment" / "digits_grid_best.yaml"
    text = exported.read_text()
    assert "override /model: mlp" in text
    rerun = run_cli(
        "run",
        "-cd",
        str(folder),
        "experiment=digits_grid_best",
        f"paths.output_dir={tmp_path / 'rerun'}",
    )
    assert rerun.returncode == 0, rerun.output[-3000:]
    record = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    assert record["objective"]["value"] == pytest.approx(best["values"]["val/acc"], abs=1e-6)


def test_status_of_a_folder_that_is_not_a_sweep(tmp_path):
    r = run_cli("sweep", "status", str(tmp_path))
    assert r.returncode == 2 and "is not an mlx sweep folder" in r.output


BAD_SPACES = {
    "unknown_type": ("{type: lognormal, low: 1.0e-4, high: 0.1}", "unknown type 'lognormal'"),
    "low_above_high": (
        "{type: uniform, low: 0.5, high: 0.1}",
        "low (0.5) is greater than high (0.1)",
    ),
    "empty_choice": ("{type: choice, values: []}", "choice needs a non-empty 'values'"),
    "log_zero": ("{type: loguniform, low: 0.0, high: 0.1}", "a log range must be above 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_search_space_files_fail_before_any_trial(case, tmp_path):
    spec, message = BAD_SPACES[case]
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "bad.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: mlx\n  - override /strategy: tpe\n"
        f"search_space:\n  _target_: mlx.sweep.SearchSpace\n  params:\n    model.lr: {spec}\n"
    )
    folder = tmp_path / "out"
    r = run_cli("sweep", "bad", f"hydra.searchpath=[file://{tmp_path}]", *sweep_args(folder))
    assert r.returncode == 2, r.output
    assert "model.lr" in r.output and message in r.output
    assert "Traceback" not in r.output and r.seconds < 5
    assert not folder.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["strategy=tpx", "model.lr=interval(0.1,0.2)"],
            "Unknown option 'tpx' for config group 'strategy'",
        ),
        (
            ["strategy=tpe", "model.lrr=interval(0.1,0.2)"],
            "'model.lrr' is not a key of the composed config",
        ),
        (["strategy=tpe", "model.lr=interval(0.2,0.1)"], "greater than high"),
        (["strategy=tpe", "model.lr=tag(log,interval(0,0.1))"], "a log range must be above 0"),
        (["strategy=tpe", "model.lr=choice()"], "empty choice is not legal"),
        (["model.lr=interval(0.1,0.2)"], "needs a strategy"),
        (["strategy=grid", "model.lr=interval(0.1,0.2)"], "grid needs finite values"),
        (
            ["strategy=tpe", "hydra.sweeper.n_trials=0", "model.lr=interval(0.1,0.2)"],
            "n_trials must be an integer >= 1",
        ),
        (
            ["strategy=hyperband", "estimation=median", "model.lr=interval(0.1,0.2)"],
            "prunes trials itself",
        ),
    ],
)
def test_bad_sweep_command_lines_fail_before_any_trial(args, message, tmp_path):
    folder = tmp_path / "out"
    r = mlx_sweep(folder, *args)
    assert r.returncode == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not folder.exists()


@pytest.mark.parametrize(
    "estimation",
    slow_except(
        ["full", "low_fidelity", "median", "successive_halving", "hyperband", "curve_fitting"],
        {"low_fidelity", "median"},
    ),
)
def test_each_estimation_runs(estimation, tmp_path):
    folder = tmp_path / estimation
    r = mlx_sweep(
        folder,
        "strategy=random",
        f"estimation={estimation}",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=4",
        "model.lr=tag(log,interval(1e-6,3e-2))",
        *(["estimation.pruner.start_step=2"] if estimation == "curve_fitting" else []),
    )
    assert r.returncode == 0, r.output[-3000:]
    rows = trials(folder)
    assert len(rows) == 3 and all(t["state"] in ("complete", "pruned") for t in rows)
    for t in rows:
        record = json.loads((Path(t["output_dir"]) / "metrics.json").read_text())
        if estimation == "low_fidelity":  # 3 epochs on a quarter of the training batches
            config = (Path(t["output_dir"]) / "config.yaml").read_text()
            assert "limit_train_batches: 0.25" in config
            assert record["epochs_trained"] == 3
        elif t["state"] == "complete":
            assert record["epochs_trained"] == 4
    if estimation != "full":
        # the job reported its curve to the ledger, epoch by epoch
        con = sqlite3.connect(folder / "sweep.db")
        steps = con.execute("select count(*) from trial_intermediate_values").fetchone()[0]
        con.close()
        assert (steps > 0) == (estimation != "low_fidelity")


def test_timeout_stops_starting_trials(tmp_path):
    folder = tmp_path / "timeout"
    r = mlx_sweep(
        folder,
        "strategy=random",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.timeout=0.5",
        "model.lr=tag(log,interval(1e-3,3e-2))",
    )
    assert r.returncode == 0, r.output[-3000:]
    assert len(trials(folder)) == 1
    assert "stopped: timeout of 0.5 s reached" in r.output
    assert json.loads((folder / "sweep.json").read_text())["stopped"] == "timeout of 0.5 s reached"


@pytest.mark.slow
def test_pruning_reaches_spawned_ddp_processes(tmp_path):
    folder = tmp_path / "ddp"
    (tmp_path / "conf" / "estimation").mkdir(parents=True)
    (tmp_path / "conf" / "estimation" / "threshold.yaml").write_text(
        "_target_: mlx.sweep.Estimation\n"
        "pruner:\n  _target_: optuna.pruners.ThresholdPruner\n  lower: 0.5\n"
    )
    r = mlx_sweep(
        folder,
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "parallelism=ddp",
        "strategy=grid",
        "estimation=threshold",
        "trainer.max_epochs=3",
        "model.lr=choice(1e-7)",
    )
    assert r.returncode == 0, r.output[-3000:]
    (row,) = trials(folder)
    assert row["state"] == "pruned" and row["pruned_at_epoch"] == "0"
    record = json.loads((Path(row["output_dir"]) / "metrics.json").read_text())
    assert record["status"] == "pruned" and "test/acc" not in record["metrics"]
