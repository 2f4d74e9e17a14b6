"""Digits data and plain-loop ``Tools`` for the compression stages' unit tests (no Lightning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlx.compression.base import Tools

SHAPE = (1, 8, 8)
CLASSES = 10


def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """sklearn digits in [0, 1] as (N, 1, 8, 8) images, split 1200 / 300 / rest."""
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).reshape(-1, *SHAPE)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return {
        "train": (x[:1200], y[:1200]),
        "val": (x[1200:1500], y[1200:1500]),
        "test": (x[1500:], y[1500:]),
    }


def digits_tools(
    data: dict[str, Any],
    before_fine_tune: Callable[[nn.Module, int], None] | None = None,
    shape: tuple[int, ...] = SHAPE,
) -> Tools:
    """Tools over ``data`` (inputs reshaped to ``shape``: ``(64,)`` for an MLP) with a plain
    Adam loop; ``before_fine_tune(net, epochs)`` sees each fine-tune before it trains."""

    def train_batches() -> DataLoader:
        x, y = data["train"]
        return DataLoader(TensorDataset(x.reshape(-1, *shape), y), batch_size=64, shuffle=True)

    def fine_tune(net: nn.Module, epochs: int, lr_scale: float = 1.0) -> nn.Module:
        if before_fine_tune is not None:
            before_fine_tune(net, epochs)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3 * lr_scale)
        net.train()
        for _ in range(epochs):
            for x, y in train_batches():
                opt.zero_grad()
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        return net

    @torch.no_grad()
    def evaluate(net: nn.Module) -> dict[str, float]:
        net.eval()
        out = {
            f"{split}/acc": (net(x.reshape(-1, *shape)).argmax(1) == y).float().mean().item()
            for split, (x, y) in ((s, data[s]) for s in ("val", "test"))
        }
        net.train()
        return out

    return Tools(
        input_shape=shape,
        num_outputs=CLASSES,
        task="classification",
        train_batches=train_batches,
        loss=nn.functional.cross_entropy,
        fine_tune=fine_tune,
        evaluate=evaluate,
        log=lambda line: None,
    )
