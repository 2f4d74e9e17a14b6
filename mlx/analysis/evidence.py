"""What every analysis reads: one model's outputs on one split, with the inputs behind them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass
class Evidence:
    """One model on one split (the test split unless the analysis says otherwise).

    Attributes:
        task: ``classification`` or ``regression``.
        x: the encoded inputs the network takes, float32: images ``(N, C, H, W)``, tabular rows
            ``(N, F)`` (one-hot encoded and scaled as in training).
        y: the targets, ``(N,)``: int64 class ids or float32 values.
        outputs: classification: class probabilities ``(N, K)`` (softmax of the logits), rows
            summing to 1; regression: predictions ``(N,)``.
        predict: the model as a function of encoded inputs: ``x -> outputs`` in the same form
            as ``outputs`` (batched inside, no gradients), for analyses that query the model on
            inputs of their own (sensitivity, partial dependence, permutation importance,
            random attacks).
        raw: the raw feature columns of the same rows, before encoding (a pandas DataFrame,
            tabular data only; None for images): slices and sensitive groups name these.
        feature_names: the names of ``x``'s columns (tabular, after encoding), else None.
        class_names: the name of each class id (classification), else None.
        net: the network in eval mode (logits or predictions as a torch module), for analyses
            that need gradients or internals (explanations, introspection); None when the model
            is a graph without gradients (an ONNX int8 model).
        seed: the seed every random draw of the analyses derives from.
        train: the encoded training split ``(x, y)``, for analyses that fit models of their
            own on the run's training data (baselines), else None.
        train_raw: the raw columns of the training split (tabular), else None.
        val: the encoded validation split ``(x, y)``, which the model never trained on (the
            data a model thief may query), else None.
        fit: ``fit(x, y, epochs=None) -> net`` trains a fresh network of the run's model config
            on the encoded rows ``(x, y)`` with the run's optimizer, learning rate and epochs
            (``epochs`` overrides them) through Lightning, and returns it in eval mode; for
            analyses that train models of their own (a backdoored twin). None when the run
            cannot build one.
        build: ``build() -> net``: a fresh, untrained network of the run's model config (a
            model thief's network), else None.
        numeric: which encoded columns are numeric (tabular: True for a standardised or raw
            number, False for a one-hot column), else None (images: every value is numeric).
    """

    task: str
    x: np.ndarray
    y: np.ndarray
    outputs: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray]
    raw: pd.DataFrame | None = None
    feature_names: list[str] | None = None
    class_names: list[str] | None = None
    net: Any = None
    seed: int = 0
    train: tuple[np.ndarray, np.ndarray] | None = None
    train_raw: pd.DataFrame | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None
    fit: Callable[..., Any] | None = None
    build: Callable[[], Any] | None = None
    numeric: list[bool] | None = None

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class ids (classification) or values (regression), ``(N,)``."""
        return self.outputs.argmax(axis=1) if self.task == "classification" else self.outputs


@dataclass
class DataInfo:
    """What is known of the data and the model before training, for the analyses' checks
    (a missing column or a method the model cannot serve is refused before any work).

    Attributes:
        task: ``classification`` or ``regression``.
        columns: the raw feature columns (tabular data), else None (images).
        categorical: which of ``columns`` are categorical.
        feature_names: the encoded columns the network takes (tabular), else None.
        class_names: the classes (classification), else None.
        input_shape: one example's shape as the network takes it (``[C, H, W]`` or ``[F]``).
        gradients: whether the model has gradients (False for an ONNX graph).
        value_range: the smallest and largest value of the encoded training inputs (what an
            attack's perturbation size is measured against), or None when unknown.
        split_sizes: examples in each split (``train``, ``val``, ``test``), or None.
        numeric: which encoded columns are numeric (tabular), else None (images).
    """

    task: str
    columns: list[str] | None
    categorical: list[str]
    feature_names: list[str] | None
    class_names: list[str] | None
    input_shape: list[int]
    gradients: bool = True
    value_range: tuple[float, float] | None = None
    split_sizes: dict[str, int] | None = None
    numeric: list[bool] | None = None


class Analysis(Protocol):
    """One analysis of the ``analysis`` group: built from its config option (typed ``__init__``
    arguments), checked against the data before training, run on the final model."""

    name: str  # its section of the record: metrics.json ``analysis.<name>``

    def check(self, info: DataInfo) -> None:
        """Refuses (:class:`~mlx.errors.ConfigError`) what this data or model cannot give:
        columns that do not exist (with a close match), a task it does not apply to..."""
        ...

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """The analysis: its record section as plain JSON values (numbers, lists, dicts of
        them); its tables (CSV) and figures (SVG) written into ``folder``."""
        ...
