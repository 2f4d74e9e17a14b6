"""Export the run's final network to a model repository version, checked before it is published.

A version holds ``model.onnx`` (the float network, or the int8 graph the compress stage made),
optionally ``model.pt`` (TorchScript), and ``signature.json``. Before the folder is renamed into
place, each model file is run on held-out test inputs and compared with the PyTorch network
(the largest absolute difference must stay within the tolerance, and is recorded), and the
signature's NumPy preprocessing is run on the test split's raw rows and compared with the data
module's own encoding, so that what a client sends is what the network was trained on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlx.deploy.repository import publish
from mlx.deploy.signature import (
    Tensor,
    preprocess,
    preprocessing_of,
    raw_inputs,
    raw_rows,
    write_signature,
)
from mlx.errors import MlxError

log = logging.getLogger("mlx")

# held-out test examples each model file is checked on
CHECK_ROWS = 256
# the largest difference allowed between the signature's preprocessing and the data module's
PREPROCESS_TOLERANCE = 1e-5


class DeployError(MlxError):
    """A model that cannot be exported as asked: a failed check, a budget it exceeds..."""


def held_out(
    dm: Any, pre: dict[str, Any], rows: int = CHECK_ROWS
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw test inputs as a client sends them, and the data module's encoding of the same rows."""
    every = dm.raw_features()
    index = dm.indices["test"][:rows]
    features = every[index] if isinstance(every, np.ndarray) else every.iloc[index]
    encoded = dm.datasets["test"].tensors[0][: len(index)].numpy()
    return raw_rows(pre, features), encoded


def export_version(
    repo: Path,
    name: str,
    net: Any,
    dm: Any,
    *,
    formats: list[str],
    tolerance: float,
    extra: dict[str, Any],
    budget: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the next version of ``name`` in ``repo`` and return its folder and its signature.

    Args:
        repo: the model repository.
        name: the model's name.
        net: the network (a torch module, or the compress stage's ONNX Runtime network).
        dm: the run's set-up data module (its preprocessing and test split).
        formats: ``onnx`` and/or ``torchscript``.
        tolerance: the largest absolute output difference allowed between a model file and
            the network.
        extra: more keys for the signature (metrics, the gate's verdict, the source run...).
        budget: an embedded :class:`~mlx.deploy.config.Budget` checked on the exported model
            before it is published.

    Raises:
        DeployError: a model file disagrees with the network beyond ``tolerance``, the
            preprocessing disagrees with the data module's, or the model is over ``budget``;
            nothing is published then.
    """
    import torch

    from mlx.compression.quantize import OnnxRuntimeNet, export_onnx

    pre = preprocessing_of(dm)
    input_shape = tuple(dm.input_shape)
    raw, encoded = held_out(dm, pre)
    ours = preprocess(pre, raw)
    pre_diff = float(np.abs(ours - encoded).max())
    if pre_diff > PREPROCESS_TOLERANCE:
        raise DeployError(
            f"the exported preprocessing differs from the data module's by {pre_diff:.3g} on the "
            "test split; this data cannot be served from raw rows."
        )
    int8 = isinstance(net, OnnxRuntimeNet)
    was = net.training
    net.eval()
    with torch.no_grad():
        reference = net(torch.from_numpy(encoded)).numpy()
    task = dm.task
    classes = dm.class_names
    num_outputs = int(reference.shape[1])
    outputs = [Tensor("y", "FP32", (-1, num_outputs))]
    if task == "classification":
        outputs += [
            Tensor("probabilities", "FP32", (-1, num_outputs)),
            Tensor("label", "BYTES", (-1,)),
        ]
    signature: dict[str, Any] = {}

    def write(folder: Path, version: int) -> None:
        files: dict[str, str] = {}
        checks: dict[str, Any] = {
            "examples": len(encoded),
            "tolerance": tolerance,
            "preprocessing_max_abs_diff": pre_diff,
        }
        onnx_path = folder / "model.onnx"
        if int8:
            onnx_path.write_bytes(net.model_bytes())
        else:
            onnx_path.write_bytes(export_onnx(net, input_shape).SerializeToString())
        files["onnx"] = onnx_path.name
        if "torchscript" in formats:
            if int8:
                checks["torchscript"] = "not written: the int8 graph runs on ONNX Runtime only"
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(net, torch.from_numpy(encoded[:2]), check_trace=False)
                traced.save(str(folder / "model.pt"))
                files["torchscript"] = "model.pt"
        doc = {
            "name": name,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "task": task,
            "class_names": list(classes) if classes else None,
            "inputs": [t.as_dict() for t in raw_inputs(pre, (-1, *input_shape))],
            "outputs": [t.as_dict() for t in outputs],
            "model_shape": [-1, *input_shape],
            "preprocessing": pre,
            "files": files,
            "int8": int8,
            "sizes": {f: (folder / f).stat().st_size for f in files.values()},
            **extra,
        }
        write_signature(folder, doc)
        from mlx.deploy.runtime import ModelVersion

        for runtime in files:
            model = ModelVersion(folder, runtime=runtime, threads=1)
            got = model.forward(encoded)
            diff = float(np.abs(got - reference).max())
            served = model.predict(raw, ["y"])["y"]
            checks[f"{runtime}_max_abs_diff"] = diff
            checks[f"{runtime}_served_max_abs_diff"] = float(np.abs(served - reference).max())
            if task == "classification":
                checks[f"{runtime}_top1_agreement"] = float(
                    (got.argmax(1) == reference.argmax(1)).mean()
                )
            if max(diff, checks[f"{runtime}_served_max_abs_diff"]) > tolerance:
                raise DeployError(
                    f"the exported {runtime} model's outputs differ from the network's by {diff:.3g} on "
                    f"{len(encoded)} test examples, over the tolerance {tolerance:g}; nothing was "
                    "published (raise deployment.tolerance if the difference is expected)."
                )
        if budget is not None:
            checks["budget"] = budget.check(folder, ModelVersion(folder, threads=1), encoded[:1])
        doc["checks"] = checks
        write_signature(folder, doc)
        signature.update(doc)

    try:
        folder, _ = publish(repo, name, write)
    finally:
        net.train(was)
    return folder, signature
