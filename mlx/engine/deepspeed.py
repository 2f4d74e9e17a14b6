"""DeepSpeed ZeRO stages 1-3 as a Lightning strategy that also runs on CPU processes.

Lightning's ``DeepSpeedStrategy`` refuses the CPU in three places: ``setup_environment`` demands
a CUDA accelerator, ``setup_distributed`` validates a device index, and the model/optimizer set-up
(training and inference) passes ``device_rank=root_device.index`` to ``deepspeed.initialize``,
which is None for the CPU. :class:`DeepSpeedStrategy` changes exactly those three on the CPU
(rank ``local_rank``) and defers to Lightning's unchanged on CUDA.

Checkpoints: DeepSpeed writes a folder of shards; this strategy writes it beside the file
Lightning asks for (``best.ckpt`` -> ``best.deepspeed/``), then consolidates the shards on rank 0
into that one file: a plain Lightning checkpoint (fp32 weights, the loops' and callbacks' state,
the mlx config) that ``torch.load(weights_only=True)`` reads. Every save writes its shards under
a new tag (``best.deepspeed/<tag>/``) that the file names, so that the file and its shards are
always one save, even after a kill during a save. Resuming from such a file loads its shards
when they are there (weights and optimizer state, ZeRO-partitioned as they were written); a
file alone restores the weights.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.strategies import DeepSpeedStrategy as _LightningDeepSpeed
from pytorch_lightning.trainer.states import TrainerFn

from mlx.errors import ConfigError

SHARDS_SUFFIX = ".deepspeed"  # the sharded folder kept beside each consolidated checkpoint
SHARDS_TAG_KEY = "deepspeed_tag"  # the consolidated file's key naming its shards' tag


def shards_of(path: str | Path) -> Path:
    """The folder of DeepSpeed shards kept beside the consolidated checkpoint ``path``."""
    path = Path(path)
    return path.with_name(path.stem + SHARDS_SUFFIX)


class DeepSpeedStrategy(_LightningDeepSpeed):
    """ZeRO data parallelism (``stage`` 1: optimizer state partitioned, 2: and gradients, 3: and
    parameters) over CPU processes (gloo) or CUDA GPUs (nccl).

    Args:
        stage: the ZeRO stage, 1, 2 or 3.
        offload_optimizer: keep the optimizer state (and its step) in CPU memory.
        offload_parameters: keep the parameters in CPU memory (stage 3 only).
        process_group_backend: ``gloo`` for CPU processes, ``nccl`` for GPUs.
        start_method: how Lightning starts the processes (``spawn``, as for DDP).
    """

    def __init__(
        self,
        stage: int = 2,
        offload_optimizer: bool = False,
        offload_parameters: bool = False,
        process_group_backend: str | None = None,
        start_method: str = "spawn",
    ) -> None:
        check_zero_options(stage, offload_optimizer, offload_parameters)
        super().__init__(
            zero_optimization=True,
            stage=stage,
            offload_optimizer=offload_optimizer,
            offload_parameters=offload_parameters,
            process_group_backend=process_group_backend,
            # DeepSpeed uses it only for throughput logs; "auto" would read a batch sampler that
            # mlx's data modules (which batch and shard themselves) do not have
            logging_batch_size_per_gpu=1,
        )
        self._start_method = start_method  # DDPStrategy's launcher reads it
        # the optimizer the model configures (torch's Adam, AdamW, SGD...) steps the offloaded
        # fp32 partitions itself: no DeepSpeedCPUAdam, whose C++ op takes minutes to build
        assert isinstance(self.config, dict)
        self.config["zero_force_ds_cpu_optimizer"] = False
        self._full_weights: bool = False  # the checkpoint being restored is one consolidated file

    @property
    def _on_cpu(self) -> bool:
        return self.root_device.type == "cpu"

    # ---- the three places Lightning's strategy refuses the CPU -------------------------------

    def setup_environment(self) -> None:
        if not self._on_cpu:
            super().setup_environment()
            return
        super(_LightningDeepSpeed, self).setup_environment()  # DDPStrategy's

    def setup_distributed(self) -> None:
        if not self._on_cpu:
            super().setup_distributed()
            return
        from lightning_fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        _skip_shm_comm_op()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(
        self, model: Any, optimizer: Any, lr_scheduler: Any = None
    ) -> Any:
        self._fit_buckets(model)
        if not self._on_cpu:
            return super()._setup_model_and_optimizer(model, optimizer, lr_scheduler)
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=filter(lambda p: p.requires_grad, model.parameters()),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def _fit_buckets(self, model: Any) -> None:
        """Caps the stage 1/2 gradient buckets at the model's trainable parameters.

        Lightning asks for 2e8-element buckets (800 MB in fp32), which stages 1 and 2 allocate
        with ``torch.empty`` on every backward pass; under ``trainer.deterministic=true`` (mlx's
        default) torch fills every uninitialized tensor, so a small model paid about 1.6 GB of
        writes per step (15 s an epoch for the default CNN on 2 CPU processes instead of under
        1 s). A bucket larger than every gradient together is never filled, so the cap (rounded up
        to whole blocks) changes no result; models larger than the bucket keep Lightning's size."""
        zero = self.config.get("zero_optimization") if isinstance(self.config, dict) else None
        if not zero or zero.get("stage") not in (1, 2):
            return
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # room for DeepSpeed's alignment padding of each partition, in whole blocks (DeepSpeed
        # asks the all-gather bucket to be a multiple of 2)
        block = 1 << 16
        cap = (trainable + 1024 + block - 1) // block * block
        for key in ("reduce_bucket_size", "allgather_bucket_size"):
            if key in zero:
                zero[key] = int(min(zero[key], cap))

    def _initialize_deepspeed_inference(self, model: Any) -> None:
        if not self._on_cpu:
            super()._initialize_deepspeed_inference(model)
            return
        import deepspeed
        from pytorch_lightning.strategies.deepspeed import remove_module_hooks

        assert isinstance(self.config, dict)
        config: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1}
        config.update({k: self.config[k] for k in ("fp16", "bf16") if k in self.config})
        if self.zero_stage_3:
            config["zero_allow_untested_optimizer"] = self.config["zero_allow_untested_optimizer"]
            config["zero_optimization"] = self.config["zero_optimization"]
        remove_module_hooks(model)
        self.model, _, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=config,
            model=model,
            optimizer=None,
            lr_scheduler=None,
            model_parameters=[],
            dist_init_required=False,
        )

    # ---- checkpoints: the shards beside one consolidated file --------------------------------

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("DeepSpeed writes its own checkpoint files: no storage_options.")
        filepath = Path(self.broadcast(str(filepath)))
        shards = shards_of(filepath)
        # Each save writes its shards under a tag of its own and the consolidated file names
        # that tag. The file is replaced (atomically) only once every process's shards are
        # written, so wherever a kill lands, the file and the shards it names are one save:
        # a resume never reads a newer, maybe half-written, set of shards beside an older file
        tag = self.broadcast(f"step{checkpoint.get('global_step', 0)}-{secrets.token_hex(4)}")
        client_state = {
            k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")
        }
        self.deepspeed_engine.save_checkpoint(
            str(shards),
            client_state=client_state,
            tag=tag,
            save_latest=False,  # written below, once the save is complete
            exclude_frozen_parameters=self.exclude_frozen_parameters,
        )
        self.barrier("deepspeed_shards_written")
        if self.is_global_zero:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            state = get_fp32_state_dict_from_zero_checkpoint(str(shards), tag=tag)
            full = {k: v for k, v in checkpoint.items() if k != "optimizer_states"}
            full["state_dict"] = {k: v.detach().clone() for k, v in state.items()}
            # buffers (BatchNorm statistics) keep the module's own values
            for key, value in checkpoint.get("state_dict", {}).items():
                if key not in full["state_dict"] and value.numel() > 0:
                    full["state_dict"][key] = value
            full[SHARDS_TAG_KEY] = tag
            _replace(filepath, lambda tmp: torch.save(full, tmp))
            # DeepSpeed's own tools (zero_to_fp32.py) read the tag in `latest`
            _replace(shards / "latest", lambda tmp: tmp.write_text(tag))
            for old in shards.iterdir():  # earlier saves' shards, and any a kill left
                if old.is_dir() and old.name != tag:
                    shutil.rmtree(old, ignore_errors=True)
        self.barrier("deepspeed_checkpoint_consolidated")

    def remove_checkpoint(self, filepath: Any) -> None:
        if self.is_global_zero:
            Path(filepath).unlink(missing_ok=True)
            shutil.rmtree(shards_of(filepath), ignore_errors=True)

    def load_checkpoint(
        self, checkpoint_path: Any, weights_only: bool | None = None
    ) -> dict[str, Any]:
        checkpoint_path = Path(self.broadcast(str(checkpoint_path)))
        shards = shards_of(checkpoint_path)
        assert self.lightning_module is not None
        fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING
        if fitting and shards.is_dir():
            tag = self.broadcast(_shards_tag(checkpoint_path) if self.is_global_zero else None)
            if tag is None:  # written before the file named its shards: `latest`'s
                self._full_weights = False
                return _LightningDeepSpeed.load_checkpoint(self, shards, weights_only)
            if (shards / tag).is_dir():
                self._full_weights = False
                # the loops' and callbacks' state: the consolidated file's, identical to the
                # shards' (one save)
                _, client_state = self.deepspeed_engine.load_checkpoint(
                    str(shards),
                    tag=tag,
                    load_optimizer_states=True,
                    load_lr_scheduler_states=False,
                    load_module_strict=self.lightning_module.strict_loading,
                )
                if client_state is None:
                    raise RuntimeError(f"DeepSpeed could not load the shards in {shards / tag}")
                return client_state
        self._full_weights = True
        return self.checkpoint_io.load_checkpoint(
            checkpoint_path, weights_only=True if weights_only is None else weights_only
        )

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        if not self._full_weights:
            return  # the DeepSpeed engine loaded the shards
        if self.zero_stage_3:
            self._restore_zero_state(checkpoint, strict=strict)
        else:
            assert self.lightning_module is not None
            self.lightning_module.load_state_dict(checkpoint["state_dict"], strict=strict)


