"""DeepSpeed ZeRO 1/2/3 on 2 CPU processes: parity with single-process training, whole runs
with the record, one consolidated checkpoint that `mlx eval` reads, resume from last.ckpt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlx import run as mlx_run
from mlx.engine.checkpoint import load
from mlx.engine.deepspeed import shards_of
from mlx.engine.memory import read_memory
from tests.conftest import QUIET, SHORT, compose_cfg

B = 4  # per-process batch
STEPS = 4


class _Regression(pl.LightningModule):
    """A tiny MLP fit with Adam: every parameter and both moments move each step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


class _Ordered(pl.LightningDataModule):
    """Global batch k is rows [2Bk, 2B(k+1)); with 2 processes rank r reads its half of it."""

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2 * B * STEPS, 5, generator=g)
        y = x.sum(dim=1, keepdim=True)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if world == 1:
            return DataLoader(TensorDataset(x, y), batch_size=2 * B, shuffle=False)
        idx = torch.cat(
            [torch.arange(k * 2 * B + rank * B, k * 2 * B + (rank + 1) * B) for k in range(STEPS)]
        )
        return DataLoader(TensorDataset(x[idx], y[idx]), batch_size=B, shuffle=False)


class _SaveAtEnd(pl.Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)  # every rank: DeepSpeed gathers the shards


def _train(strategy: object, devices: int, path: Path) -> dict[str, torch.Tensor]:
    from mlx.engine.memory import MemoryCallback

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[_SaveAtEnd(path), MemoryCallback(path.parent / "memory")],
    )
    trainer.fit(_Regression(), datamodule=_Ordered())
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, torch.Tensor]:
    return _train("auto", 1, tmp_path_factory.mktemp("single") / "final.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "zero1", "zero2", "zero3"])
def test_two_processes_match_one_with_twice_the_batch(mode: str, single, tmp_path: Path) -> None:
    from pytorch_lightning.strategies import DDPStrategy

    from mlx.engine.deepspeed import DeepSpeedStrategy

    if mode == "ddp":
        strategy = DDPStrategy(process_group_backend="gloo", start_method="spawn")
    else:
        strategy = DeepSpeedStrategy(stage=int(mode[-1]), process_group_backend="gloo")
    path = tmp_path / "final.ckpt"
    parallel = _train(strategy, 2, path)
    assert path.is_file()
    assert parallel.keys() == single.keys()
    start = _Regression().state_dict()
    for key, value in single.items():
        assert not torch.allclose(value, start[key])  # it trained
        torch.testing.assert_close(parallel[key], value, rtol=1e-4, atol=1e-5)
    if mode in ("zero2", "zero3"):
        _check_against_estimators(mode, read_memory(tmp_path / "memory"))


def _check_against_estimators(mode: str, memory: dict[str, dict[str, int]]) -> None:
    """DeepSpeed's estimators count mixed precision on GPUs: 16-bit parameters (and, for
    stage 3, one gathered layer) besides the fp32 partitions (gradients, master parameters,
    Adam's two moments: 16 bytes a parameter over N). Here everything is fp32: the parameters
    are the model's own (stage 1/2) or the master partition itself (stage 3), so the measured
    bytes are the estimate less its 16-bit and gathered-layer terms."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    psi, n, largest = 57, 2, 40  # _Regression's parameters; its largest layer (Linear(5, 8))
    assert set(memory) == {"0", "1"}
    for figures in memory.values():
        total = sum(figures.values())
        if mode == "zero2":
            _, est = estimate_zero2_model_states_mem_needs(psi, n, cpu_offload=False)
            expected = est - 2 * psi - 2 * psi / n + 4 * psi  # fp32 params, no 16-bit grads
            assert figures["params_bytes"] == 4 * psi
        else:
            _, est, _ = estimate_zero3_model_states_mem_needs(
                psi, largest, n, cpu_offload=False, cpu_offload_params=False
            )
            expected = est - 4 * largest - 2 * psi / n  # nothing gathered, no 16-bit copy
            assert figures["params_bytes"] < 4 * psi
        assert abs(total - expected) <= 0.1 * expected, (figures, expected)


def _cfg(out: Path, *overrides: str):
    return compose_cfg([*QUIET, "tracking=none", *SHORT, "model=mlp", *overrides], out)


ZERO3 = [
    "parallelism=deepspeed_zero3",
    "trainer.strategy.offload_optimizer=true",
    "trainer.strategy.offload_parameters=true",
    "trainer.precision=bf16-mixed",
]


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory) -> Path:
    """A ZeRO 3 run with everything offloaded, in bf16 (shared by the tests below)."""
    out = tmp_path_factory.mktemp("zero3") / "run"
    mlx_run.run(_cfg(out, *ZERO3))
    return out


def _zero2_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    mlx_run.run(
        _cfg(
            out,
            "parallelism=deepspeed_zero2",
            "trainer.strategy.offload_optimizer=true",
            "trainer.accumulate_grad_batches=2",
        )
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["zero2-offload-accumulate", "zero3-offload-bf16"])
def test_zero_run_writes_the_record_and_one_checkpoint(mode: str, request, tmp_path: Path) -> None:
    out = _zero2_run(tmp_path) if mode.startswith("zero2") else request.getfixturevalue("zero3_run")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/acc" in metrics["metrics"]
    memory = metrics["memory"]
    assert set(memory) == {"0", "1"}
    # offloaded, the gradient partitions live in a CPU buffer: counted too
    assert all(min(m.values()) > 0 for m in memory.values()), memory
    best = out / "checkpoints" / "best.ckpt"
    assert best.is_file() and shards_of(best).is_dir()
    loaded = load(best)  # weights_only: the consolidated file is a plain checkpoint
    assert loaded.config is not None
    assert all(
        v.dtype == torch.float32 for v in loaded.state_dict.values() if v.is_floating_point()
    )


@pytest.mark.slow
def test_zero3_eval_and_resume(zero3_run: Path, tmp_path: Path) -> None:
    last = zero3_run / "checkpoints" / "last.ckpt"
    # mlx eval reads the consolidated file in one process, like any checkpoint
    ev = tmp_path / "eval"
    mlx_run.run(_cfg(ev, f"ckpt_path={last}"), command="eval")
    assert "test/acc" in json.loads((ev / "metrics.json").read_text())["metrics"]
    # resuming with the same parallelism continues from the shards (optimizer state included)
    again = tmp_path / "again"
    mlx_run.run(_cfg(again, *ZERO3, f"ckpt_path={last}", "trainer.max_epochs=2"))
    history = (again / "history.csv").read_text().splitlines()
    assert len(history) == 2 and history[1].startswith("1,")  # only epoch 1 trained
