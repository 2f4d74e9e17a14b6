"""One-shot NAS: NNI's five one-shot strategies train a supernet on digits and export an
architecture that builds; the pairs a strategy cannot search are refused before any training."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

from mlx.nas.oneshot import OPTIONS, is_one_shot

STRATEGIES = list(OPTIONS)  # DARTS, GumbelDARTS, Proxyless, ENAS, RandomOneShot
# the bar for a refusal is "before training"; a loaded CI box gets some room
REFUSAL_S = 4.0


def tianshou_05() -> bool:
    try:
        return version("tianshou").startswith("0.5.")
    except PackageNotFoundError:
        return False


HAS_RL = tianshou_05()
NEEDS_RL = pytest.mark.skipif(
    not HAS_RL, reason="ENAS's controller needs tianshou 0.5 (pip install 'tianshou>=0.5.1,<0.6')"
)


def strategy(name: str, **kwargs: Any) -> Any:
    from mlx.nas.oneshot import _import_nni

    _import_nni()  # without its warnings about torch's newer names
    import nni.nas.strategy as strategies

    return getattr(strategies, name)(**kwargs)


def params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=NEEDS_RL) if n == "ENAS" else n for n in names]


@pytest.fixture(scope="module")
def digits() -> Any:
    from mlx.data import ArrayDataModule, Digits

    dm = ArrayDataModule(Digits(), batch_size=64)
    dm.setup("fit")
    return dm


def tiny_space() -> Any:
    """A space of each NNI primitive a one-shot strategy turns into a supernet: a layer choice,
    a repeat (depth) and an input choice. Digits (B, 1, 8, 8) -> 10 classes."""
    from mlx.nas.oneshot import _import_nni

    _import_nni()
    from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace, Repeat
    from torch import Tensor, nn

    class Tiny(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.stem = LayerChoice(
                {"conv3x3": nn.Conv2d(1, 4, 3, padding=1), "conv1x1": nn.Conv2d(1, 4, 1)},
                label="stem",
            )
            self.body = Repeat(
                lambda i: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
                (1, 2),
                label="depth",
            )
            self.skip = InputChoice(2, 1, label="skip")
            self.head = nn.Linear(4 * 8 * 8, 10)

        def forward(self, x: Tensor) -> Tensor:
            x = self.stem(x)  # (B, 4, 8, 8)
            x = self.skip([x, self.body(x)])  # (B, 4, 8, 8)
            return self.head(x.flatten(1))  # (B, 10)

    return Tiny()


def check_arch(space: Any, arch: dict[str, Any], input_shape: tuple[int, ...]) -> None:
    """The architecture names every choice of the space once, in plain values, and builds."""
    import torch
    import yaml

    assert set(arch) == set(space.simplify())
    assert yaml.safe_load(yaml.safe_dump(arch)) == arch  # plain YAML values
    net = space.freeze(arch)
    out = net(torch.zeros(2, *input_shape))
    assert out.shape[0] == 2


# ---- every strategy, one short epoch ----------------------------------------------------------


@pytest.mark.parametrize("name", params(STRATEGIES))
def test_each_strategy_searches_a_small_space(name: str, digits: Any) -> None:
    from mlx.nas.oneshot import search_one_shot

    space = tiny_space()
    result = search_one_shot(
        space, strategy(name), digits, max_epochs=1, lr=3e-3, limit_train_batches=3
    )
    check_arch(space, result.arch, digits.input_shape)
    assert result.seconds > 0
    [row] = result.history
    assert row["epoch"] == 0
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(row)
    assert all(math.isfinite(v) for v in row.values())
    assert result.val_metric == row["val/acc"]
    assert 0.0 <= result.val_metric <= 1.0


def test_is_one_shot_without_importing_nni() -> None:
    code = (
        "import sys\n"
        "from mlx.nas.oneshot import is_one_shot\n"
        "assert is_one_shot('nni.nas.strategy.DARTS')\n"
        "assert is_one_shot('nni.nas.oneshot.pytorch.strategy.RandomOneShot')\n"
        "assert not is_one_shot('nni.nas.strategy.RegularizedEvolution')\n"
        "assert not is_one_shot('optuna.samplers.TPESampler')\n"
        "assert 'nni' not in sys.modules and 'torch' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_is_one_shot_on_objects() -> None:
    for name in STRATEGIES:
        assert is_one_shot(strategy(name))
        assert is_one_shot(type(strategy(name)))
    assert not is_one_shot(strategy("RegularizedEvolution"))
    assert not is_one_shot(object())


def test_search_is_seeded_and_leaves_its_inputs_alone(digits: Any) -> None:
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    from mlx.nas.oneshot import search_one_shot

    space, darts = tiny_space(), strategy("DARTS", arc_learning_rate=0.01)
    runs = [
        search_one_shot(space, darts, digits, max_epochs=2, lr=3e-3, limit_train_batches=3, seed=7)
        for _ in range(2)
    ]
    assert runs[0].arch == runs[1].arch
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    assert len(runs[0].history) == 2
    # the architecture weights moved: DARTS logs the choices' probabilities
    probs = {k: v for k, v in runs[0].history[-1].items() if k.startswith("prob/stem/")}
    assert len(probs) == 2 and math.isclose(sum(probs.values()), 1.0, rel_tol=1e-5)
    # the space is no supernet, the data module has its own loaders, the strategy is unused
    assert not any(isinstance(m, BaseSuperNetModule) for m in space.modules())
    assert "train_dataloader" not in vars(digits) and "val_dataloader" not in vars(digits)
    check_arch(space, runs[0].arch, digits.input_shape)


def test_no_files_without_log_dir(digits: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from mlx.nas.oneshot import search_one_shot

    monkeypatch.chdir(tmp_path)
    search_one_shot(
        tiny_space(),
        strategy("RandomOneShot"),
        digits,
        max_epochs=1,
        lr=3e-3,
        limit_train_batches=2,
    )
    assert list(tmp_path.iterdir()) == []

    logs = tmp_path / "logs"
    search_one_shot(
        tiny_space(),
        strategy("RandomOneShot"),
        digits,
        max_epochs=1,
        lr=3e-3,
        limit_train_batches=2,
        log_dir=logs,
    )
    assert list(logs.rglob("metrics.csv")) and list(logs.rglob("*.ckpt"))
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]


def test_regression_reports_the_validation_loss() -> None:
    from mlx.data import ArrayDataModule, SklearnTabular
    from mlx.nas.oneshot import search_one_shot
    from mlx.nas.spaces import MacroMLP

    dm = ArrayDataModule(SklearnTabular("diabetes"), batch_size=32, standardize=True)
    dm.setup("fit")
    space = MacroMLP(dm.input_shape, dm.num_outputs, widths=[8, 16], depth=[1, 2], dropouts=[0.0])
    result = search_one_shot(space, strategy("DARTS"), dm, max_epochs=1, lr=1e-2)
    [row] = result.history
    assert {"train/loss", "train/mae", "train/r2", "val/loss", "val/mae", "val/r2"} <= set(row)
    assert result.val_metric == row["val/loss"] > 0
    check_arch(space, result.arch, dm.input_shape)


# ---- the real spaces: which pairs work, and the refusals --------------------------------------


def real_space(kind: str, input_shape: tuple[int, ...]) -> Any:
    """mlx's spaces, small. ``macro_cnn`` and ``macro_mlp`` choose channel widths (a
    MutableConv2d or MutableLinear argument); ``macro_mlp_dropout`` also a dropout rate."""
    from mlx.nas.spaces import CellCNN, MacroCNN, MacroMLP

    if kind == "macro_cnn":
        return MacroCNN(
            input_shape, 10, ops=["identity", "conv3x3"], widths=[4, 8], depth=[1, 2], stages=1
        )
    if kind == "macro_cnn_fixed_width":
        return MacroCNN(
            input_shape, 10, ops=["identity", "conv3x3"], widths=[4], depth=[1, 2], stages=1
        )
    if kind == "cell":
        ops = ["identity", "maxpool3x3", "sepconv3x3"]
        return CellCNN(input_shape, 10, channels=4, num_cells=1, num_nodes=2, reductions=0, ops=ops)
    if kind == "macro_mlp":
        return MacroMLP(input_shape, 10, widths=[8, 16], depth=[1, 2], dropouts=[0.0])
    if kind == "macro_mlp_dropout":
        return MacroMLP(input_shape, 10, widths=[8], depth=[1, 2], dropouts=[0.0, 0.2])
    raise AssertionError(kind)


# (space, strategy) pairs that NNI 3.0 cannot search, and what the refusal names
REFUSED = {
    ("macro_cnn", "Proxyless"): ["MutableConv2d", "stage0_width", "strategy=darts"],
    ("macro_mlp", "Proxyless"): ["MutableLinear", "layer0_width", "strategy=darts"],
    **{
        ("macro_mlp_dropout", name): ["MutableDropout", "'dropout'", "single candidate"]
        for name in STRATEGIES
    },
}
SPACES = ["macro_cnn", "macro_cnn_fixed_width", "cell", "macro_mlp", "macro_mlp_dropout"]
WORKS = [(s, n) for s in SPACES for n in STRATEGIES if (s, n) not in REFUSED]


@pytest.mark.parametrize(
    ("kind", "name"),
    [pytest.param(s, n, marks=NEEDS_RL if n == "ENAS" else ()) for s, n in WORKS],
)
def test_check_accepts(kind: str, name: str, digits: Any) -> None:
    from mlx.nas.oneshot import check_one_shot

    check_one_shot(real_space(kind, digits.input_shape), strategy(name))


class Untouchable:
    """A data module stand-in that fails the test if the search gets as far as the data."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the search used the data ({name}) before refusing")


