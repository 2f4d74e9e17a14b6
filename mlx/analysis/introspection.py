"""Introspection: the network's internals on one batch, beside the black-box metrics.

Forward hooks on every leaf layer record its output's mean and standard deviation and, for
ReLU-like activations, the share of *dead* units (a feature or channel that is zero for every
example and position of the batch). One backward pass of the task's loss on the same batch
gives each parameter tensor's gradient norm (with ``torch.autograd.grad``, so the network's own
``.grad`` fields are left alone). The flags name what looks broken: dead layers, and exploding
or vanishing gradients.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Gt, Interval

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.errors import ConfigError
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

# layers whose output is their input reshaped or masked: their statistics repeat the layer before
PASS_THROUGH = ("Flatten", "Unflatten", "Identity", "Dropout", "Dropout1d", "Dropout2d")
# activations whose inactive units output exactly zero
RELU_LIKE = ("ReLU", "ReLU6")


class Introspection:
    """Per-layer activation statistics and gradient norms on a batch, and weight histograms.

    Flags: a ReLU-like layer with more than ``dead_fraction`` of its units dead; exploding
    gradients (any parameter's gradient norm above ``max_gradient_norm`` or not finite, or the
    first layer's weight gradient more than ``gradient_ratio`` times the last layer's) and
    vanishing gradients (the first layer's weight gradient less than ``1 / gradient_ratio``
    times the last layer's).

    Args:
        batch: examples of the split the statistics are taken on (a seeded draw; all when
            fewer).
        dead_fraction: share of dead units above which a layer is flagged.
        gradient_ratio: first-to-last weight gradient norm ratio beyond which (either way)
            gradients are flagged as exploding or vanishing.
        max_gradient_norm: a parameter gradient norm above this is flagged as exploding.
        bins: bins of each layer's weight histogram.
    """

    name = "introspection"

    def __init__(
        self,
        batch: Annotated[int, Ge(2)] = 256,
        dead_fraction: Annotated[float, Interval(ge=0, lt=1)] = 0.5,
        gradient_ratio: Annotated[float, Gt(1)] = 1000.0,
        max_gradient_norm: Annotated[float, Gt(0)] = 1000.0,
        bins: Annotated[int, Ge(2)] = 40,
    ) -> None:
        self.batch = batch
        self.dead_fraction = dead_fraction
        self.gradient_ratio = gradient_ratio
        self.max_gradient_norm = max_gradient_norm
        self.bins = bins

    def check(self, info: DataInfo) -> None:
        if not info.gradients:
            raise ConfigError(
                "analysis introspection reads a torch network's layers and gradients, and this "
                "model has none (a graph such as an int8 ONNX model); drop introspection from "
                "the analysis list for it, or analyse the model before conversion."
            )

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        import numpy as np

        if evidence.net is None:
            raise ConfigError(
                "analysis introspection reads a torch network's layers and gradients, and this "
                "model has none; drop introspection from the analysis list for it."
            )
        rng = np.random.default_rng(evidence.seed)
        n = len(evidence.x)
        rows = np.sort(rng.choice(n, self.batch, replace=False)) if self.batch < n else None
        rows = np.arange(n) if rows is None else rows
        layers, gradients, loss = inspect(
            evidence.net, evidence.x[rows], evidence.y[rows], evidence.task
        )
        weights = _weights(evidence.net)
        flags = self.flags(layers, gradients)
        _write_layers(folder / "layers.csv", layers, gradients)
        _activation_figure(layers, self.dead_fraction, folder / "activations.svg")
        _weight_figure(weights, self.bins, folder / "weights.svg")
        return {
            "batch": len(rows),
            "loss": _float(loss),
            "layers": layers,
            "gradients": gradients,
            "weights": [
                {
                    "parameter": name,
                    "mean": _float(w.mean()),
                    "std": _float(w.std()),
                    "max_abs": _float(np.abs(w).max()),
                }
                for name, w in weights
            ],
            "thresholds": {
                "dead_fraction": self.dead_fraction,
                "gradient_ratio": self.gradient_ratio,
                "max_gradient_norm": self.max_gradient_norm,
            },
            "flags": flags,
            "tables": ["layers.csv"],
            "figures": ["activations.svg", "weights.svg"],
        }

    def flags(self, layers: list[dict[str, Any]], gradients: list[dict[str, Any]]) -> list[str]:
        """Plain sentences naming what looks broken (empty when nothing does)."""
        flags = []
        for layer in layers:
            dead = layer.get("dead_fraction")
            if dead is not None and dead > self.dead_fraction:
                flags.append(
                    f"dead layer: {layer['layer']} ({layer['type']}) has {dead:.0%} of its "
                    f"{layer['units']} units at zero for every example of the batch."
                )
        broken = [g["parameter"] for g in gradients if g["norm"] is None]
        if broken:
            flags.append(f"exploding gradients: {', '.join(broken)} got a non-finite gradient.")
        large = [
            g for g in gradients if g["norm"] is not None and g["norm"] > self.max_gradient_norm
        ]
        if large:
            top = max(large, key=lambda g: g["norm"])
            flags.append(
                f"exploding gradients: {len(large)} parameter(s) have a gradient norm above "
                f"{self.max_gradient_norm:g} (largest {top['parameter']}: {top['norm']:.3g})."
            )
        # matrices and kernels (biases and norm scales left out), in definition order
        weights = [g for g in gradients if len(g["shape"]) > 1 and g["norm"] is not None]
        stuck = [g["parameter"] for g in weights if g["norm"] == 0]
        if stuck:
            flags.append(
                f"vanishing gradients: {len(stuck)} weight tensor(s) get no gradient at all "
                f"({', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''})."
            )
        if len(weights) >= 2 and weights[0]["norm"] > 0 and weights[-1]["norm"] > 0:
            first, last = weights[0], weights[-1]
            ratio = first["norm"] / last["norm"]
            if ratio > self.gradient_ratio:
                flags.append(
                    f"exploding gradients: the first layer's weight gradient ({first['parameter']}, "
                    f"{first['norm']:.3g}) is {ratio:.3g} times the last layer's "
                    f"({last['parameter']}, {last['norm']:.3g})."
                )
            elif ratio < 1 / self.gradient_ratio:
                flags.append(
                    f"vanishing gradients: the first layer's weight gradient ({first['parameter']}, "
                    f"{first['norm']:.3g}) is {ratio:.3g} times the last layer's "
                    f"({last['parameter']}, {last['norm']:.3g})."
                )
        return flags


def inspect(
    net: nn.Module, x: np.ndarray, y: np.ndarray, task: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """One forward and backward pass of ``net`` (in its current mode) on the batch ``(x, y)``.

    Returns:
        the leaf layers in call order: ``{"layer", "type", "mean", "std", "units",
        "dead_fraction"}`` (units: the output's size along dim 1; ``dead_fraction`` for ReLU-like
        layers only, else None; a layer called twice appears twice, ``#2`` after its name);
        each parameter tensor's gradient of the task's loss (cross-entropy or mean squared
        error): ``{"parameter", "shape", "norm"}`` (None when not finite); the loss.
    """
    import torch
    import torch.nn.functional as F

    names = {module: name for name, module in net.named_modules()}
    calls: dict[str, int] = {}
    layers: list[dict[str, Any]] = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        layers.append(layer_statistics(output.detach(), module))
        layers[-1]["layer"] = name if calls[name] == 1 else f"{name}#{calls[name]}"

    leaves = [
        m
        for m in net.modules()
        if next(m.children(), None) is None and type(m).__name__ not in PASS_THROUGH
    ]
    handles = [m.register_forward_hook(hook) for m in leaves]
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    try:
        out = net(torch.as_tensor(x, dtype=torch.float32, device=device))
    finally:
        for handle in handles:
            handle.remove()
    target = torch.as_tensor(y, device=device)
    if task == "classification":
        loss = F.cross_entropy(out, target.long())
    else:
        loss = F.mse_loss(out.reshape(len(out), -1)[:, 0], target.float())
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    gradients = [
        {
            "parameter": name,
            "shape": list(p.shape),
            "norm": _float(g.norm()) if g is not None else 0.0,
        }
        for (name, p), g in zip(params, grads, strict=True)
    ]
    return layers, gradients, float(loss.detach())


def layer_statistics(output: Any, module: nn.Module) -> dict[str, Any]:
    """Mean and standard deviation (unbiased) of a layer's output over all its values; for a
    ReLU-like layer also the share of units (dim 1: features or channels) that are zero for
    every example and position."""
    kind = type(module).__name__
    units = int(output.shape[1]) if output.dim() > 1 else 1
    dead = None
    if kind in RELU_LIKE and output.dim() > 1:
        per_unit = output.transpose(0, 1).reshape(units, -1)  # (units, B * positions)
        dead = float((per_unit == 0).all(dim=1).float().mean())
    return {
        "layer": "",
        "type": kind,
        "mean": _float(output.float().mean()),
        "std": _float(output.float().std()),
        "units": units,
        "dead_fraction": dead,
    }


def _weights(net: nn.Module) -> list[tuple[str, np.ndarray]]:
    """Each weight tensor (matrices and kernels; biases and norm scales left out), flattened."""
    return [
        (name, p.detach().cpu().double().numpy().reshape(-1))
        for name, p in net.named_parameters()
        if p.dim() > 1
    ]


def _float(value: Any) -> float | None:
    import math

    value = float(value)
    return value if math.isfinite(value) else None


def _write_layers(
    path: Path, layers: list[dict[str, Any]], gradients: list[dict[str, Any]]
) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["kind", "name", "type", "mean", "std", "units", "dead_fraction", "norm"])
        for d in layers:
            out.writerow(
                [
                    "activation",
                    d["layer"],
                    d["type"],
                    d["mean"],
                    d["std"],
                    d["units"],
                    d["dead_fraction"],
                    "",
                ]
            )
        for g in gradients:
            out.writerow(["gradient", g["parameter"], "", "", "", "", "", g["norm"]])


def _activation_figure(layers: list[dict[str, Any]], threshold: float, path: Path) -> None:
    """Per layer in call order: the output's standard deviation (left) and, for ReLU-like
    layers, the share of dead units (right) against the flag's threshold (dashed)."""
    plt = _plt()
    names = [f"{d['layer']} ({d['type']})" for d in layers][::-1]
    height = 0.26 * len(layers) + 1.0
    fig, axes = plt.subplots(1, 2, figsize=(8.4, height), sharey=True)
    axes[0].barh(names, [d["std"] or 0.0 for d in layers][::-1], color="#4c72b0")
    axes[0].set_xlabel("activation std")
    axes[1].barh(names, [d["dead_fraction"] or 0.0 for d in layers][::-1], color="#c44e52")
    axes[1].set_xlabel("dead units (ReLU-like layers)")
    axes[1].axvline(threshold, color="black", linestyle="--", linewidth=0.8)
    axes[1].set_xlim(0, 1)
    _save(fig, path)


def _weight_figure(weights: list[tuple[str, np.ndarray]], bins: int, path: Path) -> None:
    """One histogram panel per weight tensor."""
    plt = _plt()
    cols = min(max(len(weights), 1), 4)
    rows = max(-(-len(weights) // cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat[len(weights) :]:
        ax.axis("off")
    for ax, (name, w) in zip(axes.flat, weights, strict=False):
        ax.hist(w, bins=bins, color="#4c72b0")
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    _save(fig, path)
