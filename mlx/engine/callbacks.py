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
    and checkpointing are done, and ``seconds`` covers all of it. The row is also written once
    before, just before the epoch's checkpoint (see ``on_save_checkpoint``), so that a run killed
    between the two and resumed has no gap. The file is rewritten whole from memory each time,
    so it is never half-written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._open: tuple[int, float] | None = None  # (epoch, start) begun in this process
        self._lr: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run keeps the rows of the epochs its checkpoint holds (the epoch the
        # checkpoint was taken in included: it is closed without training) and drops the rest,
        # which the resumed run trains again
        if trainer.ckpt_path is None or not trainer.is_global_zero or self.rows:
            return
        from mlx.record import read_history

        done = trainer.current_epoch
        self.rows = [
            {k: int(v) if k in ("epoch", "step") else v for k, v in row.items()}
            for row in read_history(self.path)
            if row["epoch"] <= done
        ]
        self._write()

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
        self._put(self._row(trainer, {}))
        self._open = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # A checkpoint taken when the epoch's training is done (at validation end) goes to disk
        # before the epoch's row would (when the next epoch starts): the row is written now,
        # so that a kill between the two leaves no epoch without a row (a run resumed from
        # this checkpoint does not train this epoch again). Its train metrics are not logged
        # yet: the module computes them as it will log them (in DDP every process must, hence
        # before the rank check). The row is written again, whole, when the epoch closes.
        if self._open is None or not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        epoch_values = getattr(pl_module, "epoch_values", None)
        train = epoch_values("train") if callable(epoch_values) else {}
        if trainer.is_global_zero:
            self._put(self._row(trainer, train))

    def _row(self, trainer: pl.Trainer, train: dict[str, float]) -> dict[str, Any]:
        assert self._open is not None
        epoch, start = self._open
        row: dict[str, Any] = {"epoch": epoch, "step": trainer.global_step}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()} | train
        for key, value in sorted(metrics.items()):
            if "/" in key and not key.startswith("test/"):
                row[key] = value
        if self._lr is not None:
            row["lr"] = self._lr
        row["seconds"] = round(time.perf_counter() - start, 4)
        return row

    def _put(self, row: dict[str, Any]) -> None:
        """Add the row, or replace the one of its epoch, and write the file."""
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
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


class RandomStates(pl.Callback):
    """Carries the random states of Python, NumPy and torch (CPU and CUDA) in each checkpoint
    and sets them again when training resumes from it, so that the epochs after a resume draw
    the same numbers (dropout, augmentations, the loaders' base seeds) as an uninterrupted run.

    The states, and the data module's (its train order, see ``ArrayDataModule.state_dict``),
    are set when the first epoch after the resume starts, not when the checkpoint is loaded:
    between the two, Lightning builds the train loader's iterator once more than an
    uninterrupted run does (which draws from both). The states are those of the process that
    saved (rank 0); every rank gets them, as every rank was seeded alike.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._pending_data: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np
        import torch

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        dm = trainer.datamodule
        if dm is not None:
            self._pending_data = checkpoint.get(type(dm).__qualname__)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            self._set(self._pending)
            self._pending = None
        if self._pending_data is not None and trainer.datamodule is not None:
            trainer.datamodule.load_state_dict(self._pending_data)
            self._pending_data = None

    @staticmethod
    def _set(state: dict[str, Any]) -> None:
        import random

        import numpy as np
        import torch

        version, keys, gauss = state["python"]
        random.setstate((version, tuple(keys), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda")
        if (
            cuda is not None
            and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda)
