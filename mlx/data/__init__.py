"""Data: sources that load a data set, and the Lightning data module that splits and batches it.

The sources and loader settings import only the standard library, so config validation can
build them in milliseconds; ``ArrayDataModule`` (torch, Lightning, scikit-learn) is imported on
first use.
"""

from __future__ import annotations

from typing import Any

from mlx.data.sources import (
    DataConfigError,
    Digits,
    GermanCredit,
    Loaded,
    LoaderSettings,
    MNIST5k,
    SklearnTabular,
    Table,
)

__all__ = [
    "ArrayDataModule",
    "DataConfigError",
    "Digits",
    "GermanCredit",
    "Loaded",
    "LoaderSettings",
    "MNIST5k",
    "SklearnTabular",
    "Table",
]


def __getattr__(name: str) -> Any:
    """Import ``ArrayDataModule`` on first access: it pulls in torch and Lightning."""
    if name == "ArrayDataModule":
        from mlx.data.datamodule import ArrayDataModule

        return ArrayDataModule
    raise AttributeError(f"module 'mlx.data' has no attribute {name!r}")
