"""The deploy stage's export: the signature of each kind of input, predictions equal to the run's
network on the test split's raw rows, versions, refused exports (a failed check, the validation
gate, an embedded budget, a bad deployment config) that publish nothing, int8 models, ``mlx
deploy`` of a saved checkpoint, the checks on loading a version folder, and the embedded runtime
importing neither torch nor pandas nor scikit-learn."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlx.deploy.repository import resolve
from mlx.deploy.runtime import ModelVersion
from mlx.deploy.signature import ModelLoadError, digest, preprocess, raw_rows
from tests.conftest import QUIET, SHORT, TINY, compose_cfg, run_cli
from tests.deploy.conftest import EXPORTS, Exported, export

# what each exported model's signature says about its inputs
KINDS = {
    "digits_cnn": ("image", [("x", "FP32", [-1, 1, 8, 8])], [str(i) for i in range(10)]),
    "breast_cancer_mlp": ("table", [("x", "FP32", [-1, 30])], ["malignant", "benign"]),
    "german_credit_mlp": ("columns", None, ["bad", "good"]),
}


def record(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


def signature(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "signature.json").read_text())


def published(repo: Path) -> list[Path]:
    """Everything under ``repo`` except empty model folders (hidden temporaries included)."""
    return [p for p in repo.rglob("*") if p.is_file() or p.name.startswith(".")]


def datamodule(run: Path) -> Any:
    """The run's data module, set up again from its resolved config."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    dm = instantiate(OmegaConf.load(run / "config.yaml").data)
    dm.setup("fit")
    return dm


