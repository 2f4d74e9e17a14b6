"""``mlx predict``: batch inference over CSV, Parquet and NPY files with a repository's model.

The model repository is the session's (tests/deploy/conftest.py): an image model (digits), a
numeric table (breast cancer) and a table with categorical columns (German credit), each made by
a real short run with the deploy stage on. Most tests call ``main([...])`` in-process; the command line's own tests run
the ``mlx`` executable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlx.deploy.predict import PredictError, main
from mlx.deploy.runtime import ModelVersion
from mlx.deploy.signature import preprocess, raw_rows
from mlx.errors import MlxError, UsageError
from tests.conftest import run_cli
from tests.deploy.conftest import Exported


@pytest.fixture(scope="module")
def repo(exported: Exported) -> Path:
    """The session's model repository: digits_cnn, breast_cancer_mlp, german_credit_mlp."""
    return exported.repo


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """Each data set's raw features, as a client has them (plus an id column for tables)."""
    from mlx.data.sources import Digits, GermanCredit, SklearnTabular

    tables = {}
    for name, source in (
        ("breast_cancer", SklearnTabular("breast_cancer")),
        ("german_credit", GermanCredit()),
    ):
        loaded = source()
        frame = loaded.features.copy()
        frame.insert(0, "id", np.arange(len(frame)) + 1000)
        frame["target"] = loaded.target  # an extra column predict ignores
        tables[name] = frame
    return {"digits": np.asarray(Digits()().features, dtype=np.float32), **tables}


def _model(repo: Path, name: str, **kw: Any) -> ModelVersion:
    return ModelVersion(repo / name / "1", threads=1, **kw)


def _expected(model: ModelVersion, features: Any, names: list[str]) -> dict[str, np.ndarray]:
    return model.predict(raw_rows(model.sig.preprocessing, features), names)


def _predict(*args: Any) -> int:
    return main([*map(str, args), "--no-progress"])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- the command line -----------------------------------------------------------------------------


def test_cli_predicts_and_refuses_to_overwrite(
    repo: Path, raw: dict[str, Any], tmp_path: Path
) -> None:
    np.save(tmp_path / "images.npy", raw["digits"])
    res = run_cli("predict", f"{repo}/digits_cnn", "images.npy", "preds.parquet", cwd=tmp_path)
    assert res.returncode == 0, res.output[-3000:]
    assert f"predict: {len(raw['digits'])} rows in " in res.stdout
    assert "rows/s) -> preds.parquet" in res.stdout
    got = pd.read_parquet(tmp_path / "preds.parquet")
    model = _model(repo, "digits_cnn")
    want = _expected(model, raw["digits"], ["label", "probabilities"])
    assert list(got.columns) == ["label", *(f"prob_{c}" for c in model.sig.class_names)]
    assert (got["label"].to_numpy() == want["label"]).all()
    np.testing.assert_array_equal(got.iloc[:, 1:].to_numpy(), want["probabilities"])

    again = run_cli("predict", f"{repo}/digits_cnn:1", "images.npy", "preds.parquet", cwd=tmp_path)
    assert again.returncode == 2
    assert "mlx: error: OUTPUT preds.parquet exists; pass --overwrite" in again.stderr
    assert "Traceback" not in again.output


