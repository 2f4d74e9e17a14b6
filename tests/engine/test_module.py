"""LitModel's epoch metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlx.engine import LitModel


def _model() -> LitModel:
    return LitModel(
        net=lambda input_shape, num_outputs: nn.Linear(input_shape[0], num_outputs),
        input_shape=(4,),
        num_outputs=3,
        task="classification",
        optimizer=torch.optim.SGD,
    )


def test_epoch_means_weigh_each_example_not_each_batch() -> None:
    torch.manual_seed(0)
    model = _model().eval()
    x, y = torch.randn(105, 4), torch.randint(0, 3, (105,))
    with torch.no_grad():
        for lo, hi in [(0, 64), (64, 105)]:  # a full batch and an uneven last one
            model._step((x[lo:hi], y[lo:hi]), "val")
        whole = nn.functional.cross_entropy(model.net(x), y)
        acc = (model.net(x).argmax(1) == y).float().mean()
    assert float(model.epoch_metrics["val_loss"].compute()) == pytest.approx(float(whole), abs=1e-6)
    assert float(model.epoch_metrics["val_acc"].compute()) == pytest.approx(float(acc), abs=1e-6)


def test_a_nan_loss_reaches_the_epoch_mean() -> None:
    model = _model()
    model.epoch_metrics["train_loss"].update(torch.tensor(1.0), 64)
    model.epoch_metrics["train_loss"].update(torch.tensor(float("nan")), 8)
    assert torch.isnan(model.epoch_metrics["train_loss"].compute())
