"""Neural architecture search on NNI 3.0: model spaces, their frozen architectures, candidate
cost, one-shot search, and the search stage's glue.

Every NNI import of mlx lives in this package (and in mlx.sweep's tuner adapter), so the archived
library can be replaced in one place. Importing ``mlx.nas`` is cheap: NNI (about 8 s) loads when a
space, an architecture or a one-shot search is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for readers and the config's static signature check
    from mlx.nas.oneshot import check_one_shot, search_one_shot
    from mlx.nas.spaces import CellCNN, MacroCNN, MacroMLP, NasError, architecture, space_choices

# public name -> the module that defines it
_EXPORTS = {
    "MacroCNN": "mlx.nas.spaces",
    "CellCNN": "mlx.nas.spaces",
    "MacroMLP": "mlx.nas.spaces",
    "NasError": "mlx.nas.spaces",
    "architecture": "mlx.nas.spaces",
    "space_choices": "mlx.nas.spaces",
    "search_one_shot": "mlx.nas.oneshot",
    "check_one_shot": "mlx.nas.oneshot",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlx.nas' has no attribute '{name}'")


__all__ = [
    "CellCNN",
    "MacroCNN",
    "MacroMLP",
    "NasError",
    "architecture",
    "check_one_shot",
    "search_one_shot",
    "space_choices",
]
