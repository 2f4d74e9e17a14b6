"""TFMA-style sliced metrics: every metric on each slice of the split, the gap to the whole
split, and whether the slice differs from the rest more than chance would.

Slices are declared in config on the *raw* columns (before one-hot encoding and scaling), so a
user names ``sex`` or ``age``, not ``sex_Male``:

- ``columns``: one slice per value of each column;
- ``buckets``: numeric columns cut into quantile buckets (an int: how many) or at explicit
  boundaries (a list of floats: the buckets are ``(-inf, b1], (b1, b2], ..., (bn, inf)``);
- ``crosses``: pairs of columns, one slice per combination (a bucketed column is crossed by its
  buckets);
- ``per_class``: one slice per true class (images too);
- ``intensity_buckets``: images, quantile buckets of each example's mean input intensity.

Slices smaller than ``min_size`` are counted, not reported (their intervals would be wider than
the gap they could show). Each reported slice is tested against the rest of the split: the
counts of right and wrong predictions by chi-square (Fisher's exact test where an expected
count is below 5) for classification, the absolute errors by Mann-Whitney U for regression; the
p-values are also given Benjamini-Hochberg adjusted over the reported slices (``q_value``), as
many slices are tested at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Interval

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.metrics import MAIN, _table, interval
from mlx.errors import ConfigError, did_you_mean
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# a column sliced by value with more distinct values than this is refused: bucket it instead
MAX_VALUES = 50


@dataclass
class Slice:
    """One slice: ``feature`` (``sex``, ``age``, ``sex x age``, ``class``, ``intensity``), its
    value's label and which rows of the split it holds."""

    feature: str
    value: str
    mask: np.ndarray


