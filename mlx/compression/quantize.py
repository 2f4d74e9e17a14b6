"""Int8 quantization: the float network is exported to ONNX and quantized with ONNX Runtime, and
the stage returns an ``nn.Module`` that runs the int8 graph on ONNX Runtime's CPU kernels.

Three modes:

- ``dynamic``: Linear weights int8 (per output channel), activations quantized per batch at run
  time (ONNX Runtime fuses them into ``DynamicQuantizeMatMul``); everything else stays float,
  convolutions included (their dynamic int8 kernel, ``ConvInteger``, is slower than float).
- ``static``: weights int8 per output channel, activations uint8 with ranges calibrated on
  ``calibration_batches`` training batches; QDQ format, which ONNX Runtime fuses into
  ``QLinearConv``, ``QGemm`` and int8 max-pooling, so the whole chain runs in int8.
- ``qat``: as static, after ``qat_epochs`` of fine-tuning with the same quantization simulated
  (fake-quant with a straight-through gradient) so the weights learn to live on the int8 grid.

Batch norms that follow a Conv or Linear in an ``nn.Sequential`` are folded into it first (the
folded weights are what gets quantized, and what QAT trains).

Why ONNX Runtime (measured with torch 2.13 CPU, one thread, on an MLP 784-512-256-10 at batch
64, float 0.9-1.2 ms): ``torch.ao.quantization`` (eager, FX) warns that it is deprecated in favour
of torchao, and so are the quantized tensors its int8 kernels take. torchao 0.18's ``quantize_``
has no int8 CPU kernel without a compiler (38 ms) and its module does not pickle; torchao's PT2E
with the X86 Inductor quantizer reaches 0.76 ms only through ``torch.compile`` with freezing (a
C++ toolchain and seconds of compilation per shape at run time, and no pickling). ONNX Runtime
1.32 runs the MLP in 0.43-0.45 ms (about 2.1x faster at batch 1 and 64, 3.9x smaller, accuracy
unchanged on MNIST), quantizes Conv2d as well, and its model is bytes, so the module pickles.
The exporter is ``torch.onnx.export(dynamo=True)`` (the TorchScript one is deprecated).

``check`` knows which layers have an int8 path in each mode and refuses others (name them in
``skip`` to keep them float). It looks at leaf modules only; operations written inline in a
``forward`` (``x + y``, ``torch.sigmoid``) are quantized where ONNX Runtime can, else left float.
"""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from torch import nn

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    import onnx
    from torch import Tensor

# layers with an int8 kernel, per mode (torch.nn classes, matched with isinstance)
INT8_LAYERS = {
    "dynamic": (nn.Linear,),
    "static": (nn.Linear, nn.Conv1d, nn.Conv2d),
    "qat": (nn.Linear, nn.Conv1d, nn.Conv2d),
}
# ONNX Runtime's int8 Conv and matrix-product kernels, as its optimized graph names them
INT8_KERNELS = ("QLinearConv", "QGemm", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulInteger")
# layers that pass int8 tensors through with ONNX Runtime's int8 kernels (or vanish on export)
INT8_PASSTHROUGH = (
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
)
# layers that dynamic mode leaves in float by design: only Linear weights are quantized there
DYNAMIC_FLOAT = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm)
# int8 weights use [-64, 64] (ONNX Runtime's reduce_range): the x86 u8 x s8 kernels without VNNI
# add pairs of products in int16, which saturates with full-range weights (measured on an AVX2
# machine, digits CNN: largest logit error 2.1 with 8-bit weights, 0.35 with 7-bit, same speed)
WEIGHT_QMAX = 64
# (Conv or Linear, BatchNorm) pairs that fold into one layer
FOLDABLE = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


