"""parallelism=pipeline: a short run over 2 CPU processes writes the normal record and a
full-network best.ckpt that mlx eval reads; bad input is refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, run_cli

FAST = [*QUIET, "tracking=none"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_pipeline_trains_and_best_ckpt_evaluates(tmp_path: Path, model: str) -> None:
    res = run_cli(
        "run", "parallelism=pipeline", f"model={model}", "debug=limit", *FAST,
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.output
    assert "stage 0: layers 0-" in res.output and "stage 1: layers" in res.output
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_trained"] == 2
    assert (tmp_path / "run" / "history.csv").is_file()
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    from mlx.engine.checkpoint import load

    loaded = load(best)  # weights_only, the full network
    assert any(k.startswith("net.head") for k in loaded.state_dict)
    ev = run_cli("eval", f"ckpt_path={best}", *FAST, "hydra.run.dir=ev", cwd=tmp_path)
    assert ev.returncode == 0, ev.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["test/acc"] <= 1.0
    if model != "mlp":
        return
    # last.ckpt holds every stage's optimizer state and resumes in pipeline mode
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    raw = torch.load(last, weights_only=True)
    assert len(raw["optimizer_states"][0]["state"]) == len(loaded.state_dict)  # MLP: no buffers
    res = run_cli(
        "run", "parallelism=pipeline", "model=mlp", "debug=limit", "trainer.max_epochs=3", *FAST,
        f"ckpt_path={last}", "hydra.run.dir=resumed", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.output
    resumed = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert torch.load(resumed, weights_only=True)["global_step"] == raw["global_step"] + 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=30"], "does not split into"),
        (["trainer.strategy.schedule=1F1B", "trainer.strategy.micro_batches=1"], "1F1B"),
        (["trainer.strategy.schedule=Interleaved"], "schedule"),
        (["trainer.precision=bf16-mixed"], "32-bit precision only"),
        (["trainer.devices=40", "model=mlp"], "CPU core(s)"),
    ],
)
def test_pipeline_bad_input(tmp_path: Path, overrides: list[str], message: str) -> None:
    res = run_cli("run", "parallelism=pipeline", *FAST, *overrides, cwd=tmp_path)
    assert res.returncode == 2, res.output
    assert "mlx: error:" in res.output and message in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_pipeline_equals_gradient_accumulation(tmp_path: Path) -> None:
    """3 optimizer steps of batches of 32 in 4 micro-batches through 2 stages give the same
    weights as 3 single-process steps accumulating 4 batches of 8 (the same examples: the
    shuffled order does not depend on the batch size)."""
    common = [
        *FAST, "model=mlp", "model.net.dropout=0", "trainer.max_epochs=1",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    ]  # fmt: skip
    pipe = run_cli(
        "run", "parallelism=pipeline", "trainer.strategy.micro_batches=4", "data.batch_size=32",
        "trainer.limit_train_batches=3", *common, "hydra.run.dir=pipe", cwd=tmp_path,
    )  # fmt: skip
    assert pipe.returncode == 0, pipe.output
    single = run_cli(
        "run", "parallelism=single", "trainer.accumulate_grad_batches=4", "data.batch_size=8",
        "trainer.limit_train_batches=12", *common, "hydra.run.dir=single", cwd=tmp_path,
    )  # fmt: skip
    assert single.returncode == 0, single.output
    from mlx.engine.checkpoint import load

    last = {run: tmp_path / run / "checkpoints" / "last.ckpt" for run in ("pipe", "single")}
    for path in last.values():  # both took the 3 optimizer steps
        assert torch.load(path, weights_only=True)["global_step"] == 3
    a, b = (load(path).state_dict for path in last.values())
    assert a is not None and b is not None and a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_more_stages_than_layers_is_refused() -> None:
    """Checked once the network is built (its layers() count), before any process starts."""
    from torch import nn

    from mlx.engine.pipeline import split_layers
    from mlx.errors import MlxError

    with pytest.raises(MlxError, match="has only 3 layers"):
        split_layers([nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)], 4)
