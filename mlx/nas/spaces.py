"""Neural architecture search spaces on NNI 3.0: a macro CNN, a DARTS-like cell CNN and an MLP.

A space is an NNI ``ModelSpace``: a PyTorch module that holds every candidate operation and one
labelled choice per decision. :func:`space_choices` lists a space's choices and their values;
:func:`architecture` builds a space for the data and freezes it to one architecture, a plain
network that trains like any other.

Labels become Hydra config keys (``model.net.arch.<label>``), so each is a plain identifier that
the space sets itself (``stage0_layer1_op``, ``normal_input_0_1``). That is why CellCNN builds
its cells from LayerChoice and InputChoice rather than NNI's ``Cell``, whose labels are scoped
with ``/``.

The choices use the primitives NNI's one-shot strategies turn into supernets: LayerChoice,
InputChoice, Repeat, and Conv2d/BatchNorm2d/Linear whose channels are an ``nni.choice``. A list
of one value fixes that decision: it makes no choice and no label.

Importing this module imports NNI (about 8 s); ``mlx.nas`` imports it on first use.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import numbers
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import torch
from annotated_types import Ge, Interval, MinLen
from torch import Tensor, nn

from mlx.errors import MlxError
from mlx.models.layers import ACTIVATIONS

with warnings.catch_warnings():
    # NNI wraps every torch.nn class when imported and warns about the newer ones it cannot
    # wrap; none of them is used here
    warnings.simplefilter("ignore", RuntimeWarning)
    import nni
    from nni.mutable import Categorical, CategoricalMultiple, Mutable, MutableExpression
    from nni.nas.nn.pytorch import (
        ChosenInputs,
        InputChoice,
        LayerChoice,
        ModelSpace,
        MutableBatchNorm2d,
        MutableConv2d,
        MutableDropout,
        MutableLinear,
        Repeat,
    )

# every operation a CNN space can choose; each maps (B, C, H, W) to the same shape
OPS = (
    "conv3x3",
    "conv5x5",
    "sepconv3x3",
    "sepconv5x5",
    "dilconv3x3",
    "dilconv5x5",
    "maxpool3x3",
    "avgpool3x3",
    "identity",
    "none",
)
# defaults list the cheapest operation first: the first value of every choice is NNI's default
# and a strong guess at the cheapest network
MACRO_OPS = (
    "identity",
    "maxpool3x3",
    "avgpool3x3",
    "sepconv3x3",
    "sepconv5x5",
    "conv3x3",
    "conv5x5",
)
# DARTS's operations, less its `none`
CELL_OPS = ("identity", "maxpool3x3", "avgpool3x3", "sepconv3x3", "sepconv5x5", "dilconv3x3")
LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a choice of several inputs is listed as its subsets; beyond this many it is too large to list
MAX_LISTED = 1024


class NasError(MlxError):
    """A NAS space, architecture or search that cannot work; the message is one paragraph meant
    for the user."""


# ---- building blocks --------------------------------------------------------------------------


def _choice(label: str, values: Sequence[Any]) -> Any:
    """The only value of a one-value list, else an NNI choice labelled ``label``."""
    return values[0] if len(values) == 1 else nni.choice(label, list(values))


def _layer_choice(label: str, candidates: dict[str, nn.Module]) -> nn.Module:
    """The only candidate, else a LayerChoice among the named candidates."""
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    return LayerChoice(candidates, label=label)


def _varies(*values: Any) -> bool:
    return any(isinstance(v, Mutable) for v in values)


def _conv(c_in: Any, c_out: Any, k: int, *, groups: Any = 1, dilation: int = 1) -> nn.Module:
    """A bias-free ``k x k`` convolution that keeps the spatial size; channels may be choices."""
    # keyword arguments only: NNI's one-shot strategies read choices from keyword arguments
    kwargs = {
        "in_channels": c_in,
        "out_channels": c_out,
        "kernel_size": k,
        "padding": dilation * (k - 1) // 2,
        "dilation": dilation,
        "groups": groups,
        "bias": False,
    }
    return MutableConv2d(**kwargs) if _varies(c_in, c_out, groups) else nn.Conv2d(**kwargs)


def _bn(c: Any) -> nn.Module:
    return MutableBatchNorm2d(num_features=c) if _varies(c) else nn.BatchNorm2d(c)


def _linear(c_in: Any, c_out: Any) -> nn.Module:
    if _varies(c_in, c_out):
        return MutableLinear(in_features=c_in, out_features=c_out)
    return nn.Linear(c_in, c_out)


class Zero(nn.Module):
    """The ``none`` operation: an absent edge, zeros shaped like the input (as in DARTS)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def make_op(name: str, c: Any) -> nn.Module:
    """One candidate operation on ``c`` channels (an int or a width choice).

    Convolutions are ReLU -> conv -> BN as in DARTS, so that summed branches and skips add
    normalised outputs; every operation keeps the shape ``(B, c, H, W)``.
    """
    if name in ("conv3x3", "conv5x5"):
        return nn.Sequential(nn.ReLU(), _conv(c, c, int(name[-1])), _bn(c))
    if name in ("sepconv3x3", "sepconv5x5", "dilconv3x3", "dilconv5x5"):
        # depthwise (dilated for dilconv) then pointwise: a k x k view at a 1x1 conv's cost
        dilation = 2 if name.startswith("dil") else 1
        depthwise = _conv(c, c, int(name[-1]), groups=c, dilation=dilation)
        return nn.Sequential(nn.ReLU(), depthwise, _conv(c, c, 1), _bn(c))
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "avgpool3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "identity":
        return nn.Identity()
    if name == "none":
        return Zero()
    raise NasError(f"unknown operation {name!r}; the operations are {', '.join(OPS)}.")


