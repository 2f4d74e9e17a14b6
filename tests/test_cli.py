"""The `mlx` command as a user types it: help, config printing, completion, multirun, DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MLX, QUIET, run_cli
from tests.engine.test_tracking import read_wandb_log, summarise

FAST = [*QUIET, "tracking=none"]


def test_top_level_help_is_instant_and_light() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    assert "run" in res.stdout and "eval" in res.stdout
    code = "import sys; from mlx.cli import main; main(['--help']); print(sorted(m for m in ('torch', 'pytorch_lightning', 'wandb', 'hydra') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[]")
    assert res.seconds < 2.0, f"mlx --help took {res.seconds:.2f} s"


def test_print_config_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from mlx.cli import main\n"
        "try:\n    main(['run', '--cfg', 'job'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'pytorch_lightning', 'wandb') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert "HEAVY []" in out
    assert "_target_: mlx.models.CNN" in out
    res = run_cli("run", "--cfg", "job", "model=mlp", cwd=tmp_path)
    assert res.returncode == 0
    assert "_target_: mlx.models.MLP" in res.stdout
    assert res.seconds < 4.0, f"mlx run --cfg job took {res.seconds:.2f} s"


def test_run_help_lists_groups_and_options(tmp_path: Path) -> None:
    res = run_cli("run", "--help", cwd=tmp_path)
    assert res.returncode == 0
    for line in (
        "data: breast_cancer, csv, diabetes, digits, german_credit, mnist5k",
        "model: cnn, mlp, nas, resnet",
        "parallelism: ddp, deepspeed_zero1, deepspeed_zero2, deepspeed_zero3, fsdp, pipeline, single",
        "experiment: ",
        "mlx run resume=DIR",
    ):
        assert line in res.stdout, res.stdout


def test_shell_completion(tmp_path: Path) -> None:
    install = run_cli("run", "-sc", "install=bash")
    assert install.returncode == 0 and "complete" in install.stdout and "mlx" in install.stdout
    groups = run_cli("-sc", "query=bash", env={"COMP_LINE": "mlx run mod", "COMP_POINT": "11"})
    assert "model=" in groups.stdout.split()
    options = run_cli("-sc", "query=bash", env={"COMP_LINE": "mlx run model=", "COMP_POINT": "14"})
    assert {"model=cnn", "model=mlp", "model=resnet"} <= set(options.stdout.split())
    # the real bash function, as a user's shell calls it
    script = (
        f'export PATH="{Path(MLX).parent}:$PATH"; eval "$(mlx run -sc install=bash)"; '
        'COMP_LINE="mlx run experiment=mn"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(mlx run experiment=mn); COMP_CWORD=2; '
        'hydra_bash_completion; echo "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert "experiment=mnist_cnn" in out.stdout, out.stdout + out.stderr


def test_multirun_with_basic_sweeper(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    quiet = [a for a in FAST if not a.startswith("tracking")]  # W&B on: each job is its own run
    res = run_cli(
        "run",
        "-m",
        "seed=1,2",
        "model=mlp,cnn",
        "debug=limit",
        *quiet,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.output
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(jobs) == 4
    combos = set()
    for job in jobs:
        summary = json.loads((job / "metrics.json").read_text())
        prov = json.loads((job / "provenance.json").read_text())
        assert summary["status"] == "completed"
        combos.add(tuple(sorted(o for o in prov["overrides"] if o.startswith(("seed=", "model=")))))
        assert prov["reproduce"].startswith("mlx run ") and "debug=limit" in prov["reproduce"]
        # the multirun's command as typed, sub-command included
        assert prov["command_line"].startswith("mlx run -m seed=1,2 model=mlp,cnn debug=limit")
        (wandb_run,) = (job / "wandb").glob("offline-run-*")
        logged = summarise(read_wandb_log(wandb_run))
        assert logged["group"] == "sweep" and logged["exit"] == 0  # the multirun folder's name
    assert len(combos) == 4


@pytest.mark.slow
def test_default_experiment_meets_accuracy_bar(tmp_path: Path) -> None:
    """`mlx run` trains the default CNN on digits to test accuracy >= 0.97."""
    res = run_cli("run", "hydra.run.dir=run", cwd=tmp_path)
    assert res.returncode == 0, res.output
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["metrics"]["test/acc"] >= 0.97
    assert "outputs:" in res.stdout
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    print(f"default run: {res.seconds:.1f} s wall, test/acc {summary['metrics']['test/acc']:.4f}")