class Quantize:
    """Int8 quantization with ONNX Runtime: dynamic, static (calibrated) or quantization-aware.

    The result is an :class:`OnnxRuntimeNet`: it takes and returns float tensors like the float
    network, and pickles with ``torch.save``.

    Args:
        mode: ``dynamic`` (int8 Linear weights, activations quantized per batch), ``static``
            (int8 weights and activations, ranges calibrated on training batches) or ``qat``
            (static after fine-tuning with simulated quantization).
        calibration_batches: training batches that calibrate activation ranges (static, qat).
        qat_epochs: epochs of quantization-aware fine-tuning (qat), with the run's optimizer
            and scheduler (``Tools.fine_tune``).
        qat_lr_scale: the run's learning rate times this, for that fine-tuning: the weights
            are already trained and only need to settle on the int8 grid (at the full rate
            one epoch moved an MNIST MLP 2 points away from its accuracy).
        skip: module names, as in ``named_modules()``, left in float (a container skips all
            its layers).
    """

    name = "quantize"

    def __init__(
        self,
        mode: Literal["dynamic", "static", "qat"] = "static",
        calibration_batches: Annotated[int, Ge(1)] = 8,
        qat_epochs: Annotated[int, Ge(0)] = 1,
        qat_lr_scale: Annotated[float, Gt(0), Le(1)] = 0.1,
        skip: list[str] = (),
    ) -> None:
        self.mode = mode
        self.calibration_batches = calibration_batches
        self.qat_epochs = qat_epochs
        self.qat_lr_scale = qat_lr_scale
        self.skip = [str(s) for s in skip]
        self._details: dict[str, Any] = {}

    def check(self, given: StageInput) -> None:
        if self.mode not in INT8_LAYERS:
            raise CompressionError(
                f"compression.quantize.mode={self.mode!r} is not one of dynamic, static, qat."
            )
        if self.calibration_batches < 1 or self.qat_epochs < 0 or not 0 < self.qat_lr_scale <= 1:
            raise CompressionError(
                f"compression.quantize needs calibration_batches >= 1, qat_epochs >= 0 and 0 < qat_lr_scale <= 1, got {self.calibration_batches}, {self.qat_epochs} and {self.qat_lr_scale}."
            )
        if self.name in given.before or any(
            isinstance(m, OnnxRuntimeNet) for m in given.net.modules()
        ):
            raise CompressionError(
                "quantize would run twice (compression lists it twice, or the network is already an int8 OnnxRuntimeNet): an int8 ONNX Runtime graph has no float layers left to quantize, and rounding twice only adds error; keep one quantize stage, last in compression=[...]."
            )
        modules = dict(given.net.named_modules())
        for name in self.skip:
            if name not in modules:
                close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise CompressionError(
                    f"compression.quantize.skip names {name!r}, but the {type(given.net).__name__} has no module of that name{hint}; skip takes names as net.named_modules() gives them, e.g. {', '.join(list(n for n in modules if n)[:4])}."
                )
        bad = self._unsupported(given.net)
        if bad:
            layers = ", ".join(f"{n} ({type(m).__name__})" for n, m in bad)
            names = ",".join(n for n, _ in bad)
            dynamic_fits = self.mode != "dynamic" and not Quantize(
                "dynamic", skip=self.skip
            )._unsupported(given.net)
            raise CompressionError(
                f"compression.quantize.mode={self.mode}: {layers} of the {type(given.net).__name__} {'has' if len(bad) == 1 else 'have'} no int8 kernel in ONNX Runtime's {self.mode} quantization; keep {'it' if len(bad) == 1 else 'them'} in float with compression.quantize.skip=[{names}]"
                + (
                    ", or use mode=dynamic, which quantizes only Linear layers."
                    if dynamic_fits
                    else "."
                )
            )

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        import onnxruntime

        float_net = copy.deepcopy(net).cpu().eval()
        folded = fold_batch_norms(float_net)
        if self.mode == "qat":
            tools.log(f"quantize: quantization-aware fine-tuning, {self.qat_epochs} epoch(s)")
            float_net = self._train_aware(float_net, tools)
        model = export_onnx(float_net, tuple(tools.input_shape))
        excluded = nodes_of(model, self.skip)
        if self.mode == "dynamic":
            int8 = quantize_dynamic(model, excluded)
        else:
            batches = calibration_data(tools, self.calibration_batches)
            tools.log(f"quantize: calibrating activation ranges on {len(batches)} batch(es)")
            int8 = quantize_static(model, batches, excluded)
        quantized = OnnxRuntimeNet(int8, tuple(tools.input_shape), tools.num_outputs)
        kinds = self._kinds(float_net)
        kernels = quantized.kernels()
        int8_layers = [n for n, k in kinds.items() if k == "int8"]
        int8_kernels = sum(kernels.get(op, 0) for op in INT8_KERNELS)
        if int8_kernels < len(int8_layers):
            tools.log(
                f"quantize: ONNX Runtime runs {int8_kernels} int8 kernel(s) for {len(int8_layers)} quantized layer(s); the others fell back to float (graph: {kernels})"
            )
        self._details = {
            "mode": self.mode,
            "backend": f"onnxruntime {onnxruntime.__version__}",
            "format": (
                "dynamic: int8 per-channel Linear weights (7-bit range), uint8 activations quantized per batch"
                if self.mode == "dynamic"
                else "QDQ: int8 per-channel weights (7-bit range), uint8 activations (MinMax calibration)"
            ),
            "int8_layers": int8_layers,
            "float_layers": [n for n, k in kinds.items() if k == "float"],
            "skip": list(self.skip),
            "folded_batch_norms": folded,
            "kernels": kernels,
            "weights": quantized.num_weights(),
            "onnx_bytes": {"float": model.ByteSize(), "int8": len(int8)},
        }
        if self.mode != "dynamic":
            self._details["calibration_batches"] = self.calibration_batches
        if self.mode == "qat":
            self._details["qat_epochs"] = self.qat_epochs
            self._details["qat_lr_scale"] = self.qat_lr_scale
        tools.log(
            f"quantize ({self.mode}): {len(self._details['int8_layers'])} int8 layer(s), float: {', '.join(self._details['float_layers']) or 'none'}"
        )
        return quantized

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _skipped(self, name: str) -> bool:
        return any(name == s or name.startswith(s + ".") for s in self.skip)

    def _kinds(self, net: nn.Module) -> dict[str, str]:
        """Each leaf layer's fate: ``int8``, ``pass`` (int8 tensors flow through), ``folded``
        (a batch norm merged into the layer before it), ``float`` (stays float by choice or by
        design) or ``none`` (no int8 path: check refuses it)."""
        folds = dict((bn, layer) for layer, bn in foldable_pairs(net))
        kinds: dict[str, str] = {}
        for name, m in net.named_modules():
            if list(m.children()):
                continue
            if isinstance(m, INT8_LAYERS[self.mode]):
                kind = "int8"
            elif name in folds:
                kind = "folded"
            elif isinstance(m, INT8_PASSTHROUGH):
                kind = "pass"
            elif self.mode == "dynamic" and (
                isinstance(m, DYNAMIC_FLOAT) or not any(True for _ in m.parameters())
            ):
                kind = "float"
            else:
                kind = "none"
            if self._skipped(name) and kind in ("int8", "none"):
                kind = "float"
            kinds[name] = kind
        return kinds

    def _unsupported(self, net: nn.Module) -> list[tuple[str, nn.Module]]:
        modules = dict(net.named_modules())
        return [(n, modules[n]) for n, k in self._kinds(net).items() if k == "none"]

    def _train_aware(self, net: nn.Module, tools: Tools) -> nn.Module:
        """Fine-tune with fake-quantized weights and layer inputs, then drop the fake-quant: the
        trained float weights are what ONNX Runtime quantizes, on the same grid."""
        layers = [n for n, k in self._kinds(net).items() if k == "int8"]
        for name in layers:
            _replace(net, name, FakeQuantized(net.get_submodule(name)))
        net = tools.fine_tune(net.train(), self.qat_epochs, lr_scale=self.qat_lr_scale)
        for name in layers:
            wrapper = net.get_submodule(name)
            assert isinstance(wrapper, FakeQuantized)
            _replace(net, name, wrapper.layer)
        return net.eval()


