"""Model analysis: black-box and sliced metrics with intervals, the validation gate, model
debugging, introspection, explanations and fairness (the run's ``analyse`` stage).

Each analysis reads one :class:`~mlx.analysis.evidence.Evidence` (the model's outputs on a split,
the inputs, the raw columns) and returns its section of the run record as plain numbers, writing
its tables and figures into a folder it is given. Heavy libraries (Captum, Fairlearn, SciPy,
scikit-learn, matplotlib) are imported inside the functions that use them.
"""

from mlx.analysis.debug import Debug
from mlx.analysis.explain import Explain
from mlx.analysis.fairness import Fairness
from mlx.analysis.introspection import Introspection
from mlx.analysis.metrics import Metrics
from mlx.analysis.slices import Slices
from mlx.analysis.validation import Validation

__all__ = ["Debug", "Explain", "Fairness", "Introspection", "Metrics", "Slices", "Validation"]
