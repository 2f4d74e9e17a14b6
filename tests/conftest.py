"""Shared fixtures: compose the config the way `mlx run` does, pointed at a temporary folder.

Most tests run mlx in-process (Lightning is imported once per session); the tests of the command
line itself run the real `mlx` executable in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mlx.config.locate import CONFIG_DIR, CONFIG_NAME, register_resolvers

MLX = str(Path(sys.executable).with_name("mlx"))
# the tests' settings, defined once. QUIET: no progress bars or model summaries
QUIET = [
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
# quiet, and CSV instead of W&B unless a test asks for W&B
TINY = [*QUIET, "tracking=csv"]
# one short epoch
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """An in-process W&B run starts a wandb-core service and names it in ``WANDB_SERVICE``; an
    ``mlx`` subprocess started later would attach to that service instead of its own, and find
    the id of a run killed earlier still in use. Each test ends by stopping the service."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and os.environ.get("WANDB_SERVICE"):
        wandb.teardown()
        os.environ.pop("WANDB_SERVICE", None)


def compose_cfg(overrides: list[str], output_dir: Path):
    """Compose `config.yaml` with `overrides`, writing into `output_dir`."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="test"):
        cfg = compose(CONFIG_NAME, overrides=[*overrides, f"paths.output_dir={output_dir}"])
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Factory: `make_cfg(overrides, name="run")` -> a composed config writing under tmp_path."""

    def make(overrides: list[str] | None = None, name: str = "run", tiny: bool = True):
        return compose_cfg([*(TINY if tiny else []), *(overrides or [])], tmp_path / name)

    return make


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> CliResult:
    """Run the installed `mlx` executable."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [MLX, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


@pytest.fixture
def cli():
    return run_cli
