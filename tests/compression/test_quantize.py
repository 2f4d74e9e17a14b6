"""Int8 quantization with ONNX Runtime: every mode keeps the predictions of a digits MLP and CNN
trained a little, really runs int8 kernels on int8 weights, shrinks a 784-512-256 MLP at least
3.5x, saves and reloads to the same outputs, keeps skipped layers in float, and each bad setting
fails in ``check`` with its message."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlx.compression.base import CompressionError, StageInput, Tools
from mlx.compression.quantize import FakeQuantized, OnnxRuntimeNet, Quantize, fold_batch_norms
from mlx.measure import serialized_bytes
from mlx.models import CNN, MLP
from tests.compression.digits_tools import CLASSES, SHAPE, digits_tools


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One torch thread for every test here."""


def make_tools(
    data: dict[str, Any], shape: tuple[int, ...] = SHAPE, seen: list[Any] | None = None
) -> Tools:
    """The shared digits Tools at ``shape``; ``seen`` collects ``(epochs, module types, test
    outputs after training)`` of each fine-tune."""
    tools = digits_tools(data, shape=shape)
    if seen is None:
        return tools
    fine_tune = tools.fine_tune

    def recorded(net: nn.Module, epochs: int, lr_scale: float = 1.0) -> nn.Module:
        net = fine_tune(net, epochs, lr_scale)
        with torch.no_grad():
            out = net.eval()(data["test"][0].reshape(-1, *shape))
        seen.append((epochs, {type(m) for m in net.modules()}, out))
        return net

    return dataclasses.replace(tools, fine_tune=recorded)


@pytest.fixture(scope="module")
def nets(data: dict[str, Any]) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """A small MLP and CNN, each trained three epochs on digits: ``{kind: (net, shape)}``."""
    torch.manual_seed(0)
    out = {
        "mlp": (MLP((64,), CLASSES, hidden=[64, 32], batch_norm=True), (64,)),
        "cnn": (CNN(SHAPE, CLASSES, channels=[8, 16], hidden=32), SHAPE),
    }
    x_train, y_train = data["train"]
    for net, shape in out.values():
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        loader = DataLoader(TensorDataset(x_train.reshape(-1, *shape), y_train), batch_size=64)
        for _ in range(3):
            for x, y in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        net.eval()
    return out


def given(net: nn.Module, shape: tuple[int, ...], before: list[str] | None = None) -> StageInput:
    return StageInput(net, shape, CLASSES, "classification", before or [])


def int8_weights(q: OnnxRuntimeNet) -> int:
    """INT8 initializers (the quantized weights) in the module's ONNX graph."""
    graph = onnx.load_from_string(q.model_bytes()).graph
    return sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2 for t in graph.initializer)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("mode", ["dynamic", "static", "qat"])
def test_int8_keeps_predictions_on_int8_kernels(mode: str, kind: str, nets, data) -> None:
    net, shape = nets[kind]
    state = copy.deepcopy(net.state_dict())
    seen: list[Any] = []
    stage = Quantize(mode, calibration_batches=4, qat_epochs=1)
    stage.check(given(net, shape))
    q = stage.apply(net, make_tools(data, shape, seen))

    x, y = data["test"][0].reshape(-1, *shape), data["test"][1]
    # QAT changes the weights: its int8 network must compute what the fake-quant one learned
    with torch.inference_mode():
        p_float = (seen[0][2] if mode == "qat" else net(x)).softmax(1)
        p_int8 = q(x).softmax(1)
        accuracy = (net(x).argmax(1) == y).float().mean()
    assert q(x[:1]).shape == (1, CLASSES) and p_int8.dtype == torch.float32
    assert (p_float.argmax(1) == p_int8.argmax(1)).float().mean() >= 0.95
    assert (p_float - p_int8).abs().mean() < 0.01
    assert (p_int8.argmax(1) == y).float().mean() >= accuracy - 0.03

    linears = sum(isinstance(m, nn.Linear) for m in net.modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    kernels = stage.details()["kernels"]
    if mode == "dynamic":
        assert kernels.get("DynamicQuantizeMatMul") == linears
        assert int8_weights(q) == linears
        assert stage.details()["float_layers"] == [
            n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)
        ]
    else:
        # the whole chain is int8: fused int8 kernels, no float Gemm / Conv / BatchNorm left
        assert kernels.get("QGemm") == linears
        assert kernels.get("QLinearConv", 0) == convs
        assert not {"Gemm", "MatMul", "Conv", "BatchNormalization"} & set(kernels)
        assert int8_weights(q) == linears + convs
        assert stage.details()["float_layers"] == []
        assert stage.details()["folded_batch_norms"]
    # every weight is in the graph (for parameter counts), batch norms folded into their layers
    folded = copy.deepcopy(net)
    fold_batch_norms(folded)
    assert q.num_weights() == sum(p.numel() for p in folded.parameters())
    if mode == "qat":
        ((epochs, types, _),) = seen
        assert epochs == 1 and FakeQuantized in types
    # the float network given to apply is left as it was
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not any(isinstance(m, FakeQuantized) for m in net.modules())


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_mlp_is_smaller_and_reloads(mode: str, data, tmp_path) -> None:
    torch.manual_seed(0)
    net = MLP((784,), CLASSES, hidden=[512, 256]).eval()
    x_train, y_train = data["train"]
    # digits scaled up to 28 x 28, as MNIST-sized inputs
    images = nn.functional.interpolate(x_train, size=(28, 28), mode="bilinear").reshape(-1, 784)
    tools = make_tools({"train": (images, y_train)}, (784,))
    q = Quantize(mode, calibration_batches=2).apply(net, tools)
    assert serialized_bytes(net) / serialized_bytes(q) >= 3.5

    torch.save(q, tmp_path / "q.pt")
    loaded = torch.load(tmp_path / "q.pt", weights_only=False)
    assert isinstance(loaded, OnnxRuntimeNet)
    x = images[:37]
    with torch.inference_mode():
        assert torch.equal(loaded(x), q(x))
        assert torch.equal(copy.deepcopy(q)(x[:1]), q(x[:1]))
        assert (loaded(x).argmax(1) == net(x).argmax(1)).float().mean() >= 0.95


