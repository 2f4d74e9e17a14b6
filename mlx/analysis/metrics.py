"""Black-box metrics of one model on one split, each with a confidence interval.

:func:`metric_table` is the one place metrics are computed: the ``metrics`` analysis, the
``slices`` analysis and the validation gate all call it, so a metric means the same number
everywhere. Every metric comes from scikit-learn (or torchmetrics for the calibration error);
intervals are Wilson's for accuracy (scipy's ``binomtest``) and a seeded percentile bootstrap
for the rest.

The bootstrap draws each resample as row indices from a generator seeded by the run's seed.
Metrics of ``(true, predicted)`` pairs only (balanced accuracy, precision, recall, F1) are
called on the at most ``K * K`` distinct pairs with their counts in the resample as
``sample_weight`` (the same number as on the resampled rows, at a cost independent of N); ROC
AUC and the calibration error of a resample come from torchmetrics, the log loss from torch's
negative log-likelihood (scikit-learn's input checks cost more than the metrics); regression
metrics take all resamples at once as scikit-learn's multi-output columns. Percentile
intervals (the calibration error's shifted back by its bootstrap bias); resamples where a metric
is undefined (ROC AUC without every class) are dropped.

Metric keys (``split/<key>`` in the record, the names mlx logs where they exist):

- classification: ``acc``, ``balanced_acc``, ``precision_macro``, ``recall_macro``,
  ``f1_macro``, ``precision_weighted``, ``recall_weighted``, ``f1_weighted``, ``roc_auc``
  (binary: the positive class's column; multiclass: one-vs-rest, macro), ``loss`` (log loss,
  the cross-entropy mlx trains on), ``ece`` (expected calibration error of the top class);
- regression: ``mae``, ``rmse``, ``r2``, ``loss`` (mean squared error, what mlx trains on),
  ``residual_q05``, ``residual_q25``, ``residual_q50``, ``residual_q75``, ``residual_q95``
  (quantiles of ``y - prediction``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Interval

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.errors import ConfigError
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np

CLASSIFICATION = (
    "acc",
    "balanced_acc",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "loss",
    "ece",
)
QUANTILES = (5, 25, 50, 75, 95)
REGRESSION = ("mae", "rmse", "r2", "loss", *(f"residual_q{q:02d}" for q in QUANTILES))
# the metric a slice is ranked by, and whether higher is better
MAIN = {"classification": ("acc", "max"), "regression": ("mae", "min")}
# below this share of defined resamples a bootstrap interval is not reported
MIN_DEFINED = 0.5


def metric_names(task: str) -> tuple[str, ...]:
    """The keys :func:`metric_table` returns for ``task``."""
    return CLASSIFICATION if task == "classification" else REGRESSION


# metrics whose bootstrap resamples are biased away from the value: their interval is shifted back
BIASED = frozenset({"ece"})


def interval(value: Any, low: Any = None, high: Any = None) -> dict[str, float | None]:
    """``{"value", "low", "high"}`` as plain floats; NaN, inf and missing become None."""

    def plain(v: Any) -> float | None:
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    return {"value": plain(value), "low": plain(low), "high": plain(high)}


def metric_table(
    task: str,
    y: np.ndarray,
    outputs: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    bins: int = 15,
) -> dict[str, dict[str, float | None]]:
    """Every metric of the task with its interval.

    Args:
        task: ``classification`` or ``regression``.
        y: targets ``(N,)``: class ids or values.
        outputs: class probabilities ``(N, K)`` or predictions ``(N,)``.
        n_boot: bootstrap resamples (0: values only, no bootstrap intervals).
        confidence: the intervals' level.
        seed: seeds the resamples: the same seed gives the same intervals.
        bins: equal-width confidence bins of the calibration error.

    Returns:
        ``{key: {"value", "low", "high"}}`` in the order of :func:`metric_names`; a metric
        undefined on these rows (ROC AUC with one class present) has value None, and an
        interval is None when fewer than half of the resamples define the metric.
    """
    return _table(task, y, outputs, n_boot=n_boot, confidence=confidence, seed=seed, bins=bins)[0]


def _table(
    task: str,
    y: np.ndarray,
    outputs: np.ndarray,
    *,
    n_boot: int,
    confidence: float,
    seed: int,
    bins: int,
) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    """:func:`metric_table` and, per metric, how many resamples left it undefined."""
    import numpy as np

    y = np.asarray(y)
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(y) == 0:
        return {name: interval(None) for name in metric_names(task)}, {}
    rng = np.random.default_rng(seed)
    if task == "classification":
        values, boots = _classification(y.astype(np.int64), outputs, n_boot, rng, bins)
    else:
        values, boots = _regression(y.astype(np.float64), outputs.reshape(-1), n_boot, rng)
    alpha = (1.0 - confidence) / 2.0
    table: dict[str, dict[str, float | None]] = {}
    undefined: dict[str, int] = {}
    for name in metric_names(task):
        value = values[name]
        if name == "acc":
            table[name] = _wilson(y, outputs, confidence)
            continue
        draws = np.asarray(boots.get(name, []), dtype=np.float64)
        finite = draws[np.isfinite(draws)]
        if n_boot and len(finite) < n_boot:
            undefined[name] = n_boot - len(finite)
        if value is None or not n_boot or len(finite) < MIN_DEFINED * n_boot:
            table[name] = interval(value)
        else:
            low, high = np.quantile(finite, [alpha, 1.0 - alpha])
            if name in BIASED:
                # binned calibration error grows on resampled rows (repeated rows fill the bins
                # unevenly), so the plain percentile interval can lie wholly above the value:
                # shift it by the bootstrap's estimate of that bias
                bias = float(np.median(finite)) - float(value)
                low, high = max(0.0, low - bias), max(0.0, high - bias)
            table[name] = interval(value, low, high)
    return table, undefined


def _wilson(y: np.ndarray, outputs: np.ndarray, confidence: float) -> dict[str, float | None]:
    return proportion(int((outputs.argmax(axis=1) == y).sum()), len(y), confidence)


def proportion(hits: int, n: int, confidence: float = 0.95) -> dict[str, float | None]:
    """A share ``hits / n`` with its Wilson score interval (None values when ``n`` is 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return interval(None)
    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return interval(hits / n, ci.low, ci.high)


def _pair_metrics(y: np.ndarray, pred: np.ndarray, weight: np.ndarray | None) -> dict[str, float]:
    """Balanced accuracy, and precision, recall and F1 macro and weighted, from one call of
    scikit-learn's per-class scores (its averages are these per-class scores' plain and
    support-weighted means over the classes that occur; balanced accuracy is the mean recall
    of the classes present in ``y``)."""
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, support = precision_recall_fscore_support(
        y, pred, average=None, sample_weight=weight, zero_division=0
    )
    support = np.asarray(support, dtype=np.float64)
    total = support.sum()
    out = {"balanced_acc": float(r[support > 0].mean())}
    for name, scores in (("precision", p), ("recall", r), ("f1", f)):
        out[f"{name}_macro"] = float(scores.mean())
        out[f"{name}_weighted"] = float((scores * support).sum() / total) if total else 0.0
    return out


def _resample_pair_metrics(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """:func:`_pair_metrics` of many resamples at once: ``y`` and ``pred`` are ``(B, N)``, one
    resample per row. torchmetrics' per-class precision, recall and F1 of each row
    (``multidim_average="samplewise"``), averaged as scikit-learn averages them: over the
    classes that occur in the row's labels or predictions."""
    import numpy as np
    import torch
    from torchmetrics.functional.classification import (
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    target, preds = torch.from_numpy(y), torch.from_numpy(pred)
    kw = {"num_classes": k, "average": "none", "multidim_average": "samplewise"}
    scores = {
        "precision": multiclass_precision(preds, target, validate_args=False, **kw).numpy(),
        "recall": multiclass_recall(preds, target, validate_args=False, **kw).numpy(),
        "f1": multiclass_f1_score(preds, target, validate_args=False, **kw).numpy(),
    }
    rows = np.arange(len(y))[:, None]
    support = np.zeros((len(y), k))
    np.add.at(support, (rows, y), 1.0)
    predicted = np.zeros((len(y), k))
    np.add.at(predicted, (rows, pred), 1.0)
    occurs = (support + predicted) > 0
    present = support > 0
    out = {
        "balanced_acc": (scores["recall"] * present).sum(1) / present.sum(1),
    }
    total = support.sum(1)
    for name, per_class in scores.items():
        out[f"{name}_macro"] = (per_class * occurs).sum(1) / occurs.sum(1)
        out[f"{name}_weighted"] = (per_class * support).sum(1) / total
    return out


def _score_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """The metrics of the probabilities: ROC AUC and log loss (None where undefined)."""
    from sklearn.metrics import log_loss, roc_auc_score

    k = probs.shape[1]
    try:
        if k == 2:
            auc = roc_auc_score(y, probs[:, 1])
        else:
            auc = roc_auc_score(y, probs, multi_class="ovr", labels=list(range(k)))
    except ValueError:  # one class only in these rows: no ranking to score
        auc = None
    loss = log_loss(y, probs, labels=list(range(k)))
    return {"roc_auc": auc, "loss": loss}


def _resample_auc(y: np.ndarray, probs: np.ndarray, k: int) -> float | None:
    """ROC AUC of a resample by torchmetrics (the same number as scikit-learn's: binary on the
    positive column, else one-vs-rest macro; a fraction of its time); None when a class is
    absent, where scikit-learn refuses."""
    import numpy as np
    import torch
    from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

    if np.bincount(y, minlength=k).min() == 0:
        return None
    target = torch.from_numpy(y)
    if k == 2:
        value = binary_auroc(
            torch.from_numpy(probs[:, 1]), target, thresholds=None, validate_args=False
        )
    else:
        value = multiclass_auroc(
            torch.from_numpy(probs),
            target,
            num_classes=k,
            average="macro",
            thresholds=None,
            validate_args=False,
        )
    return float(value)


def _row_loss(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each row's log loss by torch's negative log-likelihood, with scikit-learn's clipping of
    the probabilities: a resample's log loss (scikit-learn's ``log_loss`` on its rows) is the
    mean of its rows' values."""
    import numpy as np
    import torch
    from torch.nn.functional import nll_loss

    eps = np.finfo(probs.dtype).eps
    logp = torch.from_numpy(np.log(np.clip(probs, eps, 1 - eps)))
    return nll_loss(logp, torch.from_numpy(y), reduction="none").numpy()


def _ece(y: np.ndarray, probs: np.ndarray, bins: int) -> float:
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(
        multiclass_calibration_error(
            torch.from_numpy(probs),
            torch.from_numpy(y),
            num_classes=probs.shape[1],
            n_bins=bins,
            norm="l1",
            validate_args=False,
        )
    )


def _classification(
    y: np.ndarray, probs: np.ndarray, n_boot: int, rng: Any, bins: int
) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    from sklearn.exceptions import UndefinedMetricWarning

    n, k = probs.shape
    pred = probs.argmax(axis=1)
    with warnings.catch_warnings():
        # undefined precision is 0 (zero_division), a resample with one label is fine
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        values: dict[str, float | None] = {"acc": None}
        values |= _pair_metrics(y, pred, None)
        values |= _score_metrics(y, probs)
        values["ece"] = _ece(y, probs, bins)
        boots: dict[str, list[float]] = {name: [] for name in CLASSIFICATION}
        row_loss = _row_loss(y, probs)
        # resamples in chunks of at most 2M drawn rows: the pair metrics and the loss of a
        # chunk in one call each, ROC AUC and the calibration error one resample at a time
        chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
        done = 0
        while done < n_boot:
            size = min(chunk, n_boot - done)
            idx = rng.integers(0, n, (size, n))
            for name, column in _resample_pair_metrics(y[idx], pred[idx], k).items():
                boots[name].extend(column.tolist())
            boots["loss"].extend(row_loss[idx].mean(axis=1).tolist())
            for rows in idx:
                auc = _resample_auc(y[rows], probs[rows], k)
                boots["roc_auc"].append(math.nan if auc is None else auc)
                boots["ece"].append(_ece(y[rows], probs[rows], bins))
            done += size
    return values, boots


def _regression(
    y: np.ndarray, pred: np.ndarray, n_boot: int, rng: Any
) -> tuple[dict[str, float | None], dict[str, Any]]:
    import numpy as np
    from sklearn.metrics import (
        mean_absolute_error,
        mean_squared_error,
        r2_score,
        root_mean_squared_error,
    )

    def all_metrics(yt: np.ndarray, yp: np.ndarray) -> dict[str, Any]:
        # columns are resamples: scikit-learn's multi-output scores each column on its own
        kw = {"multioutput": "raw_values"}
        out = {
            "mae": mean_absolute_error(yt, yp, **kw),
            "rmse": root_mean_squared_error(yt, yp, **kw),
            "r2": r2_score(yt, yp, **kw),
            "loss": mean_squared_error(yt, yp, **kw),
        }
        quantiles = np.percentile(yt - yp, QUANTILES, axis=0)
        for q, row in zip(QUANTILES, quantiles, strict=True):
            out[f"residual_q{q:02d}"] = row
        return out

    n = len(y)
    values = {k: float(v[0]) for k, v in all_metrics(y[:, None], pred[:, None]).items()}
    boots: dict[str, list[Any]] = {name: [] for name in REGRESSION}
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bounds memory: chunk * n floats
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        idx = rng.integers(0, n, (n, size))  # (N, B): one resample per column
        for name, column in all_metrics(y[idx], pred[idx]).items():
            boots[name].extend(np.asarray(column, dtype=np.float64).tolist())
        done += size
    return values, boots


class Metrics:
    """Black-box evaluation: every metric of the task on the split with its interval, the
    confusion matrix and reliability diagram (classification) or the residuals (regression).

    Args:
        n_boot: bootstrap resamples per metric (0: values without intervals, but accuracy's
            Wilson interval, which needs none).
        confidence: the intervals' level.
        bins: equal-width confidence bins of the calibration error and the reliability diagram.
    """

    name = "metrics"

    def __init__(
        self,
        n_boot: Annotated[int, Ge(0)] = 1000,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
        bins: Annotated[int, Ge(2)] = 15,
    ) -> None:
        for key, value, ok in (
            ("n_boot", n_boot, isinstance(n_boot, int) and n_boot >= 0),
            ("confidence", confidence, 0 < confidence < 1),
            ("bins", bins, isinstance(bins, int) and bins >= 2),
        ):
            if not ok:
                raise ConfigError(f"analysis.metrics.{key}={value!r} is out of range.")
        self.n_boot = n_boot
        self.confidence = confidence
        self.bins = bins

    def check(self, info: DataInfo) -> None:
        """Any task and data: nothing to refuse beyond an unknown task."""
        if info.task not in MAIN:
            raise ConfigError(
                f"analysis metrics: task {info.task!r} is neither classification nor regression."
            )

    def provides(self, info: DataInfo) -> list[str]:
        """The keys of this section the validation gate may name (``acc``, ``acc.low``...)."""
        return [f"{n}{end}" for n in metric_names(info.task) for end in ("", ".low", ".high")]

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """The metrics with intervals; writes metrics.csv and confusion.svg and
        reliability.svg (classification) or residuals.svg (regression)."""
        import numpy as np

        table, undefined = _table(
            evidence.task,
            evidence.y,
            evidence.outputs,
            n_boot=self.n_boot,
            confidence=self.confidence,
            seed=evidence.seed,
            bins=self.bins,
        )
        section: dict[str, Any] = {
            "split": getattr(evidence, "split", "test"),
            "size": len(evidence.y),
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "intervals": "percentile bootstrap"
            + (", Wilson for acc" if evidence.task == "classification" else ""),
            # each metric by its own name, so that the gate and the record read analysis.metrics.acc
            **table,
        }
        if undefined:
            section["undefined_resamples"] = undefined
        write_csv(folder / "metrics.csv", table)
        if evidence.task == "classification":
            from sklearn.metrics import confusion_matrix

            k = evidence.outputs.shape[1]
            names = evidence.class_names or [str(i) for i in range(k)]
            matrix = confusion_matrix(evidence.y, evidence.predictions, labels=list(range(k)))
            section["classes"] = list(names)
            section["confusion"] = matrix.astype(int).tolist()
            _confusion_figure(matrix, names, folder / "confusion.svg")
            section["reliability"] = _reliability_figure(
                np.asarray(evidence.y),
                np.asarray(evidence.outputs, dtype=np.float64),
                self.bins,
                table["ece"]["value"],
                folder / "reliability.svg",
            )
        else:
            _residual_figure(
                np.asarray(evidence.y, dtype=np.float64),
                np.asarray(evidence.outputs, dtype=np.float64).reshape(-1),
                folder / "residuals.svg",
            )
        return section


def write_csv(path: Path, table: dict[str, dict[str, float | None]]) -> None:
    """One row per metric: ``metric,value,low,high`` (empty where undefined)."""
    import csv

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "value", "low", "high"])
        for name, row in table.items():
            writer.writerow([name, *("" if row[k] is None else row[k] for k in row)])


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of plain values as a CSV with a header (the first row's keys), written whole."""
    import csv
    import io

    from mlx.record import write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _confusion_figure(matrix: np.ndarray, names: list[str], path: Path) -> None:
    plt = _plt()
    k = len(names)
    size = min(3.0 + 0.45 * k, 9.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.grid(False)
    ticks = list(range(k))
    ax.set_xticks(ticks, [n[:12] for n in names], rotation=45 if k > 4 else 0, ha="right")
    ax.set_yticks(ticks, [n[:12] for n in names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = matrix.max() if matrix.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if top and matrix[i, j] > 0.6 * top else "black"
                ax.text(
                    j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7, color=color
                )
    fig.colorbar(image, ax=ax, label="examples")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    _save(fig, path)


def _reliability_figure(
    y: np.ndarray, probs: np.ndarray, bins: int, ece: float | None, path: Path
) -> dict[str, list[float]]:
    """The reliability diagram of the top class (scikit-learn's calibration_curve on whether
    the predicted class is right against its probability); returns its points."""
    from sklearn.calibration import calibration_curve

    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(int)
    if correct.min() == correct.max():  # calibration_curve needs both outcomes
        frac, mean = [float(correct.mean())], [float(confidence.mean())]
    else:
        frac, mean = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(mean, frac, "o-", color="#4c72b0", label="model")
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("fraction correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    title = "Reliability" + (f" (ECE {ece:.3f})" if ece is not None else "")
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    _save(fig, path)
    return {"confidence": [float(v) for v in mean], "accuracy": [float(v) for v in frac]}


def _residual_figure(y: np.ndarray, pred: np.ndarray, path: Path) -> None:
    residual = y - pred
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    import numpy as np

    spread = np.ptp(residual) > 1e-8 * (1.0 + np.abs(residual).max())  # else one bar
    bins = min(50, max(10, len(residual) // 20)) if spread else 1
    left.hist(residual, bins=bins, color="#4c72b0")
    left.axvline(0, color="black", linewidth=0.8)
    left.set_xlabel("residual (true - predicted)")
    left.set_ylabel("examples")
    right.scatter(pred, residual, s=6, alpha=0.5, color="#4c72b0")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xlabel("prediction")
    right.set_ylabel("residual")
    fig.suptitle("Residuals")
    fig.tight_layout()
    _save(fig, path)
