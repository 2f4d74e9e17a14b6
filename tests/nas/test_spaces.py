"""NAS spaces: they build for the data, their choices are config keys, a sampled architecture
freezes to a plain network that trains, architecture() rebuilds the same network, bad
configurations fail with clear messages; and the cost of a network matches a hand count."""

from __future__ import annotations

import functools
import random
import re
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mlx.measure import latency_ms, model_cost

# mlx.nas.spaces imports NNI quietly, so the tests import NNI's names after it, where they use them
from mlx.nas.spaces import CellCNN, MacroCNN, MacroMLP, NasError, architecture, space_choices

if TYPE_CHECKING:
    from nni.nas.nn.pytorch import ModelSpace

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DIGITS = (1, 8, 8)
MNIST = (1, 28, 28)
TABULAR = (30,)
SPACES = [
    (MacroCNN, DIGITS),
    (MacroCNN, MNIST),
    (CellCNN, DIGITS),
    (CellCNN, MNIST),
    (MacroMLP, DIGITS),
    (MacroMLP, MNIST),
    (MacroMLP, TABULAR),
]


def sample(choices: dict[str, list[Any]], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {label: rng.choice(values) for label, values in choices.items()}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from mlx.data import Digits

    loaded = Digits()()
    x = torch.as_tensor(loaded.features[:128])  # (128, 1, 8, 8)
    y = torch.as_tensor(loaded.target[:128])  # (128,)
    return x, y


def space_id(value: Any) -> str:
    return value.__name__ if isinstance(value, type) else "x".join(map(str, value))


@pytest.mark.parametrize(("space", "shape"), SPACES, ids=space_id)
def test_space_builds_and_a_sample_runs(space: type[ModelSpace], shape: tuple[int, ...]) -> None:
    built = space(input_shape=shape, num_outputs=10)
    choices = space_choices(built)
    assert choices
    assert all(IDENTIFIER.match(label) for label in choices)
    assert all(len(values) >= 1 for values in choices.values())
    net = built.freeze(sample(choices, seed=0))
    assert net(torch.randn(4, *shape)).shape == (4, 10)


@pytest.mark.parametrize("space", [MacroCNN, CellCNN, MacroMLP], ids=space_id)
@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_architecture_trains_on_digits(
    space: type[ModelSpace], seed: int, digits: Any
) -> None:
    from nni.mutable import Mutable

    torch.manual_seed(seed)
    built = space(input_shape=DIGITS, num_outputs=10)
    net = built.freeze(sample(space_choices(built), seed))
    assert not any(isinstance(m, Mutable) for m in net.modules() if m is not net)
    x, y = digits
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)

    net.train()
    before = loss_fn(net(x), y)
    optimizer.zero_grad()
    before.backward()
    # no weights of operations that were not chosen: every parameter takes part in the loss
    assert all(p.grad is not None for p in net.parameters())
    optimizer.step()
    after = loss_fn(net(x), y)
    assert torch.isfinite(after)
    assert after.item() != pytest.approx(before.item(), abs=1e-6)


@pytest.mark.parametrize(
    ("space", "shape", "kwargs"),
    [
        (MacroCNN, DIGITS, {"widths": [8, 16], "stages": 3}),
        (CellCNN, MNIST, {"channels": 8, "num_cells": 4}),
        (MacroMLP, TABULAR, {"depth": [1, 3]}),
    ],
    ids=["MacroCNN", "CellCNN", "MacroMLP"],
)
def test_architecture_round_trip(
    space: type[ModelSpace], shape: tuple[int, ...], kwargs: dict[str, Any]
) -> None:
    built = space(input_shape=shape, num_outputs=3, **kwargs)
    arch = sample(space_choices(built), seed=3)
    searched = built.freeze(arch)
    # as an exported experiment passes it: a partial of the space, the arch as a DictConfig
    retrained = architecture(
        functools.partial(space, **kwargs), OmegaConf.create(arch), shape, num_outputs=3
    )
    assert n_params(retrained) == n_params(searched)
    assert [type(m) for m in retrained.modules()] == [type(m) for m in searched.modules()]
    assert retrained(torch.randn(2, *shape)).shape == (2, 3)


