"""The networks: shapes, heads, and clear errors for data they cannot take."""

from __future__ import annotations

import pytest
import torch

from mlx.models import CNN, MLP, ResNet


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (CNN((1, 8, 8), 10), (1, 8, 8)),
        (CNN((1, 28, 28), 10, channels=[16, 32]), (1, 28, 28)),
        (ResNet((1, 8, 8), 10), (1, 8, 8)),
        (ResNet((3, 28, 28), 10, widths=[8, 16], blocks_per_stage=2), (3, 28, 28)),
        (MLP((30,), 2), (30,)),
        (MLP((1, 8, 8), 10, hidden=[]), (1, 8, 8)),
        (MLP((10,), 1, batch_norm=True, activation="gelu"), (10,)),
    ],
)
def test_forward_backward_shapes(net: torch.nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(4, *shape)
    out = net(x)
    assert out.shape[0] == 4
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_regression_head_has_one_output() -> None:
    assert MLP((10,), 1)(torch.randn(3, 10)).shape == (3, 1)


def test_conv_models_refuse_tabular_data() -> None:
    with pytest.raises(ValueError, match=r"needs image data.*\(30,\).*model=mlp"):
        CNN((30,), 2)
    with pytest.raises(ValueError, match="needs image data"):
        ResNet((30,), 2)


def test_too_many_stages_for_the_image() -> None:
    with pytest.raises(ValueError, match="below 1x1"):
        CNN((1, 8, 8), 10, channels=[8, 8, 8, 8])
    with pytest.raises(ValueError, match="below 1x1"):
        ResNet((1, 8, 8), 10, widths=[8, 8, 8, 8, 8])


def test_unknown_activation() -> None:
    with pytest.raises(ValueError, match="unknown activation"):
        MLP((4,), 2, activation="swishy")  # type: ignore[arg-type]
