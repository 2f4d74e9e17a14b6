"""Static checks of ``parallelism=fsdp`` (no Lightning import: they run before any work)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf

HALF = ("16", "16-mixed", "16-true", "transformer-engine", "transformer-engine-float16")
BF16 = ("bf16", "bf16-mixed", "bf16-true")


def check_fsdp(cfg: Any, command: str, errors: list[str]) -> None:
    """Append what makes a sharded run impossible to ``errors``."""
    if command in ("eval", "compress"):
        errors.append(
            f"mlx {command} runs the saved network in one process and cannot shard it (an ONNX "
            "network has no parameters to shard); drop parallelism=fsdp: a checkpoint trained "
            "with it is one ordinary file that the default parallelism reads."
        )
        return
    strategy = str(OmegaConf.select(cfg, "strategy._target_", default="") or "")
    if strategy.startswith("nni.nas.strategy."):
        errors.append(
            f"the one-shot NAS strategy {strategy.rsplit('.', 1)[-1]} trains a supernet whose "
            "candidate choices are switched inside the forward pass, which FSDP cannot shard; "
            "search with parallelism=single (or a multi-trial strategy with parallelism=fsdp)."
        )
    trainer = cfg.trainer
    accelerator = OmegaConf.select(trainer, "accelerator", default="cpu")
    devices = OmegaConf.select(trainer, "devices", default=1)
    precision = str(OmegaConf.select(trainer, "precision", default="32-true"))
    if accelerator == "cpu":
        cores = os.cpu_count() or 1
        if isinstance(devices, int) and devices > cores:
            errors.append(
                f"trainer.devices={devices} starts {devices} CPU processes, more than the "
                f"{cores} CPU cores of this machine; use trainer.devices={cores} or fewer."
            )
        if precision in HALF:
            errors.append(
                f"trainer.precision={precision} (float16) does not run on the CPU; use 32-true "
                "or bf16-mixed there."
            )
    elif accelerator in ("gpu", "cuda") and precision in BF16:
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            errors.append(
                f"trainer.precision={precision} needs bfloat16, which this GPU does not support; "
                "use 16-mixed or 32-true."
            )
    elif accelerator not in ("gpu", "cuda", "auto"):
        errors.append(
            f"parallelism=fsdp runs on trainer.accelerator=cpu (gloo) or gpu (CUDA, nccl), "
            f"not {accelerator}."
        )
