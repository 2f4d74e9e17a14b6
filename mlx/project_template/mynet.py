"""The project's example network: a module of your own that mlx builds from
``conf/model/mynet.yaml`` (``_target_: mynet.MyNet``).

mlx calls it with the data's ``input_shape`` and ``num_outputs``; the other arguments come from
the config and are checked against this signature before anything runs, so
``mlx run model=mynet model.net.width=0`` is refused in about a second.
"""

from __future__ import annotations

import math
from typing import Annotated

from annotated_types import Ge
from torch import Tensor, nn


class MyNet(nn.Module):
    """``Flatten -> Linear -> ReLU -> Linear``: one hidden layer.

    Args:
        input_shape: shape of one example; anything beyond one axis is flattened.
        num_outputs: size of the head (classes, or 1 for regression).
        width: width of the hidden layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        width: Annotated[int, Ge(1)] = 64,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU())
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        # (B, *input_shape) -> (B, width) -> (B, num_outputs)
        return self.head(self.body(x))
