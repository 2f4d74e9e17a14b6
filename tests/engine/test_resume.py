"""Fault-tolerant runs: a run killed mid-way and started again with the same command in the same
folder ends with the same weights and metrics as a run that was never interrupted."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import MLX, QUIET, run_cli

pytestmark = pytest.mark.slow

SETTINGS = [
    *QUIET,
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.batch_size=32",
]


def _history(run: Path) -> list[dict[str, str]]:
    path = run / "history.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _kill_after(
    args: list[str], run: Path, epochs: int, sig: int, env: dict[str, str] | None = None
) -> int:
    """Start ``mlx run``, send ``sig`` as soon as the checkpoint of its ``epochs``-th epoch is
    written (``last.ckpt`` replaced that many times), return its exit. That is where a kill
    could separate an epoch's checkpoint from its history row. SIGKILL goes to the whole job,
    other signals to its main process only (as Kubernetes does); after any of them no process
    of the run is left."""
    proc = subprocess.Popen(
        [MLX, "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    last = run / "checkpoints" / "last.ckpt"
    versions: set[tuple[int, int]] = set()  # each save writes a new file (an atomic rename)
    deadline = time.monotonic() + 300
    while len(versions) < epochs and proc.poll() is None and time.monotonic() < deadline:
        try:
            st = last.stat()
            versions.add((st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)  # the whole job, DDP's processes too, as a scheduler does
    else:
        os.kill(proc.pid, sig)
    code = proc.wait(timeout=120)
    deadline = time.monotonic() + 20
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(proc.pid), "processes of the run are left"
    return code


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The uninterrupted runs to compare with, one per parallelism."""
    root = tmp_path_factory.mktemp("uninterrupted")
    runs = {}
    for mode, extra in (
        ("single", ["tracking=wandb"]),
        ("ddp", ["parallelism=ddp", "tracking=none"]),
    ):
        run = root / mode
        result = run_cli("run", *SETTINGS, *extra, f"hydra.run.dir={run}")
        assert result.returncode == 0, result.output
        runs[mode] = run
    return runs


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("single", ["tracking=wandb"]), ("ddp", ["parallelism=ddp", "tracking=none"])],
)
def test_kill_and_resume_equals_uninterrupted(
    uninterrupted: dict[str, Path], tmp_path: Path, mode: str, extra: list[str]
) -> None:
    run = tmp_path / "run"
    args = [*SETTINGS, *extra, f"hydra.run.dir={run}"]
    assert _kill_after(args, run, 2, signal.SIGKILL) == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    result = run_cli("run", *args)
    assert result.returncode == 0, result.output
    reference = uninterrupted[mode]
    for name in ("best.ckpt", "last.ckpt"):
        _same_weights(run / "checkpoints" / name, reference / "checkpoints" / name)
    got, want = _metrics(run), _metrics(reference)
    assert got["status"] == "completed"
    # DDP's epoch means of logged metrics are all-reduced over gloo, whose summation order
    # varies from run to run in the last bits (the uninterrupted run differs from itself
    # there); the weights are exact in both modes
    close = (lambda v: v) if mode == "single" else (lambda v: pytest.approx(v, rel=1e-6))
    assert got["metrics"] == close(want["metrics"])
    assert got["objective"]["metric"] == want["objective"]["metric"]
    assert got["objective"]["value"] == close(want["objective"]["value"])
    assert got["resumed"]["times"] == 1 and got["resumed"]["from_epoch"] >= 1
    # one history row per epoch, the epochs before the kill kept
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    ref_rows = _history(reference)
    for row, ref in zip(rows, ref_rows, strict=True):
        assert {k: float(v) for k, v in row.items() if k != "seconds"} == close(
            {k: float(v) for k, v in ref.items() if k != "seconds"}
        )
    if mode == "single":
        # the same offline W&B run continued: one run id, two offline run folders for it
        run_id = (run / "wandb_id.txt").read_text().strip()
        folders = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
        assert len(folders) == 2, list((run / "wandb").iterdir())
    # finished: the same command again is refused, nothing overwritten
    again = run_cli("run", *args)
    assert again.returncode == 2
    assert "holds a finished run" in again.output and "Traceback" not in again.output
    assert _metrics(run) == got