def test_cell_drops_the_preprocessing_of_unread_inputs() -> None:
    built = CellCNN(input_shape=DIGITS, num_outputs=10, num_cells=1, reductions=0, num_nodes=1)
    arch = {label: values[0] for label, values in space_choices(built).items()}
    arch |= {"normal_input_0_0": [1], "normal_input_0_1": [1]}  # only the previous cell
    net = built.freeze(arch)
    assert net.cells[0].pre_pp is None and net.cells[0].pre_p is not None
    assert net(torch.randn(2, *DIGITS)).shape == (2, 10)


def test_labels_and_values() -> None:
    cell = space_choices(CellCNN(input_shape=DIGITS, num_outputs=10))
    assert cell["normal_op_0_0"] == ["identity", "maxpool3x3", "avgpool3x3"] + [
        "sepconv3x3",
        "sepconv5x5",
        "dilconv3x3",
    ]
    assert cell["reduce_input_2_1"] == [[0], [1], [2], [3]]
    macro = space_choices(MacroCNN(input_shape=DIGITS, num_outputs=10))
    assert macro["stage1_width"] == [16, 32, 64]
    assert macro["stage0_depth"] == [2, 3, 4]
    assert macro["stage0_layer3_skip"] == ["none", "add"]
    assert macro["stage0_layer0_branch"][0] == "none"
    mlp = space_choices(MacroMLP(input_shape=TABULAR, num_outputs=1))
    assert set(mlp) == {"depth", "layer0_width", "layer1_width", "layer2_width"} | {
        "activation",
        "dropout",
    }
    # a list of one value fixes the decision: no choice, no label
    fixed = space_choices(MacroMLP(input_shape=TABULAR, num_outputs=1, depth=[2], dropouts=[0.1]))
    assert "depth" not in fixed and "dropout" not in fixed and "layer2_width" not in fixed


def test_space_choices_lists_input_subsets_and_rejects_what_it_cannot_list() -> None:
    import nni
    from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace

    class AnyInputs(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.pick = InputChoice(3, None, label="pick")

    picks = space_choices(AnyInputs())["pick"]
    assert picks == [[], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]

    class Continuous(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.add_mutable(nni.uniform("lr", 0.0, 1.0))

    with pytest.raises(NasError, match="lr.*cannot be\\s+listed"):
        space_choices(Continuous())

    class Scoped(ModelSpace, label_prefix="net"):
        def __init__(self) -> None:
            super().__init__()
            self.op = LayerChoice([nn.Identity(), nn.ReLU()], label="op")

    with pytest.raises(NasError, match="'net/op' cannot be a config key"):
        space_choices(Scoped())


def bad(space: Callable[..., ModelSpace], shape: tuple[int, ...], **kwargs: Any) -> Callable:
    return functools.partial(space, input_shape=shape, num_outputs=10, **kwargs)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (bad(MacroCNN, DIGITS, ops=[]), ["ops is empty"]),
        (bad(MacroCNN, DIGITS, widths=[]), ["widths is empty"]),
        (bad(MacroMLP, TABULAR, depth=[]), ["depth is empty"]),
        (bad(CellCNN, DIGITS, ops=["sepconv7x7"]), ["'sepconv7x7'", "did you mean 'sepconv5x5'"]),
        (bad(MacroCNN, TABULAR), ["(30,)", "(C, H, W)", "search_space=macro_mlp"]),
        (bad(CellCNN, TABULAR), ["(30,)", "search_space=macro_mlp"]),
        (
            bad(CellCNN, DIGITS, reductions=4, num_cells=4),
            ["reductions=4", "8x8 -> 4x4 -> 2x2 -> 1x1 -> below 1x1", "at most 3"],
        ),
        (bad(MacroCNN, DIGITS, stages=4), ["stages=4", "below 1x1", "at most 3"]),
        (bad(CellCNN, DIGITS, channels=0), ["channels=0", "positive"]),
        (bad(CellCNN, DIGITS, num_cells=-1), ["num_cells=-1", "positive"]),
        (bad(CellCNN, DIGITS, num_nodes=0), ["num_nodes=0", "positive"]),
        (bad(CellCNN, DIGITS, num_cells=1), ["reductions=2", "num_cells=1"]),
        (bad(MacroCNN, DIGITS, depth=[0, 2]), ["depth=[0, 2]", "positive integer"]),
        (bad(MacroCNN, DIGITS, widths=[16, 16]), ["more than once"]),
        (bad(MacroMLP, TABULAR, activations=["rleu"]), ["'rleu'", "did you mean 'relu'"]),
        (bad(MacroMLP, TABULAR, dropouts=[0.1, 1.0]), ["dropouts", "1.0", "[0, 1)"]),
    ],
)
def test_bad_space_configuration(build: Callable[[], ModelSpace], words: list[str]) -> None:
    with pytest.raises(NasError) as info:
        build()
    message = str(info.value)
    for word in words:
        assert word in message


