"""Structural pruning: every importance really shrinks a trained digits CNN (params and MACs) and
leaves a network that trains, a budget is met without overshooting far, global ranking differs
from per-layer, iterative steps fine-tune after each step, the pruned network saves and reloads,
and each bad setting fails in ``check`` with a message naming its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from mlx.compression.base import CompressionError, StageInput, Tools
from mlx.compression.prune import Prune
from mlx.measure import model_cost
from mlx.models import CNN, MLP
from tests.compression.digits_tools import CLASSES, SHAPE, digits_tools

pytestmark = pytest.mark.usefixtures("one_thread")


def make_tools(data: dict[str, Any], calls: list[int] | None = None) -> Tools:
    """Tools over ``data``; ``calls`` collects each fine-tune's epochs."""
    return digits_tools(data, None if calls is None else lambda net, epochs: calls.append(epochs))


@pytest.fixture(scope="module")
def trained(data: dict[str, Any]) -> nn.Module:
    """A small digits CNN trained a few epochs, so magnitudes and gradients mean something."""
    torch.manual_seed(0)
    net = CNN(SHAPE, CLASSES, channels=[16, 32], hidden=64)
    return make_tools(data).fine_tune(net, 3)


def given(net: nn.Module, before: list[str] | None = None) -> StageInput:
    return StageInput(net, SHAPE, CLASSES, "classification", before or [])


def widths(net: nn.Module) -> list[int]:
    """Output channels / features of each Conv and Linear layer, in order."""
    return [m.weight.shape[0] for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def trains(net: nn.Module) -> None:
    """A forward and backward pass on a batch gives every parameter a gradient."""
    x, y = torch.rand(8, *SHAPE), torch.randint(0, CLASSES, (8,))
    out = net(x)
    assert out.shape == (8, CLASSES)
    nn.functional.cross_entropy(out, y).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor", "bn_scale", "random"])
def test_each_importance_shrinks_the_network(importance, trained, data):
    net = copy.deepcopy(trained)
    before = model_cost(net, SHAPE)
    stage = Prune(importance=importance, ratio=0.5, fine_tune_epochs=0)
    stage.check(given(net))
    out = stage.apply(net, make_tools(data))
    after = model_cost(out, SHAPE)
    assert after["params"] < 0.6 * before["params"]
    assert after["macs"] < 0.6 * before["macs"]
    assert widths(out)[-1] == CLASSES  # the output layer is whole
    trains(out)
    details = stage.details()
    assert details["importance"] == importance
    assert details["before"] == before and details["after"] == after
    assert [s["ratio"] for s in details["steps"]] == [0.5]


def test_mlp_neurons_are_removed(data):
    torch.manual_seed(0)
    net = MLP(SHAPE, CLASSES, hidden=[64, 32])
    out = Prune(ratio=0.25, fine_tune_epochs=0).apply(net, make_tools(data))
    assert widths(out) == [48, 24, CLASSES]
    trains(out)


@pytest.mark.parametrize("key", ["macs", "params"])
def test_budget_is_met_without_overshooting(key, trained, data):
    start = model_cost(trained, SHAPE)[key]
    budget = start // 3
    stage = Prune(ratio=None, fine_tune_epochs=0, **{f"max_{key}": budget})
    stage.check(given(trained))
    out = stage.apply(copy.deepcopy(trained), make_tools(data))
    cost = model_cost(out, SHAPE)[key]
    assert 0.8 * budget <= cost <= budget
    assert stage.details()["target"] == {f"max_{key}": budget}


def test_global_ranking_differs_from_per_layer(trained, data):
    per_layer = Prune(ratio=0.5, fine_tune_epochs=0).apply(copy.deepcopy(trained), make_tools(data))
    ranked = Prune(ratio=0.5, global_pruning=True, fine_tune_epochs=0).apply(
        copy.deepcopy(trained), make_tools(data)
    )
    assert widths(per_layer) == [8, 8, 16, 16, 32, CLASSES]  # every layer halved
    assert widths(ranked) != widths(per_layer)


def test_iterative_steps_fine_tune_after_each(trained, data):
    calls: list[int] = []
    stage = Prune(ratio=0.5, steps=3, fine_tune_epochs=1)
    out = stage.apply(copy.deepcopy(trained), make_tools(data, calls))
    assert calls == [1, 1, 1]
    steps = stage.details()["steps"]
    assert [s["ratio"] for s in steps] == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert steps[0]["params"] > steps[1]["params"] > steps[2]["params"]
    assert make_tools(data).evaluate(out)["val/acc"] > 0.8


def test_iterative_budget_meets_it_at_the_last_step(trained, data):
    calls: list[int] = []
    budget = model_cost(trained, SHAPE)["macs"] // 2
    stage = Prune(ratio=None, max_macs=budget, steps=2, global_pruning=True)
    out = stage.apply(copy.deepcopy(trained), make_tools(data, calls))
    assert calls == [1, 1]
    steps = stage.details()["steps"]
    assert steps[0]["macs"] > budget >= steps[1]["macs"] == model_cost(out, SHAPE)["macs"]


def test_pruned_network_saves_and_reloads(trained, data, tmp_path):
    out = Prune(ratio=0.5, fine_tune_epochs=0).apply(copy.deepcopy(trained), make_tools(data))
    torch.save(out, tmp_path / "net.pt")
    back = torch.load(tmp_path / "net.pt", weights_only=False)
    x = torch.rand(4, *SHAPE)
    out.eval()
    back.eval()
    assert torch.equal(out(x), back(x))
    assert widths(back) == widths(out)


@pytest.mark.parametrize(
    ("settings", "before", "message"),
    [
        ({"ratio": 1.0}, [], "compression.prune.ratio=1.0 must be in [0, 1)"),
        ({"ratio": -0.1}, [], "compression.prune.ratio=-0.1 must be in [0, 1)"),
        ({"ratio": 0.5, "max_params": 1000}, [], "ratio and max_params are set"),
        ({"ratio": None}, [], "but none is set"),
        ({"ratio": None, "max_params": 10**9}, [], "a budget must be below it"),
        ({"ratio": None, "max_macs": 10**12}, [], "compression.prune.max_macs=1000000000000"),
        ({}, ["quantize"], "prune before quantize"),
        ({"steps": 0}, [], "compression.prune.steps=0"),
        ({"importance": "l3"}, [], "compression.prune.importance='l3'"),
    ],
)
def test_bad_settings_fail_in_check(settings, before, message, trained):
    net = copy.deepcopy(trained)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CompressionError) as info:
        Prune(**settings).check(given(net, before))
    assert message in str(info.value)
    # check leaves the network alone
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert net.training


def test_budget_message_names_the_current_size(trained):
    params = model_cost(trained, SHAPE)["params"]
    with pytest.raises(CompressionError, match=f"already has {params} params"):
        Prune(ratio=None, max_params=params).check(given(trained))


def test_bn_scale_needs_batch_norm():
    with pytest.raises(CompressionError, match="has no batch norm"):
        Prune(importance="bn_scale").check(given(MLP(SHAPE, CLASSES)))


def test_a_network_without_an_output_linear_is_refused():
    net = nn.Sequential(nn.Conv2d(1, CLASSES, 8), nn.Flatten())
    with pytest.raises(CompressionError, match="last nn.Linear with 10 outputs"):
        Prune().check(given(net))