class Slices:
    """Every metric on each declared slice, with its interval, gap to overall and significance.

    Args:
        columns: raw columns sliced by each of their values (``[sex, race]``).
        buckets: numeric raw columns cut into buckets: ``{age: 4}`` (quartiles) or
            ``{age: [30, 50]}`` (boundaries: ``<=30``, ``30-50``, ``>50``).
        crosses: pairs of raw columns sliced by each combination (``[[sex, race]]``).
        per_class: slice by the true class (classification, images and tables).
        intensity_buckets: images: this many quantile buckets of the examples' mean input
            intensity (0: off).
        min_size: slices with fewer rows are counted, not reported.
        n_boot: bootstrap resamples per slice and metric.
        confidence: the intervals' level.
        top: how many of the weakest slices to rank.
    """

    name = "slices"

    def __init__(
        self,
        columns: list[str] | None = None,
        buckets: dict[str, int | list[float]] | None = None,
        crosses: list[tuple[str, str]] | None = None,
        per_class: bool = False,
        intensity_buckets: Annotated[int, Ge(0)] = 0,
        min_size: Annotated[int, Ge(1)] = 30,
        n_boot: Annotated[int, Ge(0)] = 100,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
        top: Annotated[int, Ge(1)] = 10,
    ) -> None:
        self.columns = [str(c) for c in columns or []]
        self.buckets = {str(k): _bucket_spec(str(k), v) for k, v in (buckets or {}).items()}
        self.crosses = [_cross_spec(c) for c in crosses or []]
        self.per_class = bool(per_class)
        self.intensity_buckets = int(intensity_buckets)
        self.min_size = int(min_size)
        self.n_boot = int(n_boot)
        self.confidence = float(confidence)
        self.top = int(top)
        if not (self.columns or self.buckets or self.crosses or per_class or intensity_buckets):
            raise ConfigError(
                "analysis.slices declares no slice: set columns, buckets, crosses, per_class "
                "or intensity_buckets (e.g. analysis.slices.columns=[sex])."
            )
        for key, value, ok in (
            ("intensity_buckets", intensity_buckets, self.intensity_buckets >= 0),
            ("min_size", min_size, self.min_size >= 1),
            ("n_boot", n_boot, self.n_boot >= 0),
            ("confidence", confidence, 0 < self.confidence < 1),
            ("top", top, self.top >= 1),
        ):
            if not ok:
                raise ConfigError(f"analysis.slices.{key}={value!r} is out of range.")

    def _named(self) -> list[tuple[str, str]]:
        """(config key, column) of every column the config names."""
        named = [("columns", c) for c in self.columns]
        named += [("buckets", c) for c in self.buckets]
        named += [("crosses", c) for pair in self.crosses for c in pair]
        return named

    def check(self, info: DataInfo) -> None:
        """Refuses columns that do not exist, buckets on categorical columns, column slices on
        images, intensity buckets on tables and per-class slices of a regression."""
        named = self._named()
        if info.columns is None:
            if named:
                key = named[0][0]
                raise ConfigError(
                    f"analysis.slices.{key} slices by raw columns, and this data (images) has "
                    "none: use analysis.slices.per_class=true or "
                    "analysis.slices.intensity_buckets=4 instead."
                )
        else:
            for key, column in named:
                if column not in info.columns:
                    raise ConfigError(
                        f"analysis.slices.{key}: no raw column '{column}' in this data."
                        f"{did_you_mean(column, info.columns)} The columns are: "
                        f"{', '.join(info.columns)}."
                    )
            for column in self.buckets:
                if column in info.categorical:
                    raise ConfigError(
                        f"analysis.slices.buckets.{column}: '{column}' is categorical and has no "
                        f"numeric range to bucket: slice it by value with "
                        f"analysis.slices.columns=[{column}] instead."
                    )
            if self.intensity_buckets:
                raise ConfigError(
                    "analysis.slices.intensity_buckets is for images (the mean input "
                    "intensity of each example); this data is a table: slice its columns "
                    "with analysis.slices.buckets instead, or set intensity_buckets=0."
                )
        if self.per_class and info.task != "classification":
            raise ConfigError(
                "analysis.slices.per_class=true slices by the true class, and this task is "
                f"{info.task}: set per_class=false (bucket a column instead)."
            )

    def slices(self, evidence: Evidence) -> list[Slice]:
        """Every declared slice of the split, empty ones left out (an empty bucket of
        explicit boundaries is refused)."""
        import numpy as np

        out: list[Slice] = []
        raw = evidence.raw
        if self._named() and raw is None:
            raise ConfigError(
                "analysis.slices slices by raw columns, and this data has none (images): "
                "use per_class or intensity_buckets."
            )
        by_value = {c: _values(raw, c, "columns") for c in self.columns}
        by_bucket = {c: _buckets(raw, c, spec) for c, spec in self.buckets.items()}
        for column, labels in [*by_value.items(), *by_bucket.items()]:
            out += _groups(column, labels)
        for a, b in self.crosses:
            # a bucketed column is crossed by its buckets, any other by its values
            la, lb = (by_bucket.get(c, by_value.get(c)) for c in (a, b))
            la = la if la is not None else _values(raw, a, "crosses")
            lb = lb if lb is not None else _values(raw, b, "crosses")
            out += _groups(f"{a} x {b}", la.astype(str) + " & " + lb.astype(str))
        if self.per_class:
            import pandas as pd

            names = evidence.class_names or [str(i) for i in range(evidence.outputs.shape[1])]
            classes = pd.Series([names[int(i)] for i in evidence.y])
            out += _groups("class", classes, order=names)
        if self.intensity_buckets:
            import pandas as pd

            x = np.asarray(evidence.x, dtype=np.float64).reshape(len(evidence.x), -1)
            intensity = pd.Series(x.mean(axis=1))
            labels, order = quantile_buckets(intensity, self.intensity_buckets)
            out += _groups("intensity", labels, order=order)
        return out

    def provides(self, info: DataInfo) -> list[str]:
        """The keys of this section the validation gate may name (the overall values)."""
        from mlx.analysis.metrics import metric_names

        return [
            f"overall.{n}{end}" for n in metric_names(info.task) for end in ("", ".low", ".high")
        ]

    def features(self) -> list[str]:
        """The names the slices' ``feature`` takes: the gate's ``slices.<name> within``."""
        names = [*self.columns, *self.buckets, *(f"{a} x {b}" for a, b in self.crosses)]
        if self.per_class:
            names.append("class")
        if self.intensity_buckets:
            names.append("intensity")
        return names

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """Per slice: size, every metric with its interval, the gap to overall, the test
        against the rest; writes slices.csv and slices.svg (the weakest slices)."""
        import numpy as np

        task = evidence.task
        main, mode = MAIN[task]
        y = np.asarray(evidence.y)
        outputs = np.asarray(evidence.outputs)
        options = {"n_boot": self.n_boot, "confidence": self.confidence}
        overall, _ = _table(task, y, outputs, seed=evidence.seed, bins=15, **options)
        reported: list[dict[str, Any]] = []
        small = {"count": 0, "rows": 0}
        for i, s in enumerate(self.slices(evidence)):
            size = int(s.mask.sum())
            if size < self.min_size:
                small["count"] += 1
                small["rows"] += size
                continue
            table, _ = _table(
                task, y[s.mask], outputs[s.mask], seed=evidence.seed + 1 + i, bins=15, **options
            )
            gap = {
                k: (
                    None
                    if v["value"] is None or overall[k]["value"] is None
                    else v["value"] - overall[k]["value"]
                )
                for k, v in table.items()
            }
            reported.append(
                {
                    "feature": s.feature,
                    "slice": s.value,
                    "size": size,
                    "metrics": table,
                    "gap": gap,
                    "p_value": _test(task, y, outputs, s.mask),
                }
            )
        _adjust(reported)
        ranked = [r for r in reported if r["gap"][main] is not None]
        ranked.sort(key=lambda r: r["gap"][main] * (1 if mode == "max" else -1))
        weakest = [
            {
                "feature": r["feature"],
                "slice": r["slice"],
                "size": r["size"],
                main: r["metrics"][main],
                "gap": r["gap"][main],
                "p_value": r["p_value"],
                "q_value": r["q_value"],
            }
            for r in ranked[: self.top]
        ]
        _write_csv(folder / "slices.csv", reported)
        if weakest:
            _figure(weakest, main, overall[main], folder / "slices.svg")
        return {
            "split": getattr(evidence, "split", "test"),
            "size": len(y),
            "main_metric": main,
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "min_size": self.min_size,
            "test": "chi-square on right/wrong counts (Fisher where an expected count < 5)"
            if task == "classification"
            else "Mann-Whitney U on absolute errors",
            "overall": overall,
            "slices": reported,
            "small": small,
            "weakest": weakest,
        }


