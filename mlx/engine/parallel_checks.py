"""Static checks of the parallelism options (``trainer.*``): what DeepSpeed or Lightning would
refuse only after the processes are spawned, the data loaded and the model built. No heavy
imports: torch only when the question is about the machine."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError

DEEPSPEED_TARGETS = ("mlx.engine.DeepSpeedStrategy", "mlx.engine.deepspeed.DeepSpeedStrategy")


def check_parallelism(cfg: DictConfig, command: str, errors: list[str]) -> None:
    """Append a message to ``errors`` for each parallelism setting that cannot work here."""
    trainer = OmegaConf.select(cfg, "trainer", default=None)
    if not isinstance(trainer, DictConfig):
        return
    accelerator = trainer.get("accelerator")
    devices = trainer.get("devices")

    def on_cpu() -> bool:  # torch is imported only for the questions that need it
        return accelerator == "cpu" or (accelerator == "auto" and not _has_cuda())

    many = isinstance(devices, int) and devices > 1 and devices > (os.cpu_count() or 1)
    if many and on_cpu():
        errors.append(
            f"trainer.devices={devices} asks for {devices} CPU processes, but this machine has "
            f"{os.cpu_count()} CPU core(s): each process computes a full share of every step, so "
            f"more processes than cores only make each step slower; use trainer.devices="
            f"{os.cpu_count()} or fewer."
        )
    strategy = trainer.get("strategy")
    if not isinstance(strategy, DictConfig) or strategy.get("_target_") not in DEEPSPEED_TARGETS:
        return
    stage = strategy.get("stage", 2)
    if stage not in (1, 2, 3):
        errors.append(f"trainer.strategy.stage={stage!r}: ZeRO has stages 1, 2 and 3.")
    if strategy.get("offload_parameters") is True and stage != 3:
        errors.append(
            f"trainer.strategy.offload_parameters=true needs ZeRO stage 3 "
            f"(parallelism=deepspeed_zero3): stage {stage} keeps every parameter on every process "
            "and partitions none to offload. Use trainer.strategy.offload_optimizer=true to "
            "offload the optimizer state."
        )
    precision = str(trainer.get("precision", "32"))
    if precision.startswith("16") and on_cpu():
        errors.append(
            f"trainer.precision={precision} needs a GPU: DeepSpeed's fp16 training (loss scaling, "
            "half-precision kernels) does not run on CPU processes; use trainer.precision="
            "bf16-mixed or 32 on the CPU, or trainer.accelerator=gpu."
        )
    if precision.startswith("bf16") and on_cpu() and _batch_norm_in_config(cfg):
        errors.append(_BF16_BATCH_NORM.format(precision=precision))
    if trainer.get("gradient_clip_algorithm") == "value":
        errors.append(
            "trainer.gradient_clip_algorithm=value: DeepSpeed clips gradients by norm only; use "
            "trainer.gradient_clip_algorithm=norm."
        )
    ckpt = cfg.get("ckpt_path")
    if isinstance(ckpt, str) and ckpt.endswith(".onnx"):
        errors.append(
            f"ckpt_path {ckpt} is an ONNX network, which runs in ONNX Runtime and has no torch "
            "parameters for DeepSpeed to partition; test it with parallelism=single."
        )
    if command == "nas" or cfg.get("search_space") is not None:
        errors.append(
            "a one-shot NAS supernet cannot be trained under DeepSpeed ZeRO: each step trains a "
            "different sampled path, and ZeRO expects every parameter it partitions to get a "
            "gradient in every step; use parallelism=single or ddp for the search."
        )


_BF16_BATCH_NORM = (
    "trainer.precision={precision} under DeepSpeed on CPU processes cannot train a network "
    "with batch normalization (this one has some): DeepSpeed casts the network to bf16 and the "
    "CPU batch-norm kernel refuses it; use trainer.precision=32, a network without batch norm "
    "(model=mlp), or GPUs."
)
# mlx's own networks whose config alone tells they hold batch norm (others are checked once built)
_ALWAYS_BATCH_NORM = ("mlx.models.CNN", "mlx.models.ResNet")


def _batch_norm_in_config(cfg: DictConfig) -> bool:
    net = OmegaConf.select(cfg, "model.net", default=None)
    if not isinstance(net, DictConfig):
        return False
    target = net.get("_target_")
    return target in _ALWAYS_BATCH_NORM or (
        target == "mlx.models.MLP" and net.get("batch_norm") is True
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_network(cfg: DictConfig, net: Any) -> None:
    """What only the built network tells: DeepSpeed casts the whole network to bf16, and the
    CPU's batch-norm kernel refuses bf16 inputs with fp32 running statistics."""
    trainer = OmegaConf.select(cfg, "trainer", default=None)
    if not isinstance(trainer, DictConfig):
        return
    strategy = trainer.get("strategy")
    if not isinstance(strategy, DictConfig) or strategy.get("_target_") not in DEEPSPEED_TARGETS:
        return
    if not str(trainer.get("precision", "32")).startswith("bf16"):
        return
    if trainer.get("accelerator") not in ("cpu", "auto") or (
        trainer.get("accelerator") == "auto" and _has_cuda()
    ):
        return
    from torch.nn.modules.batchnorm import _BatchNorm

    if any(isinstance(m, _BatchNorm) for m in net.modules()):
        raise ConfigError(_BF16_BATCH_NORM.format(precision=trainer.get("precision")))
