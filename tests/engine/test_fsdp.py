"""parallelism=fsdp: FSDP2 over 2 spawned CPU processes (gloo), consolidated checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlx.data.datamodule import ArrayDataModule
from tests.conftest import QUIET, compose_cfg, run_cli

FSDP = ["parallelism=fsdp", "tracking=none", "debug=limit", *QUIET]


class InOrder(ArrayDataModule):
    """Training batches in file order: 2 ranks reading batch B through DistributedSampler
    (rank r takes examples r, r+2, ...) see together what one process sees with batch 2B."""

    def train_dataloader(self):  # noqa: ANN201
        return self._loader("train", shuffle=False)


def _fit(
    overrides: list[str], tmp: Path, batch: int, strategy: object, devices: int, steps: int = 4
) -> dict:
    """The network's weights after ``steps`` optimizer steps."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    cfg = compose_cfg(["data=digits", "model=mlp", f"data.batch_size={batch}", *overrides], tmp)
    pl.seed_everything(0, workers=True, verbose=False)
    dm = instantiate(cfg.data, _target_=f"{__name__}.InOrder")
    dm.setup("fit")
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=steps,
        limit_val_batches=0,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=int(cfg.trainer.get("accumulate_grad_batches", 1)),
        precision=cfg.trainer.precision,
    )
    if steps:
        trainer.fit(model, datamodule=dm)
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["trainer.accumulate_grad_batches=2"]], ids=["plain", "accumulate"]
)
def test_parity_with_one_process_and_double_batch(tmp_path: Path, extra: list[str]) -> None:
    from mlx.engine.fsdp import SpawnedFSDP

    # no dropout: each rank draws its own masks
    over = [
        "model.net.dropout=0",
        "model.optimizer._target_=torch.optim.SGD",
        "model.lr=0.1",
        *extra,
    ]
    single = _fit(over, tmp_path / "one", 32, "auto", 1)
    sharded = _fit(over, tmp_path / "two", 16, SpawnedFSDP("gloo"), 2)
    assert single.keys() == sharded.keys()
    start = _fit(over, tmp_path / "zero", 32, "auto", 1, steps=0)
    for name, value in single.items():
        assert not torch.equal(value, start[name]) or "bias" in name  # training moved it
        torch.testing.assert_close(sharded[name], value, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fsdp_cnn")
    res = run_cli("run", *FSDP, "model=cnn", "hydra.run.dir=run", cwd=tmp)
    assert res.returncode == 0, res.output
    return tmp / "run"


@pytest.mark.slow
def test_cnn_writes_the_normal_record(cnn_run: Path) -> None:
    from mlx.engine.checkpoint import load

    summary = json.loads((cnn_run / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert "test/acc" in summary["metrics"] and summary["epochs_trained"] == 2
    assert len((cnn_run / "history.csv").read_text().splitlines()) == 3
    best = load(cnn_run / "checkpoints" / "best.ckpt", trust=False)
    # one consolidated file of whole tensors, as a single-process run writes
    assert best.config is not None and best.config["trainer"]["devices"] == 2
    conv = best.state_dict["net.features.0.weight"]
    assert type(conv) is torch.Tensor and conv.shape == (32, 1, 3, 3)


@pytest.mark.slow
def test_eval_reads_the_consolidated_checkpoint(cnn_run: Path, tmp_path: Path) -> None:
    best = cnn_run / "checkpoints" / "best.ckpt"
    res = run_cli(
        "eval", f"ckpt_path={best}", "tracking=none", *QUIET, "hydra.run.dir=ev", cwd=tmp_path
    )
    assert res.returncode == 0, res.output
    assert "test/acc" in json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    refused = run_cli(
        "eval", f"ckpt_path={best}", "parallelism=fsdp", "tracking=none", cwd=tmp_path
    )
    assert refused.returncode == 2 and "cannot shard" in refused.stderr, refused.output


@pytest.mark.slow
def test_resume_from_last_in_bf16(cnn_run: Path, tmp_path: Path) -> None:
    last = cnn_run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["optimizer_states"][0]["state"]  # Adam moments, gathered whole
    res = run_cli(
        "run",
        *FSDP,
        "model=cnn",
        "trainer.max_epochs=3",
        "trainer.precision=bf16-mixed",
        f"ckpt_path={last}",
        "hydra.run.dir=r",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.output
    history = (tmp_path / "r" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and history[1].startswith("2,9,")  # epoch 2 after 2 x 3 + 3 steps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "parallelism=fsdp", "trainer.devices=512"], "CPU core(s)"),
        (["run", "parallelism=fsdp", "trainer.precision=16-mixed"], "does not run on CPU"),
    ],
    ids=["devices", "fp16-cpu"],
)
def test_bad_input_is_refused_before_work(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli(*args, "tracking=none", "hydra.run.dir=out", cwd=tmp_path)
    assert res.returncode == 2, res.output
    assert "mlx: error:" in res.stderr and message in res.stderr, res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_eval_under_fsdp_is_refused(cnn_run: Path, tmp_path: Path) -> None:
    """A saved network is tested in one process: asking to shard it is an error, not a hang."""
    best = cnn_run / "checkpoints" / "best.ckpt"
    res = run_cli("eval", "parallelism=fsdp", f"ckpt_path={best}", "hydra.run.dir=e", cwd=tmp_path)
    assert res.returncode == 2 and "cannot shard it" in res.stderr, res.output
    assert not (tmp_path / "e").exists()