def test_skip_keeps_a_layer_float(nets, data) -> None:
    net, shape = nets["mlp"]
    stage = Quantize("static", calibration_batches=2, skip=["head"])
    stage.check(given(net, shape))
    q = stage.apply(net, make_tools(data, shape))
    kernels = stage.details()["kernels"]
    assert kernels.get("Gemm") == 1 and kernels.get("QGemm") == 2
    assert stage.details()["float_layers"] == ["head"]
    x = data["test"][0].reshape(-1, *shape)
    with torch.inference_mode():
        assert (net(x).argmax(1) == q(x).argmax(1)).float().mean() >= 0.95


def test_layer_without_int8_kernel_is_named_and_can_be_skipped(data) -> None:
    torch.manual_seed(0)
    net = MLP((64,), CLASSES, hidden=[32, 32], activation="gelu").eval()
    with pytest.raises(CompressionError) as err:
        Quantize("static").check(given(net, (64,)))
    message = str(err.value)
    assert "body.2 (GELU), body.5 (GELU)" in message
    assert "compression.quantize.skip=[body.2,body.5]" in message
    assert "mode=dynamic" in message
    # dynamic mode quantizes only the Linear layers: GELU stays float without asking
    Quantize("dynamic").check(given(net, (64,)))

    stage = Quantize("static", calibration_batches=2, skip=["body.2", "body.5"])
    stage.check(given(net, (64,)))
    q = stage.apply(net, make_tools(data, (64,)))
    assert stage.details()["kernels"].get("QGemm") == 3
    assert stage.details()["float_layers"] == ["body.2", "body.5"]
    x = data["test"][0].reshape(-1, 64)
    with torch.inference_mode():
        assert (net(x).softmax(1) - q(x).softmax(1)).abs().max() < 0.05


class Recurrent(nn.Module):
    """An LSTM over rows of an image, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, 8, 8) -> (B, 8 rows, 8) -> (B, CLASSES)
        return self.head(self.rnn(x.flatten(1, 2))[0][:, -1])


def test_check_refuses_bad_settings(nets) -> None:
    net, shape = nets["cnn"]
    state = copy.deepcopy(net.state_dict())
    modules = [(n, type(m)) for n, m in net.named_modules()]

    with pytest.raises(CompressionError, match="0 < qat_lr_scale <= 1"):
        Quantize("qat", qat_lr_scale=0).check(given(net, shape))
    with pytest.raises(CompressionError, match="quantize would run twice"):
        Quantize().check(given(net, shape, ["prune", "quantize"]))
    with pytest.raises(CompressionError, match=r"skip names 'haed'.*did you mean head\b"):
        Quantize(skip=["haed"]).check(given(net, shape))
    with pytest.raises(CompressionError, match=r"rnn \(LSTM\).*skip=\[rnn\]\.$"):
        Quantize("static").check(given(Recurrent(), SHAPE))
    with pytest.raises(CompressionError, match=r"rnn \(LSTM\).*dynamic quantization"):
        Quantize("dynamic").check(given(Recurrent(), SHAPE))
    Quantize("dynamic", skip=["rnn"]).check(given(Recurrent(), SHAPE))

    # check only reads the network
    assert [(n, type(m)) for n, m in net.named_modules()] == modules
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())

    # an int8 network is not quantized again
    int8 = OnnxRuntimeNet(b"", SHAPE, CLASSES)
    with pytest.raises(CompressionError, match="already an int8 OnnxRuntimeNet"):
        Quantize().check(given(int8, SHAPE))
