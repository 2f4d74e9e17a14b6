"""Runs whose processes another program starts: two torchrun "nodes" on the loopback interface,
one process each, against the same run as one node with two spawned DDP processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, run_cli

# two short epochs of the default CNN, no W&B
RUN = ["run", "parallelism=ddp", "debug=limit", "trainer.max_epochs=2", *QUIET, "tracking=none"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mlx run parallelism=ddp`: one command, two spawned processes."""
    cwd = tmp_path_factory.mktemp("one_node")
    res = run_cli(*RUN, "hydra.run.dir=run", cwd=cwd)
    assert res.returncode == 0, res.output
    return cwd / "run"


def torchrun(node: int, port: int, cwd: Path, *overrides: str) -> subprocess.Popen[str]:
    """One node's torchrun of ``mlx run``: one process, the rendezvous on 127.0.0.1. Its output
    goes to a file (``node<N>.log``), not a pipe that nobody reads while the other node runs."""
    log = (cwd / f"node{node}.log").open("w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc-per-node=1",
            f"--node-rank={node}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            "-m",
            "mlx.cli",
            *RUN,
            "trainer.num_nodes=2",
            "trainer.devices=1",
            *overrides,
        ],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def finished(processes: list[subprocess.Popen[str]], logs: list[Path], timeout: float) -> list[str]:
    """Each process's output once all have exited; all are killed after ``timeout`` seconds and
    the test fails with what they printed (a hung rendezvous must not hang the suite)."""
    try:
        for p in processes:
            p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
            p.wait()
        printed = "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in logs)
        pytest.fail(f"the processes did not finish in {timeout:.0f} s:\n{printed}")
    return [log.read_text() for log in logs]