@pytest.mark.parametrize(("kind", "name"), sorted(REFUSED))
def test_check_refuses_before_training(kind: str, name: str, digits: Any) -> None:
    from mlx.nas.oneshot import search_one_shot
    from mlx.nas.spaces import NasError

    space = real_space(kind, digits.input_shape)
    started = time.perf_counter()
    with pytest.raises(NasError) as info:
        search_one_shot(space, strategy(name), Untouchable(), max_epochs=1, lr=1e-3)
    seconds = time.perf_counter() - started
    message = str(info.value)
    assert seconds < REFUSAL_S, f"refused after {seconds:.2f} s"
    assert message.startswith(f"strategy={OPTIONS[name]} ({name}) cannot search")
    assert "\n" not in message
    for needle in REFUSED[(kind, name)]:
        assert needle in message, message
    assert "multi-trial strategy" in message


def test_enas_refuses_a_choice_of_several_inputs() -> None:
    from nni.nas.nn.pytorch import InputChoice, ModelSpace
    from torch import Tensor, nn

    from mlx.nas.oneshot import check_one_shot
    from mlx.nas.spaces import NasError

    class TwoOfThree(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.branches = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
            self.pick = InputChoice(3, 2, label="pick")

        def forward(self, x: Tensor) -> Tensor:
            return self.pick([b(x) for b in self.branches])

    with pytest.raises(NasError, match="input choice 'pick'.*one input at a time, not 2"):
        check_one_shot(TwoOfThree(), strategy("ENAS"))
    check_one_shot(TwoOfThree(), strategy("DARTS"))


def test_refusals_of_what_is_not_a_one_shot_search() -> None:
    from torch import nn

    from mlx.nas.oneshot import check_one_shot
    from mlx.nas.spaces import MacroMLP, NasError

    with pytest.raises(NasError, match="RegularizedEvolution is not a one-shot strategy"):
        check_one_shot(tiny_space(), strategy("RegularizedEvolution"))
    with pytest.raises(NasError, match="not a Linear"):
        check_one_shot(nn.Linear(2, 2), strategy("DARTS"))
    fixed = MacroMLP((4,), 2, widths=[8], depth=[1], activations=["relu"], dropouts=[0.0])
    with pytest.raises(NasError, match="no choices"):
        check_one_shot(fixed, strategy("DARTS"))


def test_enas_without_its_rl_library(monkeypatch: Any) -> None:
    from mlx.nas import oneshot
    from mlx.nas.spaces import NasError

    def missing() -> None:
        raise ImportError("tianshou is not installed")

    monkeypatch.setattr(oneshot, "_import_rl", missing)
    with pytest.raises(NasError, match=r"strategy=enas needs tianshou 0\.5.*tianshou>=0\.5\.1"):
        oneshot.check_one_shot(tiny_space(), strategy("ENAS"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "name"),
    [pytest.param(s, n, marks=NEEDS_RL if n == "ENAS" else ()) for s, n in WORKS],
)
def test_search_real_spaces(kind: str, name: str, digits: Any) -> None:
    from mlx.nas.oneshot import search_one_shot

    space = real_space(kind, digits.input_shape)
    result = search_one_shot(
        space, strategy(name), digits, max_epochs=1, lr=3e-3, limit_train_batches=2
    )
    check_arch(space, result.arch, digits.input_shape)
    assert result.val_metric is not None
