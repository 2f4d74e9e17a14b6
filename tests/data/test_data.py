"""The data sources and the data module: shapes, splits, encoding, batches and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_lightning import seed_everything

from mlx.data import (
    ArrayDataModule,
    DataConfigError,
    Digits,
    Loaded,
    LoaderSettings,
    MNIST5k,
    SklearnTabular,
    Table,
)

# ---------------------------------------------------------------------------------------------
# sources


def test_digits() -> None:
    data = Digits()()
    assert data.features.shape == (1797, 1, 8, 8)
    assert data.features.dtype == np.float32
    assert data.features.min() >= 0.0 and data.features.max() == 1.0
    assert data.target.dtype == np.int64 and data.target.shape == (1797,)
    assert data.task == "classification"
    assert data.class_names == [str(i) for i in range(10)]
    assert data.categorical == []


def test_mnist5k() -> None:
    data = MNIST5k()()
    assert data.features.shape == (5000, 1, 28, 28)
    assert data.features.dtype == np.float32
    assert data.features.min() >= 0.0 and data.features.max() == 1.0
    # the bundled sample holds 500 images of each digit; a wrong label column would not
    assert np.bincount(data.target).tolist() == [500] * 10
    assert data.task == "classification" and len(data.class_names) == 10


def test_breast_cancer() -> None:
    data = SklearnTabular("breast_cancer")()
    assert isinstance(data.features, pd.DataFrame)
    assert data.features.shape == (569, 30)
    assert data.task == "classification"
    assert data.class_names == ["malignant", "benign"]
    assert set(np.unique(data.target)) == {0, 1} and data.target.dtype == np.int64


def test_diabetes_is_regression() -> None:
    data = SklearnTabular("diabetes")()
    # the raw columns, which slices and fairness name: ages in years, sex 1 or 2
    assert data.features["age"].between(19, 79).all()
    assert sorted(data.features["sex"].unique()) == [1, 2]
    assert data.features.shape == (442, 10)
    assert data.task == "regression" and data.class_names is None
    assert data.target.dtype == np.float32
    dm = ArrayDataModule(SklearnTabular("diabetes"), batch_size=32, standardize=True)
    dm.setup("fit")
    assert dm.task == "regression" and dm.num_outputs == 1 and dm.input_shape == (10,)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 10) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.float32


@pytest.mark.parametrize(("name", "classes"), [("wine", 3), ("iris", 3)])
def test_other_sklearn_sets(name: str, classes: int) -> None:
    data = SklearnTabular(name)()
    assert data.task == "classification" and len(data.class_names) == classes


# ---------------------------------------------------------------------------------------------
# the data module


def test_image_module_shapes_and_batches() -> None:
    dm = ArrayDataModule(Digits(), batch_size=100)
    dm.setup("fit")
    assert dm.input_shape == (1, 8, 8)
    assert dm.num_outputs == 10 and dm.task == "classification"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (100,) and y.dtype == torch.int64
    # the last batch is kept, smaller
    sizes = [len(b[1]) for b in dm.train_dataloader()]
    assert sum(sizes) == dm.split_sizes["train"] and sizes[-1] == dm.split_sizes["train"] % 100


def test_split_sizes_add_up_and_follow_split_seed() -> None:
    dm = ArrayDataModule(Digits(), val_fraction=0.15, test_fraction=0.15, split_seed=0)
    dm.setup("fit")
    assert dm.split_sizes == {"train": 1257, "val": 270, "test": 270}
    assert sum(dm.split_sizes.values()) == 1797
    rows = np.concatenate(list(dm.indices.values()))
    assert np.array_equal(np.sort(rows), np.arange(1797))  # disjoint and complete

    same = ArrayDataModule(Digits(), split_seed=0)
    same.setup("fit")
    other = ArrayDataModule(Digits(), split_seed=1)
    other.setup("fit")
    for split in ("train", "val", "test"):
        assert np.array_equal(dm.indices[split], same.indices[split])
        assert not np.array_equal(dm.indices[split], other.indices[split])
    assert other.split_sizes == dm.split_sizes


def test_classification_split_is_stratified() -> None:
    dm = ArrayDataModule(MNIST5k(), val_fraction=0.1, test_fraction=0.2)
    dm.setup("fit")
    assert dm.split_sizes == {"train": 3500, "val": 500, "test": 1000}
    counts = np.bincount(dm.datasets["test"].tensors[1].numpy())
    assert counts.tolist() == [100] * 10


def test_scaler_is_fitted_on_train_split_only() -> None:
    dm = ArrayDataModule(SklearnTabular("breast_cancer"), standardize=True, split_seed=3)
    dm.setup("fit")
    x_train = dm.datasets["train"].tensors[0].numpy().astype(np.float64)
    assert np.allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(x_train.std(axis=0), 1.0, atol=1e-4)
    # the held-out splits are scaled with the train statistics, so they are not exactly 0/1
    x_val = dm.datasets["val"].tensors[0].numpy()
    assert not np.allclose(x_val.mean(axis=0), 0.0, atol=1e-5)

    raw = SklearnTabular("breast_cancer")().features
    scaler = dm.preprocessor.named_transformers_["numeric"][-1]
    assert np.allclose(scaler.mean_, raw.iloc[dm.indices["train"]].mean().to_numpy())
    assert not np.allclose(scaler.mean_, raw.mean().to_numpy())


def test_without_standardize_features_stay_raw() -> None:
    dm = ArrayDataModule(SklearnTabular("breast_cancer"), standardize=False)
    dm.setup("fit")
    raw = SklearnTabular("breast_cancer")().features.iloc[dm.indices["train"]].to_numpy()
    assert np.allclose(dm.datasets["train"].tensors[0].numpy(), raw, rtol=1e-6)


def test_image_standardize_uses_train_channel_stats() -> None:
    dm = ArrayDataModule(Digits(), standardize=True)
    dm.setup("fit")
    x = dm.datasets["train"].tensors[0]
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-3
    assert len(dm.channel_stats["mean"]) == 1


def test_setup_loads_once_and_describe_is_json() -> None:
    calls = []

    def source() -> Loaded:
        calls.append(1)
        return Digits()()

    dm = ArrayDataModule(source)
    dm.setup("fit")
    dm.setup("test")
    assert len(calls) == 1
    info = json.loads(json.dumps(dm.describe()))
    assert info["split_sizes"] == dm.split_sizes
    assert info["input_shape"] == [1, 8, 8] and info["num_outputs"] == 10
    assert info["task"] == "classification" and info["class_names"][0] == "0"


def test_shapes_before_setup_say_so() -> None:
    dm = ArrayDataModule(Digits())
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.input_shape


def first_epoch(dm: ArrayDataModule) -> list[torch.Tensor]:
    return [y for _, y in dm.train_dataloader()]


def test_train_batches_follow_the_seed() -> None:
    def batches(seed: int) -> list[torch.Tensor]:
        seed_everything(seed, verbose=False)
        dm = ArrayDataModule(Digits(), batch_size=128)
        dm.setup("fit")
        return first_epoch(dm) + first_epoch(dm)  # two epochs

    a, b, c = batches(0), batches(0), batches(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    n = len(a) // 2
    # each epoch is shuffled anew
    assert not all(torch.equal(x, y) for x, y in zip(a[:n], a[n:], strict=True))


def test_train_epoch_covers_every_example_once_and_eval_is_ordered() -> None:
    seed_everything(0, verbose=False)
    dm = ArrayDataModule(Digits(), batch_size=50)
    dm.setup("fit")
    loader = dm.train_dataloader()
    rows = sorted(i for batch in loader.sampler for i in batch)
    assert rows == list(range(dm.split_sizes["train"]))
    assert sum(len(y) for _, y in loader) == dm.split_sizes["train"]
    val = torch.cat([y for _, y in dm.val_dataloader()])
    assert torch.equal(val, dm.datasets["val"].tensors[1])


def test_loader_settings_reach_every_loader() -> None:
    settings = LoaderSettings(num_workers=1, prefetch_factor=2, persistent_workers=True)
    dm = ArrayDataModule(SklearnTabular("iris"), batch_size=16, loader=settings)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        assert loader.num_workers == 1 and loader.prefetch_factor == 2
        assert loader.persistent_workers and not loader.pin_memory
    x, y = next(iter(dm.val_dataloader()))  # batches still arrive whole through a worker
    assert x.shape == (16, 4) and y.shape == (16,)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "below 0.9"),
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"split_seed": -1}, "split_seed"),
    ],
)
def test_module_rejects_bad_settings(kwargs: dict, needle: str) -> None:
    with pytest.raises(DataConfigError, match=needle):
        ArrayDataModule(Digits(), **kwargs)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text("x,y\n1,0.5\n2,1.5\n3,2.5\n4,3.5\n5,4.5\n")
    dm = ArrayDataModule(Table(str(path), "y"), val_fraction=0.05, test_fraction=0.05)
    with pytest.raises(DataConfigError, match=r"5 examples.*val and test split empty"):
        dm.setup("fit")


# ---------------------------------------------------------------------------------------------
# your own table


def write_table(path: Path) -> pd.DataFrame:
    """60 rows: a categorical column, a numeric column with gaps, a string target."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(60),
            "size": rng.normal(10, 2, 60).round(3),
            "weight": rng.normal(5, 1, 60).round(3),
            "color": rng.choice(["red", "green", "blue"], 60),
            "animal": rng.choice(["cat", "dog"], 60),
        }
    )
    frame.loc[[3, 17, 40], "weight"] = np.nan
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return frame


