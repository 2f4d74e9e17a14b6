"""A model version's signature (``signature.json``): what a client sends, what it gets back,
and the preprocessing between the two, as plain data.

The signature is the one description of an exported model that the server, ``mlx predict`` and
the embedded runtime read. Preprocessing is stored as numbers (imputation values, means and
scales, category lists), never as a pickled object, and applied here with NumPy alone, so that
serving needs neither torch nor scikit-learn and loading a model folder runs no code from it.

This module imports NumPy only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlx.errors import MlxError

SIGNATURE_FILE = "signature.json"
FORMAT = 1
# the OIP datatypes a numeric input accepts (cast to float32 before the model) and BYTES
NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = (*NUMERIC, "BYTES")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ModelLoadError(MlxError):
    """A model folder that cannot be served: no signature, a corrupt or missing file..."""


@dataclass(frozen=True)
class Tensor:
    """One input or output as the Open Inference Protocol describes it (shape with -1 for the
    batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """The parsed ``signature.json`` of one model version.

    Attributes:
        name: the model's name in the repository.
        version: its version (a positive integer, the folder's name).
        inputs: what a client sends: one image tensor ``x`` ``(-1, C, H, W)``, one table tensor
            ``x`` ``(-1, n_columns)`` of raw numeric columns, or one tensor per raw column
            ``(-1,)`` (BYTES for a categorical one) when the table has categorical columns.
        outputs: what the server returns: ``y`` (the network's output), and for classification
            ``probabilities`` and ``label`` (the class name, BYTES).
        task: ``classification`` or ``regression``.
        class_names: the name of each class (classification).
        model_shape: the encoded input the network reads, ``(-1, *input_shape)``.
        preprocessing: how raw inputs become the network's input (see :func:`preprocess`).
        files: runtime -> file name (``onnx``, ``torchscript``) in the version folder.
        sha256: file name -> digest, checked on load.
        raw: the whole document (metrics, checks, the gate's verdict...).
    """

    name: str
    version: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    task: str
    class_names: tuple[str, ...] | None
    model_shape: tuple[int, ...]
    preprocessing: dict[str, Any]
    files: dict[str, str]
    sha256: dict[str, str]
    raw: dict[str, Any]

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)


def read_signature(folder: Path) -> Signature:
    """The signature of the version in ``folder``, its files checked against their digests.

    Raises:
        ModelLoadError: the file is missing or malformed, or a model file is missing or does
            not match its digest (each message names the file).
    """
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{folder} holds no {SIGNATURE_FILE}: it is not a model version exported by mlx "
            "(mlx run deployment=datacenter, or mlx deploy ckpt_path=...)."
        )
    try:
        doc = json.loads(path.read_text())
        sig = _parse(doc)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"{path} is not a valid mlx signature ({e}).") from None
    if folder.name.isdigit() and sig.version != int(folder.name):
        raise ModelLoadError(
            f"{path} describes version {sig.version}, but its folder is named {folder.name}."
        )
    for runtime, file in sig.files.items():
        model = folder / file
        if not model.is_file():
            raise ModelLoadError(f"{model} is missing ({runtime} model named in {path}).")
        if digest(model) != sig.sha256.get(file):
            raise ModelLoadError(
                f"{model} does not match the digest {path} records for it: the file is corrupt "
                "or was changed after export; export the model again."
            )
    return sig


def _tensor(d: dict[str, Any]) -> Tensor:
    if d["datatype"] not in DATATYPES:
        raise ValueError(f"unknown datatype {d['datatype']!r}")
    return Tensor(str(d["name"]), str(d["datatype"]), tuple(int(s) for s in d["shape"]))


