"""Lottery tickets: after k rounds a share 1 - (1 - rate)^k of the weights is zero, the masks are
made permanent, the survivors are rewound to their initial (or early) values before each
training, the details list every round, and bad settings or a state that no longer fits the
network fail with clear messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from mlx.compression.base import CompressionError, StageInput, Tools
from mlx.compression.lottery import LotteryTicket
from mlx.compression.prune import Prune
from mlx.models import CNN, MLP
from tests.compression.digits_tools import CLASSES, SHAPE, digits_tools

pytestmark = pytest.mark.usefixtures("one_thread")


def make_tools(data: dict[str, Any], seen: list[dict[str, torch.Tensor]] | None = None) -> Tools:
    """Tools over ``data``; ``seen`` keeps the weights each fine-tune starts from."""
    if seen is None:
        return digits_tools(data)
    return digits_tools(
        data, lambda net, epochs: seen.append({k: v.clone() for k, v in weights(net).items()})
    )


def weights(net: nn.Module) -> dict[str, torch.Tensor]:
    """The effective weight and bias of each Linear and Conv layer (masked ones included)."""
    return {
        f"{name}.{attr}": getattr(m, attr).detach()
        for name, m in net.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
        for attr in ("weight", "bias")
        if getattr(m, attr) is not None
    }


def start(net: nn.Module, data: dict[str, Any], seen=None) -> tuple[nn.Module, Tools]:
    """``net`` trained two epochs, with tools that know its initial and first-epoch weights."""
    tools = make_tools(data, seen)
    tools.initial_state = copy.deepcopy(net.state_dict())
    make_tools(data).fine_tune(net, 1)
    tools.early_state = copy.deepcopy(net.state_dict())
    make_tools(data).fine_tune(net, 1)
    return net, tools


def given(net: nn.Module, before: list[str] | None = None) -> StageInput:
    return StageInput(net, SHAPE, CLASSES, "classification", before or [])


def test_sparsity_grows_by_rate_each_round(data):
    torch.manual_seed(0)
    net, tools = start(MLP(SHAPE, CLASSES, hidden=[64, 32]), data)
    stage = LotteryTicket(rounds=3, rate=0.2, epochs_per_round=1)
    stage.check(given(net))
    out = stage.apply(net, tools)
    rounds = stage.details()["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    for r in rounds:
        assert r["sparsity"] == pytest.approx(1 - 0.8 ** r["round"], abs=0.005)
        assert set(r) == {"round", "sparsity", "val/acc", "test/acc"}
    assert rounds[-1]["val/acc"] > 0.5  # one epoch from initialisation: far above chance
    # permanent: plain parameters, no masks or hooks left, and the zeros are in the weights
    assert not any(k.endswith(("_mask", "_orig")) for k in out.state_dict())
    assert not any(m._forward_pre_hooks for m in out.modules())
    layers = [m for m in out.modules() if isinstance(m, nn.Linear)]
    assert all(isinstance(m.weight, nn.Parameter) for m in layers)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    assert zeros / total == pytest.approx(1 - 0.8**3, abs=0.005)
    assert stage.details()["sparsity"] == pytest.approx(zeros / total)


def test_the_zeros_survive_a_forward_backward_and_a_reload(data, tmp_path):
    torch.manual_seed(0)
    net, tools = start(MLP(SHAPE, CLASSES, hidden=[32]), data)
    out = LotteryTicket(rounds=2, rate=0.5, epochs_per_round=1).apply(net, tools)
    zero = {k: v == 0 for k, v in weights(out).items() if k.endswith("weight")}
    nn.functional.cross_entropy(out(torch.rand(4, *SHAPE)), torch.arange(4)).backward()
    torch.save(out, tmp_path / "net.pt")
    back = torch.load(tmp_path / "net.pt", weights_only=False)
    share = sum(int(m.sum()) for m in zero.values()) / sum(m.numel() for m in zero.values())
    assert share == pytest.approx(0.75, abs=0.005)
    for k, mask in zero.items():
        assert (weights(back)[k][mask] == 0).all()


@pytest.mark.parametrize("rewind", ["init", "early"])
def test_survivors_are_rewound_before_each_training(rewind, data):
    torch.manual_seed(0)
    seen: list[dict[str, torch.Tensor]] = []
    net, tools = start(CNN(SHAPE, CLASSES, channels=[8], hidden=16), data, seen)
    state = tools.initial_state if rewind == "init" else tools.early_state
    trained = {k: v.clone() for k, v in weights(net).items()}
    LotteryTicket(rounds=2, rate=0.3, epochs_per_round=1, rewind=rewind).apply(net, tools)
    assert len(seen) == 3  # one training per round, then the final ticket's
    assert all(torch.equal(seen[0][k], v) for k, v in trained.items())  # round 0: as handed in
    for k_rounds, before in enumerate(seen[1:], start=1):
        for k, v in before.items():
            survivors = v != 0
            assert torch.equal(v[survivors], state[k][survivors]), k
        pruned = [(v == 0).sum().item() for k, v in before.items() if k.endswith("weight")]
        total = sum(v.numel() for k, v in before.items() if k.endswith("weight"))
        assert sum(pruned) / total == pytest.approx(1 - 0.7**k_rounds, abs=0.005)


@pytest.mark.parametrize(
    ("settings", "before", "message"),
    [
        ({"rate": 0.0}, [], "compression.lottery.rate=0.0 must be in (0, 1)"),
        ({"rate": 1.0}, [], "compression.lottery.rate=1.0 must be in (0, 1)"),
        ({"rounds": 0}, [], "compression.lottery.rounds=0 must be at least 1"),
        ({}, ["quantize"], "lottery before quantize"),
        ({}, ["prune"], "lottery must come before prune"),
    ],
)
def test_bad_settings_fail_in_check(settings, before, message):
    with pytest.raises(CompressionError) as info:
        LotteryTicket(**settings).check(given(MLP(SHAPE, CLASSES), before))
    assert message in str(info.value)


def test_early_rewinding_needs_the_early_state(data):
    net, tools = start(MLP(SHAPE, CLASSES, hidden=[16]), data)
    tools.early_state = None
    with pytest.raises(CompressionError, match="early rewinding needs the weights after the first"):
        LotteryTicket(rewind="early").apply(net, tools)


def test_a_state_that_no_longer_fits_is_refused_before_training(data):
    torch.manual_seed(0)
    seen: list[dict[str, torch.Tensor]] = []
    net, tools = start(MLP(SHAPE, CLASSES, hidden=[16]), data, seen)
    pruned = Prune(ratio=0.5, fine_tune_epochs=0).apply(net, make_tools(data))
    with pytest.raises(CompressionError, match="of another shape: body.1.bias") as info:
        LotteryTicket().apply(pruned, tools)
    assert "lottery must come before prune" in str(info.value)
    assert seen == []
