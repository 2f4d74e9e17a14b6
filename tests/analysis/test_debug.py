"""The debug analysis on synthetic data and closed-form models whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import partial_dependence

from mlx.analysis.debug import Debug
from mlx.analysis.evidence import DataInfo, Evidence
from mlx.errors import ConfigError

COLORS = ["blue", "green", "red"]


def _table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Raw columns (age numeric and standardised, income numeric as is, color categorical)
    and their encoding, as mlx.data encodes tables."""
    rng = np.random.default_rng(seed)
    raw = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "income": rng.normal(50.0, 15.0, n).round(1),
            "color": rng.choice(COLORS, n),
        }
    )
    return raw, _encode(raw), ["age", "income", *(f"color_{c}" for c in COLORS)]


def _encode(raw: pd.DataFrame) -> np.ndarray:
    onehot = np.stack([(raw["color"].astype(str) == c).to_numpy(float) for c in COLORS], axis=1)
    age = (raw["age"].to_numpy(float) - 45.0) / 12.0
    return np.column_stack([age, raw["income"].to_numpy(float), onehot]).astype(np.float32)


W = np.array(
    [[1.5, -0.5, 0.2], [0.01, 0.03, -0.04], [0.5, 0.0, -0.5], [0.0, 1.0, 0.0], [-1.0, 0.2, 0.3]]
)


def _classify(x: np.ndarray) -> np.ndarray:
    """Three classes, softmax of a linear map with an interaction of age and income."""
    x = np.asarray(x, dtype=np.float64)
    logits = x @ W
    logits[:, 0] += 0.05 * x[:, 0] * (x[:, 1] - 50.0)
    return softmax(logits, axis=1)


