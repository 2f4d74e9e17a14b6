"""Bad parallelism settings end in one `mlx: error:` paragraph before any process is spawned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlx.config.locate import CONFIG_NAME, config_tree, register_resolvers
from mlx.config.validate import check_command_line
from mlx.errors import MlxError
from tests.conftest import compose_cfg, run_cli


def _error(*overrides: str) -> str:
    register_resolvers()
    with pytest.raises(MlxError) as info:
        check_command_line(config_tree(), CONFIG_NAME, list(overrides), False)
    message = str(info.value)
    assert "\n\n" not in message
    return message


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (
            ["parallelism=deepspeed_zero2", "+trainer.strategy.offload_parameters=true"],
            ["offload_parameters", "stage 3", "offload_optimizer"],
        ),
        (["parallelism=deepspeed_zero1", "trainer.precision=16-mixed"], ["16-mixed", "bf16-mixed"]),
        (
            ["parallelism=deepspeed_zero3", f"trainer.devices={(os.cpu_count() or 1) + 1}"],
            ["trainer.devices", "CPU core"],
        ),
        (
            ["parallelism=ddp", f"trainer.devices={(os.cpu_count() or 1) + 1}"],
            ["trainer.devices", "CPU core"],
        ),
        (
            ["parallelism=deepspeed_zero2", "+trainer.gradient_clip_algorithm=value"],
            ["gradient_clip_algorithm", "norm"],
        ),
        (["parallelism=deepspeed_zero3", "trainer.strategy.stage=4"], ["stage", "1, 2 and 3"]),
        (
            ["parallelism=deepspeed_zero2", "trainer.precision=bf16-mixed"],  # the default CNN
            ["batch normalization", "model=mlp"],
        ),
        (
            [
                "parallelism=deepspeed_zero1",
                "trainer.precision=bf16-mixed",
                "model=mlp",
                "model.net.batch_norm=true",
            ],
            ["batch normalization"],
        ),
    ],
    ids=[
        "param-offload-stage2",
        "fp16-cpu",
        "zero-devices",
        "ddp-devices",
        "clip-value",
        "stage4",
        "bf16-cnn-batch-norm",
        "bf16-mlp-batch-norm",
    ],
)
def test_refused_before_training(overrides: list[str], needles: list[str]) -> None:
    message = _error(*overrides)
    for needle in needles:
        assert needle in message, message


def test_onnx_network_under_zero(tmp_path: Path) -> None:
    # the check itself: a real command first reads the file (an mlx ONNX export)
    from mlx.engine.parallel_checks import check_parallelism

    cfg = compose_cfg(["parallelism=deepspeed_zero3", "ckpt_path=compressed/net.onnx"], tmp_path)
    errors: list[str] = []
    check_parallelism(cfg, "eval", errors)
    assert len(errors) == 1 and "ONNX Runtime" in errors[0] and "parallelism=single" in errors[0]


def test_cli_exit_status_and_nothing_written(tmp_path: Path) -> None:
    res = run_cli(
        "run",
        "parallelism=deepspeed_zero1",
        "+trainer.strategy.offload_parameters=true",
        "hydra.run.dir=out",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "mlx: error:" in res.stderr, res.output[-2000:]
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_bf16_with_batch_norm_under_zero_on_cpu(tmp_path: Path) -> None:
    import torch

    from mlx.engine.parallel_checks import check_network

    cfg = compose_cfg(["parallelism=deepspeed_zero2", "trainer.precision=bf16-mixed"], tmp_path)
    with pytest.raises(MlxError, match="batch normalization"):
        check_network(cfg, torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))
    check_network(cfg, torch.nn.Sequential(torch.nn.Linear(2, 2)))  # no batch norm: fine