def held_out_rows(dm: Any, pre: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The test split's raw rows as a client sends them, and the data module's encoding."""
    data = dm._data()
    index = dm.indices["test"]
    features = data.features
    rows = features[index] if isinstance(features, np.ndarray) else features.iloc[index]
    return raw_rows(pre, rows), dm.datasets["test"].tensors[0].numpy()


def in_process(out: Path, overrides: list[str]) -> dict[str, Any]:
    """Run ``overrides`` (short, quiet) in this process and return its record."""
    from mlx.run import run

    run(compose_cfg([*TINY, *SHORT, *overrides], out))
    return record(out)


# ---- the signature and the run record --------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPORTS))
def test_signature_of_each_kind(exported: Exported, name: str) -> None:
    folder = exported.version(name)
    sig = signature(folder)
    kind, inputs, classes = KINDS[name]
    assert sig["name"] == name and sig["version"] == 1
    assert sig["task"] == "classification" and sig["class_names"] == classes
    assert sig["preprocessing"]["kind"] == kind
    got = [(t["name"], t["datatype"], t["shape"]) for t in sig["inputs"]]
    if inputs is not None:
        assert got == inputs
    else:  # one input per raw column: numbers FP32, categories BYTES, each (-1,)
        pre = sig["preprocessing"]
        assert pre["categorical"], "german credit has categorical columns"
        assert got == [(c["name"], "FP32", [-1]) for c in pre["numeric"]] + [
            (c["name"], "BYTES", [-1]) for c in pre["categorical"]
        ]
        width = len(pre["numeric"]) + sum(len(c["categories"]) for c in pre["categorical"])
        assert sig["model_shape"] == [-1, width]
    n = len(classes)
    assert [(t["name"], t["datatype"], t["shape"]) for t in sig["outputs"]] == [
        ("y", "FP32", [-1, n]),
        ("probabilities", "FP32", [-1, n]),
        ("label", "BYTES", [-1]),
    ]
    assert sig["files"] == {"onnx": "model.onnx", "torchscript": "model.pt"}
    assert sig["int8"] is False and sig["forced"] is False and sig["validation"] is None
    assert sig["sha256"] == {f: digest(folder / f) for f in ("model.onnx", "model.pt")}
    assert sig["sizes"] == {f: (folder / f).stat().st_size for f in ("model.onnx", "model.pt")}
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.pt", "signature.json"]
    checks = sig["checks"]
    assert checks["examples"] > 0 and checks["preprocessing_max_abs_diff"] <= 1e-5
    for runtime in ("onnx", "torchscript"):
        for key in (f"{runtime}_max_abs_diff", f"{runtime}_served_max_abs_diff"):
            assert 0 <= checks[key] <= checks["tolerance"] == 1e-4
        assert checks[f"{runtime}_top1_agreement"] == 1.0
    assert sig["metrics"]["test/acc"] == record(exported.runs[name])["metrics"]["test/acc"]
    assert sig["source"]["run"] == str(exported.runs[name].resolve())


def test_run_record_deployment_section(exported: Exported) -> None:
    section = record(exported.runs["digits_cnn"])["deployment"]
    folder = exported.version("digits_cnn")
    assert section["exported"] is True and section["forced"] is False
    assert section["name"] == "digits_cnn" and section["version"] == 1
    assert section["folder"] == str(folder.resolve())
    assert section["repository"] == str(exported.repo.resolve())
    assert section["checks"] == signature(folder)["checks"]
    assert section["files"] == signature(folder)["sizes"]
    assert "cluster_files" not in section  # deployment.cluster=null


# ---- predictions equal the run's network -----------------------------------------------------


@pytest.mark.parametrize("name", list(EXPORTS))
def test_predictions_equal_the_runs_network(exported: Exported, name: str) -> None:
    import torch

    from mlx.compression.pipeline import load_net

    run = exported.runs[name]
    net = load_net(run / "checkpoints" / "best.ckpt").eval()
    folder = exported.version(name)
    raw, encoded = held_out_rows(datamodule(run), signature(folder)["preprocessing"])
    with torch.no_grad():
        expected = net(torch.from_numpy(encoded)).numpy()  # (N, classes)
    classes = np.asarray(KINDS[name][2], dtype=object)
    for runtime in ("onnx", "torchscript"):
        model = ModelVersion(folder, runtime=runtime)
        out = model.predict(raw)
        assert out["y"].shape == expected.shape
        np.testing.assert_allclose(out["y"], expected, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(out["label"], classes[expected.argmax(1)])
        np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)


def test_unseen_category_and_missing_number_encoded_as_in_training(exported: Exported) -> None:
    dm = datamodule(exported.runs["german_credit_mlp"])
    pre = signature(exported.version("german_credit_mlp"))["preprocessing"]
    row = dm._data().features.iloc[dm.indices["test"][:2]].copy()
    numeric, categorical = pre["numeric"][0], pre["categorical"][0]
    row[categorical["name"]] = row[categorical["name"]].astype(object)
    row.iloc[0, row.columns.get_loc(categorical["name"])] = "never-seen-in-training"
    row.iloc[1, row.columns.get_loc(numeric["name"])] = np.nan

    ours = preprocess(pre, raw_rows(pre, row))
    # the data module's own encoder, with categories as the strings it was fitted on
    sk = row.copy()
    for c in pre["categorical"]:
        sk[c["name"]] = [str(v) for v in sk[c["name"]]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some scikit-learn versions warn of unknown categories
        theirs = dm.preprocessor.transform(sk)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)

    start = len(pre["numeric"])  # the first categorical column's one-hot block
    block = ours[:, start : start + len(categorical["categories"])]
    assert block[0].tolist() == [0.0] * len(categorical["categories"])  # unseen: all zeros
    assert block[1].sum() == 1.0
    col = [c["name"] for c in pre["numeric"]].index(numeric["name"])
    filled = (numeric["fill"] - numeric["mean"]) / numeric["scale"]
    assert ours[1, col] == pytest.approx(filled, abs=1e-6)  # the train split's mean

    out = ModelVersion(exported.version("german_credit_mlp")).predict(raw_rows(pre, row))
    assert np.isfinite(out["y"]).all() and out["label"].shape == (2,)


# ---- versions and a failed check -------------------------------------------------------------


def test_exporting_a_name_twice_gives_the_next_version(exported: Exported, tmp_path: Path) -> None:
    from mlx.compression.pipeline import load_net
    from mlx.deploy.export import export_version

    run = exported.runs["breast_cancer_mlp"]
    net, dm = load_net(run / "checkpoints" / "best.ckpt"), datamodule(run)
    repo = tmp_path / "models"
    folders = [
        export_version(repo, "bc", net, dm, formats=["onnx"], tolerance=1e-4, extra={})[0]
        for _ in range(2)
    ]
    assert folders == [repo / "bc" / "1", repo / "bc" / "2"]
    assert [signature(f)["version"] for f in folders] == [1, 2]
    assert sorted(p.name for p in (repo / "bc").iterdir()) == ["1", "2"]  # no .export-*
    assert ModelVersion(folders[1]).version == 2


# refused exports: what the message says, for a short digits run. The float CNN's ONNX output
# differs from torch's by ~1e-8 (checked below), and its model file is ~400 KB
REFUSED = {
    "tolerance": (
        ["deployment=datacenter", "deployment.cluster=null", "deployment.tolerance=1e-15"],
        ["onnx model's outputs differ from the network's by", "over the tolerance 1e-15",
         "nothing was published"],
    ),
    "budget": (
        ["deployment=embedded", "deployment.budget.max_size_kb=1"],
        ["over the embedded budget and was not exported", "its model file is",
         "over max_size_kb=1", "add compression=[prune,quantize]"],
    ),
}  # fmt: skip


def check_refused(case: str, message: str, out: Path, repo: Path) -> None:
    """The message, the run's record and an empty repository of a refused export."""
    for part in REFUSED[case][1]:
        assert part in message, message
    section = record(out)["deployment"]
    assert section["exported"] is False and section["reason"] in message
    assert "version" not in section and "folder" not in section
    if case == "budget":  # the measured size, in the message and the record
        size_kb = float(section["reason"].split("its model file is ", 1)[1].split(" KB")[0])
        assert size_kb > 100  # the float digits CNN
    assert published(repo) == []  # no version folder, no .export-* temporary


def test_float_onnx_differs_from_torch_a_little(exported: Exported) -> None:
    # otherwise deployment.tolerance=1e-15 could not fail
    assert signature(exported.version("digits_cnn"))["checks"]["onnx_max_abs_diff"] > 1e-15


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_export_publishes_nothing(tmp_path: Path, case: str) -> None:
    from mlx.deploy.export import DeployError

    out, repo = tmp_path / "run", tmp_path / "models"
    with pytest.raises(DeployError) as e:  # raised once the record is written
        in_process(out, [*REFUSED[case][0], f"deployment.repository={repo}"])
    check_refused(case, str(e.value), out, repo)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED))
