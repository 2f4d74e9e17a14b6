"""Structural pruning with torch-pruning: whole channels (convolutions) and neurons (linear
layers) are removed, together with every slice that depends on them (batch norms, the next
layer's inputs), so the network is really smaller and faster, not just sparser.

The target is a channel ratio, or a budget of parameters or MACs that a bisection on the ratio
meets. With ``steps > 1`` the network is pruned a little at a time, fine-tuned after each step.
All torch-pruning imports live in this module.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Interval

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    import torch
    from torch import nn

IMPORTANCES = ("l1", "l2", "taylor", "bn_scale", "random")
# training batches whose loss gradients a Taylor importance accumulates
TAYLOR_BATCHES = 8
# the ratios a budget search scans upwards, then bisection steps below the first within budget
# (0.1 / 2^6: finer than one channel of a layer narrower than 600)
SCAN = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BISECT_STEPS = 6


class Prune:
    """Remove channels and neurons by importance until a ratio or a budget is met.

    Give exactly one target: ``ratio``, ``max_params`` or ``max_macs`` (set the others to
    null). Parameters are all of the network's parameters and MACs the multiply-accumulates of
    convolutions and matrix products for one example, both as ``mlx.measure.model_cost``
    counts them. The output layer (the last ``nn.Linear`` with ``num_outputs`` outputs) is
    never pruned.

    Args:
        importance: how channels are ranked: ``l1`` / ``l2`` (weight magnitude), ``taylor``
            (|weight x loss gradient|, accumulated over a few training batches), ``bn_scale``
            (batch-norm scale; groups without a batch norm are left alone), ``random`` (the
            baseline).
        global_pruning: rank channels across all layers, so layers lose different shares;
            otherwise every layer loses the same ratio.
        steps: 1 prunes at once; more prunes in that many steps, fine-tuning after each.
        fine_tune_epochs: epochs of fine-tuning after each step.
        ratio: share of each layer's channels to remove (per layer, or overall when global).
        max_params: prune until the network has at most this many parameters.
        max_macs: prune until one example's forward pass costs at most this many MACs.
    """

    name = "prune"

    def __init__(
        self,
        importance: Literal["l1", "l2", "taylor", "bn_scale", "random"] = "l1",
        global_pruning: bool = False,
        steps: Annotated[int, Ge(1)] = 1,
        fine_tune_epochs: Annotated[int, Ge(0)] = 1,
        ratio: Annotated[float, Interval(ge=0, lt=1)] | None = 0.5,
        max_params: Annotated[int, Ge(1)] | None = None,
        max_macs: Annotated[int, Ge(1)] | None = None,
    ) -> None:
        self.importance = importance
        self.global_pruning = global_pruning
        self.steps = steps
        self.fine_tune_epochs = fine_tune_epochs
        self.ratio = ratio
        self.max_params = max_params
        self.max_macs = max_macs
        self._details: dict[str, Any] = {}

    def check(self, given: StageInput) -> None:
        from torch import nn

        self._check_settings()
        if "quantize" in given.before:
            raise CompressionError(
                "prune before quantize: torch-pruning removes channels of float Conv and Linear layers, which quantize has replaced; list prune first (compression=[prune,quantize])."
            )
        output = _output_layer(given.net, given.num_outputs)
        if not any(
            isinstance(m, nn.Linear | nn.modules.conv._ConvNd) and m is not output
            for m in given.net.modules()
        ):
            raise CompressionError(
                f"prune removes channels of hidden Conv and Linear layers, and the {type(given.net).__name__} has none besides its output layer."
            )
        if self.importance == "bn_scale" and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in given.net.modules()
        ):
            raise CompressionError(
                f"compression.prune.importance=bn_scale ranks channels by batch-norm scales, but the {type(given.net).__name__} has no batch norm; use l1, l2 or taylor (or model.net.batch_norm=true)."
            )
        key, budget = self._budget()
        if key is not None:
            from mlx.measure import model_cost

            _check_budget(key, budget, model_cost(given.net, tuple(given.input_shape))[key])

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        from mlx.measure import model_cost

        self._check_settings()
        shape = tuple(tools.input_shape)
        before = model_cost(net, shape)
        key, budget = self._budget()
        if key is not None:
            _check_budget(key, budget, before[key])
        history: list[dict[str, Any]] = []
        if key is None:
            net = self._apply_ratio(net, tools, history)
        else:
            net = self._apply_budget(net, tools, key, budget, before[key], history)
        after = model_cost(net, shape)
        self._details = {
            "importance": self.importance,
            "global_pruning": self.global_pruning,
            "target": {"ratio": self.ratio} if key is None else {f"max_{key}": budget},
            "before": before,
            "after": after,
            "macs_reduction": before["macs"] / max(after["macs"], 1),
            "steps": history,
        }
        return net

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _check_settings(self) -> None:
        """What can be wrong without looking at a network."""
        if self.importance not in IMPORTANCES:
            raise CompressionError(
                f"compression.prune.importance={self.importance!r} is not one of {', '.join(IMPORTANCES)}."
            )
        if self.steps < 1:
            raise CompressionError(f"compression.prune.steps={self.steps} must be at least 1.")
        if self.fine_tune_epochs < 0:
            raise CompressionError(
                f"compression.prune.fine_tune_epochs={self.fine_tune_epochs} must be 0 or more."
            )
        targets = {
            "ratio": self.ratio,
            "max_params": self.max_params,
            "max_macs": self.max_macs,
        }
        given = [k for k, v in targets.items() if v is not None]
        if len(given) != 1:
            raise CompressionError(
                f"prune needs exactly one target, compression.prune.ratio, .max_params or .max_macs, but {'none' if not given else ' and '.join(given)} {'is' if len(given) < 2 else 'are'} set; set the others to null (e.g. compression.prune.ratio=null compression.prune.max_macs=500000)."
            )
        if self.ratio is not None and not 0 <= self.ratio < 1:
            raise CompressionError(
                f"compression.prune.ratio={self.ratio} must be in [0, 1): the share of channels to remove."
            )
        for k in ("max_params", "max_macs"):
            if targets[k] is not None and targets[k] < 1:
                raise CompressionError(f"compression.prune.{k}={targets[k]} must be at least 1.")

    def _budget(self) -> tuple[str | None, int]:
        """``("params", n)`` or ``("macs", n)`` for a budget; ``(None, 0)`` for a ratio."""
        if self.max_params is not None:
            return "params", self.max_params
        if self.max_macs is not None:
            return "macs", self.max_macs
        return None, 0

    def _apply_ratio(
        self, net: nn.Module, tools: Tools, history: list[dict[str, Any]]
    ) -> nn.Module:
        """torch-pruning's own schedule: step k removes ``ratio * k / steps`` of the channels
        the network started with, so rounding never compounds across steps."""
        from mlx.measure import model_cost

        assert self.ratio is not None
        pruner = self._pruner(net, tools, self.ratio, self.steps)
        for step in range(1, self.steps + 1):
            if self.importance == "taylor":
                _accumulate_gradients(net, tools)
            pruner.step()
            net.zero_grad(set_to_none=True)
            cost = model_cost(net, tuple(tools.input_shape))
            ratio = float(pruner.per_step_pruning_ratio[step])
            history.append({"step": step, "ratio": ratio, **cost})
            tools.log(
                f"prune step {step}/{self.steps} ({self.importance}): ratio {ratio:.3f}, {cost['params']} params, {cost['macs']} MACs"
            )
            net = tools.fine_tune(net, self.fine_tune_epochs)
        return net

    def _apply_budget(
        self,
        net: nn.Module,
        tools: Tools,
        key: str,
        budget: int,
        start: int,
        history: list[dict[str, Any]],
    ) -> nn.Module:
        """Each step meets a geometric share of the way to the budget (the last step the budget
        itself) with the smallest ratio that a bisection finds on copies of the network."""
        from mlx.measure import model_cost

        kept = 1.0  # share of channels left, nominally, for the record
        for step in range(1, self.steps + 1):
            target = (
                budget
                if step == self.steps
                else int(start * (budget / start) ** (step / self.steps))
            )
            if self.importance == "taylor":
                _accumulate_gradients(net, tools)
            net, ratio = self._bisect(net, tools, key, target)
            net.zero_grad(set_to_none=True)
            kept *= 1 - ratio
            cost = model_cost(net, tuple(tools.input_shape))
            history.append({"step": step, "ratio": 1 - kept, "step_ratio": ratio, **cost})
            tools.log(
                f"prune step {step}/{self.steps} ({self.importance}): ratio {ratio:.3f} for {key} <= {target}: {cost['params']} params, {cost['macs']} MACs"
            )
            net = tools.fine_tune(net, self.fine_tune_epochs)
        return net

    def _bisect(
        self, net: nn.Module, tools: Tools, key: str, target: int
    ) -> tuple[nn.Module, float]:
        """The pruned copy of ``net`` at the smallest ratio whose ``key`` cost is at most
        ``target``, and that ratio.

        Cost falls with the ratio except near the top, where torch-pruning skips a layer that
        would lose every channel (and a global ranking can empty a narrow layer), so a coarse
        scan upwards finds the first ratio within budget and a bisection below it refines it.
        The best copy is kept rather than pruning ``net`` again, so rankings that change between
        tries (random) still return a network within budget.
        """
        from torch import nn

        from mlx.measure import model_cost

        shape = tuple(tools.input_shape)

        def pruned(ratio: float) -> tuple[nn.Module, int]:
            trial = _copy_with_gradients(net)
            self._pruner(trial, tools, ratio, 1).step()
            return trial, model_cost(trial, shape)[key]

        # the ratio that leaves the narrowest layer one channel (a hair less, against rounding)
        output = _output_layer(net, tools.num_outputs)
        narrowest = min(
            (getattr(m, "out_channels", None) or m.out_features)
            for m in net.modules()
            if isinstance(m, nn.Linear | nn.modules.conv._ConvNd) and m is not output
        )
        top = max(0.0, 1 - 1.001 / narrowest)
        lo, best, smallest = 0.0, None, None
        for hi in [*(r for r in SCAN if r < top), top]:
            trial, cost = pruned(hi)
            smallest = cost if smallest is None else min(smallest, cost)
            if cost <= target:
                best = trial
                break
            lo = hi
        if best is None:
            raise CompressionError(
                f"compression.prune.max_{key}: no ratio reaches {target} {key}; the smallest network pruning found has {smallest}. Raise the budget."
            )
        for _ in range(BISECT_STEPS):
            mid = (lo + hi) / 2
            trial, cost = pruned(mid)
            if cost <= target:
                best, hi = trial, mid
            else:
                lo = mid
        return best, hi

    def _pruner(self, net: nn.Module, tools: Tools, ratio: float, steps: int) -> Any:
        """A torch-pruning pruner over ``net`` that leaves the output layer alone."""
        import torch_pruning as tp

        output = _output_layer(net, tools.num_outputs)
        training = net.training
        net.eval()  # trace with one example: batch norm in train mode refuses a batch of 1
        try:
            return tp.pruner.BasePruner(
                net,
                _example(net, tuple(tools.input_shape)),
                importance=_importance(self.importance),
                global_pruning=self.global_pruning,
                pruning_ratio=ratio,
                iterative_steps=steps,
                ignored_layers=[output],
            )
        finally:
            net.train(training)


def _importance(name: str) -> Any:
    """torch-pruning's importance estimator for one of :data:`IMPORTANCES`."""
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.RandomImportance()


