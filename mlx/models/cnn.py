"""Small convolutional network for low-resolution images (digits 8x8, MNIST 28x28)."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Interval, MinLen
from torch import Tensor, nn

from mlx.errors import ConfigError
from mlx.models.layers import activation as make_activation
from mlx.models.layers import require_image


class CNN(nn.Module):
    """``[conv -> BN -> act -> conv -> BN -> act -> maxpool]`` per stage, then an MLP head.

    Each stage halves the spatial size, so ``len(channels)`` is bounded by the image size.

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_outputs: size of the head (classes, or 1 for regression).
        channels: output channels of each stage.
        hidden: width of the hidden linear layer before the head (0: none).
        dropout: dropout before the head.
        activation: activation name.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_outputs: Annotated[int, Ge(1)],
        channels: Annotated[list[Annotated[int, Ge(1)]], MinLen(1)] = (32, 64),
        hidden: Annotated[int, Ge(0)] = 128,
        dropout: Annotated[float, Interval(ge=0, lt=1)] = 0.2,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
    ) -> None:
        super().__init__()
        c, h, w = require_image(input_shape, "cnn")
        if min(h, w) >> len(channels) < 1:
            raise ConfigError(
                f"cnn with {len(channels)} stages halves a {h}x{w} image below 1x1; "
                f"use at most {min(h, w).bit_length() - 1} entries in model.net.channels."
            )
        stages: list[nn.Module] = []
        for out in channels:
            stages += [
                nn.Conv2d(c, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                make_activation(activation),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                make_activation(activation),
                nn.MaxPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*stages)
        flat = c * h * w
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            head += [nn.Linear(flat, hidden), make_activation(activation), nn.Dropout(dropout)]
            flat = hidden
        head.append(nn.Linear(flat, num_outputs))
        self.head = nn.Sequential(*head)

    def layers(self) -> list[nn.Module]:
        """The network as a flat sequence of layers whose composition is ``forward`` (the
        pipeline strategy cuts it into stages)."""
        return [*self.features, *self.head]

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, channels[-1], H / 2^S, W / 2^S) -> (B, num_outputs)
        return self.head(self.features(x))