@pytest.mark.slow
def test_ddp_two_cpu_processes(one_node: Path) -> None:
    summary = json.loads((one_node / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert "test/acc" in summary["metrics"]
    assert summary["epochs_trained"] == 2
    assert summary["checkpoints"]["best"] and summary["checkpoints"]["last"]
    assert (one_node / "history.csv").is_file()


@pytest.mark.slow
def test_two_nodes_under_torchrun_train_like_one_node(tmp_path: Path, one_node: Path) -> None:
    """The same config as two nodes of one process each (torchrun, loopback) reaches the same
    losses as one node with two processes, and only rank 0 writes the record."""
    port = free_port()
    nodes = [torchrun(rank, port, tmp_path, "hydra.run.dir=run") for rank in (0, 1)]
    outputs = finished(nodes, [tmp_path / f"node{rank}.log" for rank in (0, 1)], timeout=240)
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    # torchrun started the processes: fit and test run in them, nothing is spawned (spawned,
    # each would join a process group of its own, and the test's would wait forever)
    assert outputs[1].count("Initializing distributed") == 1, outputs[1]
    assert "run finished" in outputs[0] and "run finished" not in outputs[1]
    two = json.loads((tmp_path / "run" / "metrics.json").read_text())
    one = json.loads((one_node / "metrics.json").read_text())
    assert two["status"] == "completed" and two["epochs_trained"] == 2
    # the same data shards and the same all-reduced gradients; the threads each process uses
    # differ (torchrun's nodes vs spawned processes), which moves sums in the last float bits
    for key in ("train/loss", "val/loss", "test/loss"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-4), key
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_processes_of_a_launcher_need_one_named_folder(tmp_path: Path) -> None:
    """Started by torchrun or SLURM, every process must write into the same folder."""
    res = run_cli("run", "parallelism=ddp", env={"RANK": "0", "WORLD_SIZE": "2"}, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("mlx: error: this run is 2 processes started by torchrun")
    assert "hydra.run.dir=" in res.stderr
    assert not (tmp_path / "outputs").exists()


def readme_srun_line() -> str:
    """The ``srun`` line of the README's two-node sbatch example."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    lines = readme.splitlines()
    (line,) = [ln for ln in lines if ln.startswith("srun mlx run ") and "num_nodes=2" in ln]
    return line


def slurm_job(
    cwd: Path, command: str, job_id: str, env: dict[str, str] | None = None, tag: str = "task"
) -> list[subprocess.Popen[str]]:
    """What ``srun`` starts for a two-node job (one task per node here): ``command`` in each
    task's environment, as the task's own process (``exec``, so signals reach mlx), its output
    in ``<tag><rank>.log``."""
    port = free_port()
    tasks = []
    for rank in (0, 1):
        slurm = {
            "SLURM_JOB_ID": job_id,
            "SLURM_JOB_NAME": "mlx-ddp",
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "2",
            "SLURM_NODELIST": "127.0.0.1",
            "SLURM_NODEID": str(rank),
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": "0",
            "MASTER_PORT": str(port),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK"))}
        base["PATH"] = f"{Path(sys.executable).parent}:{base['PATH']}"
        tasks.append(
            subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=cwd,
                env={**base, **(env or {}), **slurm},
                stdout=(cwd / f"{tag}{rank}.log").open("w"),
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return tasks


def slurm_command(*settings: str) -> str:
    """The README's srun line on these CPU processes, one per node."""
    cpu = [
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.strategy.process_group_backend=gloo",
        *QUIET,
        "tracking=none",
        *settings,
    ]
    return readme_srun_line().removeprefix("srun ") + " " + " ".join(cpu)


@pytest.mark.slow
def test_the_readmes_sbatch_line_runs_as_a_two_node_slurm_job(tmp_path: Path) -> None:
    """What ``srun`` gives each task of a two-node job (one task per node here): Lightning's
    SLURMEnvironment joins the two, rank 0 writes the record in the job's folder."""
    tasks = slurm_job(tmp_path, slurm_command("debug=limit", "trainer.max_epochs=1"), "4242")
    outputs = finished(tasks, [tmp_path / f"task{rank}.log" for rank in (0, 1)], timeout=240)
    for task, output in zip(tasks, outputs, strict=True):
        assert task.returncode == 0, output
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    record = json.loads((tmp_path / "outputs/run/slurm_4242/metrics.json").read_text())
    assert record["status"] == "completed" and "test/acc" in record["metrics"]


def _checkpoints_written(run: Path, count: int, tasks: list[subprocess.Popen[str]]) -> None:
    """Waits until ``last.ckpt`` was written ``count`` times (each save is a new file)."""
    last = run / "checkpoints" / "last.ckpt"
    versions: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 240
    while len(versions) < count and time.monotonic() < deadline:
        assert all(t.poll() is None for t in tasks), "the job ended before it was signalled"
        try:
            st = last.stat()
            versions.add((st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    assert len(versions) >= count, "no checkpoint in 240 s"


@pytest.mark.slow
def test_two_node_slurm_job_warned_by_sigusr1_requeues_and_continues_exactly(
    tmp_path: Path,
) -> None:
    """``#SBATCH --signal=SIGUSR1@120`` signals every task of the job: both processes stop
    after the same batch, only global rank 0 calls ``scontrol requeue`` (a fake one on PATH),
    and the requeued job (same id, same srun line) ends with the weights and metrics of a job
    that was never interrupted."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = slurm_command(
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "data.batch_size=32",
    )
    logs = [tmp_path / f"task{rank}.log" for rank in (0, 1)]

    reference = slurm_job(tmp_path, command, "4241", env)
    for task, output in zip(reference, finished(reference, logs, 240), strict=True):
        assert task.returncode == 0, output
    assert not calls.exists()  # a job that finishes is not requeued

    run = tmp_path / "outputs/run/slurm_4242"
    tasks = slurm_job(tmp_path, command, "4242", env)
    _checkpoints_written(run, 2, tasks)
    for task in tasks:
        task.send_signal(signal.SIGUSR1)
    for task, output in zip(tasks, finished(tasks, logs, 240), strict=True):
        assert task.returncode == 0, output
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_trained"] < 4
    assert calls.read_text().split() == ["requeue", "4242"]  # once, by rank 0

    requeued = slurm_job(tmp_path, command, "4242", env)
    for task, output in zip(requeued, finished(requeued, logs, 240), strict=True):
        assert task.returncode == 0, output
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "outputs/run/slurm_4241/metrics.json").read_text())
    assert got["status"] == "completed" and got["resumed"]["times"] == 1
    # gloo's sums across the two processes keep their order between the jobs
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6)
    for name in ("best.ckpt", "last.ckpt"):
        a = torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]
        b = torch.load(tmp_path / "outputs/run/slurm_4241/checkpoints" / name, weights_only=True)[
            "state_dict"
        ]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    with (run / "history.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]
    assert calls.read_text().split() == ["requeue", "4242"]


@pytest.mark.slow
def test_torchrun_nodes_stopped_by_sigterm_continue_exactly(tmp_path: Path) -> None:
    """Kubernetes stops a job by sending SIGTERM to every pod's torchrun: torchrun passes it to
    its worker, both workers stop after the same batch and the record says interrupted (torchrun
    itself exits 1 after a signal); the same two commands again continue the run to the weights
    of a run that was never stopped."""
    settings = [
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "data.batch_size=32",
    ]
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]

    def job(folder: str) -> list[subprocess.Popen[str]]:
        port = free_port()
        return [torchrun(r, port, tmp_path, *settings, f"hydra.run.dir={folder}") for r in (0, 1)]

    reference = job("reference")
    for node, output in zip(reference, finished(reference, logs, 240), strict=True):
        assert node.returncode == 0, output

    run = tmp_path / "run"
    nodes = job("run")
    _checkpoints_written(run, 2, nodes)
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    outputs = finished(nodes, logs, 120)
    for output in outputs:
        assert "SIGTERM: training stopped" in output, output
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_trained"] < 4

    again = job("run")
    for node, output in zip(again, finished(again, logs, 240), strict=True):
        assert node.returncode == 0, output
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert got["status"] == "completed" and got["resumed"]["times"] == 1
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6)
    for name in ("best.ckpt", "last.ckpt"):
        a = torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]
        b = torch.load(tmp_path / "reference/checkpoints" / name, weights_only=True)["state_dict"]
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    with (run / "history.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]