def test_config_differs_names_the_keys(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*SETTINGS, "tracking=none", f"hydra.run.dir={run}"]
    _kill_after(args, run, 1, signal.SIGKILL)
    result = run_cli("run", *args, "model.lr=0.5", "seed=3")
    assert result.returncode == 2, result.output
    assert "mlx: error:" in result.output and "Traceback" not in result.output
    assert "model.lr" in result.output and "seed" in result.output
    assert not (run / "metrics.json").exists()
    # resume=DIR reruns the folder's own config in it
    resumed = run_cli("run", f"resume={run}")
    assert resumed.returncode == 0, resumed.output
    record = _metrics(run)
    assert record["status"] == "completed" and record["resumed"]["times"] == 1
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1, 2, 3]


def test_resume_needs_a_run_folder(tmp_path: Path) -> None:
    result = run_cli("run", f"resume={tmp_path}")
    assert result.returncode == 2
    assert "not a folder mlx run wrote" in result.output and "Traceback" not in result.output
    other = run_cli("run", f"resume={tmp_path}", "seed=1")
    assert other.returncode == 2 and "takes no other overrides" in other.output


@pytest.mark.parametrize(
    ("mode", "extra"), [("single", []), ("ddp", ["parallelism=ddp"])], ids=["single", "ddp"]
)
def test_sigterm_stops_cleanly_and_resumes_exactly(
    uninterrupted: dict[str, Path], tmp_path: Path, mode: str, extra: list[str]
) -> None:
    """SIGTERM to the main process only (Kubernetes): every process stops after the same batch,
    the record says interrupted, exit 0; the same command continues exactly."""
    run = tmp_path / "run"
    args = [*SETTINGS, *extra, "tracking=none", f"hydra.run.dir={run}"]
    assert _kill_after(args, run, 2, signal.SIGTERM) == 0
    record = _metrics(run)
    assert record["status"] == "interrupted" and record["error"] is None
    assert (run / "checkpoints" / "last.ckpt").is_file()
    result = run_cli("run", *args)
    assert result.returncode == 0, result.output
    reference = uninterrupted[mode]
    for name in ("best.ckpt", "last.ckpt"):
        _same_weights(run / "checkpoints" / name, reference / "checkpoints" / name)
    got = _metrics(run)
    close = (lambda v: v) if mode == "single" else (lambda v: pytest.approx(v, rel=1e-6))
    assert got["status"] == "completed" and got["metrics"] == close(_metrics(reference)["metrics"])
    assert got["resumed"]["times"] == 1
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1, 2, 3]


def test_slurm_sigusr1_requeues_and_the_requeued_job_continues(
    uninterrupted: dict[str, Path], tmp_path: Path
) -> None:
    """SLURM's warning before the time limit (``--signal=SIGUSR1@90``): the run stops as on
    SIGTERM, then requeues its job; the requeued job (same job id, same command) continues it.
    SLURM is not here: a fake ``scontrol`` first on PATH records how it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    slurm = {
        "PATH": f"{bin_dir}:{Path(MLX).parent}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "mlx-requeue",
        "SLURM_NTASKS": "1",
        "SLURM_NNODES": "1",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
    }
    # the folder depends on the job id, not on the clock: the requeued job finds it
    args = [*SETTINGS, "tracking=none", f"hydra.run.dir={tmp_path}/slurm_${{oc.env:SLURM_JOB_ID}}"]
    run = tmp_path / "slurm_4242"
    assert _kill_after(args, run, 2, signal.SIGUSR1, env=slurm) == 0
    assert _metrics(run)["status"] == "interrupted"
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not list(run.rglob("hpc_ckpt*"))  # no mid-epoch checkpoint of Lightning's
    requeued = run_cli("run", *args, env=slurm)
    assert requeued.returncode == 0, requeued.output
    reference = uninterrupted["single"]
    for name in ("best.ckpt", "last.ckpt"):
        _same_weights(run / "checkpoints" / name, reference / "checkpoints" / name)
    got = _metrics(run)
    assert got["status"] == "completed" and got["metrics"] == _metrics(reference)["metrics"]
    assert got["resumed"]["times"] == 1
    assert calls.read_text().split() == ["requeue", "4242"]  # a finished run is not requeued


# ---- DeepSpeed ZeRO: a checkpoint is shards (checkpoints/last.deepspeed/) and one file ---------

ZERO = ["parallelism=deepspeed_zero2", "model=mlp", "tracking=none"]

# Imported by every process of the run (first on PYTHONPATH): SIGKILL the whole job when a
# process starts the N-th copy of DeepSpeed's recovery script into a folder ending in TARGET.
# DeepSpeed copies it once per save on rank 0, after rank 0 wrote its shards and before the
# save is consolidated into the .ckpt file: the kill lands between the two, every time.
KILL_DURING_SAVE = """
import os, signal, sys