def _shards_tag(path: Path) -> str | None:
    """The tag of the shards that the consolidated checkpoint ``path`` was made from."""
    tag = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(SHARDS_TAG_KEY)
    return str(tag) if tag is not None else None


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through a temporary file renamed over it: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def _skip_shm_comm_op() -> None:
    """DeepSpeed builds its shared-memory all-reduce op (C++, about 3 minutes on 2 cores) when it
    sets up communication on the CPU. Only tensor-parallel inference calls it
    (``inference_all_reduce``); training's collectives go through torch.distributed (gloo), so
    mlx marks the op unavailable and never builds it."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def check_zero_options(stage: int, offload_optimizer: bool, offload_parameters: bool) -> None:
    """What DeepSpeed would refuse (or silently ignore) only once the processes are running."""
    if stage not in (1, 2, 3):
        raise ConfigError(f"trainer.strategy.stage={stage!r}: ZeRO has stages 1, 2 and 3.")
    if offload_parameters and stage != 3:
        raise ConfigError(
            f"trainer.strategy.offload_parameters=true needs ZeRO stage 3 (parallelism="
            f"deepspeed_zero3); stage {stage} keeps every parameter on every process and has none "
            "to offload. Use trainer.strategy.offload_optimizer=true to offload the optimizer state."
        )
