"""Fully sharded data parallel training: FSDP2 (``fully_shard``) under Lightning's
``ModelParallelStrategy``, launched by spawning processes like mlx's DDP.

Why not Lightning's ``FSDPStrategy``: in Lightning 2.6 it refuses the CPU accelerator and its
checkpoint saving crashes there; FSDP2 through ``ModelParallelStrategy`` runs on CPU (gloo) and
CUDA (nccl) alike. ``ModelParallelStrategy`` launches by re-running ``sys.argv`` (popen), which
breaks under pytest and Hydra's multirun, so this subclass spawns instead.

Checkpoints are consolidated: the full weights and optimizer state are gathered on rank 0 and
written as one ordinary ``.ckpt`` file, which ``mlx eval`` and ``mlx.engine.checkpoint.load`` read
like a single-process checkpoint, and which resumes sharded training (``ckpt_path=.../last.ckpt``).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ModelParallelStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import (
    _WorkerOutput,
)
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from mlx.engine.preemption import ForwardingLauncher


class SpawnedFSDP(ModelParallelStrategy):
    """FSDP2 over every process (pure data parallel: no tensor parallel dimension), spawned.

    Args:
        process_group_backend: ``gloo`` (CPU) or ``nccl`` (CUDA); ``None`` picks by device.
        start_method: how the processes start; only ``spawn`` (works under pytest and Hydra).
        reshard_after_forward: free each block's gathered parameters after its forward pass
            (less memory, one more all-gather in the backward pass).
    """

    def __init__(
        self,
        process_group_backend: Literal["gloo", "nccl"] | None = None,
        start_method: Literal["spawn"] = "spawn",
        reshard_after_forward: bool = True,
    ) -> None:
        super().__init__(
            save_distributed_checkpoint=False, process_group_backend=process_group_backend
        )
        self._start_method = start_method
        self.reshard_after_forward = reshard_after_forward

    def _configure_launcher(self) -> None:
        self._launcher = _ConsolidatingLauncher(self, start_method=self._start_method)

    def setup_environment(self) -> None:
        # every process is one data-parallel shard
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def shard_module(self, module: pl.LightningModule) -> None:
        """Called by ``LitModel.configure_model``: shard each block of ``module.net``, then the
        network itself (its remaining parameters); the metrics stay whole on the device."""
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        net: nn.Module = module.net
        if isinstance(net, FSDPModule):
            return
        module.to(self.root_device)
        mesh = self.device_mesh["data_parallel"]
        # parameters stay float32 (the optimizer updates them there); the forward pass runs in
        # the autocast dtype of the precision plugin; gradients are reduced in float32
        policy = MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32)
        kwargs: dict[str, Any] = {
            "mesh": mesh,
            "reshard_after_forward": self.reshard_after_forward,
            "mp_policy": policy,
        }
        for block in blocks(net):
            fully_shard(block, **kwargs)
        fully_shard(net, **kwargs)


def blocks(net: nn.Module) -> list[nn.Module]:
    """The units sharded one by one: the children of ``net`` that hold parameters, looking one
    level into containers (``Sequential``, ``ModuleList``, ``ModuleDict``)."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    found: list[nn.Module] = []
    for child in net.children():
        parts = list(child.children()) if isinstance(child, containers) else [child]
        found += [p for p in parts if any(True for _ in p.parameters())]
    return found


class _ConsolidatingLauncher(ForwardingLauncher):
    """Spawns the processes; the weights sent back to the main process are the full (gathered)
    ones, not the rank's shards, so the main process's model is the trained network."""

    def _collect_rank_zero_results(self, trainer: pl.Trainer, results: Any) -> _WorkerOutput | None:
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", None) if callback else None
        # collective: every rank takes part, rank 0 gets the full state dict
        state_dict = self._strategy.lightning_module_state_dict()
        if self._strategy.local_rank != 0:
            return None
        weights_path = None
        if trainer.state.fn == TrainerFn.FITTING:
            import tempfile

            weights_path = os.path.join(tempfile.mkdtemp(), ".temp.ckpt")
            self._strategy.checkpoint_io.save_checkpoint(state_dict, weights_path)
        extra = self.get_extra_results(trainer)
        return _WorkerOutput(best, weights_path, trainer.state, results, extra)