class _Wrapped(ClassifierMixin, BaseEstimator):
    """The same model as a scikit-learn estimator over the raw columns."""

    def fit(self, raw: pd.DataFrame, y: np.ndarray) -> _Wrapped:
        self.classes_ = np.arange(3)
        return self

    def predict_proba(self, raw: pd.DataFrame) -> np.ndarray:
        return _classify(_encode(raw))

    def predict(self, raw: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(raw).argmax(axis=1)


def _tabular_evidence(n: int = 300, seed: int = 0) -> Evidence:
    raw, x, names = _table(n, seed)
    outputs = _classify(x)
    return Evidence(
        task="classification",
        x=x,
        y=outputs.argmax(axis=1),
        outputs=outputs,
        predict=_classify,
        raw=raw,
        feature_names=names,
        class_names=["a", "b", "c"],
        seed=seed,
    )


def test_pdp_equals_sklearn_partial_dependence(tmp_path):
    evidence = _tabular_evidence()
    debug = Debug(
        checks=["pdp"], features=["age", "color"], interaction=["age", "income"], grid=7,
        samples=10_000,
    )  # fmt: skip
    section = debug.run(evidence, tmp_path)["pdp"]
    estimator = _Wrapped().fit(evidence.raw, evidence.y)
    raw = evidence.raw.copy()
    for entry in section["features"]:
        expected = partial_dependence(
            estimator, raw, [entry["feature"]], grid_resolution=7, kind="average",
            categorical_features=["color"],
        )  # fmt: skip
        assert entry["grid"] == pytest.approx(list(expected["grid_values"][0]))
        ours = np.array([entry["average"][c] for c in ("a", "b", "c")])  # (K, G)
        np.testing.assert_allclose(ours, expected["average"], atol=1e-6)
    pair = section["interaction"]
    expected = partial_dependence(estimator, raw, ["age", "income"], grid_resolution=7)
    for axis in (0, 1):
        assert pair["grid"][axis] == pytest.approx(list(expected["grid_values"][axis]))
    ours = np.array([pair["average"][c] for c in ("a", "b", "c")])  # (K, G, G)
    np.testing.assert_allclose(ours, expected["average"], atol=1e-6)
    assert (tmp_path / "pdp.svg").is_file() and (tmp_path / "pdp_interaction.svg").is_file()


def _regression(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    truth = x @ np.array([2.0, -1.0, 0.5])
    return x, truth + noise * rng.standard_normal(n), truth


def test_linear_baseline_scores_as_the_truth_on_a_linear_problem(tmp_path):
    x, y, truth = _regression(2000, 0, 0.3)
    w = np.array([2.0, -1.0, 0.5])
    evidence = Evidence(
        task="regression", x=x[1000:], y=y[1000:], outputs=truth[1000:],
        predict=lambda a: np.asarray(a, float) @ w, train=(x[:1000], y[:1000]),
    )  # fmt: skip
    section = Debug(checks=["baseline"]).run(evidence, tmp_path)
    scores = section["baseline"]["scores"]
    assert scores["linear"]["r2"] == pytest.approx(scores["model"]["r2"], abs=0.01)
    assert scores["linear"]["rmse"] == pytest.approx(0.3, abs=0.03)
    assert abs(scores["mean"]["r2"]) < 0.01
    # a model that predicts a constant beats neither baseline, and the findings say so
    constant = Evidence(
        task="regression", x=x[1000:], y=y[1000:], outputs=np.full(1000, 5.0),
        predict=lambda a: np.full(len(a), 5.0), train=(x[:1000], y[:1000]),
    )  # fmt: skip
    section = Debug(checks=["baseline"]).run(constant, tmp_path)
    assert section["baseline"]["beats"] == {"mean": False, "linear": False}
    assert any("linear baseline" in f for f in section["findings"])


def test_sensitivity_ranks_the_planted_feature_first(tmp_path):
    x, _, _ = _regression(400, 1, 0.0)

    def predict(a: np.ndarray) -> np.ndarray:
        return 5.0 * np.asarray(a, float)[:, 2] + 0.1 * np.asarray(a, float)[:, 0]

    evidence = Evidence(task="regression", x=x, y=predict(x), outputs=predict(x), predict=predict)
    section = Debug(checks=["sensitivity"], grid=5).run(evidence, tmp_path)["sensitivity"]
    assert section["ranking"] == ["x2", "x0", "x1"]
    row = {r["feature"]: r for r in section["features"]}
    # mean over rows and the 5 quantiles of |5 (q - x2)|, x2 uniform on [-1, 1]: about 5 * 0.83
    assert row["x2"]["mean_abs_change"] == pytest.approx(5 * 0.83, rel=0.1)
    assert row["x1"]["mean_abs_change"] == 0.0


def test_image_sensitivity_follows_the_statistic_the_model_reads(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (60, 1, 4, 4)).astype(np.float32)

    def predict(a: np.ndarray) -> np.ndarray:  # two classes by mean brightness only
        mean = np.asarray(a, float).mean(axis=(1, 2, 3))
        return softmax(np.stack([4 * mean, -4 * mean], axis=1), axis=1)

    out = predict(images)
    evidence = Evidence("classification", images, out.argmax(1), out, predict, seed=2)
    section = Debug(samples=60).run(evidence, tmp_path)
    assert section["checks"] == ["sensitivity", "attacks"]
    assert "pdp" in section["skipped"] and "residuals" in section["skipped"]
    rows = {r["feature"]: r for r in section["sensitivity"]["features"]}
    assert section["sensitivity"]["ranking"][0] == "brightness"
    assert rows["contrast"]["mean_abs_change"] < 1e-6  # scaling around the mean keeps it


def test_attacks_find_nan_outputs_and_crashes(tmp_path):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).uniform(1, 2, (50, 2)).astype(np.float32)

    def logs(a: np.ndarray) -> np.ndarray:  # NaN for negative inputs, finite or not
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(np.asarray(a, float)).sum(axis=1)

    def fragile(a: np.ndarray) -> np.ndarray:
        if np.abs(a).max(initial=0) > 100:
            raise ValueError("input too large\nsecond line")
        return np.asarray(a, float).sum(axis=1)

    net = torch.nn.Linear(2, 1)
    section = Debug(checks=["attacks"]).run(
        Evidence("regression", x, logs(x), logs(x), logs, net=net), tmp_path
    )
    attacks = section["attacks"]["attacks"]
    # 5x the observed range [1, 2] reaches below 0
    outside = attacks["out_of_range"]
    assert outside["finite_input"] and outside["predict"]["nonfinite_rows"] > 0
    assert any("emits NaN or inf for finite out-of-range" in f for f in section["findings"])
    # the float32 network refuses float64 loudly
    assert attacks["float64"]["net"]["crashed"]
    assert attacks["float64"]["net"]["error"].startswith("RuntimeError")

    section = Debug(checks=["attacks"]).run(
        Evidence("regression", x, fragile(x), fragile(x), fragile), tmp_path
    )
    extreme = section["attacks"]["attacks"]["extreme"]["predict"]
    assert extreme == {"crashed": True, "error": "ValueError: input too large"}
    assert "predict crashes on extreme inputs: ValueError: input too large." in section["findings"]
    assert section["attacks"]["attacks"]["random"]["predict"]["crashed"] is False

    # a sound classifier: finite and valid for every finite input, silent on NaN (a finding)
    evidence = _tabular_evidence(60)
    section = Debug(checks=["attacks"]).run(evidence, tmp_path)
    for name in ("random", "extreme", "out_of_range", "float64", "int"):
        probe = section["attacks"]["attacks"][name]["predict"]
        assert probe == {"crashed": False, "nonfinite_rows": 0, "invalid_rows": 0}, name
    assert section["attacks"]["attacks"]["nan"]["predict"]["nonfinite_rows"] == 32
    assert any(f.startswith("predict accepts nan inputs silently") for f in section["findings"])


def test_residuals_flag_a_missed_quadratic_and_not_white_noise(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (1000, 2)).astype(np.float32)
    model = x[:, 0].astype(float)
    noise = 0.1 * rng.standard_normal(1000)

    def evidence(y: np.ndarray) -> Evidence:
        return Evidence("regression", x, y, model, lambda a: np.asarray(a, float)[:, 0], seed=4)

    section = Debug(checks=["residuals"]).run(evidence(model + x[:, 1] ** 2 + noise), tmp_path)
    assert section["residuals"]["flagged"] == ["x1:curvature"]
    assert any("curvature" in f and "'x1'" in f for f in section["findings"])
    section = Debug(checks=["residuals"]).run(evidence(model + noise), tmp_path)
    assert section["residuals"]["flagged"] == [] and section["findings"] == []


def test_every_check_on_a_table_is_plain_json_and_repeatable(tmp_path):
    raw, x, names = _table(400, 5)
    y = x[:, 0] * 2 + x[:, 3] + 0.1 * np.random.default_rng(5).standard_normal(400)

    def predict(a: np.ndarray) -> np.ndarray:
        return 2 * np.asarray(a, float)[:, 0]

    evidence = Evidence(
        "regression", x[200:], y[200:], predict(x[200:]), predict,
        raw=raw.iloc[200:], feature_names=names, seed=5, train=(x[:200], y[:200]),
    )  # fmt: skip
    debug = Debug(grid=5, ice=10, samples=100)
    first = debug.run(evidence, tmp_path)
    assert first["checks"] == ["baseline", "sensitivity", "attacks", "pdp", "residuals"]
    assert first["examples"] == 100
    json.dumps(first, allow_nan=False)
    assert first == debug.run(evidence, tmp_path)
    # age: standardised in x, varied in years; color: its one-hot group varied together
    pdp = {e["feature"]: e for e in first["pdp"]["features"]}
    assert pdp["age"]["average"][-1] - pdp["age"]["average"][0] == pytest.approx(
        2 * (pdp["age"]["grid"][-1] - pdp["age"]["grid"][0]) / 12.0
    )
    assert first["sensitivity"]["ranking"][0] == "age"
    assert "color:groups" in first["residuals"]["flagged"]  # blue's +1 the model missed


def test_bad_input_is_refused_before_work():
    info = DataInfo("classification", ["age", "income", "color"], ["color"], None, None, [5])
    with pytest.raises(ConfigError, match="features names 'agee'.*Did you mean 'age'"):
        Debug(features=["agee"]).check(info)
    with pytest.raises(ConfigError, match="interaction names 'color_red'"):
        Debug(interaction=["age", "color_red"]).check(info)
    with pytest.raises(ConfigError, match="'residuals'.*applies to regression"):
        Debug(checks=["residuals"]).check(info)
    images = DataInfo("classification", None, [], None, None, [1, 8, 8])
    with pytest.raises(ConfigError, match="'pdp'.*needs tabular columns"):
        Debug(checks=["pdp"]).check(images)
    with pytest.raises(ConfigError, match="this data has none"):
        Debug(features=["age"]).check(images)
    with pytest.raises(ConfigError, match="two different columns"):
        Debug(interaction=["age", "age"])
    with pytest.raises(ConfigError, match="Did you mean 'pdp'"):
        Debug(checks=["pdpp"])  # type: ignore[list-item]
    Debug().check(info)
    Debug(features=["age", "color"], interaction=["income", "color"]).check(info)