def test_cli_names_the_models_that_exist(repo: Path, raw: dict[str, Any], tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", raw["digits"])
    res = run_cli("predict", f"{repo}/digits_cn", "images.npy", "preds.csv", cwd=tmp_path)
    assert res.returncode == 2
    assert "holds no model 'digits_cn'" in res.stderr
    assert "breast_cancer_mlp (1), digits_cnn (1), german_credit_mlp (1)" in res.stderr
    assert "Did you mean 'digits_cnn'?" in res.stderr
    assert not (tmp_path / "preds.csv").exists()


# -- predictions: the server's, the exported network's ---------------------------------------------


def test_images_npy_in_every_output_format(repo: Path, raw: dict[str, Any], tmp_path: Path) -> None:
    import torch

    images = raw["digits"]  # (N, 1, 8, 8)
    np.save(tmp_path / "nchw.npy", images)
    np.save(tmp_path / "flat.npy", images.reshape(len(images), -1))
    model = _model(repo, "digits_cnn")
    want = _expected(model, images, ["y", "probabilities", "label"])
    spec = repo / "digits_cnn"

    assert _predict(spec, tmp_path / "nchw.npy", tmp_path / "y.npy") == 0
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (len(images), 10)
    np.testing.assert_array_equal(y, want["y"])
    # the exported network itself (TorchScript) on the same preprocessed rows
    net = torch.jit.load(str(repo / "digits_cnn" / "1" / "model.pt"))
    x = torch.from_numpy(preprocess(model.sig.preprocessing, {"x": images}))
    with torch.no_grad():
        np.testing.assert_allclose(y, net(x).numpy(), atol=1e-4)

    assert (
        _predict(spec, tmp_path / "flat.npy", tmp_path / "p.npy", "--outputs", "probabilities") == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), want["probabilities"])

    assert (
        _predict(spec, tmp_path / "flat.npy", tmp_path / "all.csv", "--outputs", "y", "label") == 0
    )
    frame = pd.read_csv(tmp_path / "all.csv", dtype={"label": str})
    assert list(frame.columns) == [*(f"y_{c}" for c in model.sig.class_names), "label"]
    np.testing.assert_array_equal(frame.iloc[:, :10].to_numpy(np.float32), want["y"])
    assert (frame["label"].to_numpy() == want["label"]).all()

    ts = tmp_path / "ts.npy"
    assert (
        _predict(spec, tmp_path / "nchw.npy", ts, "--runtime", "torchscript", "--threads", "1") == 0
    )
    np.testing.assert_allclose(np.load(ts), want["y"], atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_numeric_table_csv_and_parquet(repo: Path, raw: dict[str, Any], tmp_path: Path) -> None:
    frame = raw["breast_cancer"]
    shuffled = frame[list(reversed(frame.columns))]  # columns are found by name
    shuffled.to_csv(tmp_path / "rows.csv", index=False)
    shuffled.to_parquet(tmp_path / "rows.parquet")
    model = _model(repo, "breast_cancer_mlp")
    want = _expected(model, frame, ["label", "probabilities"])
    spec = repo / "breast_cancer_mlp"

    assert _predict(spec, tmp_path / "rows.csv", tmp_path / "a.csv", "--keep", "id", "target") == 0
    assert _predict(spec, tmp_path / "rows.parquet", tmp_path / "b.parquet", "--keep", "id") == 0
    a = pd.read_csv(tmp_path / "a.csv")
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert list(a.columns) == ["id", "target", "label", "prob_malignant", "prob_benign"]
    assert list(b.columns) == ["id", "label", "prob_malignant", "prob_benign"]
    for got in (a, b):
        assert (got["id"].to_numpy() == frame["id"].to_numpy()).all()
        assert (got["label"].to_numpy() == want["label"]).all()
        probs = got[["prob_malignant", "prob_benign"]].to_numpy(np.float32)
        np.testing.assert_array_equal(probs, want["probabilities"])

    # a table model reads an NPY of its columns in its own order
    columns = [c["name"] for c in model.sig.preprocessing["numeric"]]
    np.save(tmp_path / "rows.npy", frame[columns].to_numpy())
    assert (
        _predict(spec, tmp_path / "rows.npy", tmp_path / "c.npy", "--outputs", "probabilities") == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want["probabilities"])


def test_categorical_columns_and_an_unseen_category(
    repo: Path, raw: dict[str, Any], tmp_path: Path
) -> None:
    frame = raw["german_credit"].copy()
    frame.loc[3, "purpose"] = "spaceship"  # never seen in training: all zeros, as the server
    frame.loc[5, "housing"] = np.nan  # missing: the most frequent category, as training
    frame.to_csv(tmp_path / "rows.csv", index=False)
    frame.to_parquet(tmp_path / "rows.parquet")
    model = _model(repo, "german_credit_mlp")
    want = _expected(model, frame, ["label", "probabilities"])
    spec = repo / "german_credit_mlp"

    assert _predict(spec, tmp_path / "rows.csv", tmp_path / "a.parquet", "--keep", "id") == 0
    assert _predict(spec, tmp_path / "rows.parquet", tmp_path / "b.csv", "--chunk-rows", "64") == 0
    for got in (pd.read_parquet(tmp_path / "a.parquet"), pd.read_csv(tmp_path / "b.csv")):
        assert (got["label"].to_numpy() == want["label"]).all()
        probs = got[["prob_bad", "prob_good"]].to_numpy(np.float32)
        np.testing.assert_array_equal(probs, want["probabilities"])

    pre = model.sig.preprocessing
    encoded = preprocess(pre, raw_rows(pre, frame.iloc[[3]]))
    purpose = next(c for c in pre["categorical"] if c["name"] == "purpose")
    at = len(pre["numeric"]) + sum(
        len(c["categories"]) for c in pre["categorical"][: pre["categorical"].index(purpose)]
    )
    assert not encoded[0, at : at + len(purpose["categories"])].any()


def test_chunks_across_a_boundary_match_one_chunk(
    repo: Path, raw: dict[str, Any], tmp_path: Path
) -> None:
    raw["german_credit"].to_csv(tmp_path / "rows.csv", index=False)
    np.save(tmp_path / "images.npy", raw["digits"])
    table, images = repo / "german_credit_mlp", repo / "digits_cnn"
    for chunk, name in (("100000", "one"), ("7", "many")):
        assert (
            _predict(
                table, tmp_path / "rows.csv", tmp_path / f"{name}.parquet", "--chunk-rows", chunk
            )
            == 0
        )
        assert (
            _predict(
                images, tmp_path / "images.npy", tmp_path / f"{name}.npy", "--chunk-rows", chunk
            )
            == 0
        )
    one, many = (
        pd.read_parquet(tmp_path / "one.parquet"),
        pd.read_parquet(tmp_path / "many.parquet"),
    )
    assert len(one) == 1000
    pd.testing.assert_frame_equal(one, many)
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "many.npy").read_bytes()


