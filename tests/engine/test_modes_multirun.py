"""The sharded and model-parallel modes under Hydra's multirun and the mlx sweeper: one `mlx`
process runs job after job, each spawning its own processes. Whatever a job leaves behind
(processes, a process group, a port, global state in the main process) breaks the next one."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mlx.engine.checkpoint import load
from tests.conftest import MLX, QUIET, run_cli

pytestmark = pytest.mark.slow

TINY = ["model=mlp", "debug=limit", "trainer.max_epochs=1", "tracking=none", *QUIET]
# the first mode comes again last: run after the others, it must give what it gave first
MODES = ["deepspeed_zero2", "fsdp", "pipeline", "deepspeed_zero2"]
STRATEGIES = {
    "deepspeed_zero2": "mlx.engine.DeepSpeedStrategy",
    "fsdp": "mlx.engine.fsdp.SpawnedFSDP",
    "pipeline": "mlx.engine.PipelineStrategy",
}


def _record(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_multirun_runs_every_mode_in_one_process(tmp_path: Path) -> None:
    folder = tmp_path / "multirun"
    proc = subprocess.Popen(
        [MLX, "run", "-m", f"parallelism={','.join(MODES)}", *TINY, f"hydra.sweep.dir={folder}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: what is left of it can be found
    )
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    deadline = time.monotonic() + 10
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(proc.pid), "processes of a job are left"
    for number, mode in enumerate(MODES):
        job = folder / str(number)
        record = _record(job)
        assert record["status"] == "completed" and record["error"] is None, (mode, record)
        assert {"test/acc", "test/loss"} <= set(record["metrics"]), mode
        assert set(record["memory"]) == {"0", "1"}, mode  # both processes of the job trained
        best = load(job / "checkpoints" / "best.ckpt")  # weights_only, one file in every mode
        assert best.config is not None
        assert best.config["trainer"]["strategy"]["_target_"] == STRATEGIES[mode]
        assert best.state_dict and all(k.startswith("net.") for k in best.state_dict), mode
    first, again = folder / "0", folder / str(len(MODES) - 1)
    assert _record(again)["metrics"] == pytest.approx(_record(first)["metrics"], rel=1e-6)
    for name in ("best.ckpt", "last.ckpt"):
        a, b = (torch.load(j / "checkpoints" / name, weights_only=True) for j in (first, again))
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), (name, key)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_sweep_of_a_sharded_mode_completes_and_prunes_trials(tmp_path: Path) -> None:
    """`mlx sweep` with trials under FSDP: each trial reports its validation curve to the
    ledger from its spawned rank 0 and both processes stop when the pruner says so (median
    pruning against the first trial); the sweep records its result."""
    folder = tmp_path / "sweep"
    r = run_cli(
        "sweep", "digits_grid", "parallelism=fsdp", "hydra.sweeper.n_trials=3",
        "estimation=median", "estimation.pruner.n_startup_trials=1",
        "estimation.pruner.n_warmup_steps=0", *TINY, "trainer.max_epochs=2",
        f"hydra.sweep.dir={folder}", f"hydra.sweeper.export_dir={folder}/experiment",
    )  # fmt: skip
    assert r.returncode == 0, r.output[-3000:]
    with (folder / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    states = [t["state"] for t in rows]
    # the grid's order (seeded) puts lr=0.001, the slow one, second: it is pruned
    assert states.count("complete") == 2 and states.count("pruned") == 1, rows
    summary = json.loads((folder / "sweep.json").read_text())
    assert summary["counts"] == {"complete": 2, "pruned": 1}
    completed = []
    for t in rows:
        job = Path(t["output_dir"])
        record = _record(job)
        pruned = t["state"] == "pruned"
        assert record["status"] == ("pruned" if pruned else "completed"), t
        assert bool(t["pruned_at_epoch"]) == pruned
        if pruned:
            assert record["epochs_trained"] == 1 and "test/acc" not in record["metrics"]
            continue
        assert "test/acc" in record["metrics"] and load(job / "checkpoints" / "best.ckpt").config
        completed.append(record["objective"]["value"])
    assert summary["best"][0]["values"]["val/acc"] == max(completed)
    assert (folder / "experiment" / "digits_grid_best.yaml").is_file()
    con = sqlite3.connect(folder / "sweep.db")
    steps = con.execute("select count(*) from trial_intermediate_values").fetchone()[0]
    con.close()
    assert steps == 2 + 2 + 1  # two epochs of each completed trial, one of the pruned