# ---- checks -----------------------------------------------------------------------------------


def _close(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _values(space: str, param: str, values: Any) -> list[Any]:
    """A list parameter as a plain non-empty list without repeats."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise NasError(f"{space} {param}={values!r} must be a list of candidate values.")
    values = list(values)
    if not values:
        raise NasError(
            f"{space} {param} is empty: it lists the candidates the search chooses from, so "
            "give at least one (one value fixes it)."
        )
    repeated = sorted({repr(v) for v in values if values.count(v) > 1})
    if repeated:
        raise NasError(
            f"{space} {param}={values} lists {', '.join(repeated)} more than once; list each "
            "candidate once."
        )
    return values


def _ops(space: str, ops: Any) -> list[str]:
    ops = _values(space, "ops", ops)
    for op in ops:
        if op not in OPS:
            raise NasError(
                f"{space} ops has an unknown operation {op!r}{_close(str(op), OPS)}; the "
                f"operations are {', '.join(OPS)}."
            )
    return ops


def _positive_ints(space: str, param: str, values: Any) -> list[int]:
    values = _values(space, param, values)
    bad = [v for v in values if not _is_int(v) or v < 1]
    if bad:
        raise NasError(
            f"{space} {param}={values} holds {', '.join(map(repr, bad))}; every entry must be "
            "a positive integer."
        )
    return values


def _positive(space: str, param: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise NasError(f"{space} {param}={value!r} must be a positive integer (1 or more).")
    return value


def _rate(space: str, param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise NasError(f"{space} {param}: {value!r} is not a dropout rate, a number in [0, 1).")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image(space: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """Check that the data are images ``(C, H, W)``, as convolutional spaces need."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise NasError(
            f"search space {space} needs image data shaped (C, H, W), but the data have input "
            f"shape {shape}; use search_space=macro_mlp for tabular data."
        )
    c, h, w = shape
    return c, h, w


def _halvings(space: str, param: str, n: int, h: int, w: int) -> None:
    """Check that halving an ``h x w`` image ``n`` times leaves at least 1x1."""
    if min(h, w) >> n >= 1:
        return
    sizes = [f"{h >> i}x{w >> i}" for i in range(n + 1) if min(h, w) >> i >= 1]
    fit = min(h, w).bit_length() - 1
    raise NasError(
        f"{space} {param}={n} halves the {h}x{w} input {n} times "
        f"({' -> '.join(sizes)} -> below 1x1); use {param} of at most {fit} for this input."
    )