class OnnxRuntimeNet(nn.Module):
    """An ONNX model run by ONNX Runtime on CPU, as a module: float ``(B, *input_shape)`` in,
    float ``(B, num_outputs)`` out, on the input's device. Inference only (no gradients).

    The model's bytes are a ``uint8`` buffer, so ``torch.save`` and ``state_dict`` carry them;
    the session is built on first use (and again when torch's thread count changes, so latency
    measured with ``torch.set_num_threads(n)`` runs on n threads).

    Args:
        model: the serialized ONNX model (one input ``x``, one output).
        input_shape: shape of one example.
        num_outputs: size of the output.
    """

    def __init__(self, model: bytes, input_shape: tuple[int, ...], num_outputs: int) -> None:
        import numpy as np
        import torch

        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_outputs = int(num_outputs)
        data = np.frombuffer(model, dtype=np.uint8).copy()
        self.register_buffer("onnx_model", torch.from_numpy(data))
        self._session: Any = None
        self._threads = 0
        self._input = "x"

    def forward(self, x: Tensor) -> Tensor:
        import torch

        session = self._session_for(torch.get_num_threads())
        # (B, *input_shape) float32 -> (B, num_outputs)
        inputs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = session.run(None, {self._input: inputs})
        return torch.from_numpy(out).to(x.device)

    def model_bytes(self) -> bytes:
        """The ONNX model, as written by ``onnx.save``."""
        return self.onnx_model.cpu().numpy().tobytes()

    def num_weights(self) -> int:
        """Weights and biases in the graph (int8 or float), found by the torch parameter names
        they keep (``head.weight``, ``head.weight_quantized``, ``head.weight_Transposed_quantized``):
        the float network's parameter count, less folded batch norms and all-zero biases."""
        import re

        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(self.model_bytes()).graph
        name = re.compile(r"\.(weight|bias)(_Transposed)?(_quantized)?$")
        return sum(numpy_helper.to_array(t).size for t in graph.initializer if name.search(t.name))

    def kernels(self) -> dict[str, int]:
        """Operator counts of the graph ONNX Runtime really runs, after its fusions (e.g.
        ``{"QLinearConv": 4, "QGemm": 2, ...}``)."""
        import tempfile
        from pathlib import Path

        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            options.log_severity_level = 3  # not the note that the optimized file is CPU-specific
            ort.InferenceSession(self.model_bytes(), options, providers=["CPUExecutionProvider"])
            graph = onnx.load(options.optimized_model_filepath).graph
        counts: dict[str, int] = {}
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts

    def _session_for(self, threads: int) -> Any:
        if self._session is None or threads != self._threads:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                self.model_bytes(), options, providers=["CPUExecutionProvider"]
            )
            self._threads = threads
            self._input = self._session.get_inputs()[0].name
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        # the session is native and rebuilt from the bytes on first use
        state = self.__dict__.copy()
        state["_session"] = None
        state["_threads"] = 0
        return state

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, num_outputs={self.num_outputs}, bytes={self.onnx_model.numel()}"