def test_missing_numbers_rejected_or_imputed(
    repo: Path, raw: dict[str, Any], tmp_path: Path, capsys
) -> None:
    frame = raw["breast_cancer"].copy()
    frame.loc[149, "mean area"] = np.nan  # row 150, in the second chunk of 100
    frame.to_csv(tmp_path / "rows.csv", index=False)
    spec, out = repo / "breast_cancer_mlp", tmp_path / "preds.csv"
    out.write_text("an earlier result\n")
    with pytest.raises(MlxError, match=r"rows 101-200, first at row 150: input x holds NaN"):
        _predict(spec, tmp_path / "rows.csv", out, "--chunk-rows", "100", "--overwrite")
    # the failure left the earlier OUTPUT as it was, and no temporary file
    assert out.read_text() == "an earlier result\n"
    assert _leftovers(tmp_path) == []

    assert _predict(spec, tmp_path / "rows.csv", out, "--nan", "impute", "--overwrite") == 0
    assert "predict: 569 rows" in capsys.readouterr().out
    model = _model(repo, "breast_cancer_mlp")
    want = _expected(model, frame, ["probabilities"])["probabilities"]  # filled as training
    got = pd.read_csv(out)[["prob_malignant", "prob_benign"]].to_numpy(np.float32)
    np.testing.assert_array_equal(got, want)


def test_a_bad_value_mid_way_leaves_no_output(
    repo: Path, raw: dict[str, Any], tmp_path: Path
) -> None:
    frame = raw["german_credit"].copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[620, "age"] = "old"
    frame.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "preds.parquet"
    with pytest.raises(
        PredictError, match=r"rows 501-1000, first at row 621: the column age holds 'old'"
    ):
        _predict(repo / "german_credit_mlp", tmp_path / "rows.csv", out, "--chunk-rows", "500")
    assert not out.exists() and _leftovers(tmp_path) == []


