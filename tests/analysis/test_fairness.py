"""The fairness analysis: per-group rates and the gaps between groups equal a hand computation
and Fairlearn's functions, the resamples' fast path gives the same numbers, the bootstrap
intervals cover the population's gap about as often as their level says, a planted unfair model
shows a large gap, numeric columns are bucketed, small groups are counted not reported, a
regression gets MAE gaps, and bad input is refused before any work."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.fairness import Fairness, _cells, _weighted_metrics, _weighted_values
from mlx.errors import ConfigError


def evidence(
    raw: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    classes: list[str] | None = None,
    seed: int = 0,
) -> Evidence:
    """A classifier's evidence with one-hot outputs: its predictions are ``pred``."""
    classes = classes or ["bad", "good"]
    return Evidence(
        task="classification",
        x=np.zeros((len(y), 1), dtype=np.float32),
        y=np.asarray(y),
        outputs=np.eye(len(classes))[np.asarray(pred)],
        predict=lambda x: x,
        raw=raw,
        class_names=classes,
        seed=seed,
    )


# a small table, counted by hand below (positive class: good = 1)
#   group a: y    1 1 1 1 0 0 0 0 0 0     group b: y    1 1 1 1 1 1 0 0 0 0
#            pred 1 1 1 0 1 0 0 0 0 0              pred 1 1 0 0 0 0 1 1 0 0
SMALL_Y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0] + [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
SMALL_PRED = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0] + [1, 1, 0, 0, 0, 0, 1, 1, 0, 0]
SMALL_SEX = ["a"] * 10 + ["b"] * 10


def test_gaps_equal_a_hand_computation(tmp_path: Path) -> None:
    ev = evidence(pd.DataFrame({"sex": SMALL_SEX}), np.array(SMALL_Y), np.array(SMALL_PRED))
    section = Fairness(sensitive=["sex"], n_boot=0, min_size=1).run(ev, tmp_path)
    entry = section["sex"]
    a, b = entry["groups"]
    # a: selected 4/10; TPR 3/4; FPR 1/6; right 3 + 5 = 8/10
    # b: selected 4/10; TPR 2/6; FPR 2/4; right 2 + 2 = 4/10
    assert (a["group"], a["size"], b["group"], b["size"]) == ("a", 10, "b", 10)
    expected = {
        "selection_rate": (0.4, 0.4),
        "true_positive_rate": (0.75, 2 / 6),
        "false_positive_rate": (1 / 6, 0.5),
        "accuracy": (0.8, 0.4),
    }
    for metric, (va, vb) in expected.items():
        assert a[metric]["value"] == pytest.approx(va) and b[metric]["value"] == pytest.approx(vb)
        assert a[metric]["low"] is None  # n_boot=0: values only
    assert entry["demographic_parity_difference"]["value"] == pytest.approx(0.0)
    assert entry["demographic_parity_ratio"]["value"] == pytest.approx(1.0)
    # equalized odds: the worse of |TPR gap| = 0.75 - 1/3 and |FPR gap| = 0.5 - 1/6
    assert entry["equalized_odds_difference"]["value"] == pytest.approx(0.75 - 2 / 6)
    assert entry["equalized_odds_ratio"]["value"] == pytest.approx(
        min((2 / 6) / 0.75, (1 / 6) / 0.5)
    )
    assert section["positive"] == "good" and section["size"] == 20
    rows = list(csv.DictReader((tmp_path / "fairness.csv").open()))
    assert [(r["sensitive"], r["group"], r["size"]) for r in rows] == [
        ("sex", "a", "10"),
        ("sex", "b", "10"),
    ]
    assert float(rows[1]["true_positive_rate"]) == pytest.approx(2 / 6)
    assert (tmp_path / "fairness.svg").read_text().startswith("<?xml")