class FakeQuantized(nn.Module):
    """A Conv or Linear that sees its input and weight rounded the way ONNX Runtime will round
    them, with gradients passed straight through: the input to uint8 (asymmetric, per tensor,
    over a running min / max of the training inputs that always includes 0, as static
    calibration does), the weight to int8 (symmetric, one scale per output channel,
    ``max|w| / WEIGHT_QMAX``). The layer keeps its own parameters, so optimizers train them.

    Args:
        layer: the wrapped Conv or Linear.
        momentum: weight of each new batch in the running range.
    """

    def __init__(self, layer: nn.Module, momentum: float = 0.01) -> None:
        import torch

        super().__init__()
        self.layer = layer
        self.momentum = momentum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        import torch
        from torch.func import functional_call

        if self.training:
            low, high = x.detach().min().clamp_max(0), x.detach().max().clamp_min(0)
            if bool(self.seen):
                low = self.low + self.momentum * (low - self.low)
                high = self.high + self.momentum * (high - self.high)
            self.low.copy_(low)
            self.high.copy_(high)
            self.seen.fill_(True)
        if bool(self.seen) and float(self.high - self.low) > 0:
            scale = ((self.high - self.low) / 255).reshape(1)
            zero = torch.round(-self.low / scale).to(torch.int32).reshape(1)
            x = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)
        w = self.layer.weight
        # (out, in, ...) -> one scale per output channel
        w_scale = w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-8) / WEIGHT_QMAX
        w_zero = torch.zeros_like(w_scale, dtype=torch.int32)
        w = torch.fake_quantize_per_channel_affine(w, w_scale, w_zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)
        return functional_call(self.layer, {"weight": w}, (x,))


