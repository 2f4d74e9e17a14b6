"""How many bytes of model state one training process holds: parameters, gradients and
optimizer state (the three the ZeRO paper partitions), for every parallelism mode.

What a process holds is counted where it lives: a plain or DDP module's tensors; a DTensor's
local shard (``to_local()``, FSDP2); DeepSpeed ZeRO's partitions (stage 3's ``ds_tensor``, the
fp32 master partitions the wrapped optimizer steps, the partitioned gradients). Working buffers
(DDP's and DeepSpeed's communication buckets) and activations are not model state and are left
out. :class:`MemoryCallback` measures once, at the first optimizer step, and each rank writes its
figures to ``memory/rank<N>.json`` in the output folder, which the train stage adds to the run
record (``metrics.json`` ``memory``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

MEMORY_DIR = "memory"  # one JSON file per rank, in the output folder


def _local(t: torch.Tensor) -> torch.Tensor:
    """The part of a tensor this process holds: a DTensor's local shard, else the tensor."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def _nbytes(tensors: Iterable[torch.Tensor], seen: list[tuple[int, int]]) -> int:
    """Bytes of ``tensors`` not already counted: memory that an earlier tensor (in this call or
    in another sharing ``seen``, a list of counted address ranges) covers is counted once, so a
    view into a flat buffer and the buffer itself, or a tensor listed twice, add nothing."""
    total = 0
    for t in tensors:
        t = _local(t)
        size = t.numel() * t.element_size()
        if size == 0:
            continue
        start = t.data_ptr()
        end = start + size
        covered = sum(max(0, min(end, e) - max(start, s)) for s, e in seen)
        total += max(0, size - covered)
        seen.append((start, end))
    return total


def _param_tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    for p in module.parameters():
        # ZeRO stage 3 leaves an empty placeholder in the module and keeps this rank's slice here
        yield getattr(p, "ds_tensor", p)


def _inner(optimizer: Any) -> Any:
    """The torch optimizer that holds the state: DeepSpeed and Lightning wrap it."""
    seen = 0
    while hasattr(optimizer, "optimizer") and seen < 5:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def _tensors_in(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors_in(v)


def params_bytes(module: torch.nn.Module) -> int:
    """Bytes of the parameters this process holds (its shard under ZeRO 3 or FSDP2)."""
    return _nbytes(_param_tensors(module), [])


def grads_bytes(module: torch.nn.Module, optimizer: Any = None) -> int:
    """Bytes of the gradients this process holds now (call it between backward and step)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if optimizer is not None:
        # DeepSpeed ZeRO 2 and 3 keep this rank's partition of the reduced gradients here
        for wrapper in _wrappers(optimizer):
            grads += list(_tensors_in(getattr(wrapper, "averaged_gradients", None)))
            # ... and, offloaded, in CPU buffers or on the fp32 master partitions
            grads += list(_tensors_in(getattr(wrapper, "accumulated_grads_in_cpu", None)))
            # stage 3 keeps every gradient partition in one flat buffer (the views above point
            # into it, counted once); offloaded, it is the only place they are
            grads += list(_tensors_in(getattr(wrapper, "grad_partitions_flat_buffer", None)))
        inner = _inner(optimizer)
        grads += [p.grad for g in inner.param_groups for p in g["params"] if p.grad is not None]
    return _nbytes(grads, [])


def optimizer_bytes(module: torch.nn.Module, optimizer: Any) -> int:
    """Bytes of the optimizer state this process holds: the state tensors (Adam's moments) and
    the parameters the optimizer steps that are not the module's own (DeepSpeed's fp32 master
    partitions)."""
    inner = _inner(optimizer)
    seen: list[tuple[int, int]] = []
    _nbytes(_param_tensors(module), seen)  # the module's parameters are counted as parameters
    state = _nbytes(_tensors_in(list(inner.state.values())), seen)
    masters = [p for group in inner.param_groups for p in group["params"]]
    return state + _nbytes(masters, seen)


def _wrappers(optimizer: Any) -> Iterator[Any]:
    for _ in range(5):
        yield optimizer
        if not hasattr(optimizer, "optimizer"):
            return
        optimizer = optimizer.optimizer


class MemoryCallback(pl.Callback):
    """Measures each rank's parameter, gradient and optimizer-state bytes at the first optimizer
    step and writes them to ``<folder>/rank<N>.json``.

    Args:
        folder: where each rank writes its figures (the run's ``memory/``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.figures: dict[str, int] | None = None

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self.figures is None:
            self.figures = {
                "params_bytes": params_bytes(pl_module),
                "grads_bytes": grads_bytes(pl_module, trainer.strategy.optimizers[0]),
            }

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        if self.figures is None or "optimizer_bytes" in self.figures:
            return
        self.figures["optimizer_bytes"] = optimizer_bytes(pl_module, trainer.strategy.optimizers[0])
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.figures))
        tmp.replace(path)


def read_memory(folder: Path) -> dict[str, dict[str, int]]:
    """The figures every rank wrote, by rank (``{"0": {"params_bytes": ...}, ...}``)."""
    figures = {}
    for path in sorted(Path(folder).glob("rank*.json")):
        figures[path.stem.removeprefix("rank")] = json.loads(path.read_text())
    return figures