def test_positive_class_and_fairlearn_functions(tmp_path: Path) -> None:
    """Taking ``bad`` as favourable swaps the roles: its selection rates are 6/10 and 6/10, and
    the gaps equal fairlearn.metrics' functions on the one-vs-rest labels."""
    from fairlearn.metrics import demographic_parity_ratio, equalized_odds_difference

    ev = evidence(pd.DataFrame({"sex": SMALL_SEX}), np.array(SMALL_Y), np.array(SMALL_PRED))
    entry = Fairness(sensitive=["sex"], positive="bad", n_boot=0, min_size=1).run(ev, tmp_path)[
        "sex"
    ]
    assert [g["selection_rate"]["value"] for g in entry["groups"]] == pytest.approx([0.6, 0.6])
    yt, yp = 1 - np.array(SMALL_Y), 1 - np.array(SMALL_PRED)
    sf = np.array(SMALL_SEX)
    assert entry["equalized_odds_difference"]["value"] == pytest.approx(
        equalized_odds_difference(yt, yp, sensitive_features=sf)
    )
    assert entry["demographic_parity_ratio"]["value"] == pytest.approx(
        demographic_parity_ratio(yt, yp, sensitive_features=sf)
    )


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_resample_path_equals_the_values(task: str, tmp_path: Path) -> None:
    """The bootstrap's weighted cells with their own counts (the unresampled rows) give the
    reported values, which come from Fairlearn's MetricFrame and functions and scikit-learn."""
    rng = np.random.default_rng(1)
    n = 300
    groups = rng.choice(["x", "y", "z"], n)
    if task == "classification":
        y, pred = rng.integers(0, 3, n), rng.integers(0, 3, n)
        ev = evidence(pd.DataFrame({"g": groups}), y, pred, classes=["p", "q", "r"])
        pos = 2
    else:
        y = rng.normal(size=n)
        pred = y + rng.normal(scale=np.where(groups == "x", 0.2, 1.0))
        ev = Evidence(
            "regression", np.zeros((n, 1)), y, pred, lambda x: x, raw=pd.DataFrame({"g": groups})
        )
        pos = None
    entry = Fairness(sensitive=["g"], n_boot=0, min_size=1).run(ev, tmp_path)["g"]
    codes = pd.Categorical(groups, categories=["x", "y", "z"]).codes.astype(np.int64)
    cell_group, cell_true, cell_pred, counts = _cells(task, y, pred, codes)
    if task == "classification":
        assert len(counts) == 27 and counts.sum() == n  # 3 groups x 3 targets x 3 predictions
    masks = [cell_group == j for j in range(3)]
    fast = _weighted_values(task, cell_true, cell_pred, counts, masks, _weighted_metrics(task, pos))
    for j, group in enumerate(entry["groups"]):
        for metric, value in group.items():
            if isinstance(value, dict):
                assert fast[f"{metric}[{j}]"] == pytest.approx(value["value"])
    gaps = [k for k in fast if "[" not in k]
    assert gaps and all(fast[k] == pytest.approx(entry[k]["value"]) for k in gaps)


def test_intervals_cover_the_population_gap() -> None:
    """Groups selected at rates 0.3 and 0.5 (gap 0.2): over 40 samples of 400 rows, the 90%
    interval of the demographic parity difference holds 0.2 in about 90% of them."""
    covered, widths = 0, []
    reps = 40
    analysis = Fairness(sensitive=["g"], n_boot=100, confidence=0.9, min_size=1)
    for rep in range(reps):
        rng = np.random.default_rng(100 + rep)
        g = rng.choice(["u", "v"], 400)
        pred = (rng.random(400) < np.where(g == "u", 0.3, 0.5)).astype(int)
        y = rng.integers(0, 2, 400)
        entry = analysis._entry("classification", y, pred, 1, pd.Series(g), ["g"], seed=rep)
        gap = entry["demographic_parity_difference"]
        covered += gap["low"] <= 0.2 <= gap["high"]
        widths.append(gap["high"] - gap["low"])
        assert gap["low"] <= gap["value"] <= gap["high"]
    assert 0.8 * reps <= covered <= reps
    # as wide as the normal approximation says: 2 * 1.645 * sqrt(.3*.7/200 + .5*.5/200) = 0.158
    assert 0.13 < np.mean(widths) < 0.18


