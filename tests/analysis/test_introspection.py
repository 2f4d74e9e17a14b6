"""Introspection: activation statistics against a hand computation, and the flags it raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.introspection import Introspection
from mlx.errors import ConfigError


def _evidence(net: nn.Module, x: np.ndarray, y: np.ndarray, task: str = "classification"):
    net.eval()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.as_tensor(rows, dtype=torch.float32))
        return torch.softmax(out, 1).numpy() if task == "classification" else out[:, 0].numpy()

    return Evidence(task=task, x=x, y=y, outputs=predict(x), predict=predict, net=net, seed=0)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three separable classes in 8 dimensions."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (rng.normal(size=(300, 8)) + 2.0 * np.eye(8)[y]).astype(np.float32)
    return x, y.astype(np.int64)


def _mlp(hidden: int = 16, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 8
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 3))


def test_activation_statistics_equal_a_hand_computation(blobs, tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = blobs
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    section = Introspection(batch=1000).run(_evidence(net, x, y), tmp_path)
    assert section["batch"] == 300  # all rows when the batch is larger than the split
    with torch.no_grad():
        h = net[0](torch.as_tensor(x))
        r = torch.relu(h)
        out = net[3](r)
    layers = {d["layer"]: d for d in section["layers"]}
    assert list(layers) == ["0", "1", "3"]  # dropout repeats its input: left out
    for name, value in (("0", h), ("1", r), ("3", out)):
        assert layers[name]["mean"] == pytest.approx(float(value.mean()), rel=1e-5)
        assert layers[name]["std"] == pytest.approx(float(value.std()), rel=1e-5)
    assert layers["1"]["dead_fraction"] == pytest.approx(float((r == 0).all(dim=0).float().mean()))
    assert layers["0"]["dead_fraction"] is None and layers["1"]["units"] == 16
    # the gradient norms are those of the cross-entropy on the batch
    params = list(net.parameters())
    loss = F.cross_entropy(net(torch.as_tensor(x)), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, params)
    assert section["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert [g["norm"] for g in section["gradients"]] == pytest.approx(
        [float(g.norm()) for g in grads], rel=1e-5
    )
    assert all(p.grad is None for p in params)  # the network's own gradients are untouched


def test_a_healthy_trained_mlp_raises_no_flag(blobs, tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = blobs
    net = _mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(torch.as_tensor(x)), torch.as_tensor(y)).backward()
        opt.step()
    section = Introspection(batch=128).run(_evidence(net, x, y), tmp_path)
    assert section["batch"] == 128
    assert section["flags"] == []
    assert section["loss"] < 0.5


def test_a_dead_layer_is_flagged(blobs, tmp_path: Path) -> None:
    """A ReLU after a bias of -100 outputs zero for every example: the layer is dead."""
    torch.manual_seed(0)
    x, y = blobs
    net = _mlp()
    with torch.no_grad():
        net[2].bias.fill_(-100.0)
    section = Introspection().run(_evidence(net, x, y), tmp_path)
    dead = {d["layer"]: d["dead_fraction"] for d in section["layers"]}
    assert dead["3"] == 1.0 and dead["1"] < 0.5
    assert len(section["flags"]) == 2  # the dead layer, and no gradient reaching layer 0
    assert section["flags"][0].startswith("dead layer: 3 (ReLU) has 100% of its 16 units")
    assert section["flags"][1].startswith("vanishing gradients")


def test_exploding_gradients_are_flagged(blobs, tmp_path: Path) -> None:
    """A deep linear stack with every weight scaled up by 8: gradients in the billions."""
    torch.manual_seed(0)
    x, _ = blobs
    y = x.sum(axis=1).astype(np.float32)
    net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(6)], nn.Linear(8, 1))
    with torch.no_grad():
        for layer in net:
            layer.weight.mul_(8.0)
    section = Introspection(batch=64).run(_evidence(net, x, y, task="regression"), tmp_path)
    assert max(g["norm"] for g in section["gradients"]) > 1e6
    assert len(section["flags"]) == 1
    assert section["flags"][0].startswith("exploding gradients: 14 parameter(s) have a gradient")


def test_vanishing_gradients_are_flagged(blobs, tmp_path: Path) -> None:
    """Through twelve sigmoids (slope at most 1/4 each) the first layer's gradient fades to
    less than a thousandth of the last layer's."""
    torch.manual_seed(0)
    x, y = blobs
    layers: list[nn.Module] = [nn.Linear(8, 16), nn.Sigmoid()]
    for _ in range(11):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    net = nn.Sequential(*layers, nn.Linear(16, 3))
    section = Introspection(batch=64).run(_evidence(net, x, y), tmp_path)
    norms = [g["norm"] for g in section["gradients"] if len(g["shape"]) == 2]
    assert norms[0] / norms[-1] < 1e-3
    assert len(section["flags"]) == 1
    assert section["flags"][0].startswith("vanishing gradients: the first layer's weight")


def test_the_gradient_ratio_flags_both_ways() -> None:
    def grads(first: float, last: float) -> list[dict]:
        return [
            {"parameter": "0.weight", "shape": [4, 4], "norm": first},
            {"parameter": "0.bias", "shape": [4], "norm": 1e9},
            {"parameter": "2.weight", "shape": [2, 4], "norm": last},
        ]

    check = Introspection(gradient_ratio=100.0, max_gradient_norm=1e12)
    assert check.flags([], grads(1.0, 0.02)) == []
    assert check.flags([], grads(1.0, 0.009))[0].startswith("exploding gradients: the first")
    assert check.flags([], grads(0.009, 1.0))[0].startswith("vanishing gradients: the first")
    assert check.flags([], grads(0.0, 1.0))[0].startswith("vanishing gradients: 1 weight")
    assert check.flags([], grads(None, 1.0))[0].startswith("exploding gradients: 0.weight")


def test_a_model_without_gradients_is_refused() -> None:
    info = DataInfo(
        task="classification",
        columns=None,
        categorical=[],
        feature_names=None,
        class_names=None,
        input_shape=[1, 8, 8],
        gradients=False,
    )
    with pytest.raises(ConfigError, match="introspection"):
        Introspection().check(info)
    Introspection().check(DataInfo(**{**info.__dict__, "gradients": True}))