def _bucket_spec(column: str, spec: Any) -> int | list[float]:
    # a Hydra ListConfig is a Sequence, not a list
    if isinstance(spec, bool | str) or not isinstance(spec, int | float | Sequence):
        raise ConfigError(
            f"analysis.slices.buckets.{column}={spec!r}: give a number of quantile buckets "
            f"({{{column}: 4}}) or a list of boundaries ({{{column}: [30, 50]}})."
        )
    if isinstance(spec, int | float):
        if int(spec) != spec or spec < 2:
            raise ConfigError(
                f"analysis.slices.buckets.{column}={spec!r}: the number of quantile buckets "
                "is an integer >= 2."
            )
        return int(spec)
    edges = [float(e) for e in spec]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ConfigError(
            f"analysis.slices.buckets.{column}={list(spec)!r}: boundaries are a non-empty, "
            "strictly increasing list of numbers."
        )
    return edges


def _cross_spec(pair: Any) -> tuple[str, str]:
    if (
        isinstance(pair, str)
        or not isinstance(pair, Sequence)
        or len(pair) != 2
        or pair[0] == pair[1]
    ):
        raise ConfigError(
            f"analysis.slices.crosses: {pair!r} is not a pair of two different columns "
            "(e.g. analysis.slices.crosses=[[sex,race]])."
        )
    return str(pair[0]), str(pair[1])


def _values(raw: pd.DataFrame, column: str, key: str) -> pd.Series:
    """A column's values as slice labels; missing values are the slice ``missing``."""
    series = raw[column].reset_index(drop=True)
    distinct = series.nunique(dropna=True)
    if distinct > MAX_VALUES:
        raise ConfigError(
            f"analysis.slices.{key}: '{column}' has {distinct} distinct values, too many to "
            f"slice by value (at most {MAX_VALUES}): bucket it with "
            f"analysis.slices.buckets={{{column}:4}}."
        )
    return series.map(value_label)


def value_label(v: Any) -> str:
    """A raw value as a group label: ``missing`` for None or NaN, ``3`` for 3.0."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _buckets(raw: pd.DataFrame, column: str, spec: int | list[float]) -> pd.Series:
    """Bucket labels of a numeric column; an explicit bucket with no row is refused."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(raw[column], errors="coerce").reset_index(drop=True)
    if values.notna().sum() == 0:
        raise ConfigError(f"analysis.slices.buckets.{column}: '{column}' holds no number.")
    if isinstance(spec, int):
        labels, _ = quantile_buckets(values, spec)
    else:
        cut = pd.cut(values, [-np.inf, *spec, np.inf])
        counts = cut.value_counts()
        empty = [f"({b.left:g}, {b.right:g}]" for b in cut.cat.categories if counts[b] == 0]
        if empty:
            raise ConfigError(
                f"analysis.slices.buckets.{column}=[{', '.join(f'{e:g}' for e in spec)}]: the bucket {empty[0]} holds no row "
                f"of the split ({column} runs from {values.min():g} to {values.max():g}): "
                "choose boundaries inside the data."
            )
        labels = cut.map(lambda b: f"({b.left:g}, {b.right:g}]", na_action="ignore")
        labels = labels.astype(object)
    return labels.where(values.notna(), "missing")


def quantile_buckets(values: pd.Series, q: int) -> tuple[pd.Series, list[str]]:
    """Each value's quantile bucket label and the labels in order (missing for a missing value).

    pandas' ``qcut`` widens the first bucket's left edge a little (``(18.999, 27]`` for ages from
    19); the labels here use the data's real edges instead, the first bucket closed: ``[19, 27]``.
    """
    import pandas as pd

    values = values.reset_index(drop=True)
    cut, edges = pd.qcut(values, q, duplicates="drop", retbins=True)
    names = [f"[{edges[0]:g}, {edges[1]:g}]"] + [
        f"({a:g}, {b:g}]" for a, b in zip(edges[1:-1], edges[2:], strict=True)
    ]
    codes = pd.Series(cut.cat.codes, index=values.index)
    return codes.map(lambda c: names[c] if c >= 0 else None).astype(object), names