@pytest.mark.parametrize("name", ["table.csv", "table.tsv", "table.csv.gz", "table.parquet"])
def test_table_with_categories_gaps_and_string_target(tmp_path: Path, name: str) -> None:
    frame = write_table(tmp_path / name)
    source = Table(str(tmp_path / name), target="animal", drop=["id"])
    assert source.categorical_columns == ["color"]
    data = source()
    assert data.task == "classification" and data.class_names == ["cat", "dog"]
    assert data.categorical == ["color"]
    assert list(data.features.columns) == ["size", "weight", "color"]
    assert np.array_equal(data.target, (frame["animal"] == "dog").to_numpy().astype(np.int64))
    assert np.allclose(data.features["size"], frame["size"])
    assert data.features["weight"].isna().sum() == 3

    dm = ArrayDataModule(source, batch_size=8, standardize=True)
    dm.setup("fit")
    assert dm.feature_names == ["size", "weight", "color_blue", "color_green", "color_red"]
    assert dm.input_shape == (5,) and dm.num_outputs == 2
    x = torch.cat([dm.datasets[s].tensors[0] for s in ("train", "val", "test")])
    assert not torch.isnan(x).any()  # the gaps are imputed
    one_hot = x[:, 2:]
    assert torch.equal(one_hot.sum(dim=1), torch.ones(60))


