"""Random image augmentations applied to whole train batches, after the encoded (cached) data.

Each batch's draws come from a generator seeded with a number that the train batch sampler
draws in the main process from the data module's one generator, next to the batch's indices.
The draws therefore depend only on the run's seed and the batch's place in the run, not on
which worker (thread or process) builds the batch, nor on how many workers there are.

This module imports torch; ``mlx.data.datamodule`` imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, Dataset

from mlx.data.sources import LoaderSettings


def shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in each direction, filling with zeros
    (a random crop of the zero-padded image). ``x``: (N, C, H, W)."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def rotate(x: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image about its centre by an angle uniform in [-degrees, degrees],
    bilinear, filling with zeros. ``x``: (N, C, H, W)."""
    if degrees <= 0:
        return x
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def noise(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` to every value."""
    if std <= 0:
        return x
    return x + torch.randn(x.shape, generator=gen) * std


def augment(x: torch.Tensor, settings: LoaderSettings, seed: int) -> torch.Tensor:
    """``settings.augment`` applied in the order given, drawing from a generator seeded with
    ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    for name in settings.augment or ():
        if name == "shift":
            x = shift(x, settings.shift, gen)
        elif name == "rotate":
            x = rotate(x, settings.rotate, gen)
        elif name == "noise":
            x = noise(x, settings.noise, gen)
    return x


class SeededBatchSampler(BatchSampler):
    """Yields ``(seed, indices)``: each batch's indices with a seed for its augmentations,
    drawn from ``generator`` in the process that iterates the sampler (the main one)."""

    def __init__(
        self, sampler: Any, batch_size: int, drop_last: bool, generator: torch.Generator
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.generator = generator

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for indices in super().__iter__():
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            yield seed, indices

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class AugmentedBatches(Dataset):
    """Whole batches of in-memory tensors, augmented: indexed with ``(seed, indices)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, settings: LoaderSettings) -> None:
        self.x, self.y, self.settings = x, y, settings

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, item: tuple[int, Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        seed, indices = item
        return augment(self.x[indices], self.settings, seed), self.y[indices]
