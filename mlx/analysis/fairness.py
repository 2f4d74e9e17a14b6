"""Fairness: how the model treats the groups of declared sensitive columns (``sex``, ``age``...).

For each sensitive raw column (and, when several are given, their intersection) the rows of the
split are grouped by the column's value; a numeric column with more than ``MAX_LEVELS`` distinct
values is cut into ``bins`` quantile buckets of the analysed split (``[19, 27]``...), missing
values form the group ``missing``. Groups smaller than ``min_size`` are counted, not reported,
and left out of the gaps (a handful of rows would decide the largest difference by chance).

Classification (one-vs-rest for the ``positive`` class, the favourable outcome): per group its
size, selection rate (share predicted positive), true and false positive rates and accuracy;
between groups the demographic parity difference and ratio (selection rates) and the equalized
odds difference and ratio (the worse of the TPR and FPR gaps), as :mod:`fairlearn.metrics`
defines them. Regression: per group the mean absolute error and the mean prediction; between
groups the MAE difference and ratio and the mean prediction's difference. A difference is the
largest group value minus the smallest, a ratio the smallest over the largest (1 is parity).

Every value has a seeded percentile bootstrap interval over the split's rows (``n_boot``
resamples; a resample draws rows, so group sizes vary as they would in new data). The rows are
first reduced to weighted cells, each distinct (group, target, prediction) with its count, so a
row resample is a multinomial draw of the counts and the cost does not grow with the rows. The
values come from Fairlearn's ``MetricFrame`` and ``fairlearn.metrics`` functions with the counts
as sample weights; in the resamples, from Fairlearn's weighted shares on each group's cells
(equal on the unresampled counts, tested), as a ``MetricFrame`` per resample costs ~30 ms.
"""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.slices import quantile_buckets, sort_key, value_label
from mlx.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd

    # read by type checkers and mlx's static signature reader only
    from annotated_types import Ge, Interval

# a numeric column with more distinct values than this is bucketed; fewer are groups as they are
MAX_LEVELS = 10
# below this share of defined resamples a bootstrap interval is not reported
MIN_DEFINED = 0.5
# the key of the intersection's entry when several sensitive columns are given
INTERSECTION = "intersection"
# the section's own keys, which a sensitive column's entry must not shadow
RESERVED = (
    "task",
    "positive",
    "split",
    "size",
    "n_boot",
    "confidence",
    "min_size",
    "bins",
    "sensitive",
    INTERSECTION,
)
# per-group metrics and the gaps between groups, by task
GROUP_METRICS = {
    "classification": ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy"),
    "regression": ("mae", "mean_prediction"),
}
GAPS = {
    "classification": (
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
        "equalized_odds_ratio",
    ),
    "regression": ("mae_difference", "mae_ratio", "mean_prediction_difference"),
}


