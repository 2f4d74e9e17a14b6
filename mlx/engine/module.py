"""The LightningModule that trains any ``mlx.models`` network for classification or regression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval
from torch import Tensor, nn


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
        if task == "regression":
            from torchmetrics.regression import R2Score

            # R2 is not a mean over batches, so it needs a stateful metric per split
            self.r2 = nn.ModuleDict({f"{s}_r2": R2Score() for s in ("train", "val", "test")})

    def metric_names(self) -> tuple[str, ...]:
        """The metric names logged under each split for this task."""
        return ("loss", "acc") if self.task == "classification" else ("loss", "mae", "r2")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch  # (B, *input_shape), (B,)
        out = self.net(x)  # (B, num_outputs)
        n = y.shape[0]
        if self.task == "classification":
            loss = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
            acc = (out.argmax(dim=1) == y).float().mean()
            self.log(f"{split}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        else:
            pred = out.squeeze(-1)  # (B,)
            loss = F.mse_loss(pred, y)
            self.log(
                f"{split}/mae", (pred - y).abs().mean(), on_step=False, on_epoch=True, batch_size=n
            )
            r2 = self.r2[f"{split}_r2"]
            r2(pred.detach(), y)
            self.log(f"{split}/r2", r2, on_step=False, on_epoch=True, prog_bar=True)
        self.log(
            f"{split}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=split != "test",
            batch_size=n,
        )
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.make_scheduler is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.make_scheduler(opt), "interval": "epoch"},
        }