def test_groups_with_few_or_no_actual_negatives(tmp_path: Path) -> None:
    """Group b has one actual negative (many resamples draw none), group c none: their FPRs are
    0 where no negative is drawn, as Fairlearn's rates count it, so the values and intervals
    agree with fairlearn.metrics; each group says how many actual positives it has."""
    from fairlearn.metrics import equalized_odds_difference

    g = np.array(["a"] * 40 + ["b"] * 40 + ["c"] * 40)
    y = np.array([1, 0] * 20 + [0] + [1] * 39 + [1] * 40)
    pred = np.array([1, 1, 0, 0] * 10 + [1] * 40 + [1, 0] * 20)
    entry = Fairness(sensitive=["g"], n_boot=200).run(
        evidence(pd.DataFrame({"g": g}), y, pred), tmp_path
    )["g"]
    groups = {x["group"]: x for x in entry["groups"]}
    assert [groups[k]["positives"] for k in "abc"] == [20, 39, 40]
    assert groups["a"]["false_positive_rate"]["value"] == pytest.approx(0.5)
    b = groups["b"]["false_positive_rate"]
    assert b["value"] == 1.0 and b["low"] == 0.0 and b["high"] == 1.0
    assert groups["c"]["false_positive_rate"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    eo = entry["equalized_odds_difference"]
    assert eo["value"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=g))
    assert eo["low"] <= eo["value"] <= eo["high"]