def test_bad_architecture() -> None:
    built = CellCNN(input_shape=DIGITS, num_outputs=10)
    arch = {label: values[0] for label, values in space_choices(built).items()}
    del arch["normal_op_1_0"]
    arch |= {"normal_op_1_9": "identity", "reduce_op_0_0": "sepconv", "reduce_input_1_0": 1}
    with pytest.raises(NasError) as info:
        architecture(CellCNN, arch, DIGITS, 10)
    message = str(info.value)
    assert "normal_op_1_9 (did you mean 'normal_op_1_" in message
    assert "misses normal_op_1_0 (one of [identity," in message
    assert "reduce_op_0_0='sepconv' is not one of" in message
    assert "reduce_input_1_0=1 is not one of [[0], [1], [2]]" in message


def test_architecture_takes_a_number_as_its_candidate_but_not_a_bool() -> None:
    built = MacroMLP(input_shape=TABULAR, num_outputs=1)
    arch = {label: values[-1] for label, values in space_choices(built).items()}
    net = architecture(MacroMLP, arch | {"layer0_width": 128.0}, TABULAR, 1)
    assert net.layers[0][0].out_features == 128
    with pytest.raises(NasError, match="depth=True is not one of"):
        architecture(MacroMLP, arch | {"depth": True}, TABULAR, 1)


@pytest.mark.parametrize(
    ("space", "shape", "kwargs"),
    [
        (MacroCNN, DIGITS, {"widths": [8, 16], "depth": [1, 2]}),
        (CellCNN, DIGITS, {"channels": 8}),
        # a choice of dropout rate has no supernet form: one-shot searches fix it
        (MacroMLP, TABULAR, {"dropouts": [0.1]}),
    ],
    ids=["MacroCNN", "CellCNN", "MacroMLP"],
)
@pytest.mark.parametrize("strategy", ["DARTS", "RandomOneShot"])
def test_one_shot_strategies_turn_the_spaces_into_supernets(
    space: type[ModelSpace], shape: tuple[int, ...], kwargs: dict[str, Any], strategy: str
) -> None:
    import nni.nas.strategy
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    built = space(input_shape=shape, num_outputs=10, **kwargs)
    supernet = getattr(nni.nas.strategy, strategy)().mutate_model(built)
    parts = [m for m in supernet.modules() if isinstance(m, BaseSuperNetModule)]
    memo: dict[str, Any] = {}
    for part in parts:
        memo.update(part.resample(memo=memo))
    supernet(torch.randn(2, *shape)).sum().backward()
    exported: dict[str, Any] = {}
    for part in parts:
        exported.update(part.export(memo=exported))
    assert set(exported) == set(space_choices(space(input_shape=shape, num_outputs=10, **kwargs)))


def test_model_cost_matches_a_hand_count() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 8 * 8, 10))
    conv.train()
    # conv: 2 * (9 + 1) params, 8 * 8 * 2 * 9 MACs; linear: 128 * 10 + 10 params, 1,280 MACs
    assert model_cost(conv, DIGITS) == {"params": 20 + 1290, "macs": 1152 + 1280}
    assert conv.training  # the network keeps its mode
    assert model_cost(nn.Linear(30, 4), TABULAR) == {"params": 124, "macs": 120}


def test_latency_and_cost_of_an_architecture() -> None:
    built = CellCNN(input_shape=DIGITS, num_outputs=10)
    net = built.freeze(sample(space_choices(built), seed=0))
    cost = model_cost(net, DIGITS)
    assert cost["params"] == n_params(net) and cost["macs"] > cost["params"]
    ms = latency_ms(net, DIGITS, repeats=3)
    assert isinstance(ms, float) and ms > 0
    assert net.training
    with pytest.raises(ValueError, match="repeats=0"):
        latency_ms(net, DIGITS, repeats=0)


def test_cost_module_does_not_import_nni() -> None:
    code = "import sys, mlx.measure; assert 'nni' not in sys.modules; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