class Fairness:
    """Per-group rates of the model for sensitive raw columns, and the gaps between groups.

    Args:
        sensitive: raw columns whose groups are compared (``[sex, age]``); with two or more,
            their intersection too (``female & [19, 27]``).
        positive: the favourable class (classification), e.g. ``good``; None takes the last
            class (the second of a binary task: ``1``, ``yes``, ``good`` in sorted order).
            Multi-class tasks are analysed one-vs-rest for this class.
        bins: quantile buckets of a numeric sensitive column with more than 10 distinct
            values (age); the edges are the analysed split's quantiles.
        n_boot: bootstrap resamples for the intervals (0: values only).
        confidence: the intervals' level.
        min_size: groups with fewer rows are counted, not reported, and left out of the gaps.
    """

    name = "fairness"

    def __init__(
        self,
        sensitive: list[str],
        positive: str | None = None,
        bins: Annotated[int, Ge(2)] = 4,
        n_boot: Annotated[int, Ge(0)] = 200,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
        min_size: Annotated[int, Ge(1)] = 30,
    ) -> None:
        if isinstance(sensitive, str) or not sensitive:
            raise ConfigError(
                f"analysis.fairness.sensitive={sensitive!r}: give a list of one or more raw "
                "columns, e.g. analysis.fairness.sensitive=[sex,age]."
            )
        self.sensitive = [str(c) for c in sensitive]
        repeated = sorted({c for c in self.sensitive if self.sensitive.count(c) > 1})
        if repeated:
            raise ConfigError(
                f"analysis.fairness.sensitive names {', '.join(repeated)} twice; list each "
                "column once."
            )
        self.positive = None if positive is None else str(positive)
        self.bins = int(bins)
        self.n_boot = int(n_boot)
        self.confidence = float(confidence)
        self.min_size = int(min_size)
        for key, value, ok in (
            ("bins", bins, self.bins >= 2),
            ("n_boot", n_boot, self.n_boot >= 0),
            ("confidence", confidence, 0 < self.confidence < 1),
            ("min_size", min_size, self.min_size >= 1),
        ):
            if not ok:
                raise ConfigError(f"analysis.fairness.{key}={value!r} is out of range.")

    # -- before training ------------------------------------------------------------------------

    def check(self, info: DataInfo) -> None:
        """Refuses images, columns that do not exist, a column that shadows one of the
        section's own keys, and a ``positive`` that is not a class (or given for a regression)."""
        if info.columns is None:
            raise ConfigError(
                "analysis.fairness compares groups of raw table columns, and this data has "
                "none (images): use a table (data=csv, or a tabular data option) or drop "
                "fairness from the analysis list."
            )
        for column in self.sensitive:
            if column not in info.columns:
                raise ConfigError(
                    f"analysis.fairness.sensitive: no raw column '{column}'."
                    f"{did_you_mean(column, info.columns)} The columns are "
                    f"{', '.join(info.columns)}."
                )
            if column in RESERVED:
                raise ConfigError(
                    f"analysis.fairness.sensitive: the column '{column}' has the name of one of "
                    f"the fairness section's own keys ({', '.join(RESERVED)}); rename it in the "
                    "data."
                )
        if info.task != "classification":
            if self.positive is not None:
                raise ConfigError(
                    f"analysis.fairness.positive={self.positive!r}: a favourable class applies "
                    "to classification only, and this task is a regression; set it to null."
                )
            return
        names = info.class_names or []
        if self.positive is not None and names and self.positive not in names:
            raise ConfigError(
                f"analysis.fairness.positive={self.positive!r} is not a class; the classes are "
                f"{', '.join(names)}.{did_you_mean(self.positive, names)}"
            )

    def groupings(self) -> list[str]:
        """The entries of the section: each sensitive column, then the intersection."""
        return [*self.sensitive, *([INTERSECTION] if len(self.sensitive) > 1 else [])]

    def provides(self, info: DataInfo) -> list[str]:
        """The keys the validation gate may name: ``<column>.<gap>`` with ``.low``/``.high``."""
        return [
            f"{entry}.{gap}{end}"
            for entry in self.groupings()
            for gap in GAPS[info.task]
            for end in ("", ".low", ".high")
        ]

    # -- on the model ---------------------------------------------------------------------------

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """Per group of each sensitive column: size and rates with intervals; the gaps between
        groups with intervals; writes fairness.csv and fairness.svg."""
        import numpy as np

        if evidence.raw is None:
            raise ConfigError("analysis.fairness needs the raw columns of a table; there are none.")
        task = evidence.task
        y = np.asarray(evidence.y)
        if task == "classification":
            names = evidence.class_names or [str(k) for k in range(evidence.outputs.shape[1])]
            pos = names.index(self.positive) if self.positive is not None else len(names) - 1
            positive: str | None = names[pos]
            y_true = y.astype(np.int64)
            y_pred = np.asarray(evidence.predictions).astype(np.int64)
        else:
            pos, positive = None, None
            y_true = y.astype(np.float64)
            y_pred = np.asarray(evidence.outputs, dtype=np.float64).reshape(-1)
        section: dict[str, Any] = {
            "task": task,
            "positive": positive,
            "split": getattr(evidence, "split", "test"),
            "size": len(y),
            "sensitive": list(self.sensitive),
            "bins": self.bins,
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "min_size": self.min_size,
        }
        raw = evidence.raw.reset_index(drop=True)
        labels = {c: _group_labels(raw[c], self.bins) for c in self.sensitive}
        for i, entry in enumerate(self.groupings()):
            if entry == INTERSECTION:
                cells = labels[self.sensitive[0]]
                for c in self.sensitive[1:]:
                    cells = cells + " & " + labels[c]
                columns = list(self.sensitive)
            else:
                cells, columns = labels[entry], [entry]
            section[entry] = self._entry(
                task, y_true, y_pred, pos, cells, columns, seed=evidence.seed + i
            )
        _write_csv(folder / "fairness.csv", section, self.groupings())
        _figure(section, self.groupings(), folder / "fairness.svg")
        return section

    def _entry(
        self,
        task: str,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        pos: int | None,
        cells: pd.Series,
        columns: list[str],
        seed: int,
    ) -> dict[str, Any]:
        """One sensitive column's (or the intersection's) groups and gaps."""
        import numpy as np
        import pandas as pd

        from mlx.analysis.metrics import interval

        sizes = cells.value_counts()
        kept = sorted((g for g, n in sizes.items() if n >= self.min_size), key=sort_key)
        small = {str(g): int(n) for g, n in sizes.items() if n < self.min_size}
        entry: dict[str, Any] = {
            "columns": columns,
            "groups": [],
            "small": {"count": len(small), "rows": sum(small.values()), "groups": small},
        }
        if not kept:
            entry["note"] = f"no group has min_size={self.min_size} rows"
            entry.update({gap: interval(None) for gap in GAPS[task]})
            return entry
        rows = cells.isin(kept).to_numpy()
        group_of = cells[rows].to_numpy()
        codes = pd.Categorical(group_of, categories=kept).codes.astype(np.int64)
        cell_group, cell_true, cell_pred, counts = _cells(task, y_true[rows], y_pred[rows], codes)
        labels = np.asarray(kept, dtype=object)[cell_group]
        values = _values(task, cell_true, cell_pred, counts, pos, labels, kept)
        boots = _bootstrap(
            task, cell_true, cell_pred, counts, cell_group, len(kept), pos, self.n_boot, seed
        )
        alpha = (1.0 - self.confidence) / 2.0

        def with_interval(key: str, boot_key: str | None = None) -> dict[str, float | None]:
            value = values[key]
            if value is None or boots is None:
                return interval(value)
            samples = boots[boot_key or key]
            finite = samples[np.isfinite(samples)]
            if len(finite) < MIN_DEFINED * len(samples):
                return interval(value)
            low, high = np.quantile(finite, [alpha, 1.0 - alpha])
            return interval(value, low, high)

        for j, g in enumerate(kept):
            group: dict[str, Any] = {"group": str(g), "size": int(sizes[g])}
            if task == "classification":  # the rows behind the TPR (the rest: the FPR)
                group["positives"] = int(counts[(cell_group == j) & (cell_true == pos)].sum())
            group.update({m: with_interval(f"{m}[{g}]", f"{m}[{j}]") for m in GROUP_METRICS[task]})
            entry["groups"].append(group)
        if len(kept) < 2:
            entry["note"] = f"one group of at least min_size={self.min_size} rows: no gap to show"
        entry.update({gap: with_interval(gap) for gap in GAPS[task]})
        return entry


