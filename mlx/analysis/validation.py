"""The validation gate: thresholds written in config decide whether a model is blessed or
rejected, and the verdict goes into the run record for deployment to read.

A condition is one line of plain text, parsed here (never evaluated as code):

- ``KEY OP NUMBER``: absolute, e.g. ``test/acc >= 0.95`` or ``metrics.balanced_acc.low > 0.9``;
- ``KEY OP baseline [+|- NUMBER]``: against the same key of a baseline (``baseline``: a finished
  run folder, whose record is read, or a checkpoint, which is evaluated on this run's test split
  and analysed by the same analyses), e.g. ``test/acc >= baseline - 0.005`` (no worse than half a
  point below it);
- ``slices.COLUMN within NUMBER``: every reported slice of ``COLUMN`` has its main metric
  (accuracy, or MAE for regression) within ``NUMBER`` of the overall value.

KEY is a metric of the run record (``test/acc``, ``val/loss``, ``compressed/test/acc``...) or a
path into an analysis' section of the record (``metrics.f1_macro``, ``fairness.sex.
demographic_parity_difference``); a value with an interval is compared by its value, and
``.low`` / ``.high`` name the interval's ends. OP is one of ``>=``, ``<=``, ``>``, ``<``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx.analysis.evidence import DataInfo
from mlx.errors import ConfigError, did_you_mean

OPS = (">=", "<=", ">", "<")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY = r"[A-Za-z_][\w./-]*"
_COMPARE = re.compile(
    rf"^\s*(?P<key>{_KEY})\s*(?P<op>>=|<=|>|<)\s*"
    rf"(?:(?P<number>{_NUMBER})|baseline\s*(?:(?P<sign>[-+])\s*(?P<delta>{_NUMBER}))?)\s*$"
)
_WITHIN = re.compile(rf"^\s*slices\.(?P<column>[^\s]+)\s+within\s+(?P<number>{_NUMBER})\s*$")
# the keys of a value with an interval
_INTERVAL = ("value", "low", "high")


class ModelRejected(ConfigError):
    """The validation gate rejected the model and ``fail_run`` asks the command to fail."""

    exit_code = 3


@dataclass
class Condition:
    """One parsed condition (see the module's docstring)."""

    text: str
    key: str
    op: str
    number: float | None = None  # absolute threshold, or the offset from the baseline
    baseline: bool = False
    column: str | None = None  # slices.COLUMN within NUMBER

    def threshold(self, baseline_value: float | None) -> float | None:
        if not self.baseline:
            return self.number
        if baseline_value is None:
            return None
        return baseline_value + (self.number or 0.0)


def parse(text: str) -> Condition:
    """One condition from its text; :class:`ConfigError` when it is none of the forms."""
    text = str(text)
    if m := _WITHIN.match(text):
        return Condition(
            text, f"slices.{m['column']}", "within", float(m["number"]), column=m["column"]
        )
    if m := _COMPARE.match(text):
        if m["number"] is not None:
            return Condition(text, m["key"], m["op"], float(m["number"]))
        delta = float(m["delta"]) if m["delta"] else 0.0
        return Condition(
            text, m["key"], m["op"], -delta if m["sign"] == "-" else delta, baseline=True
        )
    raise ConfigError(
        f"analysis.validation.thresholds: cannot read {text!r}. Write 'KEY OP NUMBER' (e.g. "
        "'test/acc >= 0.95'), 'KEY OP baseline - NUMBER' (e.g. 'test/acc >= baseline - 0.005') "
        "or 'slices.COLUMN within NUMBER' (e.g. 'slices.sex within 0.03'), OP one of >=, <=, >, <."
    )


def flatten(section: Any, prefix: str = "") -> dict[str, float]:
    """Every number of a record section by its dotted path; a value with an interval is found
    by its own path (its value) and by ``.low`` / ``.high``."""
    out: dict[str, float] = {}
    if isinstance(section, dict):
        if "value" in section and set(section) <= {*_INTERVAL, "method"}:
            for part in _INTERVAL:
                number = section.get(part)
                if _is_number(number):
                    out[prefix if part == "value" else f"{prefix}.{part}"] = float(number)
            return out
        for key, value in section.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif _is_number(section):
        out[prefix] = float(section)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _holds(value: float, op: str, threshold: float) -> bool:
    return {
        ">=": value >= threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        "<": value < threshold,
    }[op]


class Validation:
    """The gate: each condition in ``thresholds`` must hold for the model to be blessed.

    Args:
        thresholds: conditions, one per string (see the module's docstring).
        baseline: what the ``baseline`` conditions compare with, trained on the same data: a
            finished mlx run folder (its record), or a checkpoint (``.ckpt``, or an ``.onnx``
            network of the compress stage) that the stage evaluates on this run's test split;
            None when no condition names the baseline.
        fail_run: a rejected model makes the command exit with status 3 (after the record is
            written); false records the verdict and exits 0.
    """

    name = "validation"

    def __init__(
        self, thresholds: list[str], baseline: str | None = None, fail_run: bool = False
    ) -> None:
        if not thresholds:
            raise ConfigError(
                "analysis.validation.thresholds is empty: the gate needs at least one condition, "
                "e.g. analysis.validation.thresholds=['test/acc >= 0.9']."
            )
        self.conditions = [parse(t) for t in thresholds]
        self.baseline = baseline
        self.fail_run = fail_run
        needs = [c.text for c in self.conditions if c.baseline]
        if needs and not baseline:
            raise ConfigError(
                f"analysis.validation: {needs[0]!r} compares with a baseline, but "
                "analysis.validation.baseline is not set: name a finished run folder, e.g. "
                "analysis.validation.baseline=outputs/run/2026-12-01/10-00-00."
            )
        self._baseline_record: dict[str, Any] | None = None
        self.baseline_checkpoint: Path | None = None
        if baseline is not None:
            if Path(baseline).is_file():
                self.baseline_checkpoint = Path(baseline)
            else:
                self._baseline_record = read_baseline(baseline)

    def set_baseline_record(self, record: dict[str, Any]) -> None:
        """The record of the evaluated baseline checkpoint (``metrics`` and ``analysis``)."""
        self._baseline_record = record

    def check(self, info: DataInfo) -> None:
        """Nothing more to check against the data alone: :meth:`check_keys` checks the keys
        against what the run will compute."""

    def check_data(self, data: dict[str, Any]) -> None:
        """The baseline was trained on the same data as this run (``data`` is the run's data
        description, ``ArrayDataModule.describe()``)."""
        if self._baseline_record is None:
            return
        theirs = self._baseline_record.get("data") or {}
        differing = [
            k
            for k in ("source", "task", "split_sizes", "split_seed", "class_names")
            if theirs.get(k) != data.get(k)
        ]
        if differing:
            shown = ", ".join(
                f"{k} ({theirs.get(k)!r} there, {data.get(k)!r} here)" for k in differing
            )
            raise ConfigError(
                f"analysis.validation.baseline {self.baseline} was trained on other data: "
                f"{shown}. Compare with a run of the same data and split."
            )

    def check_checkpoint_data(self, theirs: dict[str, Any], ours: dict[str, Any]) -> None:
        """The baseline checkpoint's data config (``theirs``) is this run's (``ours``): the same
        source and split, so that its test split is this run's."""
        keys = ("source", "val_fraction", "test_fraction", "split_seed", "standardize")
        differing = [k for k in keys if theirs.get(k) != ours.get(k)]
        if differing:
            shown = ", ".join(
                f"data.{k} ({theirs.get(k)!r} there, {ours.get(k)!r} here)" for k in differing
            )
            raise ConfigError(
                f"analysis.validation.baseline {self.baseline} was trained on other data: "
                f"{shown}. Compare with a checkpoint of the same data and split."
            )

    def check_keys(
        self, keys: set[str], slice_columns: set[str] | None, baseline: bool = False
    ) -> None:
        """Every condition names a key the run will compute (``keys``: run metrics and the
        analyses' keys; ``slice_columns``: the columns the slices analysis reports, None when it
        is not listed). With ``baseline``, ``keys`` are what the baseline checkpoint's
        evaluation computes, checked for the conditions that compare with it."""
        for c in self.conditions:
            if baseline:
                if c.baseline and c.key not in keys:
                    raise ConfigError(
                        f"analysis.validation: {c.text!r}: the baseline checkpoint "
                        f"{self.baseline} is evaluated on the test split only, so it has no "
                        f"{c.key!r}; compare a test metric or an analysis' value."
                    )
                continue
            if c.column is not None:
                if slice_columns is None:
                    raise ConfigError(
                        f"analysis.validation: {c.text!r} needs the slices analysis: add it, "
                        "e.g. analysis=[slices,validation]."
                    )
                if c.column not in slice_columns:
                    raise ConfigError(
                        f"analysis.validation: {c.text!r} names slices of {c.column!r}, which "
                        f"the slices analysis does not make (it slices by "
                        f"{', '.join(sorted(slice_columns)) or 'nothing'})."
                        + did_you_mean(c.column, slice_columns)
                    )
                continue
            if c.key not in keys:
                raise ConfigError(
                    f"analysis.validation: {c.text!r} names {c.key!r}, which this run does not "
                    f"compute.{did_you_mean(c.key, keys)} Keys: {', '.join(sorted(keys)[:40])}"
                    + (" ..." if len(keys) > 40 else "")
                    + "."
                )
            if (
                c.baseline
                and self._baseline_record is not None
                and c.key not in flatten_record(self._baseline_record)
            ):
                raise ConfigError(
                    f"analysis.validation: {c.text!r}: the baseline run {self.baseline} "
                    f"has no {c.key!r} in its record."
                )

    def verdict(self, record: dict[str, Any]) -> dict[str, Any]:
        """The verdict on this run's ``record`` (``metrics`` and ``analysis`` sections)."""
        values = flatten_record(record)
        base = flatten_record(self._baseline_record) if self._baseline_record else {}
        checked, failed = [], []
        for c in self.conditions:
            if c.column is not None:
                row = _within(c, record.get("analysis", {}).get("slices"))
            else:
                value = values.get(c.key)
                threshold = c.threshold(base.get(c.key))
                ok = value is not None and threshold is not None and _holds(value, c.op, threshold)
                row = {"condition": c.text, "value": value, "threshold": threshold, "passed": ok}
                if value is None:
                    row["reason"] = f"{c.key} was not computed (an analysis failed)"
            checked.append(row)
            if not row["passed"]:
                failed.append(c.text)
        return {
            "verdict": "rejected" if failed else "blessed",
            "failed": failed,
            "conditions": checked,
            "baseline": str(Path(self.baseline).resolve()) if self.baseline else None,
        }


def _within(c: Condition, slices: Any) -> dict[str, Any]:
    """``slices.COLUMN within NUMBER`` on the slices section: the largest gap of the main metric
    (``main_metric``: accuracy, or MAE) among the reported slices of ``COLUMN``."""
    section = slices or {}
    main = section.get("main_metric")
    rows = [
        s
        for s in section.get("slices", [])
        if s.get("feature") == c.column and (s.get("gap") or {}).get(main) is not None
    ]
    if not rows:
        return {
            "condition": c.text,
            "passed": False,
            "reason": f"no reported slice of {c.column} (the slices analysis failed or every "
            "slice was below min_size)",
        }
    worst = max(rows, key=lambda s: abs(s["gap"][main]))
    gap = abs(worst["gap"][main])
    return {
        "condition": c.text,
        "value": gap,
        "threshold": c.number,
        "worst_slice": f"{c.column}={worst.get('slice')}",
        "metric": main,
        "passed": gap <= (c.number or 0.0),
    }


def interval_values(section: Any, path: str = "") -> dict[str, tuple[Any, Any, Any]]:
    """Every value with an interval in an analysis section (``{"value", "low", "high"}``), by its
    dotted path: ``{"metrics.acc": (value, low, high)}``."""
    found: dict[str, tuple[Any, Any, Any]] = {}
    if isinstance(section, dict):
        if "value" in section and {"low", "high"} <= set(section):
            return {path: (section["value"], section["low"], section["high"])}
        for key, child in section.items():
            found.update(interval_values(child, f"{path}.{key}" if path else str(key)))
    return found


def flatten_record(record: dict[str, Any] | None) -> dict[str, float]:
    """A record's numbers: its metrics by their own keys (``test/acc``), its analysis sections by
    dotted paths (``metrics.acc``, ``fairness.sex.demographic_parity_difference``)."""
    if not record:
        return {}
    out = {k: float(v) for k, v in (record.get("metrics") or {}).items() if _is_number(v)}
    out.update(flatten(record.get("analysis") or {}))
    return out


def read_baseline(path: str) -> dict[str, Any]:
    """The record of a finished baseline run folder; :class:`ConfigError` otherwise."""
    folder = Path(path)
    record = folder / "metrics.json"
    if not folder.is_dir() or not record.is_file():
        raise ConfigError(
            f"analysis.validation.baseline {path} is not an mlx run folder (no metrics.json in "
            f"{folder.resolve()}); name the folder of a finished run."
        )
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"analysis.validation.baseline {path}: {record} cannot be read ({e})."
        ) from e
    if data.get("status") != "completed":
        raise ConfigError(
            f"analysis.validation.baseline {path} did not complete (status "
            f"{data.get('status')!r}); compare with a finished run."
        )
    return data