# ---- MacroCNN ---------------------------------------------------------------------------------


class MacroLayer(nn.Module):
    """One layer of a MacroCNN stage: ``op(x) [+ branch(x)] [+ skip(x)]``, each a choice.

    Args:
        label: prefix of the layer's labels, e.g. ``stage0_layer1``.
        width: channels in and out (an int or the stage's width choice).
        ops: candidate operations of ``op`` and ``branch``.
        skip: whether to choose a residual (``add`` the layer's input, or ``none``).
        branches: whether to choose a second operation summed with the first (``none``: one).
    """

    def __init__(
        self, label: str, width: Any, ops: list[str], *, skip: bool, branches: bool
    ) -> None:
        super().__init__()
        self.op = _layer_choice(f"{label}_op", {name: make_op(name, width) for name in ops})
        self.branch = None
        if branches:
            names = ["none", *(name for name in ops if name != "none")]
            self.branch = _layer_choice(
                f"{label}_branch", {name: make_op(name, width) for name in names}
            )
        self.skip = None
        if skip:
            self.skip = _layer_choice(f"{label}_skip", {"none": Zero(), "add": nn.Identity()})

    def forward(self, x: Tensor) -> Tensor:
        out = self.op(x)  # (B, C, H, W)
        if self.branch is not None:
            out = out + self.branch(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return out


class MacroStage(nn.Module):
    """An entry conv to the stage's width, a chosen number of layers, then a 2x2 max-pool."""

    def __init__(
        self,
        s: int,
        c_in: Any,
        width: Any,
        depth: Any,
        ops: list[str],
        *,
        skip: bool,
        branches: bool,
    ) -> None:
        super().__init__()
        self.entry = nn.Sequential(_conv(c_in, width, 3), _bn(width))

        def layer(i: int) -> MacroLayer:
            return MacroLayer(f"stage{s}_layer{i}", width, ops, skip=skip, branches=branches)

        if isinstance(depth, Mutable):
            self.layers = Repeat(layer, depth)
        else:
            self.layers = nn.Sequential(*(layer(i) for i in range(depth)))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        # (B, C_in, H, W) -> (B, width, H, W) -> (B, width, H / 2, W / 2)
        return self.pool(self.layers(self.entry(x)))


class MacroCNN(ModelSpace):
    """A CNN chosen layer by layer: per stage a width and a depth, per layer an operation, a
    parallel branch and a residual.

    Stage ``s`` convolves to its width (label ``stage{s}_width``), runs ``stage{s}_depth`` layers
    and halves the image; each layer ``i`` chooses ``stage{s}_layer{i}_op`` among ``ops``,
    ``stage{s}_layer{i}_branch`` (a second operation summed with the first, or ``none``) and
    ``stage{s}_layer{i}_skip`` (``add`` its input, or ``none``). A global average pool and a
    linear layer make the head.

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_outputs: size of the head (classes, or 1 for regression).
        ops: candidate operations of every layer, from :data:`OPS`.
        widths: candidate channels of every stage.
        depth: candidate numbers of layers of every stage.
        stages: number of stages; each halves the image, so ``H`` and ``W`` bound it.
        skip: choose a residual per layer (else none).
        branches: choose a second, parallel operation per layer (else one).
        dropout: dropout before the linear head.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        *,
        ops: Annotated[list[str], MinLen(1)] = MACRO_OPS,
        widths: Annotated[list[int], MinLen(1)] = (16, 32, 64),
        depth: Annotated[list[int], MinLen(1)] = (2, 3, 4),
        stages: Annotated[int, Ge(1)] = 2,
        skip: bool = True,
        branches: bool = True,
        dropout: Annotated[float, Interval(ge=0, lt=1)] = 0.1,
    ) -> None:
        super().__init__()
        name = "MacroCNN"
        c, h, w = _image(name, input_shape)
        ops = _ops(name, ops)
        widths = _positive_ints(name, "widths", widths)
        depth = _positive_ints(name, "depth", depth)
        _halvings(name, "stages", _positive(name, "stages", stages), h, w)
        _positive(name, "num_outputs", num_outputs)
        dropout = _rate(name, "dropout", dropout)

        stage_list = []
        c_in: Any = c
        for s in range(stages):
            width = _choice(f"stage{s}_width", widths)
            n = _choice(f"stage{s}_depth", depth)
            stage_list.append(
                MacroStage(s, c_in, width, n, ops, skip=bool(skip), branches=bool(branches))
            )
            c_in = width
        self.stages = nn.Sequential(*stage_list)
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            _linear(c_in, num_outputs),
        )

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, width, H / 2^stages, W / 2^stages) -> (B, num_outputs)
        return self.head(self.stages(x))


# ---- CellCNN ----------------------------------------------------------------------------------


class Preprocess(nn.Sequential):
    """ReLU -> (average-pool by ``stride``) -> 1x1 conv -> BN: brings a cell input to the cell's
    channels and resolution."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        # ceil_mode so that odd sizes round up, as the other cell input's halvings do
        pool = [nn.AvgPool2d(stride, ceil_mode=True)] if stride > 1 else []
        super().__init__(nn.ReLU(), *pool, _conv(c_in, c_out, 1), _bn(c_out))


class SearchCell(nn.Module):
    """A DARTS-style cell: each node sums two chosen operations, each on a chosen earlier state;
    the cell's output concatenates its nodes.

    The states a node can take are, in order: the output of the cell two back (0), the previous
    cell's output (1), then the cell's earlier nodes (2, 3, ...). Labels are
    ``{kind}_input_{node}_{k}`` and ``{kind}_op_{node}_{k}`` for the node's inputs ``k`` = 0, 1;
    all cells of a kind share them, hence one architecture per kind.

    A reduction cell halves the image in its input preprocessing, so every operation keeps its
    input's shape and needs no stride that depends on where its input comes from: NNI's one-shot
    strategies can then mix operations and inputs independently.

    Args:
        kind: ``normal`` or ``reduce``.
        num_nodes: nodes of the cell.
        c_pp: channels of the output of the cell two back.
        c_p: channels of the previous cell's output.
        c: channels of every node; the output has ``num_nodes * c``.
        ops: candidate operations of every node input.
        stride_pp: how much smaller the cell's resolution is than that of the cell two back.
        stride_p: how much smaller it is than the previous cell's resolution.
    """

    def __init__(
        self,
        kind: str,
        num_nodes: int,
        c_pp: int,
        c_p: int,
        c: int,
        ops: list[str],
        stride_pp: int,
        stride_p: int,
    ) -> None:
        super().__init__()
        self.pre_pp: nn.Module | None = Preprocess(c_pp, c, stride_pp)
        self.pre_p: nn.Module | None = Preprocess(c_p, c, stride_p)
        # each edge is [input choice, operation choice]; a node sums two edges
        self.edges = nn.ModuleList()
        for node in range(num_nodes):
            for k in range(2):
                choose = InputChoice(2 + node, 1, reduction="sum", label=f"{kind}_input_{node}_{k}")
                op = _layer_choice(
                    f"{kind}_op_{node}_{k}", {name: make_op(name, c) for name in ops}
                )
                self.edges.append(nn.ModuleList([choose, op]))

    def drop_unused_inputs(self) -> None:
        """In a frozen cell, drop the preprocessing of a cell input that no node reads, so that
        the network holds no weights that never train."""
        chosen = [choose for choose, _ in self.edges]
        if not all(isinstance(c, ChosenInputs) for c in chosen):
            return  # still a choice: any input may be read
        used = {i for c in chosen for i in c.chosen}
        if 0 not in used:
            self.pre_pp = None
        if 1 not in used:
            self.pre_p = None

    def forward(self, s_pp: Tensor, s_p: Tensor) -> Tensor:
        # the inputs: (B, C_pp, H_pp, W_pp), (B, C_p, H_p, W_p) -> both (B, c, H', W')
        states: list[Tensor | None] = [
            self.pre_pp(s_pp) if self.pre_pp is not None else None,
            self.pre_p(s_p) if self.pre_p is not None else None,
        ]
        for node in range(len(self.edges) // 2):
            (choose_a, op_a), (choose_b, op_b) = self.edges[2 * node : 2 * node + 2]
            states.append(op_a(choose_a(states)) + op_b(choose_b(states)))  # (B, c, H', W')
        return torch.cat(states[2:], dim=1)  # (B, num_nodes * c, H', W')


class CellCNN(ModelSpace):
    """A DARTS/NASNet-style space: a stem conv, then a stack of cells, then a linear head.

    One architecture is searched for all normal cells (labels ``normal_*``) and one for all
    reduction cells (``reduce_*``), which halve the image and double the channels; see
    :class:`SearchCell` for the labels. The ``reductions`` reduction cells sit evenly through
    the stack, as in DARTS (at 1/3 and 2/3 of the depth for two).

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_outputs: size of the head (classes, or 1 for regression).
        channels: channels of the stem and of the first cells' nodes.
        num_cells: number of cells, reduction cells included.
        num_nodes: nodes per cell.
        reductions: number of reduction cells; each halves the image, so ``H`` and ``W`` bound
            it.
        ops: candidate operations of every node input, from :data:`OPS`.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        *,
        channels: Annotated[int, Ge(1)] = 16,
        num_cells: Annotated[int, Ge(1)] = 3,
        num_nodes: Annotated[int, Ge(1)] = 3,
        reductions: Annotated[int, Ge(0)] = 2,
        ops: Annotated[list[str], MinLen(1)] = CELL_OPS,
    ) -> None:
        super().__init__()
        name = "CellCNN"
        c_in, h, w = _image(name, input_shape)
        ops = _ops(name, ops)
        _positive(name, "channels", channels)
        _positive(name, "num_cells", num_cells)
        _positive(name, "num_nodes", num_nodes)
        _positive(name, "num_outputs", num_outputs)
        if not _is_int(reductions) or reductions < 0:
            raise NasError(f"{name} reductions={reductions!r} must be an integer >= 0.")
        if reductions > num_cells:
            raise NasError(
                f"{name} reductions={reductions} needs at least {reductions} cells, but "
                f"num_cells={num_cells}; raise num_cells or lower reductions."
            )
        _halvings(name, "reductions", reductions, h, w)

        self.stem = nn.Sequential(_conv(c_in, channels, 3), _bn(channels))
        reduce_at = {(r + 1) * num_cells // (reductions + 1) for r in range(reductions)}
        cells = []
        c_pp, c_p, c = channels, channels, channels
        reduced_before = False  # whether the previous cell halved the image
        for i in range(num_cells):
            reduce = i in reduce_at
            c = 2 * c if reduce else c
            stride_p = 2 if reduce else 1
            stride_pp = stride_p * (2 if reduced_before else 1)
            kind = "reduce" if reduce else "normal"
            cells.append(SearchCell(kind, num_nodes, c_pp, c_p, c, ops, stride_pp, stride_p))
            c_pp, c_p, reduced_before = c_p, num_nodes * c, reduce
        self.cells = nn.ModuleList(cells)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_p, num_outputs)
        )

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        """The network of one architecture; see :meth:`SearchCell.drop_unused_inputs`."""
        net = super().freeze(sample)
        if net is self:  # freezing copies the space, unless it has nothing to fix
            net = copy.deepcopy(self)
        for cell in net.cells:
            cell.drop_unused_inputs()
        return net

    def forward(self, x: Tensor) -> Tensor:
        s_pp = s_p = self.stem(x)  # (B, channels, H, W)
        for cell in self.cells:
            s_pp, s_p = s_p, cell(s_pp, s_p)  # (B, num_nodes * c, H', W')
        return self.head(s_p)  # (B, num_outputs)


# ---- MacroMLP ---------------------------------------------------------------------------------


class MacroMLP(ModelSpace):
    """An MLP with a chosen depth, a width per layer, one activation and one dropout rate.

    Labels: ``depth``, ``layer{i}_width`` for each possible layer ``i``, ``activation`` and
    ``dropout``. The input of any rank is flattened, so images work too.

    Args:
        input_shape: shape of one example; flattened.
        num_outputs: size of the head (classes, or 1 for regression).
        widths: candidate widths of every hidden layer.
        depth: candidate numbers of hidden layers.
        activations: candidate activations (names of :data:`mlx.models.layers.ACTIVATIONS`).
        dropouts: candidate dropout rates after every hidden layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: Annotated[int, Ge(1)],
        *,
        widths: Annotated[list[int], MinLen(1)] = (32, 64, 128),
        depth: Annotated[list[int], MinLen(1)] = (1, 2, 3),
        activations: Annotated[list[str], MinLen(1)] = ("relu", "gelu", "tanh", "silu"),
        dropouts: Annotated[list[float], MinLen(1)] = (0.0, 0.1, 0.3),
    ) -> None:
        super().__init__()
        name = "MacroMLP"
        shape = tuple(input_shape)
        if not shape or not all(_is_int(d) and d >= 1 for d in shape):
            raise NasError(f"{name} input_shape={shape} must be positive integer sizes.")
        widths = _positive_ints(name, "widths", widths)
        depth = _positive_ints(name, "depth", depth)
        activations = _values(name, "activations", activations)
        for act in activations:
            if act not in ACTIVATIONS:
                raise NasError(
                    f"{name} activations has an unknown activation {act!r}"
                    f"{_close(str(act), ACTIVATIONS)}; the activations are "
                    f"{', '.join(ACTIVATIONS)}."
                )
        dropouts = [_rate(name, "dropouts", p) for p in _values(name, "dropouts", dropouts)]
        _positive(name, "num_outputs", num_outputs)

        n = _choice("depth", depth)
        width = [_choice(f"layer{i}_width", widths) for i in range(max(depth))]
        p = _choice("dropout", dropouts)
        layers = []
        for i in range(max(depth)):
            act = _layer_choice("activation", {a: ACTIVATIONS[a]() for a in activations})
            drop = MutableDropout(p=p) if _varies(p) else nn.Dropout(p)
            c_in = math.prod(shape) if i == 0 else width[i - 1]
            layers.append(nn.Sequential(_linear(c_in, width[i]), act, drop))
        self.flatten = nn.Flatten()
        self.layers = Repeat(layers, n) if _varies(n) else nn.Sequential(*layers[:n])
        # the head reads the last hidden layer present, whose width depends on the depth chosen
        last = {d: width[d - 1] for d in depth}
        if not _varies(n):
            head_in = last[n]
        elif len({repr(v) for v in last.values()}) == 1:
            head_in = next(iter(last.values()))
        else:
            head_in = MutableExpression.switch_case(n, last)
        self.head = _linear(head_in, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        # (B, *input_shape) -> (B, features) -> (B, width) -> (B, num_outputs)
        return self.head(self.layers(self.flatten(x)))


# ---- choices and architectures ----------------------------------------------------------------


def space_choices(space: ModelSpace) -> dict[str, list[Any]]:
    """Each choice of a space and its candidate values, in the order the space makes them.

    A choice of inputs (an InputChoice) is listed as the lists of input indices it can pick.

    Args:
        space: a built model space.

    Returns:
        ``{label: [value, ...]}``; labels are plain identifiers, values plain YAML values.

    Raises:
        NasError: a label that cannot be a config key, or a choice that cannot be listed.
    """
    choices: dict[str, list[Any]] = {}
    for label, mutable in space.simplify().items():
        if not LABEL.match(label):
            raise NasError(
                f"the space's choice {label!r} cannot be a config key (model.net.arch.<label>); "
                "give it a label made of letters, digits and underscores."
            )
        if isinstance(mutable, Categorical):
            choices[label] = list(mutable.values)
        elif isinstance(mutable, CategoricalMultiple):
            choices[label] = _subsets(label, list(mutable.values), mutable.n_chosen)
        else:
            raise NasError(
                f"the space's choice {label!r} is a {type(mutable).__name__}, which cannot be "
                "listed as candidate values; use a categorical choice (nni.choice, "
                "LayerChoice or InputChoice)."
            )
    return choices


def _subsets(label: str, values: list[Any], n_chosen: int | None) -> list[list[Any]]:
    sizes = [n_chosen] if n_chosen is not None else range(len(values) + 1)
    count = sum(math.comb(len(values), k) for k in sizes)
    if count > MAX_LISTED:
        raise NasError(
            f"the space's choice {label!r} picks among {count} subsets of {len(values)} inputs, "
            f"more than the {MAX_LISTED} that can be listed; choose a fixed number of inputs."
        )
    return [list(combo) for k in sizes for combo in itertools.combinations(values, k)]


def architecture(
    space: Callable[..., ModelSpace],
    arch: Mapping[str, Any],
    input_shape: tuple[int, ...],
    num_outputs: int,
) -> nn.Module:
    """Build a space for the data and freeze it to one architecture.

    This is the network of ``model=nas``: an exported experiment's ``model.net`` is this
    function with the space and the architecture written out, and the training module calls
    it with the data's ``input_shape`` and ``num_outputs``.

    Args:
        space: builds the space given ``input_shape`` and ``num_outputs`` (a space class, or
            a partial of one with its parameters).
        arch: one value per choice of the space, as :func:`space_choices` lists them.
        input_shape: shape of one example, from the data module.
        num_outputs: classes (classification) or 1 (regression), from the data module.

    Returns:
        The network: an ``nn.Module`` with only the chosen operations' weights.

    Raises:
        NasError: the space cannot be built, or ``arch`` misses a choice, names one the space
            does not have, or gives a value that is not a candidate.
    """
    built = space(input_shape=tuple(input_shape), num_outputs=num_outputs)
    name = getattr(space, "func", space)
    name = getattr(name, "__name__", type(built).__name__)
    given = {str(k): _plain(v) for k, v in arch.items()}
    return built.freeze(_check_arch(name, given, space_choices(built)))


def _plain(value: Any) -> Any:
    """A config value as a plain Python value (OmegaConf lists become lists)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _check_arch(name: str, arch: dict[str, Any], choices: dict[str, list[Any]]) -> dict[str, Any]:
    """The architecture with each value replaced by its candidate (a width given as 16.0 is the
    candidate 16); raises NasError naming every problem."""
    problems = []
    unknown = [k for k in arch if k not in choices]
    if unknown:
        problems.append(
            "it names choices the space does not have: "
            + ", ".join(f"{k}{_close(k, choices)}" for k in unknown)
        )
    missing = [k for k in choices if k not in arch]
    if missing:
        problems.append(
            "it misses " + ", ".join(f"{k} (one of {_list(choices[k])})" for k in missing)
        )
    sample = {}
    for label, value in arch.items():
        if label not in choices:
            continue
        match = [c for c in choices[label] if _same(value, c)]
        if match:
            sample[label] = match[0]
        else:
            problems.append(f"{label}={value!r} is not one of {_list(choices[label])}")
    if problems:
        raise NasError(
            f"the architecture does not fit search space {name}: {'; '.join(problems)}. "
            "Give exactly one candidate value for each of the space's choices (their labels "
            "and values are those of mlx.nas.space_choices for this space and data)."
        )
    return sample


def _same(value: Any, candidate: Any) -> bool:
    """Equal and of the same kind: True is not the width 1, nor "3" the depth 3."""
    if isinstance(value, list) and isinstance(candidate, list):
        return len(value) == len(candidate) and all(map(_same, value, candidate))
    if _is_number(value) and _is_number(candidate):
        return value == candidate
    return type(value) is type(candidate) and value == candidate


def _is_number(value: Any) -> bool:
    # numbers.Real also takes numpy's scalars, which a strategy's export may hold
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _list(values: list[Any]) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


__all__ = [
    "CELL_OPS",
    "MACRO_OPS",
    "OPS",
    "CellCNN",
    "MacroCNN",
    "MacroMLP",
    "NasError",
    "architecture",
    "make_op",
    "space_choices",
]
