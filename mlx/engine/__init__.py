"""The Lightning engine: the task module, mlx's own callbacks and the trainer glue.

Importing this package is cheap; the Lightning-backed names load on first use, so that the
config validator (which reads signatures from source) and ``mlx --help`` never pay for Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LitModel",
    "HistoryCallback",
    "ConfigInCheckpoint",
    "DeepSpeedStrategy",
    "MemoryCallback",
]


def __getattr__(name: str) -> Any:
    if name == "LitModel":
        from mlx.engine.module import LitModel

        return LitModel
    if name in ("HistoryCallback", "ConfigInCheckpoint"):
        from mlx.engine import callbacks

        return getattr(callbacks, name)
    if name == "DeepSpeedStrategy":
        from mlx.engine.deepspeed import DeepSpeedStrategy

        return DeepSpeedStrategy
    if name == "MemoryCallback":
        from mlx.engine.memory import MemoryCallback

        return MemoryCallback
    raise AttributeError(f"module 'mlx.engine' has no attribute {name!r}")
