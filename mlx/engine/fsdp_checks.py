"""Static checks of ``parallelism=fsdp`` (no Lightning import: they run before any work). The
checks every mode shares (processes against cores, precision) live in ``parallel_checks``."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


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
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="cpu")
    if accelerator not in ("cpu", "gpu", "cuda", "auto"):
        errors.append(
            f"parallelism=fsdp runs on trainer.accelerator=cpu (gloo) or gpu (CUDA, nccl), "
            f"not {accelerator}."
        )