def test_table_task_auto(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = ["a,small_int,float,big_int"] + [
        f"{i},{i % 4},{i * 0.37:.2f},{i * 1000}" for i in range(50)
    ]
    path.write_text("\n".join(rows) + "\n")
    assert Table(str(path), "small_int")().task == "classification"
    assert Table(str(path), "float")().task == "regression"
    assert Table(str(path), "big_int")().task == "regression"  # 50 distinct values
    forced = Table(str(path), "small_int", task="regression")()
    assert forced.task == "regression" and forced.target.dtype == np.float32
    labels = Table(str(path), "small_int")()
    assert labels.class_names == ["0", "1", "2", "3"]


def test_table_detects_mostly_text_columns_as_categorical(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    # 'code' is text except one number: categorical; 'x' is numbers with missing markers
    rows = ["code,x,y"] + [f"c{i % 3},{'NA' if i % 5 == 0 else i},{i % 2}" for i in range(20)]
    rows[5] = "7,1.5,0"
    path.write_text("\n".join(rows) + "\n")
    source = Table(str(path), "y")
    assert source.categorical_columns == ["code"]
    data = source()
    assert data.features["x"].isna().sum() == 4
    assert data.features["code"].tolist()[4] == "7"


def test_table_explicit_categorical_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("zip,x,y\n10115,1,0\n20095,2,1\n10115,3,0\n80331,4,1\n")
    data = Table(str(path), "y", categorical=["zip"])()
    assert data.categorical == ["zip"]
    assert data.features["zip"].tolist() == ["10115", "20095", "10115", "80331"]


# ---------------------------------------------------------------------------------------------
# clear errors


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "good.csv").write_text(
        "x1,x2,color,y\n1,2.5,red,0\n2,3.5,blue,1\n3,,red,0\n4,1.0,blue,1\n"
    )
    (tmp_path / "garbage.csv").write_text("x1,x2,y\n1,2.5,0\n2,abc,1\n3,4.0,0\n4,1.0,1\n5,1.5,0\n")
    (tmp_path / "ragged.csv").write_text("x1,y\n1,0\n2,1,9\n")
    (tmp_path / "no_label.csv").write_text("x1,y\n1,0\n2,\n")
    (tmp_path / "table.xlsx").write_text("not a table")
    (tmp_path / "words.csv").write_text("x1,y\n1,a\n2,b\n")
    return tmp_path


def message(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text  # one paragraph
    return text


def test_missing_file_names_the_absolute_path(bad_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(bad_dir)
    with pytest.raises(DataConfigError) as e:
        Table("missing.csv", "y")
    assert str(bad_dir / "missing.csv") in message(e)


def test_missing_target_lists_columns_and_a_close_match(bad_dir: Path) -> None:
    with pytest.raises(DataConfigError) as e:
        Table(str(bad_dir / "good.csv"), "yy")
    text = message(e)
    assert "'yy'" in text and "x1, x2, color, y" in text and "Did you mean 'y'?" in text


def test_garbage_in_numeric_column_names_column_row_and_value(bad_dir: Path) -> None:
    with pytest.raises(DataConfigError) as e:
        Table(str(bad_dir / "garbage.csv"), "y")
    text = message(e)
    assert "'x2'" in text and "data row 2" in text and "'abc'" in text


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"path": "good.csv", "target": "y", "categorical": ["colour"]}, ["'colour'", "'color'"]),
        ({"path": "good.csv", "target": "y", "drop": ["x3"]}, ["drop", "'x3'"]),
        ({"path": "good.csv", "target": "y", "drop": ["y"]}, ["target", "drop"]),
        ({"path": "good.csv", "target": "y", "task": "regresion"}, ["'regression'"]),
        ({"path": "ragged.csv", "target": "y"}, ["data row 2", "3 fields"]),
        ({"path": "no_label.csv", "target": "y"}, ["'y'", "data row 2"]),
        ({"path": "words.csv", "target": "y", "task": "regression"}, ["'a'", "data row 1"]),
        ({"path": "table.xlsx", "target": "y"}, [".xlsx", ".parquet"]),
        ({"path": ".", "target": "y"}, ["folder"]),
    ],
)
def test_table_errors(bad_dir: Path, kwargs: dict, needles: list[str]) -> None:
    kwargs = {**kwargs, "path": str(bad_dir / kwargs["path"])}
    with pytest.raises(DataConfigError) as e:
        Table(**kwargs)
    text = message(e)
    for needle in needles:
        assert needle in text, text