def test_mlx_run_exits_2_on_a_refused_export(tmp_path: Path, case: str) -> None:
    out, repo = tmp_path / "run", tmp_path / "models"
    result = run_cli(
        "run", *TINY, *SHORT, *REFUSED[case][0], f"deployment.repository={repo}",
        f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 2, result.output
    assert "mlx: error:" in result.stderr and "Traceback" not in result.output
    check_refused(case, " ".join(result.stderr.split()), out, repo)


# ---- the validation gate ---------------------------------------------------------------------


GATE = [
    "analysis=[metrics,validation]",
    "analysis.validation.thresholds=['test/acc >= 0.999']",
]


def test_a_rejected_model_is_not_exported(tmp_path: Path) -> None:
    export(tmp_path, "breast_cancer_mlp", GATE)
    rec = record(tmp_path / "runs" / "breast_cancer_mlp")
    assert rec["validation"]["verdict"] == "rejected"
    section = rec["deployment"]
    assert section["exported"] is False
    assert "test/acc >= 0.999" in section["reason"] and "deployment.force=true" in section["reason"]
    assert published(tmp_path / "models") == []


def test_force_exports_a_rejected_model(tmp_path: Path) -> None:
    export(tmp_path, "breast_cancer_mlp", [*GATE, "deployment.force=true"])
    section = record(tmp_path / "runs" / "breast_cancer_mlp")["deployment"]
    assert section["exported"] is True and section["forced"] is True
    sig = signature(tmp_path / "models" / "breast_cancer_mlp" / "1")
    assert sig["forced"] is True
    assert sig["validation"]["verdict"] == "rejected"
    assert sig["validation"]["failed"] == ["test/acc >= 0.999"]


# ---- int8 ------------------------------------------------------------------------------------


def test_int8_model_is_onnx_only_and_serves(exported: Exported, tmp_path: Path) -> None:
    export(
        tmp_path,
        "digits_cnn",
        ["compression=[quantize]", "compression.quantize.calibration_batches=2",
         "latency.warmup=0", "latency.repeats=3", "latency.batch_sizes=[1]"],
    )  # fmt: skip
    folder = tmp_path / "models" / "digits_cnn" / "1"
    sig = signature(folder)
    assert sig["int8"] is True and sig["files"] == {"onnx": "model.onnx"}
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "signature.json"]
    assert "int8" in sig["checks"]["torchscript"] and "ONNX Runtime" in sig["checks"]["torchscript"]
    assert sig["checks"]["onnx_max_abs_diff"] <= 1e-4
    float_size = signature(exported.version("digits_cnn"))["sizes"]["model.onnx"]
    assert sig["sizes"]["model.onnx"] < float_size / 2
    model = ModelVersion(folder)
    with pytest.raises(ModelLoadError, match="no torchscript model"):
        ModelVersion(folder, runtime="torchscript")
    out = model.predict({"x": np.zeros((3, 1, 8, 8), np.float32)})
    assert out["y"].shape == (3, 10) and set(out["label"]) <= set(KINDS["digits_cnn"][2])


# ---- the embedded target ---------------------------------------------------------------------