def foldable_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """``(layer, batch_norm)`` names where a batch norm directly follows a Conv or Linear of
    the same width inside an ``nn.Sequential`` (so it can fold into the layer)."""
    pairs = []
    for prefix, m in net.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        children = list(m.named_children())
        for (a, first), (b, second) in zip(children, children[1:], strict=False):
            if any(type(first) is t and type(second) is n for t, n in FOLDABLE) and (
                second.num_features == getattr(first, "out_channels", None)
                or second.num_features == getattr(first, "out_features", None)
            ):
                dot = f"{prefix}." if prefix else ""
                pairs.append((dot + a, dot + b))
    return pairs


def fold_batch_norms(net: nn.Module) -> dict[str, str]:
    """Fold each foldable batch norm into the layer before it (``net`` in eval mode, changed in
    place: the layer gains a bias, the batch norm becomes ``nn.Identity``); ``{bn: layer}``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    folded = {}
    for layer_name, bn_name in foldable_pairs(net):
        layer, bn = net.get_submodule(layer_name), net.get_submodule(bn_name)
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        _replace(net, layer_name, fuse(layer, bn))
        _replace(net, bn_name, nn.Identity())
        folded[bn_name] = layer_name
    return folded


def export_onnx(net: nn.Module, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """The float network as ONNX (dynamo exporter), with a dynamic batch axis."""
    import torch

    example = torch.randn(2, *input_shape)
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    return program.model_proto


def nodes_of(model: onnx.ModelProto, modules: list[str]) -> list[str]:
    """Names of the ONNX nodes that the given torch modules (or their children) exported to,
    read from the exporter's name scopes, or from the weights a node reads."""
    import ast

    if not modules:
        return []
    found = []
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))[:-1]
        weights = [i.rsplit(".", 1)[0] for i in node.input if i.endswith((".weight", ".bias"))]
        owners = [*scopes, *weights]
        if any(o == m or o.startswith(m + ".") for o in owners for m in modules):
            found.append(node.name)
    return found


def calibration_data(tools: Tools, batches: int) -> list[Any]:
    """The first ``batches`` training inputs as float32 numpy arrays."""
    import torch

    out = []
    for x, _ in tools.train_batches():
        out.append(x.detach().to("cpu", torch.float32).numpy())
        if len(out) == batches:
            break
    if not out:
        raise CompressionError("quantize: the training split gave no batch to calibrate on.")
    return out


def quantize_dynamic(model: onnx.ModelProto, excluded: list[str]) -> bytes:
    """Int8 Linear (MatMul, Gemm) weights, per output channel (7-bit, see ``WEIGHT_QMAX``);
    activations quantized at run time."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    return _run_quantizer(
        lambda src, dst: ort_quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        ),
        model,
    )


def quantize_static(model: onnx.ModelProto, batches: list[Any], excluded: list[str]) -> bytes:
    """QDQ int8: weights per output channel (7-bit, see ``WEIGHT_QMAX``), uint8 activations
    with MinMax-calibrated ranges (U8S8, ONNX Runtime's fast combination on x86)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    return _run_quantizer(
        lambda src, dst: ort_quantize_static(
            src,
            dst,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        ),
        model,
    )


def _run_quantizer(quantize: Any, model: onnx.ModelProto) -> bytes:
    """Run an ONNX Runtime quantizer (which reads and writes files) on a pre-processed copy."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        try:
            # shape inference only: the exporter has already folded constants
            quant_pre_process(model, src, skip_optimization=True)
        except Exception:  # noqa: BLE001 (shape inference is advice; the quantizer runs without)
            onnx.save(model, src)
        quantize(src, dst)
        return dst.read_bytes()


def _replace(net: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, new)
