"""Multi-layer perceptron for tabular data or flattened images."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from annotated_types import Ge, Interval, MinLen
from torch import Tensor, nn

from mlx.models.layers import activation as make_activation


class MLP(nn.Module):
    """Stack of ``Linear -> activation -> dropout`` blocks with a linear head.

    Args:
        input_shape: shape of one example; anything beyond one axis is flattened.
        num_outputs: size of the head (classes, or 1 for regression).
        hidden: width of each hidden layer, in order.
        dropout: dropout probability after each hidden block.
        activation: name of the activation (``relu``, ``gelu``, ``silu``, ``tanh``, ``leaky_relu``).
        batch_norm: insert ``BatchNorm1d`` after each hidden linear layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        hidden: Annotated[list[Annotated[int, Ge(1)]], MinLen(0)] = (128, 64),
        dropout: Annotated[float, Interval(ge=0, lt=1)] = 0.1,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers += [make_activation(activation), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def layers(self) -> list[nn.Module]:
        """The network as a flat sequence of layers whose composition is ``forward`` (the
        pipeline strategy cuts it into stages)."""
        return [*self.body, self.head]

    def forward(self, x: Tensor) -> Tensor:
        # (B, *input_shape) -> (B, num_outputs)
        return self.head(self.body(x))