# -- refused before any work ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["digits_cnn", "images.npy", "out.txt"], UsageError, "cannot tell the format from '.txt'"),
        (["digits_cnn", "nothing.npy", "out.npy"], UsageError, "nothing.npy does not exist"),
        (
            ["digits_cnn", "images.npy", "taken.csv"],
            UsageError,
            "taken.csv exists; pass --overwrite",
        ),
        (
            ["digits_cnn:3", "images.npy", "out.npy"],
            PredictError,
            "has no version 3; its versions are 1",
        ),
        (
            ["digits_cnn", "wide.npy", "out.npy"],
            PredictError,
            r"shape \(5, 65\); model digits_cnn takes \(N, 1, 8, 8\) or \(N, 64\)",
        ),
        (["digits_cnn", "table.csv", "out.csv"], PredictError, "takes images"),
        (["breast_cancer_mlp", "table.csv", "out.csv"], PredictError, "lacks 29 of the 30 columns"),
        (
            ["breast_cancer_mlp", "text.parquet", "out.csv"],
            PredictError,
            r"the column\(s\) mean area hold large_string, not numbers",
        ),
        (
            ["german_credit_mlp", "images.npy", "out.csv"],
            PredictError,
            "give INPUT as .csv or .parquet",
        ),
        (
            ["digits_cnn", "images.npy", "out.npy", "--outputs", "label"],
            UsageError,
            "one numeric array",
        ),
        (
            ["digits_cnn", "images.npy", "out.csv", "--outputs", "score"],
            UsageError,
            "has the outputs y, probabilities, label",
        ),
        (
            ["digits_cnn", "images.npy", "out.csv", "--keep", "id"],
            UsageError,
            "--keep copies columns of a table",
        ),
        (
            ["digits_cnn", "images.npy", "out.npy", "--ray"],
            UsageError,
            "give it a .parquet or .csv name",
        ),
    ],
    ids=[
        "extension",
        "no-input",
        "output-exists",
        "no-version",
        "npy-shape",
        "image-from-table",
        "missing-columns",
        "text-in-numbers",
        "columns-from-npy",
        "label-to-npy",
        "unknown-output",
        "keep-from-npy",
        "ray-npy",
    ],  # fmt: skip
)
def test_bad_input_is_refused_before_work(
    repo: Path, raw: dict[str, Any], tmp_path: Path, args: list[str], error: type, message: str
) -> None:
    np.save(tmp_path / "images.npy", raw["digits"][:5])
    np.save(tmp_path / "wide.npy", np.zeros((5, 65), np.float32))
    pd.DataFrame({"mean radius": [1.0], "id": [1]}).to_csv(tmp_path / "table.csv", index=False)
    text = raw["breast_cancer"].astype({"mean area": str})
    text.to_parquet(tmp_path / "text.parquet")
    (tmp_path / "taken.csv").write_text("x\n")
    model, source, output, *options = args
    with pytest.raises(error, match=message):
        _predict(repo / model, tmp_path / source, tmp_path / output, *options)
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


# -- Ray --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_matches_the_local_path(repo: Path, raw: dict[str, Any], tmp_path: Path) -> None:
    frame = raw["german_credit"]
    frame.to_csv(tmp_path / "rows.csv", index=False)
    spec = f"{repo}/german_credit_mlp"
    assert _predict(spec, tmp_path / "rows.csv", tmp_path / "local.parquet", "--keep", "id") == 0
    res = run_cli(
        "predict", spec, "rows.csv", "ray.parquet", "--keep", "id", "--ray", "--chunk-rows", "128",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.output[-3000:]
    parts = sorted((tmp_path / "ray.parquet").glob("*.parquet"))
    assert parts, "Ray wrote no part files"
    got = pd.concat([pd.read_parquet(p) for p in parts]).sort_values("row")
    assert (got["row"].to_numpy() == np.arange(len(frame))).all()
    local = pd.read_parquet(tmp_path / "local.parquet")
    pd.testing.assert_frame_equal(got.drop(columns="row").reset_index(drop=True), local)
    assert _leftovers(tmp_path) == []
