"""Model analysis: black-box and sliced metrics with intervals, the validation gate, model
debugging, introspection, explanations, fairness, and robustness and privacy under attack (the
run's ``analyse`` stage).

Each analysis reads one :class:`~mlx.analysis.evidence.Evidence` (the model's outputs on a split,
the inputs, the raw columns) and returns its section of the run record as plain numbers, writing
its tables and figures into a folder it is given. Heavy libraries (ART, Captum, Fairlearn, SciPy,
scikit-learn, matplotlib) are imported inside the functions that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlx.analysis.debug import Debug
from mlx.analysis.explain import Explain
from mlx.analysis.fairness import Fairness
from mlx.analysis.introspection import Introspection
from mlx.analysis.metrics import Metrics
from mlx.analysis.slices import Slices
from mlx.analysis.validation import Validation

if TYPE_CHECKING:
    from mlx.analysis.harden import Harden
    from mlx.analysis.poisoning import Poisoning
    from mlx.analysis.privacy import Privacy
    from mlx.analysis.robustness import Robustness

# the attack analyses load on first use
_LAZY = {
    "Harden": "mlx.analysis.harden",
    "Poisoning": "mlx.analysis.poisoning",
    "Privacy": "mlx.analysis.privacy",
    "Robustness": "mlx.analysis.robustness",
}

__all__ = [
    "Debug",
    "Explain",
    "Fairness",
    "Harden",
    "Introspection",
    "Metrics",
    "Poisoning",
    "Privacy",
    "Robustness",
    "Slices",
    "Validation",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlx.analysis' has no attribute {name!r}")