def _parse(doc: dict[str, Any]) -> Signature:
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, this mlx reads format {FORMAT}")
    if not NAME.match(str(doc["name"])):
        raise ValueError(f"bad model name {doc['name']!r}")
    version = doc["version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"bad version {version!r}")
    inputs = tuple(_tensor(t) for t in doc["inputs"])
    outputs = tuple(_tensor(t) for t in doc["outputs"])
    if not inputs or not outputs:
        raise ValueError("no inputs or no outputs")
    pre = doc["preprocessing"]
    if pre["kind"] not in ("image", "table", "columns"):
        raise ValueError(f"unknown preprocessing {pre['kind']!r}")
    files = {str(k): str(v) for k, v in doc["files"].items()}
    if not files or any("/" in f or f.startswith(".") for f in files.values()):
        raise ValueError("files must name model files inside the version folder")
    names = doc.get("class_names")
    return Signature(
        name=str(doc["name"]),
        version=version,
        inputs=inputs,
        outputs=outputs,
        task=str(doc["task"]),
        class_names=tuple(str(c) for c in names) if names else None,
        model_shape=tuple(int(s) for s in doc["model_shape"]),
        preprocessing=pre,
        files=files,
        sha256={str(k): str(v) for k, v in doc["sha256"].items()},
        raw=doc,
    )


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- preprocessing ------------------------------------------------------------------------------


def preprocessing_of(dm: Any) -> dict[str, Any]:
    """The preprocessing a set-up :class:`~mlx.data.datamodule.ArrayDataModule` applies, as
    plain data: per-channel standardisation of images, or, for a table, each numeric column's
    imputation value (and mean and scale when standardised) and each categorical column's
    imputation value and categories (one-hot, unknown categories all zeros)."""
    if isinstance(dm.raw_features(), np.ndarray):
        stats = dm.channel_stats
        return {
            "kind": "image",
            "mean": stats["mean"] if stats else None,
            "std": stats["std"] if stats else None,
        }
    transformer = dm.preprocessor
    if transformer is None:  # a disk cache hit keeps only the encoded splits: fit it again
        dm._fit_table(dm._data(), dm.indices["train"])
        transformer = dm.preprocessor
    numeric: list[dict[str, Any]] = []
    categorical: list[dict[str, Any]] = []
    for part, pipeline, columns in transformer.transformers_:
        if part == "numeric":
            steps = dict(pipeline.steps)
            imputer, scaler = steps["simpleimputer"], steps.get("standardscaler")
            for i, col in enumerate(columns):
                numeric.append(
                    {
                        "name": str(col),
                        "fill": float(imputer.statistics_[i]),
                        "mean": float(scaler.mean_[i]) if scaler is not None else 0.0,
                        "scale": float(scaler.scale_[i]) if scaler is not None else 1.0,
                    }
                )
        elif part == "categorical":
            steps = dict(pipeline.steps)
            imputer, encoder = steps["simpleimputer"], steps["onehotencoder"]
            for i, col in enumerate(columns):
                categorical.append(
                    {
                        "name": str(col),
                        "fill": str(imputer.statistics_[i]),
                        "categories": [str(c) for c in encoder.categories_[i]],
                    }
                )
    return {
        "kind": "columns" if categorical else "table",
        "numeric": numeric,
        "categorical": categorical,
    }


def raw_inputs(pre: dict[str, Any], model_shape: tuple[int, ...]) -> list[Tensor]:
    """The inputs a client sends for this preprocessing."""
    if pre["kind"] == "image":
        return [Tensor("x", "FP32", (-1, *model_shape[1:]))]
    if pre["kind"] == "table":
        return [Tensor("x", "FP32", (-1, len(pre["numeric"])))]
    return [Tensor(c["name"], "FP32", (-1,)) for c in pre["numeric"]] + [
        Tensor(c["name"], "BYTES", (-1,)) for c in pre["categorical"]
    ]


def raw_rows(pre: dict[str, Any], features: Any) -> dict[str, np.ndarray]:
    """A source's raw features (an image array or a DataFrame) as the inputs a client sends."""
    if pre["kind"] == "image":
        return {"x": np.asarray(features, dtype=np.float32)}
    if pre["kind"] == "table":
        columns = [c["name"] for c in pre["numeric"]]
        return {"x": features[columns].to_numpy(dtype=np.float64)}
    out: dict[str, np.ndarray] = {}
    for c in pre["numeric"]:
        out[c["name"]] = features[c["name"]].to_numpy(dtype=np.float64)
    for c in pre["categorical"]:
        values = features[c["name"]]
        present = values.notna().to_numpy()
        texts = np.array([str(v) if ok else "" for v, ok in zip(values, present, strict=True)])
        out[c["name"]] = texts.astype(object)
    return out


def preprocess(pre: dict[str, Any], inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The network's float32 input from a client's raw inputs (validated already: every input
    present, shapes agreeing on the batch size). A NaN in a numeric table column is filled with
    the column's imputation value; an empty string in a categorical column with its most
    frequent category, as in training."""
    if pre["kind"] == "image":
        x = inputs["x"].astype(np.float32, copy=False)
        if pre.get("mean") is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = np.asarray(pre["mean"], dtype=np.float32).reshape(shape)
        std = np.asarray(pre["std"], dtype=np.float32).reshape(shape)
        return (x - mean) / std
    numeric = pre["numeric"]
    if pre["kind"] == "table":
        block = inputs["x"].astype(np.float64)
    else:
        block = np.stack([inputs[c["name"]].astype(np.float64) for c in numeric], axis=1)
    fill = np.array([c["fill"] for c in numeric])
    mean = np.array([c["mean"] for c in numeric])
    scale = np.array([c["scale"] for c in numeric])
    block = np.where(np.isnan(block), fill, block)
    parts = [(block - mean) / scale]
    for c in pre["categorical"]:
        values = np.asarray(inputs[c["name"]]).astype(str)
        values = np.where(values == "", c["fill"], values)
        categories = np.asarray(c["categories"])
        parts.append((values[:, None] == categories[None, :]).astype(np.float64))
    return np.concatenate(parts, axis=1).astype(np.float32)


def write_signature(folder: Path, doc: dict[str, Any]) -> None:
    """``signature.json`` with the digests of the model files it names (which must exist)."""
    doc = {**doc, "format": FORMAT}
    doc["sha256"] = {f: digest(folder / f) for f in doc["files"].values()}
    (folder / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
