"""Model compression stages: structural pruning, lottery tickets, int8 quantization, knowledge distillation and PCA, applied in the listed order to a trained network and measured each.

Importing this package is cheap; each stage loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlx.compression.base import CompressionError, Stage, StageInput, Tools

if TYPE_CHECKING:
    from mlx.compression.distill import Distill
    from mlx.compression.lottery import LotteryTicket
    from mlx.compression.pca import PCA
    from mlx.compression.prune import Prune
    from mlx.compression.quantize import OnnxRuntimeNet, Quantize

_LAZY = {
    "Distill": "mlx.compression.distill",
    "LotteryTicket": "mlx.compression.lottery",
    "PCA": "mlx.compression.pca",
    "Prune": "mlx.compression.prune",
    "Quantize": "mlx.compression.quantize",
    "OnnxRuntimeNet": "mlx.compression.quantize",
}

__all__ = [
    "CompressionError",
    "Stage",
    "StageInput",
    "Tools",
    "Distill",
    "LotteryTicket",
    "PCA",
    "Prune",
    "Quantize",
    "OnnxRuntimeNet",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlx.compression' has no attribute {name!r}")
