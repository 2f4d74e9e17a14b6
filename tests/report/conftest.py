"""Tiny real runs for the report tests: a multirun over two seeds, a single run of another
configuration, and a run that failed (diverged) halfway through its first epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, compose_cfg

BASE = [*TINY, "trainer.max_epochs=2", "model=mlp"]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/multirun/{0,1}`` (seeds 1 and 2), ``root/single`` (seed 2, lr 0.01) and
    ``root/failed`` (lr 1e6: diverges in its first epoch; its record says so)."""
    from mlx import run

    root = tmp_path_factory.mktemp("report_runs")
    for i, seed in enumerate((1, 2)):
        run.main(compose_cfg([*BASE, f"seed={seed}"], root / "multirun" / str(i)))
    run.main(compose_cfg([*BASE, "seed=2", "model.lr=0.01"], root / "single"))
    with pytest.raises(FloatingPointError):
        run.main(compose_cfg([*BASE, "seed=1", "model.lr=1e6"], root / "failed"))
    return root
