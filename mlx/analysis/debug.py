"""Model debugging: a benchmark model, sensitivity analysis, random attacks, partial dependence
with ICE curves and residual analysis (the ``debug`` analysis).

Tabular data is studied in its raw columns (``age``, ``sex``), not in the encoded columns the
network takes: a numeric column is varied in raw units and encoded as training did (its encoded
column is an affine map of the raw one: imputed and perhaps standardised, recovered from the rows
themselves), a categorical column varies its one-hot group together over its categories. Images
are studied through input statistics (brightness, contrast, noise) instead of pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Interval, MaxLen, MinLen

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.errors import ConfigError, did_you_mean
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np

CHECKS: tuple[str, ...] = ("baseline", "sensitivity", "attacks", "pdp", "residuals")
# features drawn in pdp.svg when `features` is not given: the most sensitive ones
PDP_FEATURES = 3
# rows the benchmark models are fitted on at most (a seeded draw of the training split)
BASELINE_ROWS = 10_000
# rows each random attack sends
ATTACK_ROWS = 32
# levels of each image statistic (each level is one forward pass over the sampled images)
IMAGE_LEVELS = 9
# rows drawn in residuals.svg at most
SCATTER_ROWS = 2_000
# sklearn's partial_dependence grid spans these quantiles of a numeric column
PDP_PERCENTILES = (0.05, 0.95)


@dataclass
class _Feature:
    """One raw column as the network sees it: the encoded columns it sets and how."""

    name: str
    kind: str  # numeric | categorical
    columns: list[int]  # encoded column indices
    values: Any  # raw values of the evidence rows: floats (NaN when missing) or objects
    scale: float = 1.0  # numeric: encoded = scale * raw + shift
    shift: float = 0.0
    categories: list[str] = field(default_factory=list)  # categorical: one per encoded column

    def apply(self, x: np.ndarray, value: Any) -> np.ndarray:
        """``x`` (N, F) with this feature set to the raw ``value`` in every row."""
        out = x.copy()
        if self.kind == "numeric":
            out[:, self.columns[0]] = self.scale * float(value) + self.shift
        else:
            out[:, self.columns] = 0.0
            if str(value) in self.categories:  # an unknown category encodes as all zeros
                out[:, self.columns[self.categories.index(str(value))]] = 1.0
        return out


class Debug:
    """The seed's model-debugging techniques on one model and split.

    Args:
        checks: which checks run, in this order: ``baseline`` (majority/mean and linear models
            fitted on the training split, compared with the model), ``sensitivity`` (each
            feature varied over its observed range; images: brightness, contrast, noise),
            ``attacks`` (random, extreme, out-of-range, NaN, inf and wrong-dtype inputs),
            ``pdp`` (partial dependence and ICE curves, one feature and a two-feature
            interaction; tabular data only) and ``residuals`` (regression only). None: every
            check that applies to the data and the task.
        features: raw columns that sensitivity and partial dependence study (tabular data).
            None: sensitivity studies every column, partial dependence the most sensitive
            three.
        interaction: the two raw columns of the two-feature partial dependence. None: the two
            most sensitive features.
        grid: points of each feature's grid (sensitivity, partial dependence).
        ice: individual conditional expectation curves drawn in ``pdp.svg``.
        samples: rows (a seeded draw) that sensitivity, partial dependence and the attacks use.
        alpha: significance level of the residual tests (after Benjamini-Hochberg correction).
        min_rho: smallest absolute Spearman correlation a residual test flags.
    """

    name = "debug"

    def __init__(
        self,
        checks: list[Literal["baseline", "sensitivity", "attacks", "pdp", "residuals"]]
        | None = None,
        features: Annotated[list[str], MinLen(1)] | None = None,
        interaction: Annotated[list[str], MinLen(2), MaxLen(2)] | None = None,
        grid: Annotated[int, Ge(2)] = 20,
        ice: Annotated[int, Ge(0)] = 50,
        samples: Annotated[int, Ge(10)] = 500,
        alpha: Annotated[float, Interval(gt=0, lt=1)] = 0.01,
        min_rho: Annotated[float, Interval(ge=0, le=1)] = 0.1,
    ) -> None:
        self.checks = None if checks is None else [str(c) for c in checks]
        self.features = None if features is None else [str(f) for f in features]
        self.interaction = None if interaction is None else [str(f) for f in interaction]
        self.grid = grid
        self.ice = ice
        self.samples = samples
        self.alpha = alpha
        self.min_rho = min_rho
        for check in self.checks or []:
            if check not in CHECKS:
                raise ConfigError(
                    f"debug: checks lists '{check}', which is not a check; use some of "
                    f"{', '.join(CHECKS)}.{did_you_mean(check, CHECKS)}"
                )
        if self.checks is not None and len(set(self.checks)) < len(self.checks):
            raise ConfigError("debug: checks lists a check twice; list each once.")
        if self.interaction is not None and (
            len(self.interaction) != 2 or self.interaction[0] == self.interaction[1]
        ):
            raise ConfigError(
                f"debug: interaction must name two different columns, not {self.interaction}."
            )

    # -- what applies ---------------------------------------------------------------------------

    def _plan(self, task: str, tabular: bool) -> tuple[list[str], dict[str, str]]:
        """The checks to run and the default ones skipped (with why); an explicit check that
        cannot apply is refused."""
        reasons = {}
        if not tabular:
            reasons["pdp"] = "partial dependence needs tabular columns; images are not studied"
            reasons["pdp"] += " per pixel (sensitivity varies brightness, contrast and noise)"
        if task != "regression":
            reasons["residuals"] = f"residual analysis applies to regression, not {task}"
        if self.checks is None:
            return [c for c in CHECKS if c not in reasons], reasons
        for check in self.checks:
            if check in reasons:
                raise ConfigError(
                    f"debug: checks lists '{check}', but {reasons[check]}; remove it from "
                    "checks (or leave checks unset to run every check that applies)."
                )
        return list(self.checks), {}

    def check(self, info: DataInfo) -> None:
        """Refuses checks that do not apply to the task or data, and unknown feature names."""
        tabular = info.columns is not None or (
            info.feature_names is not None and len(info.input_shape) == 1
        )
        self._plan(info.task, tabular)
        named = [*(self.features or []), *(self.interaction or [])]
        if not named:
            return
        if not tabular:
            raise ConfigError(
                "debug: features and interaction name tabular columns, but this data has none "
                "(images); remove them."
            )
        columns = info.columns if info.columns is not None else info.feature_names or []
        for key, names in (("features", self.features), ("interaction", self.interaction)):
            for name in names or []:
                if name not in columns:
                    raise ConfigError(
                        f"debug: {key} names '{name}', which is not a column of the data "
                        f"(columns: {', '.join(columns)}).{did_you_mean(name, columns)}"
                    )

    # -- the analysis ---------------------------------------------------------------------------

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """Runs the planned checks; returns the record section (``findings`` gathers every
        check's sentences) and writes the tables and figures into ``folder``."""
        import numpy as np

        features = _features(evidence)
        tabular = features is not None
        checks, skipped = self._plan(evidence.task, tabular)
        if "baseline" in checks and evidence.train is None:
            checks.remove("baseline")
            skipped["baseline"] = "the training split is not available"
        if tabular:
            self.check(
                DataInfo(
                    task=evidence.task,
                    columns=[f.name for f in features],
                    categorical=[f.name for f in features if f.kind == "categorical"],
                    feature_names=evidence.feature_names,
                    class_names=evidence.class_names,
                    input_shape=list(evidence.x.shape[1:]),
                )
            )
        n = len(evidence.x)
        rng = np.random.default_rng(evidence.seed)
        rows = np.sort(rng.choice(n, size=min(self.samples, n), replace=False))
        section: dict[str, Any] = {
            "checks": checks,
            "skipped": skipped,
            "examples": len(rows),
            "findings": [],
        }
        ranking: list[str] | None = None
        for check in checks:
            if check == "baseline":
                result = _baseline(evidence, folder)
            elif check == "sensitivity":
                result = self._sensitivity(evidence, features, rows, folder)
                ranking = result.get("ranking")
            elif check == "attacks":
                result = _attacks(evidence, rows)
            elif check == "pdp":
                if ranking is None and (self.features is None or self.interaction is None):
                    ranking = self._sensitivity(evidence, features, rows, None)["ranking"]
                result = self._pdp(evidence, features, rows, ranking, folder)
            else:
                result = self._residuals(evidence, features, folder)
            section["findings"].extend(result.pop("findings", []))
            section[check] = result
        return section

    # -- sensitivity ----------------------------------------------------------------------------

    def _sensitivity(
        self,
        evidence: Evidence,
        features: list[_Feature] | None,
        rows: np.ndarray,
        folder: Path | None,
    ) -> dict[str, Any]:
        import numpy as np

        x = evidence.x[rows]
        base = np.asarray(evidence.predict(x))
        classes = base.argmax(axis=1) if evidence.task == "classification" else None
        response0 = _response(base, classes)
        table: list[dict[str, Any]] = []
        curves: dict[str, tuple[list[float], list[float]]] = {}
        if features is None:  # images: input statistics, not pixels
            levels = {
                "brightness": np.linspace(-1.0, 1.0, IMAGE_LEVELS),  # shift, in pixel stds
                "contrast": np.linspace(0.0, 2.0, IMAGE_LEVELS),  # scale around each mean
                "noise": np.linspace(0.0, 1.0, IMAGE_LEVELS),  # gaussian sd, in pixel stds
            }
            std = float(x.std()) or 1.0
            axes = tuple(range(1, x.ndim))
            noise = np.random.default_rng([evidence.seed, 1]).standard_normal(x.shape)
            for stat, grid in levels.items():
                changes, flips = [], []
                for level in grid:
                    if stat == "brightness":
                        xm = x + level * std
                    elif stat == "contrast":
                        mean = x.mean(axis=axes, keepdims=True)
                        xm = mean + level * (x - mean)
                    else:
                        xm = x + level * std * noise
                    out = np.asarray(evidence.predict(xm.astype(x.dtype)))
                    changes.append(np.abs(_response(out, classes) - response0))
                    if classes is not None:
                        flips.append(out.argmax(axis=1) != classes)
                table.append(_sensitivity_row(stat, changes, flips))
                curves[stat] = (grid.tolist(), [float(c.mean()) for c in changes])
            unit = "level"
        else:
            chosen = self.features or [f.name for f in features]
            for feature in (f for f in features if f.name in chosen):
                grid = _sensitivity_grid(feature, self.grid, rows)
                changes, flips = [], []
                for value in grid:
                    out = np.asarray(evidence.predict(feature.apply(x, value)))
                    changes.append(np.abs(_response(out, classes) - response0))
                    if classes is not None:
                        flips.append(out.argmax(axis=1) != classes)
                table.append(_sensitivity_row(feature.name, changes, flips))
                curves[feature.name] = ([_plain(v) for v in grid], [c.mean() for c in changes])
            unit = "raw value"
        table.sort(key=lambda r: -r["mean_abs_change"])
        result: dict[str, Any] = {
            "response": (
                "probability of each row's predicted class" if classes is not None else "prediction"
            ),
            "held": "each row's own values (ICE-style)",
            "features": table,
            "ranking": [r["feature"] for r in table],
        }
        if features is None:
            result["levels"] = {k: [float(v) for v in g] for k, g in levels.items()}
        if folder is not None:
            _write_csv(folder / "sensitivity.csv", table)
            _sensitivity_figure(table, curves, unit, folder)
        return result

    # -- partial dependence ---------------------------------------------------------------------

    def _pdp(
        self,
        evidence: Evidence,
        features: list[_Feature],
        rows: np.ndarray,
        ranking: list[str] | None,
        folder: Path,
    ) -> dict[str, Any]:
        import numpy as np

        by_name = {f.name: f for f in features}
        order = ranking or [f.name for f in features]
        names = self.features or order[:PDP_FEATURES]
        pair = self.interaction or [n for n in order if n in names or not self.features][:2]
        x = evidence.x[rows]
        labels = _labels(evidence)
        one: list[dict[str, Any]] = []
        ice_rows = np.random.default_rng([evidence.seed, 2]).permutation(len(rows))[: self.ice]
        ice_curves: dict[str, np.ndarray] = {}
        csv: list[dict[str, Any]] = []
        for name in names:
            feature = by_name[name]
            grid = pdp_grid(feature, self.grid, rows)
            ice = np.stack([_as_2d(evidence.predict(feature.apply(x, v))) for v in grid])
            average = ice.mean(axis=1)  # (G, K)
            ice_curves[name] = ice[:, ice_rows]
            entry = {"feature": name, "grid": [_plain(v) for v in grid]}
            entry["average"] = _by_label(average, labels)
            one.append(entry)
            for g, v in enumerate(grid):
                for k, label in enumerate(labels):
                    csv.append({"feature": name, "value": _plain(v), "output": label,
                                "average": float(average[g, k])})  # fmt: skip
        result: dict[str, Any] = {"features": one, "ice": int(len(ice_rows))}
        if len(pair) == 2:
            fa, fb = by_name[pair[0]], by_name[pair[1]]
            grid_a, grid_b = pdp_grid(fa, self.grid, rows), pdp_grid(fb, self.grid, rows)
            surface = np.empty((len(grid_a), len(grid_b), len(labels)))
            for i, va in enumerate(grid_a):
                xa = fa.apply(x, va)
                batch = np.concatenate([fb.apply(xa, vb) for vb in grid_b])
                out = _as_2d(evidence.predict(batch)).reshape(len(grid_b), len(x), -1)
                surface[i] = out.mean(axis=1)
            result["interaction"] = {
                "features": list(pair),
                "grid": [[_plain(v) for v in grid_a], [_plain(v) for v in grid_b]],
                "average": {
                    label: surface[:, :, k].round(10).tolist() for k, label in enumerate(labels)
                },
            }
            _pdp_interaction_figure(fa, fb, grid_a, grid_b, surface, labels, folder)
        _write_csv(folder / "pdp.csv", csv)
        _pdp_figure(one, ice_curves, labels, by_name, folder)
        return result

    # -- residuals ------------------------------------------------------------------------------

    def _residuals(
        self, evidence: Evidence, features: list[_Feature] | None, folder: Path
    ) -> dict[str, Any]:
        import numpy as np
        from scipy.stats import false_discovery_control, kruskal, spearmanr

        prediction = np.asarray(evidence.outputs, dtype=np.float64).reshape(-1)
        residual = np.asarray(evidence.y, dtype=np.float64).reshape(-1) - prediction
        tests: list[dict[str, Any]] = []

        def spearman(against: str, test: str, values: np.ndarray, target: np.ndarray) -> None:
            ok = np.isfinite(values)
            if ok.sum() < 3 or np.ptp(values[ok]) == 0:
                return
            rho, p = spearmanr(values[ok], target[ok])
            tests.append({"against": against, "test": test, "rho": float(rho), "p": float(p)})

        spearman("prediction", "trend", prediction, residual)
        spearman("prediction", "curvature", np.abs(prediction - np.median(prediction)), residual)
        spearman("prediction", "spread", prediction, np.abs(residual))
        for feature in features or []:
            if feature.kind == "numeric":
                values = feature.values.astype(np.float64)
                spearman(feature.name, "trend", values, residual)
                centre = np.nanmedian(values) if np.isfinite(values).any() else 0.0
                spearman(feature.name, "curvature", np.abs(values - centre), residual)
            else:
                groups = [
                    residual[feature.values == c] for c in sorted(set(feature.values) - {None})
                ]
                groups = [g for g in groups if len(g) >= 2]
                if len(groups) >= 2:
                    h, p = kruskal(*groups)
                    tests.append({"against": feature.name, "test": "groups", "rho": None,
                                  "h": float(h), "p": float(p)})  # fmt: skip
        adjusted = false_discovery_control([t["p"] for t in tests]) if tests else []
        findings = []
        for test, p_adj in zip(tests, adjusted, strict=True):
            test["p_adjusted"] = float(p_adj)
            big = test["rho"] is None or abs(test["rho"]) >= self.min_rho
            test["flagged"] = bool(p_adj < self.alpha and big)
            if test["flagged"]:
                findings.append(_residual_sentence(test))
        _write_csv(folder / "residuals.csv", tests)
        _residual_figure(evidence, prediction, residual, features, tests, folder)
        return {
            "rows": len(residual),
            "tests": tests,
            "flagged": [f"{t['against']}:{t['test']}" for t in tests if t["flagged"]],
            "heteroscedastic": any(t["flagged"] for t in tests if t["test"] == "spread"),
            "findings": findings,
        }


# -- the columns of a table ----------------------------------------------------------------------


def _features(evidence: Evidence) -> list[_Feature] | None:
    """The raw columns as encoded features, or None for images."""
    import numpy as np
    import pandas as pd

    x = evidence.x
    if x.ndim != 2:
        return None
    names = list(evidence.feature_names or [f"x{j}" for j in range(x.shape[1])])
    if evidence.raw is None:  # the encoded columns are the features
        return [
            _Feature(n, "numeric", [j], x[:, j].astype(np.float64)) for j, n in enumerate(names)
        ]
    raw = evidence.raw.reset_index(drop=True)
    numeric = [c for c in raw.columns if str(c) in names]
    categorical = [str(c) for c in raw.columns if c not in numeric]
    # each encoded one-hot column belongs to the categorical column of the longest prefix
    owner: dict[str, list[int]] = {c: [] for c in categorical}
    for j, name in enumerate(names):
        if name in numeric:
            continue
        prefixes = [c for c in categorical if name.startswith(f"{c}_")]
        if prefixes:
            owner[max(prefixes, key=len)].append(j)
    features = []
    for column in raw.columns:
        name = str(column)
        if column in numeric:
            j = names.index(name)
            values = pd.to_numeric(raw[column], errors="coerce").to_numpy(np.float64)
            ok = np.isfinite(values)
            scale, shift = 1.0, 0.0
            if ok.sum() >= 2 and np.ptp(values[ok]) > 0:  # encoded = scale * raw + shift
                scale, shift = (float(v) for v in np.polyfit(values[ok], x[ok, j], 1))
            elif ok.any():
                shift = float(x[ok, j].mean() - values[ok].mean())
            features.append(_Feature(name, "numeric", [j], values, scale, shift))
        elif owner.get(name):
            columns = owner[name]
            present = raw[column].notna().to_numpy()
            values = np.array(
                [str(v) if p else None for v, p in zip(raw[column], present, strict=True)],
                dtype=object,
            )
            categories = [names[j][len(name) + 1 :] for j in columns]
            features.append(_Feature(name, "categorical", columns, values, categories=categories))
    return features


def pdp_grid(feature: _Feature, resolution: int, rows: np.ndarray) -> list[Any]:
    """The partial dependence grid, as scikit-learn's ``partial_dependence`` builds it: the
    unique values when fewer than ``resolution`` (or a categorical column's categories), else
    ``resolution`` points evenly between the 5th and 95th percentiles (``mquantiles``) of the
    column's values in ``rows``."""
    import numpy as np
    from scipy.stats.mstats import mquantiles

    if feature.kind == "categorical":
        return sorted(feature.categories)
    values = feature.values[rows]
    values = values[np.isfinite(values)]
    uniques = np.unique(values)
    if len(uniques) < resolution:
        return [float(v) for v in uniques]
    low, high = mquantiles(values, prob=PDP_PERCENTILES)
    if np.isclose(low, high):
        return [float(v) for v in uniques[:: max(1, len(uniques) // resolution)]]
    return [float(v) for v in np.linspace(low, high, resolution)]


def _sensitivity_grid(feature: _Feature, resolution: int, rows: np.ndarray) -> list[Any]:
    """The observed range of a column in ``rows``: its quantiles from min to max (a categorical
    column's categories)."""
    import numpy as np

    if feature.kind == "categorical":
        return sorted(feature.categories)
    values = feature.values[rows]
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return []
    return [float(v) for v in np.unique(np.quantile(values, np.linspace(0, 1, resolution)))]


# -- small helpers ---------------------------------------------------------------------------------


def _response(out: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Classification: the probability of each row's (originally) predicted class; else the
    prediction."""
    import numpy as np

    out = np.asarray(out, dtype=np.float64)
    if classes is None:
        return out.reshape(-1)
    return out[np.arange(len(out)), classes]


def _as_2d(out: Any) -> np.ndarray:
    import numpy as np

    out = np.asarray(out, dtype=np.float64)
    return out.reshape(len(out), -1)


def _labels(evidence: Evidence) -> list[str]:
    if evidence.task != "classification":
        return ["prediction"]
    k = evidence.outputs.shape[1]
    names = evidence.class_names or [str(i) for i in range(k)]
    return [str(n) for n in names][:k]


def _by_label(values: np.ndarray, labels: list[str]) -> Any:
    """``(G, K)`` averages as ``{label: [..]}`` (classification) or a list (regression)."""
    if labels == ["prediction"]:
        return [float(v) for v in values[:, 0]]
    return {label: [float(v) for v in values[:, k]] for k, label in enumerate(labels)}


def _plain(value: Any) -> Any:
    """A JSON value: float, int, str or None (NaN and inf become None)."""
    import math

    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def _sensitivity_row(name: str, changes: list[Any], flips: list[Any]) -> dict[str, Any]:
    import numpy as np

    if not changes:
        return {"feature": name, "mean_abs_change": 0.0, "max_abs_change": 0.0,
                "flip_rate": None}  # fmt: skip
    per_value = [float(c.mean()) for c in changes]
    return {
        "feature": name,
        "mean_abs_change": float(np.mean(per_value)),
        "max_abs_change": float(np.max(per_value)),
        "flip_rate": float(np.mean([f.mean() for f in flips])) if flips else None,
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# -- benchmark model -------------------------------------------------------------------------------


def _baseline(evidence: Evidence, folder: Path) -> dict[str, Any]:
    """Majority/mean and linear models fitted on the training split, scored beside the model."""
    import warnings

    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert evidence.train is not None
    x_train, y_train = evidence.train
    rng = np.random.default_rng([evidence.seed, 3])
    if len(x_train) > BASELINE_ROWS:
        keep = np.sort(rng.choice(len(x_train), size=BASELINE_ROWS, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    x_test = np.asarray(evidence.x, dtype=np.float64).reshape(len(evidence.x), -1)
    y_test = np.asarray(evidence.y)
    classification = evidence.task == "classification"
    if classification:
        dummy_name, dummy = "majority", DummyClassifier(strategy="most_frequent")
        linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    else:
        dummy_name, dummy = "mean", DummyRegressor(strategy="mean")
        linear = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    scores: dict[str, dict[str, float | None]] = {
        "model": _scores(evidence, y_test, np.asarray(evidence.outputs))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, estimator in ((dummy_name, dummy), ("linear", linear)):
            estimator.fit(x_train, y_train)
            if classification:
                k = evidence.outputs.shape[1]
                proba = np.zeros((len(x_test), k))
                proba[:, estimator.classes_.astype(int)] = estimator.predict_proba(x_test)
                scores[name] = _scores(evidence, y_test, proba)
            else:
                scores[name] = _scores(evidence, y_test, estimator.predict(x_test))
    key = "accuracy" if classification else "rmse"
    better = (lambda a, b: a > b) if classification else (lambda a, b: a < b)
    beats = {n: bool(better(scores["model"][key], scores[n][key])) for n in (dummy_name, "linear")}
    findings = []
    why = {
        dummy_name: "it has learnt nothing beyond the target's distribution",
        "linear": "a linear model on the same inputs does as well; the network underfits or "
        "its extra capacity buys nothing",
    }
    for name in (dummy_name, "linear"):
        if not beats[name]:
            findings.append(
                f"The model does not beat the {name} baseline on {key} "
                f"({scores['model'][key]:.4g} against {scores[name][key]:.4g}): {why[name]}."
            )
    _write_csv(folder / "baseline.csv", [{"model": n, **s} for n, s in scores.items()])
    return {
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "scores": scores,
        "beats": beats,
        "findings": findings,
    }


def _scores(evidence: Evidence, y: np.ndarray, outputs: np.ndarray) -> dict[str, float | None]:
    import numpy as np
    from sklearn import metrics

    if evidence.task == "classification":
        proba = np.clip(np.asarray(outputs, dtype=np.float64), 0.0, 1.0)
        sums = proba.sum(axis=1, keepdims=True)
        proba = np.where(sums > 0, proba / np.where(sums > 0, sums, 1), 1.0 / proba.shape[1])
        labels = list(range(proba.shape[1]))
        predicted = proba.argmax(axis=1)
        return {
            "accuracy": float(metrics.accuracy_score(y, predicted)),
            "f1_macro": float(metrics.f1_score(y, predicted, average="macro", zero_division=0)),
            "log_loss": float(metrics.log_loss(y, proba, labels=labels)),
        }
    predicted = np.asarray(outputs, dtype=np.float64).reshape(-1)
    return {
        "mae": float(metrics.mean_absolute_error(y, predicted)),
        "rmse": float(metrics.root_mean_squared_error(y, predicted)),
        "r2": float(metrics.r2_score(y, predicted)),
    }


# -- random attacks --------------------------------------------------------------------------------


def _attacks(evidence: Evidence, rows: np.ndarray) -> dict[str, Any]:
    """Sends hostile inputs through ``predict`` (and the network when there is one) and records
    what breaks: crashes, non-finite outputs for finite inputs, invalid probabilities."""
    import numpy as np

    rng = np.random.default_rng([evidence.seed, 4])
    x0 = evidence.x[rows[:ATTACK_ROWS]].astype(np.float32)
    shape = x0.shape
    low, high = evidence.x.min(axis=0), evidence.x.max(axis=0)  # per input (feature or pixel)
    span = np.where(high > low, high - low, 1.0)
    signs = rng.choice([-1.0, 1.0], size=shape)
    flat = shape[0], int(np.prod(shape[1:]))
    holes = rng.integers(0, flat[1], size=flat[0])  # one entry per row made non-finite

    def poke(value: float) -> np.ndarray:
        out = x0.reshape(flat).copy()
        out[np.arange(flat[0]), holes] = value
        return out.reshape(shape)

    attacks: dict[str, np.ndarray] = {
        "random": (rng.standard_normal(shape) * evidence.x.std() + evidence.x.mean()).astype(
            np.float32
        ),
        "extreme": (signs * 1e6).astype(np.float32),
        "out_of_range": (  # uniform over 5x the observed range around it
            rng.uniform(low - 2 * span, high + 2 * span, size=shape).astype(np.float32)
        ),
        "nan": poke(np.nan),
        "inf": poke(np.inf),
        "float64": x0.astype(np.float64),
        "int": np.rint(np.clip(x0, -1e9, 1e9)).astype(np.int64),
        "empty": x0[:0],
    }
    results: dict[str, Any] = {}
    findings = []
    for name, batch in attacks.items():
        finite = bool(np.isfinite(batch).all())
        entry: dict[str, Any] = {"rows": len(batch), "finite_input": finite}
        entry["predict"] = _probe(lambda b: evidence.predict(b), batch, evidence)
        if evidence.net is not None:
            entry["net"] = _probe(lambda b: _net(evidence.net, b), batch, None)
        results[name] = entry
        findings.extend(_attack_findings(name, entry))
    return {"attacks": results, "findings": findings}


def _net(net: Any, batch: np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    parameter = next(iter(net.parameters()), None)
    tensor = torch.from_numpy(np.ascontiguousarray(batch))
    if parameter is not None:
        tensor = tensor.to(parameter.device)
    with torch.no_grad():
        return net(tensor).detach().cpu().numpy()


def _probe(call: Any, batch: np.ndarray, evidence: Evidence | None) -> dict[str, Any]:
    """One call on one attack: crashed (with the one-line message), rows with non-finite
    outputs, rows whose probabilities are invalid (``predict`` of a classifier only)."""
    import warnings

    import numpy as np

    try:
        # the model's own warnings on hostile input (overflow, invalid values) are the point
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = np.asarray(call(batch), dtype=np.float64)
    except Exception as error:  # the attack's point: any exception is recorded, not raised
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return {"crashed": True, "error": f"{type(error).__name__}: {message}"[:300]}
    result: dict[str, Any] = {"crashed": False}
    if out.shape[:1] != batch.shape[:1]:
        result["wrong_shape"] = list(out.shape)
        return result
    rows = out.reshape(len(out), -1) if len(out) else np.zeros((0, 1))
    finite = np.isfinite(rows).all(axis=1)
    result["nonfinite_rows"] = int((~finite).sum())
    if evidence is not None and evidence.task == "classification":
        p = rows[finite]
        bad = (p < -1e-6).any(axis=1) | (p > 1 + 1e-6).any(axis=1)
        bad |= np.abs(p.sum(axis=1) - 1) > 1e-3
        result["invalid_rows"] = int(bad.sum())
    return result


def _attack_findings(name: str, entry: dict[str, Any]) -> list[str]:
    findings = []
    for who, probe in (("predict", entry["predict"]), ("the network", entry.get("net"))):
        if probe is None:
            continue
        what = f"{name.replace('_', '-')} inputs"
        if probe["crashed"]:
            if entry["finite_input"] and name not in ("float64", "int", "empty"):
                findings.append(f"{who} crashes on {what}: {probe['error']}.")
            elif name in ("float64", "int"):
                findings.append(
                    f"{who} refuses {what} ({probe['error']}): cast inputs before serving."
                )
            continue
        if "wrong_shape" in probe:
            findings.append(f"{who} returns shape {probe['wrong_shape']} for {what}.")
            continue
        if entry["finite_input"] and probe["nonfinite_rows"]:
            findings.append(
                f"{who} emits NaN or inf for finite {what} in {probe['nonfinite_rows']} of "
                f"{entry['rows']} rows."
            )
        if probe.get("invalid_rows"):
            findings.append(
                f"{who} returns probabilities outside [0, 1] or not summing to 1 for {what} "
                f"in {probe['invalid_rows']} of {entry['rows']} rows."
            )
        if not entry["finite_input"]:
            outcome = (
                f"non-finite outputs in {probe['nonfinite_rows']} of {entry['rows']} rows"
                if probe["nonfinite_rows"]
                else "finite outputs"
            )
            findings.append(
                f"{who} accepts {what} silently ({outcome}): validate inputs before serving."
            )
    return findings


# -- findings and figures --------------------------------------------------------------------------


def _residual_sentence(test: dict[str, Any]) -> str:
    against, p = test["against"], test["p_adjusted"]
    if test["test"] == "spread":
        return (
            f"The residuals' spread changes with the prediction (Spearman rho of |residual| "
            f"{test['rho']:.2f}, adjusted p {p:.2g}): the errors are heteroscedastic."
        )
    if test["test"] == "groups":
        return (
            f"The residuals differ between the values of '{against}' (Kruskal-Wallis H "
            f"{test['h']:.3g}, adjusted p {p:.2g}): structure the model missed."
        )
    shape = "trend" if test["test"] == "trend" else "curvature (residuals against the distance"
    shape += "" if test["test"] == "trend" else " from the median)"
    return (
        f"The residuals show a {shape} in '{against}' (Spearman rho {test['rho']:.2f}, "
        f"adjusted p {p:.2g}): structure the model missed."
    )


def _sensitivity_figure(
    table: list[dict[str, Any]], curves: dict[str, Any], unit: str, folder: Path
) -> None:
    plt = _plt()
    shown = table[:20]
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(10, max(3.0, 0.3 * len(shown) + 1)))
    bars.barh([r["feature"] for r in shown][::-1], [r["mean_abs_change"] for r in shown][::-1])
    bars.set_xlabel("mean |change| of the response")
    bars.set_title("Sensitivity per feature")
    for row in shown[:5]:
        grid, change = curves[row["feature"]]
        if all(isinstance(v, int | float) for v in grid):
            lines.plot(grid, change, marker=".", label=row["feature"])
        else:
            lines.plot(range(len(grid)), change, marker=".", label=f"{row['feature']} (index)")
    lines.set_xlabel(unit)
    lines.set_ylabel("mean |change|")
    lines.set_title("Change over each feature's range (top 5)")
    lines.legend(fontsize=7)
    _save(fig, folder / "sensitivity.svg")


def _pdp_figure(
    entries: list[dict[str, Any]],
    ice: dict[str, np.ndarray],
    labels: list[str],
    by_name: dict[str, _Feature],
    folder: Path,
) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(entries), figsize=(3.6 * len(entries), 3), squeeze=False)
    for ax, entry in zip(axes[0], entries, strict=True):
        curves = ice[entry["feature"]]  # (G, ice rows, K)
        k = _shown_class(entry, labels)
        categorical = by_name[entry["feature"]].kind == "categorical"
        xs = list(range(len(entry["grid"]))) if categorical else entry["grid"]
        if curves.shape[1]:
            ax.plot(xs, curves[:, :, k], color="grey", alpha=0.25, linewidth=0.6)
        values = entry["average"] if labels == ["prediction"] else entry["average"][labels[k]]
        ax.plot(xs, values, color="C0", linewidth=2, label="partial dependence")
        if categorical:
            ax.set_xticks(xs, entry["grid"], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel(entry["feature"])
        ax.set_ylabel("prediction" if labels == ["prediction"] else f"P({labels[k]})")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Partial dependence (blue) with ICE curves (grey)")
    _save(fig, folder / "pdp.svg")


def _shown_class(entry: dict[str, Any], labels: list[str]) -> int:
    """The class drawn: binary, the positive one; multiclass, the one whose average moves most."""
    import numpy as np

    if labels == ["prediction"]:
        return 0
    if len(labels) == 2:
        return 1
    spans = [np.ptp(entry["average"][label]) for label in labels]
    return int(np.argmax(spans))


def _pdp_interaction_figure(
    fa: _Feature,
    fb: _Feature,
    grid_a: list[Any],
    grid_b: list[Any],
    surface: np.ndarray,
    labels: list[str],
    folder: Path,
) -> None:
    import numpy as np

    plt = _plt()
    spans = [np.ptp(surface[:, :, k]) for k in range(surface.shape[2])]
    k = 1 if len(labels) == 2 else int(np.argmax(spans))
    xa = np.arange(len(grid_a)) if fa.kind == "categorical" else np.asarray(grid_a, float)
    xb = np.arange(len(grid_b)) if fb.kind == "categorical" else np.asarray(grid_b, float)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    if len(xa) >= 2 and len(xb) >= 2:
        filled = ax.contourf(xa, xb, surface[:, :, k].T, levels=12, cmap="viridis")
        fig.colorbar(filled, ax=ax, label=labels[k] if labels != ["prediction"] else "prediction")
    if fa.kind == "categorical":
        ax.set_xticks(xa, grid_a, rotation=45, ha="right", fontsize=7)
    if fb.kind == "categorical":
        ax.set_yticks(xb, grid_b, fontsize=7)
    ax.set_xlabel(fa.name)
    ax.set_ylabel(fb.name)
    ax.set_title("Two-feature partial dependence")
    _save(fig, folder / "pdp_interaction.svg")


def _residual_figure(
    evidence: Evidence,
    prediction: np.ndarray,
    residual: np.ndarray,
    features: list[_Feature] | None,
    tests: list[dict[str, Any]],
    folder: Path,
) -> None:
    import numpy as np

    plt = _plt()
    rng = np.random.default_rng([evidence.seed, 5])
    shown = rng.permutation(len(residual))[:SCATTER_ROWS]
    flagged = {t["against"] for t in tests if t["flagged"]}
    strength = {}
    for t in tests:
        if t["rho"] is not None:
            strength[t["against"]] = max(strength.get(t["against"], 0.0), abs(t["rho"]))
    ordered = sorted(
        features or [], key=lambda f: (f.name not in flagged, -strength.get(f.name, 0.0))
    )[:5]
    fig, axes = plt.subplots(1, 1 + len(ordered), figsize=(3.2 * (1 + len(ordered)), 3))
    axes = np.atleast_1d(axes)
    panels = [("prediction", prediction, "numeric")] + [(f.name, f.values, f.kind) for f in ordered]
    for ax, (name, values, kind) in zip(axes, panels, strict=True):
        if kind == "numeric":
            ax.scatter(np.asarray(values, float)[shown], residual[shown], s=4, alpha=0.4)
        else:
            groups = sorted(set(values[shown]) - {None})
            data = [residual[shown][values[shown] == g] for g in groups]
            ax.boxplot(data, tick_labels=groups)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel(name + (" (flagged)" if name in flagged else ""))
        ax.set_ylabel("residual (y - prediction)")
    fig.suptitle("Residuals against the prediction and the features")
    _save(fig, folder / "residuals.svg")