# -- the numbers -------------------------------------------------------------------------------


def _metrics(task: str, pos: int | None) -> dict[str, Callable[[Any, Any], float]]:
    """Each per-group metric as ``f(y_true, y_pred)`` on class ids or values: Fairlearn's rates
    one-vs-rest for the favourable class ``pos``, scikit-learn's accuracy over every class."""
    from fairlearn.metrics import (
        false_positive_rate,
        mean_prediction,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, mean_absolute_error

    if task == "regression":
        return {"mae": mean_absolute_error, "mean_prediction": mean_prediction}

    def one_vs_rest(
        metric: Callable[..., float], yt: Any, yp: Any, sample_weight: Any = None
    ) -> float:
        return metric(_is(yt, pos), _is(yp, pos), pos_label=1, sample_weight=sample_weight)

    return {
        "selection_rate": partial(selection_rate, pos_label=pos),
        "true_positive_rate": partial(one_vs_rest, true_positive_rate),
        "false_positive_rate": partial(one_vs_rest, false_positive_rate),
        "accuracy": accuracy_score,
    }


def _weighted_metrics(task: str, pos: int | None) -> dict[str, Callable[[Any, Any, Any], float]]:
    """The same metrics for the resamples as ``f(y_true, y_pred, weight)``, each a Fairlearn
    weighted share: a true positive rate is the selection rate among the actual positives, a
    false positive rate among the actual negatives, accuracy the share of right predictions,
    MAE the mean absolute error. Equal to :func:`_metrics` with counts as weights (tested), and
    free of scikit-learn's input checks, which cost more than the arithmetic."""
    import numpy as np
    from fairlearn.metrics import mean_prediction, selection_rate

    if task == "regression":
        return {
            "mae": lambda yt, yp, w: mean_prediction(None, np.abs(yt - yp), sample_weight=w),
            "mean_prediction": lambda yt, yp, w: mean_prediction(None, yp, sample_weight=w),
        }

    def share(values: Any, label: Any, weight: Any) -> float:
        # no actual positive (or negative) of a group drawn: 0, as Fairlearn's rates
        # (scikit-learn's normalised confusion matrix) give it
        if weight.sum() == 0:
            return 0.0
        return selection_rate(None, values, pos_label=label, sample_weight=weight)

    return {
        "selection_rate": lambda yt, yp, w: share(yp, pos, w),
        "true_positive_rate": lambda yt, yp, w: share(yp[yt == pos], pos, w[yt == pos]),
        "false_positive_rate": lambda yt, yp, w: share(yp[yt != pos], pos, w[yt != pos]),
        "accuracy": lambda yt, yp, w: share(yt == yp, True, w),
    }


def _is(labels: Any, pos: int | None) -> np.ndarray:
    """1 where the label is the favourable class, else 0."""
    import numpy as np

    return (np.asarray(labels) == pos).astype(np.int64)


def _values(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    weight: np.ndarray,
    pos: int | None,
    groups: np.ndarray,
    kept: list[Any],
) -> dict[str, float | None]:
    """The values on the rows themselves, given as weighted cells (see :func:`_cells`): per
    group from a Fairlearn ``MetricFrame``, the gaps from ``fairlearn.metrics``' own functions
    (regression: the frame's differences/ratios), every one with the counts as sample weights.
    (Fairlearn's frame costs ~0.5 s on 30k rows, a few ms on their cells.)"""
    import pandas as pd
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
    )

    metrics = _metrics(task, pos)
    frame = MetricFrame(
        metrics=metrics,
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=pd.Series(groups, name="group"),
        sample_params={name: {"sample_weight": weight} for name in metrics},
    )
    out: dict[str, float | None] = {}
    by_group = frame.by_group
    for name in metrics:
        for g in kept:
            out[f"{name}[{g}]"] = _plain(by_group.loc[g, name])
    single = len(kept) < 2
    if task == "classification":
        yt, yp = _is(y_true, pos), _is(y_pred, pos)
        gaps = {
            "demographic_parity_difference": demographic_parity_difference,
            "demographic_parity_ratio": demographic_parity_ratio,
            "equalized_odds_difference": equalized_odds_difference,
            "equalized_odds_ratio": equalized_odds_ratio,
        }
        for name, f in gaps.items():
            gap = f(yt, yp, sensitive_features=groups, sample_weight=weight)
            out[name] = None if single else _plain(gap)
    else:
        difference, ratio = frame.difference(), frame.ratio()
        out["mae_difference"] = None if single else _plain(difference["mae"])
        out["mae_ratio"] = None if single else _plain(ratio["mae"])
        out["mean_prediction_difference"] = (
            None if single else _plain(difference["mean_prediction"])
        )
    return out