def test_embedded_within_budget_is_exported(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    rec = in_process(
        tmp_path / "run",
        [*EXPORTS["breast_cancer_mlp"], "deployment=embedded", f"deployment.repository={repo}",
         "deployment.budget.max_size_kb=100000", "deployment.budget.max_latency_ms=1000"],
    )  # fmt: skip
    section = rec["deployment"]
    assert section["exported"] is True and section["name"] == "breast_cancer_mlp"
    budget = section["checks"]["budget"]
    assert budget["max_size_kb"] == 100000 and budget["max_latency_ms"] == 1000
    sig = signature(Path(section["folder"]))
    assert sig["files"] == {"onnx": "model.onnx"} and sig["target"] == "embedded"
    assert budget["size_kb"] == pytest.approx(sig["sizes"]["model.onnx"] / 1024, abs=0.1)
    assert 0 < budget["latency_ms_p50"] < 1000
    assert budget["runtime_installed_mb"] > 0


def test_embedded_torchscript_is_refused_before_training(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(
        "run",
        *TINY,
        "deployment=embedded",
        "deployment.formats=[onnx,torchscript]",
        f"deployment.repository={tmp_path / 'models'}",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 2, result.output
    assert "mlx: error:" in result.stderr and "Traceback" not in result.output
    assert "ships ONNX only" in result.stderr and "deployment.formats=[onnx]" in result.stderr
    assert result.seconds < 10
    assert not (out / "checkpoints").exists() and not (tmp_path / "models").exists()


# ---- mlx deploy ------------------------------------------------------------------------------


@pytest.mark.slow
def test_mlx_deploy_exports_a_saved_checkpoint(exported: Exported, tmp_path: Path) -> None:
    ckpt = exported.runs["digits_cnn"] / "checkpoints" / "best.ckpt"
    repo, out = tmp_path / "models", tmp_path / "deploy"
    result = run_cli(
        "deploy",
        f"ckpt_path={ckpt}",
        *QUIET,
        "tracking=csv",
        "trainer.limit_test_batches=2",
        "deployment.cluster=null",
        f"deployment.repository={repo}",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.output
    folder = repo / "digits_cnn" / "1"  # the run's default name, <data>_<model>
    sig = signature(folder)
    assert sig["source"]["command"] == "deploy" and sig["source"]["ckpt_path"] == str(ckpt)
    assert record(out)["deployment"]["folder"] == str(folder.resolve())
    x = {"x": np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32) * 16}
    ours = ModelVersion(folder).predict(x)["y"]
    np.testing.assert_allclose(ours, ModelVersion(exported.version("digits_cnn")).predict(x)["y"])


def test_mlx_deploy_needs_a_checkpoint(tmp_path: Path) -> None:
    result = run_cli("deploy", *TINY, f"hydra.run.dir={tmp_path / 'deploy'}")
    assert result.returncode == 2, result.output
    assert "mlx: error:" in result.stderr and "ckpt_path=" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "deploy").exists()


# ---- loading refuses bad folders -------------------------------------------------------------


@pytest.fixture
def version_copy(exported: Exported, tmp_path: Path) -> Path:
    folder = tmp_path / "digits_cnn" / "1"
    shutil.copytree(exported.version("digits_cnn"), folder)
    return folder


def test_load_without_signature(version_copy: Path) -> None:
    (version_copy / "signature.json").unlink()
    with pytest.raises(ModelLoadError, match=r"holds no signature\.json"):
        ModelVersion(version_copy)


def test_load_signature_not_json(version_copy: Path) -> None:
    (version_copy / "signature.json").write_text('{"name": "digits_cnn", ')
    with pytest.raises(ModelLoadError, match=r"signature\.json is not a valid mlx signature"):
        ModelVersion(version_copy)


@pytest.mark.parametrize("change", ["truncated", "changed"])
def test_load_model_file_not_matching_its_digest(version_copy: Path, change: str) -> None:
    onnx = version_copy / "model.onnx"
    data = onnx.read_bytes()
    onnx.write_bytes(data[: len(data) // 2] if change == "truncated" else data[:-1] + b"\x00")
    with pytest.raises(ModelLoadError, match=r"model\.onnx does not match the digest"):
        ModelVersion(version_copy)


def test_load_signature_naming_a_missing_file(version_copy: Path) -> None:
    doc = signature(version_copy)
    doc["files"]["onnx"] = "elsewhere.onnx"
    (version_copy / "signature.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"elsewhere\.onnx is missing"):
        ModelVersion(version_copy)


def test_load_corrupt_model_with_its_digest(version_copy: Path) -> None:
    from mlx.deploy.signature import write_signature

    (version_copy / "model.onnx").write_bytes(b"not an onnx model")
    write_signature(version_copy, signature(version_copy))  # a digest that matches the junk
    with pytest.raises(ModelLoadError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        ModelVersion(version_copy)
    ModelVersion(version_copy, runtime="torchscript")  # the other file still loads


def test_load_signature_of_another_version(version_copy: Path) -> None:
    doc = signature(version_copy)
    doc["version"] = 7
    (version_copy / "signature.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="describes version 7, but its folder is named 1"):
        ModelVersion(version_copy)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("models/digits_cnn", (Path("models"), "digits_cnn", None)),
        ("models/digits_cnn:3", (Path("models"), "digits_cnn", 3)),
        ("models/digits_cnn/2", (Path("models"), "digits_cnn", 2)),
        ("/srv/models/m.v2-b:12", (Path("/srv/models"), "m.v2-b", 12)),
        ("digits_cnn", (Path("."), "digits_cnn", None)),
    ],
)
def test_resolve(spec: str, expected: tuple[Path, str, int | None]) -> None:
    assert resolve(spec) == expected


@pytest.mark.parametrize("spec", ["models/digits_cnn:0", "models/digits_cnn:latest"])
def test_resolve_refuses_a_bad_version(spec: str) -> None:
    with pytest.raises(ModelLoadError, match="must be a positive integer"):
        resolve(spec)


# ---- the minimal embedded runtime ------------------------------------------------------------


BLOCKED = ("torch", "pandas", "sklearn", "omegaconf", "hydra", "pytorch_lightning", "scipy")
MINIMAL = textwrap.dedent(
    """
    import sys

    BLOCKED = set(sys.argv[2].split(","))
    already = sorted(BLOCKED & {m.split(".")[0] for m in sys.modules})
    refused = []

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                refused.append(name)
                raise ImportError(f"{name} is blocked in the embedded runtime")
            return None

    sys.meta_path.insert(0, Block())

    import json
    from pathlib import Path

    import numpy as np

    from mlx.deploy.runtime import ModelVersion

    model = ModelVersion(Path(sys.argv[1]))
    out = model.predict({"x": np.zeros((4, 1, 8, 8), np.float32)})
    print(json.dumps({
        "already": already,
        "refused": refused,
        "labels": [str(v) for v in out["label"]],
        "shape": list(out["y"].shape),
        "modules": sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")}),
    }))
    """
)


def test_embedded_runtime_imports_no_heavy_package(exported: Exported) -> None:
    folder = exported.version("digits_cnn")
    proc = subprocess.run(
        [sys.executable, "-c", MINIMAL, str(folder), ",".join(BLOCKED)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print("imported top-level modules:", " ".join(got["modules"]))
    if got["refused"]:
        print("imports refused (and survived):", got["refused"])
    assert got["already"] == [], "imported at start-up, before the hook"
    assert not set(BLOCKED) & set(got["modules"])
    assert got["shape"] == [4, 10] and len(got["labels"]) == 4
    assert {"numpy", "onnxruntime", "mlx"} <= set(got["modules"])


# ---- bad deployment config, refused before training ------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("deployment.name='bad name'", "deployment.name 'bad name' must be letters, digits"),
        ("deployment.formats=[tflite]", "unknown format(s) tflite (formats: onnx, torchscript)"),
        ("deployment.cluster.min_replicas=9", "min_replicas (9) is over max_replicas (8)"),
    ],
)
def test_bad_deployment_config_is_refused_before_training(
    tmp_path: Path, override: str, message: str
) -> None:
    out, repo = tmp_path / "run", tmp_path / "models"
    result = run_cli(
        "run",
        *TINY,
        "deployment=datacenter",
        override,
        f"deployment.repository={repo}",
        f"hydra.run.dir={out}",
    )
    assert message in result.stderr, result.output
    assert result.returncode == 2, result.output
    assert "mlx: error:" in result.stderr and "Traceback" not in result.output
    assert not out.exists() and not repo.exists()


def test_resolve_refuses_a_colon_without_a_version() -> None:
    with pytest.raises(ModelLoadError, match="give a version after ':'"):
        resolve("models/digits_cnn:")


def test_export_after_a_disk_cache_hit(tmp_path: Path) -> None:
    """A disk cache hit keeps only the encoded splits: the export reads the raw rows again."""
    cache = ["input.cache=disk", f"input.cache_dir={tmp_path / 'cache'}"]
    export(tmp_path / "first", "breast_cancer_mlp", cache)
    export(tmp_path / "second", "breast_cancer_mlp", cache)  # from the cache
    sig = json.loads((tmp_path / "second/models/breast_cancer_mlp/1/signature.json").read_text())
    assert sig["checks"]["preprocessing_max_abs_diff"] == 0.0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
