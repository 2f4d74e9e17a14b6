"""Small shared pieces of the networks."""

from __future__ import annotations

from torch import nn

from mlx.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by its lowercase torch name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def require_image(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    """Check that the data are images ``(C, H, W)``; convolutional models need them.

    Raises:
        ConfigError: the data are not images (the config pairs a tabular data set with a
            convolutional model).
    """
    if len(input_shape) != 3:
        raise ConfigError(
            f"model={model} needs image data shaped (C, H, W), but the data have input shape "
            f"{tuple(input_shape)}; use model=mlp for tabular data."
        )
    c, h, w = input_shape
    return c, h, w