def _cells(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows as weighted cells: for classification each distinct (group, target,
    prediction) with its count (a few dozen cells however many rows), for regression each row
    with count 1. A bootstrap resample of the rows is a multinomial draw of these counts."""
    import numpy as np

    if task == "regression":
        return codes, y_true, y_pred, np.ones(len(codes), dtype=np.int64)
    table = np.stack([codes, y_true, y_pred], axis=1)
    cells, counts = np.unique(table, axis=0, return_counts=True)
    return cells[:, 0], cells[:, 1], cells[:, 2], counts


def _weighted_values(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    weight: np.ndarray,
    masks: list[np.ndarray],
    metrics: dict[str, Callable[[Any, Any, Any], float]],
) -> dict[str, float]:
    """The values on one resample (cells weighted by their drawn counts): each metric on each
    group (``masks``, in the order of the reported groups, keyed by position), and the gaps as
    Fairlearn defines them between groups: difference max - min, ratio min / max (equalized
    odds: the worse of the TPR and FPR gaps)."""
    import numpy as np

    out: dict[str, float] = {}
    per: dict[str, list[float]] = {name: [] for name in metrics}
    for j, mask in enumerate(masks):
        w = weight[mask]
        for name, f in metrics.items():
            # a group that drew no row in this resample has no value
            value = float(f(y_true[mask], y_pred[mask], w)) if w.sum() > 0 else math.nan
            out[f"{name}[{j}]"] = value
            per[name].append(value)

    def difference(name: str) -> float:
        v = np.asarray(per[name])
        return float(v.max() - v.min()) if len(v) > 1 and np.isfinite(v).all() else math.nan

    def ratio(name: str) -> float:
        v = np.asarray(per[name])
        if len(v) < 2 or not np.isfinite(v).all() or v.max() <= 0:
            return math.nan
        return float(v.min() / v.max())

    if task == "classification":
        out["demographic_parity_difference"] = difference("selection_rate")
        out["demographic_parity_ratio"] = ratio("selection_rate")
        out["equalized_odds_difference"] = max(
            difference("true_positive_rate"), difference("false_positive_rate")
        )
        out["equalized_odds_ratio"] = min(ratio("true_positive_rate"), ratio("false_positive_rate"))
    else:
        out["mae_difference"] = difference("mae")
        out["mae_ratio"] = ratio("mae")
        out["mean_prediction_difference"] = difference("mean_prediction")
    return out


def _bootstrap(
    task: str,
    cell_true: np.ndarray,
    cell_pred: np.ndarray,
    counts: np.ndarray,
    cell_group: np.ndarray,
    n_groups: int,
    pos: int | None,
    n_boot: int,
    seed: int,
) -> dict[str, np.ndarray] | None:
    """``n_boot`` seeded resamples of the rows (multinomial draws of the cells' counts): every
    value of :func:`_values` on each, keyed as :func:`_weighted_values` keys them."""
    import warnings

    import numpy as np

    if n_boot == 0:
        return None
    rng = np.random.default_rng(seed)
    metrics = _weighted_metrics(task, pos)
    masks = [cell_group == j for j in range(n_groups)]
    n = int(counts.sum())
    samples: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            drawn = rng.multinomial(n, counts / n)
            values = _weighted_values(task, cell_true, cell_pred, drawn, masks, metrics)
            for key, value in values.items():
                samples.setdefault(key, []).append(value)
    return {k: np.asarray(v, dtype=np.float64) for k, v in samples.items()}


def _plain(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# -- groups ------------------------------------------------------------------------------------


def _group_labels(series: pd.Series, bins: int) -> pd.Series:
    """Each row's group label: the value, or the quantile bucket of a many-valued number."""
    import pandas as pd

    series = series.reset_index(drop=True)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numeric and series.nunique(dropna=True) > MAX_LEVELS:
        labels, _ = quantile_buckets(series.astype("float64"), bins)
        return labels.where(series.notna(), "missing").astype(str)
    return series.map(value_label).astype(str)


# -- outputs -----------------------------------------------------------------------------------


def _write_csv(path: Path, section: dict[str, Any], entries: list[str]) -> None:
    """One row per reported group: size and each metric with its interval."""
    metrics = GROUP_METRICS[section["task"]]
    counts = ["size", "positives"] if section["task"] == "classification" else ["size"]
    header = ["sensitive", "group", *counts]
    header += [f"{m}{end}" for m in metrics for end in ("", "_low", "_high")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for entry in entries:
            for group in section[entry]["groups"]:
                row: list[Any] = [entry, group["group"], *(group[c] for c in counts)]
                for m in metrics:
                    row += ["" if group[m][k] is None else group[m][k] for k in _ENDS]
                writer.writerow(row)


_ENDS = ("value", "low", "high")


def _figure(section: dict[str, Any], entries: list[str], path: Path) -> None:
    """One panel per sensitive column: each group's rates as points with interval bars."""
    from mlx.analysis.metrics import _plt, _save

    plt = _plt()
    metrics = GROUP_METRICS[section["task"]]
    shown = [e for e in entries if section[e]["groups"]]
    if not shown:
        return
    heights = [0.5 * len(section[e]["groups"]) + 0.8 for e in shown]
    rates = section["task"] == "classification"  # every value a share in [0, 1]
    fig, axes = plt.subplots(
        len(shown),
        1,
        figsize=(6.4, sum(heights) + 0.4),
        squeeze=False,
        height_ratios=heights,
        sharex=rates,
        layout="constrained",
    )
    for ax, entry in zip(axes[:, 0], shown, strict=True):
        groups = section[entry]["groups"]
        for k, m in enumerate(metrics):
            ys, xs, lows, highs = [], [], [], []
            for j, g in enumerate(groups):
                v = g[m]
                if v["value"] is None:
                    continue
                ys.append(j + 0.16 * (k - (len(metrics) - 1) / 2))
                xs.append(v["value"])
                # a percentile interval need not hold its value: no bar on that side then
                low = v["low"] if v["low"] is not None else v["value"]
                high = v["high"] if v["high"] is not None else v["value"]
                lows.append(max(0.0, v["value"] - low))
                highs.append(max(0.0, high - v["value"]))
            ax.errorbar(
                xs, ys, xerr=[lows, highs], fmt="o", ms=4, capsize=2, label=m.replace("_", " ")
            )
        if rates:
            ax.set_xlim(-0.02, 1.02)
        ax.set_yticks(range(len(groups)), [f"{g['group']} (n={g['size']})" for g in groups])
        ax.invert_yaxis()
        title = " & ".join(section[entry]["columns"])
        gap = GAPS[section["task"]][0]
        value = section[entry][gap]["value"]
        if value is not None:
            title += f": {gap.replace('_', ' ')} {value:.3f}"
        ax.set_title(title, fontsize=9, loc="left")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _save(fig, path)