def _check_budget(key: str, budget: int, have: int) -> None:
    """A budget must ask for less than the network has."""
    if budget >= have:
        raise CompressionError(
            f"compression.prune.max_{key}={budget}: the network already has {have} {key}; a budget must be below it."
        )


def _output_layer(net: nn.Module, num_outputs: int) -> nn.Module:
    """The last ``nn.Linear`` of ``net``, which must produce the ``num_outputs`` outputs."""
    from torch import nn

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features != num_outputs:
        raise CompressionError(
            f"prune keeps the output layer whole and finds it as the last nn.Linear with {num_outputs} outputs, which the {type(net).__name__} does not end with; prune works on mlx's models (mlp, cnn, resnet) and networks like them."
        )
    return linears[-1]


def _accumulate_gradients(net: nn.Module, tools: Tools) -> None:
    """Sum the loss gradients of a few training batches into ``.grad`` (Taylor importance)."""
    param = next(net.parameters())
    net.zero_grad(set_to_none=True)
    seen = 0
    for x, y in tools.train_batches():
        loss = tools.loss(net(x.to(param.device)), y.to(param.device))
        loss.backward()
        seen += 1
        if seen == TAYLOR_BATCHES:
            break
    if not seen:
        raise CompressionError(
            "compression.prune.importance=taylor needs training batches for its gradients, and the training split gave none."
        )


def _copy_with_gradients(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` that keeps its ``.grad`` (deepcopy drops them)."""
    trial = copy.deepcopy(net)
    for p, q in zip(net.parameters(), trial.parameters(), strict=True):
        if p.grad is not None:
            q.grad = p.grad.detach().clone()
    return trial


def _example(net: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of one zero example on the network's device, for tracing."""
    import torch

    param = next(net.parameters())
    return torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)


__all__ = ["Prune"]
