"""The LightningModule that trains any ``mlx.models`` network for classification or regression."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval
from torch import Tensor, nn

SPLITS = ("train", "val", "test")
NAN = float("nan")


def epoch_metrics(task: str, splits: tuple[str, ...]) -> nn.ModuleDict:
    """``<split>_<name>`` -> a torchmetrics accumulator of each metric a task logs per epoch."""
    from torchmetrics import MeanMetric
    from torchmetrics.regression import R2Score

    # nan_strategy=nan: a NaN loss must reach the epoch mean (and fail the run there) rather
    # than be dropped. Not "disable": torchmetrics 1.9 then ignores the weights, and an
    # uneven last batch would count as much as a full one.
    metrics: dict[str, nn.Module] = {}
    for split in splits:
        metrics[f"{split}_loss"] = MeanMetric(nan_strategy=NAN)
        if task == "classification":
            metrics[f"{split}_acc"] = MeanMetric(nan_strategy=NAN)
        else:
            metrics[f"{split}_mae"] = MeanMetric(nan_strategy=NAN)
            metrics[f"{split}_r2"] = R2Score()
    return nn.ModuleDict(metrics)


class LitModel(pl.LightningModule):
    """Wraps a network with its loss, metrics and optimizer.

    Metric keys follow ``split/name``: ``train/loss``, ``val/acc``, ``test/r2``...
    Classification logs ``loss`` (cross-entropy) and ``acc``; regression logs ``loss`` (MSE),
    ``mae`` and ``r2``.

    Args:
        net: builds the network; called with ``input_shape`` and ``num_outputs``.
        input_shape: shape of one example, from the data module.
        num_outputs: classes (classification) or 1 (regression), from the data module.
        task: ``classification`` or ``regression``, from the data module.
        optimizer: builds the optimizer; called with the parameters, ``lr`` and ``weight_decay``.
        lr: learning rate.
        weight_decay: weight decay passed to the optimizer.
        scheduler: optional; builds an epoch-wise learning-rate scheduler from the optimizer.
        label_smoothing: cross-entropy label smoothing (classification only).
    """

    def __init__(
        self,
        net: Callable[..., nn.Module],
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        task: Literal["classification", "regression"],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr: Annotated[float, Gt(0)] = 1e-3,
        weight_decay: Annotated[float, Ge(0)] = 0.0,
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: Annotated[float, Interval(ge=0, lt=1)] = 0.0,
    ) -> None:
        super().__init__()
        self.net = net(input_shape=tuple(input_shape), num_outputs=num_outputs)
        self.task = task
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        # Epoch metrics accumulate in torchmetrics objects (exact weighted means, synced across
        # DDP processes) and are logged once per epoch: a `self.log` call per step costs more
        # than a small model's step.
        self.epoch_metrics = epoch_metrics(task, SPLITS)

    def metric_names(self) -> tuple[str, ...]:
        """The metric names logged under each split for this task."""
        return ("loss", "acc") if self.task == "classification" else ("loss", "mae", "r2")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch  # (B, *input_shape), (B,)
        return self.score(self.net(x), y, split)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The task's loss of outputs ``(B, num_outputs)`` against targets ``(B,)``."""
        if self.task == "classification":
            return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        return F.mse_loss(out.squeeze(-1), y)

    def score(self, out: Tensor, y: Tensor, split: str) -> Tensor:
        """The loss of a batch's outputs, added with the other metrics to the split's epoch
        metrics (the pipeline strategy calls it with the outputs of its last stage)."""
        n = y.shape[0]
        m = self.epoch_metrics
        loss = self.loss(out, y)
        if self.task == "classification":
            m[f"{split}_acc"].update((out.argmax(dim=1) == y).float().mean(), n)
        else:
            pred = out.squeeze(-1)  # (B,)
            m[f"{split}_mae"].update((pred - y).abs().mean().detach(), n)
            m[f"{split}_r2"].update(pred.detach(), y)
        m[f"{split}_loss"].update(loss.detach(), n)
        return loss

    def _log_epoch(self, split: str) -> None:
        for name in self.metric_names():
            metric = self.epoch_metrics[f"{split}_{name}"]
            if metric.update_called:
                value = metric.compute()
                if name == "loss" and not torch.isfinite(value):
                    raise FloatingPointError(
                        f"{split}/loss is {float(value)} at epoch {self.current_epoch}: training diverged (lower model.lr or clip gradients with trainer.gradient_clip_val)"
                    )
                with warnings.catch_warnings():
                    # the value is torchmetrics' synced one: Lightning's advice to sync it again
                    # (sync_dist=True, one more all-reduce) would only repeat every DDP run
                    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")
                    self.log(f"{split}/{name}", value, prog_bar=split != "test")
            metric.reset()

    def epoch_values(self, split: str) -> dict[str, float]:
        """The epoch metrics of ``split`` accumulated so far (``split/name`` -> value), as the
        epoch's end will log them: computed, not reset (torchmetrics keeps the value until the
        next update). In DDP the values are synced: every process must call it."""
        values = {}
        for name in self.metric_names():
            metric = self.epoch_metrics[f"{split}_{name}"]
            if metric.update_called:
                values[f"{split}/{name}"] = float(metric.compute())
        return values

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_model(self) -> None:
        # only a sharding strategy (parallelism=fsdp: mlx.engine.fsdp.SpawnedFSDP) asks for this;
        # every other mode trains the network as built
        shard = getattr(self.trainer.strategy, "shard_module", None)
        if shard is not None:
            shard(self)

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.make_scheduler is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.make_scheduler(opt), "interval": "epoch"},
        }