def test_explicit_categorical_makes_other_text_columns_errors(bad_dir: Path) -> None:
    with pytest.raises(DataConfigError, match=r"'color'.*data row 1.*'red'"):
        Table(str(bad_dir / "good.csv"), "y", categorical=[])


def test_parquet_text_column_must_be_listed(tmp_path: Path) -> None:
    write_table(tmp_path / "t.parquet")
    with pytest.raises(DataConfigError, match=r"'animal'.*categorical"):
        Table(str(tmp_path / "t.parquet"), "size", categorical=["color"])


def test_unknown_sklearn_name_suggests_the_right_one() -> None:
    with pytest.raises(DataConfigError) as e:
        SklearnTabular("breast_cancr")  # type: ignore[arg-type]
    text = message(e)
    assert "breast_cancer, diabetes, wine, iris" in text and "Did you mean 'breast_cancer'" in text


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_workers": -1}, "num_workers"),
        ({"num_workers": 1.5}, "num_workers"),
        ({"prefetch_factor": 2}, "prefetch_factor needs num_workers"),
        ({"num_workers": 2, "prefetch_factor": 0}, "prefetch_factor"),
        ({"persistent_workers": True}, "persistent_workers needs num_workers"),
    ],
)
def test_loader_settings_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(DataConfigError, match=needle):
        LoaderSettings(**kwargs)


def test_good_loader_settings() -> None:
    assert LoaderSettings().loader_kwargs() == {
        "num_workers": 0,
        "prefetch_factor": None,
        "pin_memory": False,
        "persistent_workers": False,
    }
    LoaderSettings(num_workers=4, prefetch_factor=4, pin_memory=True, persistent_workers=True)


# ---------------------------------------------------------------------------------------------
# import cost


def test_import_and_source_checks_stay_light(bad_dir: Path) -> None:
    code = f"""
import sys, time
t = time.perf_counter()
import mlx.data
from mlx.data import Digits, MNIST5k, SklearnTabular, Table, LoaderSettings
Digits(); MNIST5k(); SklearnTabular("iris"); LoaderSettings()
Table({str(bad_dir / "good.csv")!r}, "y")
print(time.perf_counter() - t)
print(sorted(m for m in ("torch", "pandas", "numpy", "sklearn", "pytorch_lightning")
             if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[1] == "[]", out
    assert float(out[0]) < 1.0