@pytest.fixture(scope="module")
def unfair(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A planted unfair model: it grants the favourable class to 80% of men and 20% of women
    whatever their target, on a table with a numeric age column and a rare group."""
    rng = np.random.default_rng(7)
    n = 800
    raw = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "age": rng.integers(19, 76, n),
            "region": rng.choice(["north", "south"], n),
        }
    )
    raw.loc[:4, "region"] = "island"  # 5 rows: counted, not reported
    y = rng.integers(0, 2, n)
    pred = (rng.random(n) < np.where(raw["sex"] == "male", 0.8, 0.2)).astype(int)
    folder = tmp_path_factory.mktemp("unfair")
    section = Fairness(sensitive=["sex", "age", "region"], n_boot=100).run(
        evidence(raw, y, pred, seed=5), folder
    )
    return section, folder


def test_planted_unfair_model_shows_a_large_gap(unfair: tuple[dict, Path]) -> None:
    section, _ = unfair
    sex = section["sex"]
    dp = sex["demographic_parity_difference"]
    assert dp["value"] == pytest.approx(0.6, abs=0.08) and dp["low"] > 0.45
    assert sex["demographic_parity_ratio"]["high"] < 0.4
    assert sex["equalized_odds_difference"]["low"] > 0.45
    # a fair column: region's gap (north against south) is small
    region = section["region"]["demographic_parity_difference"]
    assert region["value"] < 0.1 and region["low"] < 0.05


def test_numeric_buckets_small_groups_and_intersection(unfair: tuple[dict, Path]) -> None:
    section, folder = unfair
    ages = section["age"]["groups"]
    # the data's own edges: the first bucket closed at the youngest age, not qcut's 18.999
    assert len(ages) == 4 and ages[0]["group"].startswith("[19, ")
    assert all(g["group"].startswith("(") for g in ages[1:])
    assert abs(sum(g["size"] for g in ages) - 800) == 0
    assert max(g["size"] for g in ages) - min(g["size"] for g in ages) < 60  # quartiles
    region = section["region"]
    assert [g["group"] for g in region["groups"]] == ["north", "south"]
    assert region["small"] == {"count": 1, "rows": 5, "groups": {"island": 5}}
    inter = section["intersection"]
    assert inter["columns"] == ["sex", "age", "region"]
    assert all(g["size"] >= 30 for g in inter["groups"]) and inter["small"]["count"] > 0
    assert inter["demographic_parity_difference"]["value"] > 0.45
    # every number is a plain float or None, and the CSV has each reported group
    rows = list(csv.DictReader((folder / "fairness.csv").open()))
    reported = sum(len(section[e]["groups"]) for e in ("sex", "age", "region", "intersection"))
    assert len(rows) == reported


def test_the_same_seed_gives_the_same_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    g = rng.choice(["u", "v"], 200)
    y, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    runs = [
        Fairness(sensitive=["g"], n_boot=50, min_size=1).run(
            evidence(pd.DataFrame({"g": g}), y, pred, seed=s), tmp_path
        )["g"]["equalized_odds_difference"]
        for s in (4, 4, 5)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_regression_mae_gap(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 600
    g = rng.choice(["a", "b"], n)
    y = rng.normal(size=n)
    pred = y + np.where(g == "a", 0.1, 0.5) * rng.choice([-1, 1], n)  # |error| 0.1 vs 0.5
    ev = Evidence("regression", np.zeros((n, 1)), y, pred, lambda x: x, raw=pd.DataFrame({"g": g}))
    section = Fairness(sensitive=["g"], n_boot=50).run(ev, tmp_path)
    entry = section["g"]
    assert [x["mae"]["value"] for x in entry["groups"]] == pytest.approx([0.1, 0.5])
    assert entry["mae_difference"]["value"] == pytest.approx(0.4)
    assert entry["mae_ratio"]["value"] == pytest.approx(0.2)
    assert section["positive"] is None


TABLE = DataInfo(
    task="classification",
    columns=["sex", "age", "purpose"],
    categorical=["sex", "purpose"],
    feature_names=None,
    class_names=["bad", "good"],
    input_shape=[12],
)


@pytest.mark.parametrize(
    ("kwargs", "info", "needles"),
    [
        (
            {"sensitive": ["sexx"]},
            TABLE,
            ["no raw column 'sexx'", "Did you mean 'sex'", "sex, age, purpose"],
        ),
        (
            {"sensitive": ["sex"]},
            DataInfo("classification", None, [], None, ["0", "1"], [1, 8, 8]),
            ["images", "table"],
        ),
        ({"sensitive": ["sex"], "positive": "god"}, TABLE, ["not a class", "Did you mean 'good'"]),
        (
            {"sensitive": ["size"]},
            DataInfo("classification", ["size"], [], None, ["a", "b"], [1]),
            ["section's own keys", "rename it"],
        ),
        (
            {"sensitive": ["sex"], "positive": "good"},
            DataInfo("regression", ["sex"], ["sex"], None, None, [2]),
            ["regression", "null"],
        ),
    ],
)
def test_check_refuses(kwargs: dict, info: DataInfo, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        Fairness(**kwargs).check(info)
    for needle in needles:
        assert needle in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sensitive": []}, "one or more raw columns"),
        ({"sensitive": "sex"}, "a list"),
        ({"sensitive": ["sex", "sex"]}, "names sex twice"),
        ({"sensitive": ["sex"], "n_boot": -1}, "n_boot=-1"),
        ({"sensitive": ["sex"], "confidence": 1.5}, "confidence=1.5"),
    ],
)
def test_settings_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="analysis.fairness") as e:
        Fairness(**kwargs)
    assert needle in str(e.value)


def test_provides_the_gate_keys() -> None:
    keys = Fairness(sensitive=["sex", "age"]).provides(TABLE)
    assert "sex.demographic_parity_difference" in keys
    assert "age.equalized_odds_ratio.low" in keys
    assert "intersection.demographic_parity_difference.high" in keys
    Fairness(sensitive=["sex", "age"]).check(TABLE)  # a good config passes