_target = os.environ["MLX_TEST_KILL_AT"]
_left = [int(os.environ["MLX_TEST_KILL_AT_COPY"])]


def _kill(event, args):
    if event == "shutil.copyfile" and str(args[1]).endswith(_target):
        _left[0] -= 1
        if _left[0] == 0:
            os.killpg(os.getpgrp(), signal.SIGKILL)


sys.addaudithook(_kill)
"""


@pytest.fixture(scope="module")
def uninterrupted_zero(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "zero2"
    result = run_cli("run", *SETTINGS, *ZERO, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.output
    return run


def test_zero_killed_while_saving_resumes_from_one_consistent_save(
    uninterrupted_zero: Path, tmp_path: Path
) -> None:
    """Under ZeRO a checkpoint is every process's shards (``last.deepspeed/``) consolidated
    into one file (``last.ckpt``). Killed in the third epoch's save, after shards were written
    and before the file was replaced, the run holds newer shards beside the second epoch's
    file; the same command continues from the second epoch (the file and its own shards), and
    ends with the uninterrupted run's weights and metrics."""
    run = tmp_path / "run"
    args = [*SETTINGS, *ZERO, f"hydra.run.dir={run}"]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_DURING_SAVE)
    env = {
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "MLX_TEST_KILL_AT": "last.deepspeed/zero_to_fp32.py",
        "MLX_TEST_KILL_AT_COPY": "3",
    }
    proc = subprocess.run(
        [MLX, "run", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **env}, start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # newer shards beside the second epoch's file
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    shards = [p for p in (run / "checkpoints" / "last.deepspeed").rglob("*.pt")]
    assert any(p.stat().st_mtime_ns > last.stat().st_mtime_ns for p in shards)
    assert not (run / "metrics.json").exists()
    before = _history(run)
    assert [int(r["epoch"]) for r in before] == [0, 1, 2]  # epoch 2's row precedes its save
    result = run_cli("run", *args)
    assert result.returncode == 0, result.output
    for name in ("best.ckpt", "last.ckpt"):
        _same_weights(run / "checkpoints" / name, uninterrupted_zero / "checkpoints" / name)
    got, want = _metrics(run), _metrics(uninterrupted_zero)
    assert got["status"] == "completed"
    assert got["resumed"] == {"from_epoch": 1, "times": 1}
    # the epoch means are all-reduced over gloo, as for ddp
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6)
    assert got["objective"]["value"] == pytest.approx(want["objective"]["value"], rel=1e-6)
    # it continued from the file's epoch: epochs 0-1 kept as they were, epoch 2 trained again
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert rows[:2] == before[:2]
    assert rows[2]["seconds"] != before[2]["seconds"]
    # the shards of the interrupted save are gone: the folder holds one save, the file's
    saves = [p for p in (run / "checkpoints" / "last.deepspeed").iterdir() if p.is_dir()]
    assert len(saves) == 1