def _groups(feature: str, labels: pd.Series, order: list[str] | None = None) -> list[Slice]:
    """One slice per distinct label (in ``order`` when given, else sorted)."""
    import numpy as np

    values = labels.to_numpy()
    present = set(labels.dropna().unique())
    if order is None:
        order = sorted(present, key=sort_key)
    return [Slice(feature, str(v), np.asarray(values == v)) for v in order if v in present]


def sort_key(label: Any) -> tuple[int, float, str]:
    """Numbers and buckets (``[19, 27]``, ``(27, 32]``) in numeric order, then text."""
    text = str(label)
    head = text[1:].split(",")[0] if text.startswith(("(", "[")) else text
    try:
        return (0, float(head), text)
    except ValueError:
        return (1, 0.0, text)


def _test(task: str, y: np.ndarray, outputs: np.ndarray, mask: np.ndarray) -> float | None:
    """The p-value of the slice against the rest of the split (None when there is no rest)."""
    import numpy as np

    if mask.all():
        return None
    if task == "classification":
        from scipy.stats import chi2_contingency, fisher_exact

        correct = outputs.argmax(axis=1) == y
        table = np.array(
            [
                [correct[mask].sum(), (~correct[mask]).sum()],
                [correct[~mask].sum(), (~correct[~mask]).sum()],
            ]
        )
        if (table.sum(axis=0) == 0).any():  # all right or all wrong everywhere: no difference
            return 1.0
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
        if (expected < 5).any():
            return interval(fisher_exact(table).pvalue)["value"]
        return interval(chi2_contingency(table).pvalue)["value"]
    from scipy.stats import mannwhitneyu

    error = np.abs(np.asarray(y, dtype=np.float64) - outputs.reshape(-1))
    return interval(mannwhitneyu(error[mask], error[~mask]).pvalue)["value"]


def _adjust(reported: list[dict[str, Any]]) -> None:
    """Benjamini-Hochberg adjusted p-values over the reported slices (``q_value``)."""
    import numpy as np
    from scipy.stats import false_discovery_control

    tested = [r for r in reported if r["p_value"] is not None]
    for r in reported:
        r["q_value"] = None
    if tested:
        q = false_discovery_control(np.array([r["p_value"] for r in tested]))
        for r, v in zip(tested, q, strict=True):
            r["q_value"] = float(v)


def _write_csv(path: Path, reported: list[dict[str, Any]]) -> None:
    """One row per reported slice: feature, slice, size, p_value, q_value and, for each metric,
    its value, low, high and gap."""
    import csv

    names = list(reported[0]["metrics"]) if reported else []
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        header = ["feature", "slice", "size", "p_value", "q_value"]
        for name in names:
            header += [name, f"{name}_low", f"{name}_high", f"{name}_gap"]
        writer.writerow(header)
        for r in reported:
            row = [r["feature"], r["slice"], r["size"], r["p_value"], r["q_value"]]
            for name in names:
                m = r["metrics"][name]
                row += [m["value"], m["low"], m["high"], r["gap"][name]]
            writer.writerow(["" if v is None else v for v in row])


def _figure(weakest: list[dict[str, Any]], main: str, overall: dict[str, Any], path: Path) -> None:
    """The weakest slices' main metric with its interval, against the overall value."""
    plt = _plt()
    rows = weakest[::-1]  # the weakest on top
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(rows) + 1.2))
    ys = list(range(len(rows)))
    values = [r[main]["value"] for r in rows]
    low = [
        r[main]["value"] - (r[main]["low"] if r[main]["low"] is not None else r[main]["value"])
        for r in rows
    ]
    high = [
        (r[main]["high"] if r[main]["high"] is not None else r[main]["value"]) - r[main]["value"]
        for r in rows
    ]
    ax.errorbar(values, ys, xerr=[low, high], fmt="o", color="#c44e52", capsize=3)
    if overall["value"] is not None:
        ax.axvline(overall["value"], color="black", linewidth=0.9, label=f"overall {main}")
        if overall["low"] is not None:
            ax.axvspan(overall["low"], overall["high"], color="grey", alpha=0.15)
    labels = [f"{r['feature']} = {r['slice']} (n={r['size']})" for r in rows]
    ax.set_yticks(ys, [label[:48] for label in labels])
    ax.set_xlabel(main)
    ax.set_title(f"Weakest slices by {main}")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    _save(fig, path)
