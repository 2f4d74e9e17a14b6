"""One loaded model version: request checks, preprocessing, the model call, the outputs.

The server, ``mlx predict`` and the embedded runtime all go through :class:`ModelVersion`, so a
prediction is the same wherever it is made. ONNX models run on ONNX Runtime (no torch import);
TorchScript models on torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlx.deploy.signature import NUMERIC, ModelLoadError, Signature, preprocess, read_signature
from mlx.errors import first_line

RUNTIMES = ("onnx", "torchscript")
NAN_POLICIES = ("reject", "impute")


class RequestError(Exception):
    """A client's mistake: the server answers it with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class InputTensor:
    """One decoded input of a request: ``data`` has ``shape`` already."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


class ModelVersion:
    """A model version folder, loaded and ready to predict.

    Args:
        folder: ``<repository>/<name>/<version>``.
        runtime: ``onnx`` or ``torchscript``; None takes ONNX when the folder has it.
        threads: CPU threads of one model call.

    Raises:
        ModelLoadError: the folder has no valid signature, a file is missing or corrupt, or the
            runtime cannot read the model (the message names the file).
    """

    def __init__(self, folder: Path, *, runtime: str | None = None, threads: int = 1) -> None:
        self.folder = Path(folder)
        self.sig: Signature = read_signature(self.folder)
        if runtime is None:
            runtime = next(r for r in RUNTIMES if r in self.sig.files)
        if runtime not in self.sig.files:
            raise ModelLoadError(
                f"{self.folder} has no {runtime} model (it has {', '.join(self.sig.files)})."
            )
        self.runtime = runtime
        self.threads = threads
        path = self.folder / self.sig.files[runtime]
        self._call = _onnx_call(path, threads) if runtime == "onnx" else _torch_call(path, threads)
        self.output_names = [t.name for t in self.sig.outputs]

    @property
    def name(self) -> str:
        return self.sig.name

    @property
    def version(self) -> int:
        return self.sig.version

    # -- a request ---------------------------------------------------------------------------------

    def check(
        self, tensors: list[InputTensor], *, nan: str = "reject", max_batch: int | None = None
    ) -> tuple[dict[str, np.ndarray], int]:
        """The request's inputs by name, checked against the signature, and its batch size.

        Raises:
            RequestError: 400 for a missing, unknown or repeated input, a datatype or shape the
                signature does not accept, or a NaN under ``nan=reject``; 413 for a batch over
                ``max_batch``.
        """
        sig = self.sig
        given = [t.name for t in tensors]
        expected = [t.name for t in sig.inputs]
        if len(set(given)) != len(given):
            raise RequestError(400, f"an input is given twice ({', '.join(given)}).")
        unknown = [n for n in given if n not in expected]
        missing = [n for n in expected if n not in given]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown input(s) {', '.join(unknown)}")
            raise RequestError(
                400,
                f"model {sig.name} takes the inputs {', '.join(expected)}: {'; '.join(parts)}.",
            )
        batch = None
        out: dict[str, np.ndarray] = {}
        for t in tensors:
            spec = sig.input(t.name)
            assert spec is not None
            if spec.datatype == "BYTES":
                if t.datatype != "BYTES":
                    raise RequestError(
                        400,
                        f"input {t.name} takes BYTES (category names), not {t.datatype}.",
                    )
            elif t.datatype not in NUMERIC or t.datatype == "BOOL":
                raise RequestError(
                    400, f"input {t.name} takes numbers ({spec.datatype}), not {t.datatype}."
                )
            if len(t.shape) != len(spec.shape) or any(
                s != e for s, e in zip(t.shape[1:], spec.shape[1:], strict=True)
            ):
                raise RequestError(
                    400,
                    f"input {t.name} has shape {list(t.shape)}; model {sig.name} takes "
                    f"{list(spec.shape)} (-1: any batch size).",
                )
            if t.shape[0] < 1:
                raise RequestError(400, f"input {t.name} holds no rows (shape {list(t.shape)}).")
            if batch is not None and t.shape[0] != batch:
                raise RequestError(
                    400, f"the inputs disagree on the batch size ({batch} and {t.shape[0]})."
                )
            batch = t.shape[0]
            data = t.data
            if spec.datatype != "BYTES":
                data = data.astype(
                    np.float64 if sig.preprocessing["kind"] != "image" else np.float32
                )
                if np.isinf(data).any():
                    raise RequestError(400, f"input {t.name} holds infinite values.")
                if np.isnan(data).any() and (
                    nan == "reject" or sig.preprocessing["kind"] == "image"
                ):
                    raise RequestError(
                        400,
                        f"input {t.name} holds NaN values, which are refused (--nan impute fills a "
                        "table's missing values as training did; images have none to fill).",
                    )
            else:
                data = np.asarray([_text(v) for v in data.reshape(-1)], dtype=object)
            out[t.name] = data
        assert batch is not None
        if max_batch is not None and batch > max_batch:
            raise RequestError(
                413, f"the request holds {batch} rows; this server takes at most {max_batch}."
            )
        return out, batch

    def encode(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The network's input ``(B, *input_shape)`` float32 from checked raw inputs."""
        return preprocess(self.sig.preprocessing, inputs)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output ``(B, num_outputs)`` float32."""
        return self._call(np.ascontiguousarray(x, dtype=np.float32))

    def outputs(self, y: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The named outputs (all of them when ``names`` is None) from the network's output."""
        out: dict[str, np.ndarray] = {}
        for name in names or self.output_names:
            if name == "y":
                out[name] = y
            elif name == "probabilities":
                z = y - y.max(axis=1, keepdims=True)
                e = np.exp(z)
                out[name] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            elif name == "label":
                ids = y.argmax(axis=1)
                classes = self.sig.class_names or tuple(str(i) for i in range(y.shape[1]))
                out[name] = np.asarray([classes[i] for i in ids], dtype=object)
            else:
                raise RequestError(
                    400,
                    f"model {self.name} has no output {name!r} (outputs: {', '.join(self.output_names)}).",
                )
        return out

    def predict(
        self, inputs: dict[str, np.ndarray], names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Raw inputs -> named outputs in one call (no request checks)."""
        return self.outputs(self.forward(self.encode(inputs)), names)

    def check_outputs(self, names: list[str]) -> None:
        """Raises RequestError 400 when a requested output does not exist."""
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise RequestError(
                400,
                f"model {self.name} has no output {', '.join(unknown)} (outputs: {', '.join(self.output_names)}).",
            )


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, "a BYTES input holds text that is not UTF-8.") from None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _onnx_call(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(
            f"{path}: ONNX Runtime cannot load it ({first_line(e)[:300]})."
        ) from None
    name = session.get_inputs()[0].name

    def call(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return call


def _torch_call(path: Path, threads: int) -> Any:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise ModelLoadError(
            f"{path}: torch cannot load it as TorchScript ({first_line(e)[:300]})."
        ) from None

    def call(x: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return call
