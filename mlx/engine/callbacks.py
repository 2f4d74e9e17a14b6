"""mlx's own Lightning callbacks: the per-epoch history of the run record, and a config that
travels inside every checkpoint so that ``mlx eval`` and resumed runs can rebuild the model."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from mlx.engine.checkpoint import CHECKPOINT_KEY


class HistoryCallback(pl.Callback):
    """Writes one row per finished epoch (train and val metrics, lr, seconds) to a CSV file.

    An epoch's row is taken when the next epoch starts or fitting ends: by then the module has
    logged the epoch's train metrics (modules log after callbacks' epoch-end hooks), validation
    and checkpointing are done, and ``seconds`` covers all of it. The file is rewritten whole from
    memory each time, so it is never half-written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._open: tuple[int, float] | None = None  # (epoch, start) begun in this process
        self._lr: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(trainer)
        self._open = (trainer.current_epoch, time.perf_counter())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(trainer)

    def _close(self, trainer: pl.Trainer) -> None:
        # resuming from a checkpoint taken at validation end closes that epoch again without
        # training it: only epochs that started in this process get a row
        if self._open is None or not trainer.is_global_zero:
            self._open = None
            return
        epoch, start = self._open
        self._open = None
        row: dict[str, Any] = {"epoch": epoch, "step": trainer.global_step}
        for key, value in sorted(trainer.callback_metrics.items()):
            if "/" in key and not key.startswith("test/"):
                row[key] = float(value)
        if self._lr is not None:
            row["lr"] = self._lr
        row["seconds"] = round(time.perf_counter() - start, 4)
        self.rows.append(row)
        self._write()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0 and trainer.optimizers:
            # the rate this epoch trained with (schedulers step when the epoch ends)
            self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def _write(self) -> None:
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: _fmt(v) for k, v in row.items()})
        tmp.replace(self.path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


class ConfigInCheckpoint(pl.Callback):
    """Stores the run's resolved config in each checkpoint under ``checkpoint["mlx"]``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = {"config": self.config}


class WeightsAfterFirstEpoch(pl.Callback):
    """Keeps a copy of the network's weights when the first training epoch ends (the
    early-training point that lottery tickets can rewind to)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is None and trainer.current_epoch == 0:
            net = getattr(pl_module, "net", pl_module)
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}


class SpawnedGroupClosed(pl.Callback):
    """Close the process group at the end of a fit or test whose processes the strategy spawned
    for it. Left open, the group's communication threads are still running when the spawned
    process exits, and C++ ends it with ``terminate called without an active exception``
    (SIGABRT), which fails the whole run after its work is done. Processes that torchrun or
    SLURM started keep their group: their fit and test share it."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import torch.distributed as dist
        from pytorch_lightning.strategies.launchers.multiprocessing import (
            _MultiProcessingLauncher,
        )

        launcher = getattr(trainer.strategy, "launcher", None)
        if isinstance(launcher, _MultiProcessingLauncher) and dist.is_initialized():
            dist.barrier()  # no rank leaves while another still talks to it
            dist.destroy_process_group()
