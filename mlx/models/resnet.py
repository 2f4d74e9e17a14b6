"""Small residual network (pre-activation basic blocks) for low-resolution images."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Interval, MinLen
from torch import Tensor, nn

from mlx.errors import ConfigError
from mlx.models.layers import require_image


class BasicBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(relu(bn(conv(relu(bn(x))))))``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        # a 1x1 projection only where the shape changes, so identity blocks stay identity
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        # (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)
        out = self.conv1(self.act(self.bn1(x)))
        out = self.conv2(self.act(self.bn2(out)))
        return out + self.shortcut(x)


class ResNet(nn.Module):
    """Stem convolution, then stages of basic blocks; every stage after the first halves H and W.

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_outputs: size of the head (classes, or 1 for regression).
        widths: channels of each stage.
        blocks_per_stage: residual blocks in every stage.
        dropout: dropout before the head.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_outputs: Annotated[int, Ge(1)],
        widths: Annotated[list[Annotated[int, Ge(1)]], MinLen(1)] = (16, 32, 64),
        blocks_per_stage: Annotated[int, Ge(1)] = 1,
        dropout: Annotated[float, Interval(ge=0, lt=1)] = 0.0,
    ) -> None:
        super().__init__()
        c, h, w = require_image(input_shape, "resnet")
        if min(h, w) >> (len(widths) - 1) < 1:
            raise ConfigError(
                f"resnet with {len(widths)} stages halves a {h}x{w} image below 1x1; "
                f"use at most {min(h, w).bit_length()} entries in model.net.widths."
            )
        self.stem = nn.Conv2d(c, widths[0], 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(c, width, stride))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c, num_outputs),
        )

    def layers(self) -> list[nn.Module]:
        """The network as a flat sequence of layers whose composition is ``forward`` (the
        pipeline strategy cuts it into stages)."""
        return [self.stem, *self.blocks, *self.head]

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, widths[-1], H', W') -> (B, num_outputs)
        return self.head(self.blocks(self.stem(x)))
