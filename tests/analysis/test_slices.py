"""The slices analysis: per-slice metrics equal scikit-learn's on the subset, a planted weak
slice ranks first and is significant, quantile buckets are near-equal, small slices are counted
not reported, and bad slice specs are refused with a clear message."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.slices import Slices
from mlx.errors import ConfigError

N = 1500


@pytest.fixture(scope="module")
def table() -> Evidence:
    """A binary classifier right 90% of the time, but 60% on race c, on a table of raw columns
    with a rare category (10 rows of race r)."""
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {
            "sex": rng.choice(["Female", "Male"], N),
            "race": rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2]),
            "age": rng.uniform(18, 80, N).round(),
        }
    )
    raw.loc[:9, "race"] = "r"
    y = rng.integers(0, 2, N)
    right = rng.random(N) < np.where(raw["race"] == "c", 0.6, 0.9)
    pred = np.where(right, y, 1 - y)
    top = rng.uniform(0.55, 0.99, N)
    probs = np.where(pred[:, None] == np.arange(2), top[:, None], 1 - top[:, None])
    return Evidence(
        task="classification",
        x=np.zeros((N, 3), dtype=np.float32),
        y=y,
        outputs=probs,
        predict=lambda x: x,
        raw=raw,
        class_names=["no", "yes"],
        seed=3,
    )


INFO = DataInfo(
    task="classification",
    columns=["sex", "race", "age"],
    categorical=["sex", "race"],
    feature_names=None,
    class_names=["no", "yes"],
    input_shape=[5],
)


@pytest.fixture(scope="module")
def section(table: Evidence, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("slices")
    analysis = Slices(
        columns=["race", "sex"], buckets={"age": 4}, crosses=[["sex", "race"]], n_boot=30
    )
    analysis.check(INFO)
    out = analysis.run(table, folder)
    out["folder"] = folder
    return out


def test_per_slice_metrics_equal_sklearn_on_the_subset(table: Evidence, section: dict) -> None:
    row = next(s for s in section["slices"] if s["feature"] == "sex" and s["slice"] == "Male")
    mask = (table.raw["sex"] == "Male").to_numpy()
    y, probs = table.y[mask], table.outputs[mask]
    assert row["size"] == mask.sum()
    assert row["metrics"]["acc"]["value"] == pytest.approx(
        skm.accuracy_score(y, probs.argmax(1)), abs=1e-12
    )
    assert row["metrics"]["f1_macro"]["value"] == pytest.approx(
        skm.f1_score(y, probs.argmax(1), average="macro"), abs=1e-12
    )
    assert row["metrics"]["roc_auc"]["value"] == pytest.approx(
        skm.roc_auc_score(y, probs[:, 1]), abs=1e-12
    )
    overall = skm.accuracy_score(table.y, table.outputs.argmax(1))
    assert row["gap"]["acc"] == pytest.approx(row["metrics"]["acc"]["value"] - overall)
    json.dumps({k: v for k, v in section.items() if k != "folder"}, allow_nan=False)


def test_the_planted_weak_slice_ranks_first_and_is_significant(section: dict) -> None:
    # race c and its crosses with sex (each about half of it) are the three weakest
    weakest = [(w["feature"], w["slice"]) for w in section["weakest"][:3]]
    assert set(weakest) == {("race", "c"), ("sex x race", "Female & c"), ("sex x race", "Male & c")}
    first = next(w for w in section["weakest"] if w["slice"] == "c")
    assert first["p_value"] < 0.01 and first["q_value"] < 0.01
    assert first["gap"] < -0.15
    assert first["acc"]["high"] < section["overall"]["acc"]["low"]
    # the slices the model treats alike are not significant
    a = next(s for s in section["slices"] if s["feature"] == "race" and s["slice"] == "a")
    assert a["gap"]["acc"] > 0


def test_quantile_buckets_are_near_equal(section: dict) -> None:
    sizes = [s["size"] for s in section["slices"] if s["feature"] == "age"]
    assert len(sizes) == 4 and sum(sizes) == N
    # in age order, the closed first bucket first
    ages = [s["slice"] for s in section["slices"] if s["feature"] == "age"]
    assert ages[0].startswith("[") and all(a.startswith("(") for a in ages[1:])
    lows = [float(a[1:].split(",")[0]) for a in ages]
    assert lows == sorted(lows)
    assert max(sizes) - min(sizes) < 0.05 * N


def test_quantile_bucket_labels_use_the_data_edges() -> None:
    import pandas as pd

    from mlx.analysis.slices import quantile_buckets

    labels, order = quantile_buckets(pd.Series([19.0, 20, 25, 30, None, 41, 50, 75]), 2)
    # the youngest age closes the first bucket (pandas' qcut would print 18.944)
    assert order == ["[19, 30]", "(30, 75]"]
    assert labels.isna().tolist() == [False] * 4 + [True] + [False] * 3
    assert labels.dropna().tolist() == ["[19, 30]"] * 4 + ["(30, 75]"] * 3


def test_small_slices_are_counted_not_reported(section: dict) -> None:
    assert not any(s["slice"] == "r" for s in section["slices"])
    # race r (10 rows) and its two crosses with sex
    assert section["small"]["count"] == 3
    assert section["small"]["rows"] == 20
    with (section["folder"] / "slices.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(section["slices"])
    assert "acc_low" in rows[0] and "p_value" in rows[0]


def test_images_by_class_and_intensity(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 3, n)
    x = rng.random((n, 1, 4, 4)).astype(np.float32) * (1 + y)[:, None, None, None]
    probs = np.eye(3)[np.where(rng.random(n) < 0.8, y, (y + 1) % 3)] * 0.8 + 0.2 / 3
    images = Evidence("classification", x, y, probs, lambda v: v, seed=0)
    info = DataInfo("classification", None, [], None, ["0", "1", "2"], [1, 4, 4])
    analysis = Slices(per_class=True, intensity_buckets=4, n_boot=20, min_size=10)
    analysis.check(info)
    out = analysis.run(images, tmp_path)
    by_class = {s["slice"]: s["size"] for s in out["slices"] if s["feature"] == "class"}
    assert by_class == {str(c): int((y == c).sum()) for c in range(3)}
    recall = skm.recall_score(y, probs.argmax(1), average=None)
    for c in range(3):
        row = next(s for s in out["slices"] if s["feature"] == "class" and s["slice"] == str(c))
        assert row["metrics"]["acc"]["value"] == pytest.approx(recall[c])
    intensity = [s["size"] for s in out["slices"] if s["feature"] == "intensity"]
    assert sum(intensity) == n and max(intensity) - min(intensity) <= 2


def test_regression_slices_test_absolute_errors(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n = 600
    raw = pd.DataFrame({"region": rng.choice(["north", "south"], n), "x": rng.normal(size=n)})
    target = rng.normal(size=n)
    noise = np.where(raw["region"] == "south", 1.0, 0.3)
    pred = target + rng.normal(size=n) * noise
    ev = Evidence("regression", np.zeros((n, 1)), target, pred, lambda v: v, raw=raw, seed=0)
    out = Slices(columns=["region"], n_boot=50).run(ev, tmp_path)
    first = out["weakest"][0]
    assert first["slice"] == "south" and first["p_value"] < 0.01 and first["gap"] > 0
    south = (raw["region"] == "south").to_numpy()
    assert first["mae"]["value"] == pytest.approx(
        skm.mean_absolute_error(target[south], pred[south])
    )


@pytest.mark.parametrize(
    ("kwargs", "info_columns", "message"),
    [
        ({"columns": ["rcae"]}, True, r"no raw column 'rcae'.*Did you mean 'race'"),
        ({"buckets": {"sex": 3}}, True, r"buckets.sex: 'sex' is categorical"),
        ({"crosses": [["sex", "agee"]]}, True, r"crosses: no raw column 'agee'"),
        ({"intensity_buckets": 4}, True, r"intensity_buckets is for images"),
        ({"columns": ["sex"]}, False, r"images\) has none"),
        ({}, True, r"declares no slice"),
        ({"buckets": {"age": [50, 40]}}, True, r"strictly increasing"),
        ({"crosses": [["sex", "sex"]]}, True, r"pair of two different columns"),
    ],
)
def test_bad_slice_specs_are_refused(kwargs: dict, info_columns: bool, message: str) -> None:
    info = INFO if info_columns else DataInfo("classification", None, [], None, None, [1, 8, 8])
    with pytest.raises(ConfigError, match=message):
        Slices(**kwargs).check(info)


def test_per_class_on_regression_is_refused() -> None:
    info = DataInfo("regression", ["x"], [], ["x"], None, [1])
    with pytest.raises(ConfigError, match="per_class=true"):
        Slices(per_class=True).check(info)


def test_a_bucket_left_empty_is_refused(table: Evidence, tmp_path) -> None:
    analysis = Slices(buckets={"age": [30, 90]})
    analysis.check(INFO)
    with pytest.raises(ConfigError, match=r"the bucket \(90, inf\] holds no row"):
        analysis.run(table, tmp_path)


def test_built_from_hydra_config_values() -> None:
    # what `analysis.slices.buckets={age:[30,50]} analysis.slices.crosses=[[sex,race]]` builds
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "mlx.analysis.slices.Slices",
            "buckets": {"age": [30, 50], "x": 4},
            "crosses": [["sex", "race"]],
        }
    )
    analysis = instantiate(cfg)
    assert analysis.buckets == {"age": [30.0, 50.0], "x": 4}
    assert analysis.crosses == [("sex", "race")]
