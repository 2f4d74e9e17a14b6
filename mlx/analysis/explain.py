"""Explanations: which inputs the model's outputs rest on, with Captum's attributions.

Integrated gradients (the default), saliency or feature ablation attribute the model's output
for each example's *predicted* class (classification) or its prediction (regression) to the
input features, on a seeded subsample of the split. Integrated gradients come with their
completeness check: the attributions of an example sum to ``f(x) - f(baseline)`` up to the
integral's error (Captum's convergence delta), reported so a user sees the attribution is sound.

Images get per-class average attribution maps and per-example overlays; tables get a global
importance per feature (mean absolute attribution), summed back onto the raw columns when
one-hot groups are known (``sex_Male``, ``sex_Female`` -> ``sex``), and permutation importance
(scikit-learn's, the model queried as a black box) with its spread over repeats. All Captum
imports live in this module.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Gt

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.errors import ConfigError
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np
    import torch

GRADIENT_METHODS = ("integrated_gradients", "saliency")
# rows a forward/backward pass takes at once (IG: examples x steps rows)
BATCH = 512
# feature ablation on images removes square patches, at most this many along a side (digits 8x8:
# single pixels; MNIST 28x28: 4x4 patches), so its cost stays near integrated gradients'
PATCHES = 8
# examples an image figure draws at most
MAX_SHOWN = 16
# features drawn in the importance bar chart
TOP = 20
# an example whose output hardly moves from the baseline (|f(x) - f(b)| below this) has no
# meaningful relative completeness error: it is left out of the relative figures
FLAT = 1e-6


class Explain:
    """Attributions of the model's outputs to its inputs (Captum), and permutation importance.

    Args:
        method: ``integrated_gradients`` (path integral of gradients from a baseline; sums to
            ``f(x) - f(baseline)``), ``saliency`` (absolute input gradient at ``x``) or
            ``feature_ablation`` (output change when a feature, or an image patch of up to
            ``ceil(side / 8)`` pixels square, is set to the baseline: needs no gradients, so
            it also serves models without them).
        samples: test examples attributions are computed on (a seeded draw; all when fewer).
        examples: examples shown one by one (image overlays, at most 16; for a table, each
            example's strongest columns in the record).
        steps: integration steps of integrated gradients (more steps, smaller error).
        baseline: the reference input: ``zeros`` (for standardized tables, the average
            numeric value and no category) or ``mean`` (the training split's mean input).
        permutation: tables only: also permutation importance of each raw column (its
            one-hot columns shuffled together), the model queried as a black box.
        repeats: shuffles per column of permutation importance.
        tolerance: integrated gradients' completeness error (mean |delta| relative to
            |f(x) - f(baseline)|) above which the section warns.
    """

    name = "explain"

    def __init__(
        self,
        method: Literal["integrated_gradients", "saliency", "feature_ablation"] = (
            "integrated_gradients"
        ),
        samples: Annotated[int, Ge(1)] = 100,
        examples: Annotated[int, Ge(0)] = 8,
        steps: Annotated[int, Ge(2)] = 32,
        baseline: Literal["zeros", "mean"] = "zeros",
        permutation: bool = True,
        repeats: Annotated[int, Ge(1)] = 5,
        tolerance: Annotated[float, Gt(0)] = 0.05,
    ) -> None:
        self.method = method
        self.samples = samples
        self.examples = examples
        self.steps = steps
        self.baseline = baseline
        self.permutation = permutation
        self.repeats = repeats
        self.tolerance = tolerance

    def check(self, info: DataInfo) -> None:
        if self.method in GRADIENT_METHODS and not info.gradients:
            raise ConfigError(
                f"analysis explain: method={self.method} needs the model's gradients, and this "
                "model has none (a graph such as an int8 ONNX model); use "
                "method=feature_ablation, or permutation importance (permutation=true), which "
                "only query the model's outputs."
            )

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        import numpy as np

        if self.method in GRADIENT_METHODS and evidence.net is None:
            raise ConfigError(
                f"analysis explain: method={self.method} needs the model's gradients, and this "
                "model has none; use method=feature_ablation."
            )
        rng = np.random.default_rng(evidence.seed)
        n = len(evidence.x)
        rows = np.sort(rng.choice(n, self.samples, replace=False)) if self.samples < n else None
        rows = np.arange(n) if rows is None else rows
        x = evidence.x[rows].astype(np.float32)
        classification = evidence.task == "classification"
        target = evidence.predictions[rows].astype(np.int64) if classification else None
        forward, output = _forward(evidence)
        reference = evidence.train[0] if evidence.train is not None else evidence.x
        baseline = (
            np.zeros_like(x[:1])
            if self.baseline == "zeros"
            else reference.mean(axis=0, keepdims=True).astype(np.float32)
        )
        attr, delta = attribute(forward, x, target, self.method, baseline, self.steps)
        section: dict[str, Any] = {
            "method": self.method,
            "target": "predicted class" if classification else "prediction",
            "output": output,
            "baseline": self.baseline,
            "samples": len(rows),
            "warnings": [],
        }
        if self.method == "integrated_gradients":
            section["steps"] = self.steps
            change = _output(forward, x, target) - _output(forward, baseline, target)
            section["completeness"] = completeness(delta, change, self.tolerance)
            if not section["completeness"]["sound"]:
                section["warnings"].append(
                    f"integrated gradients' attributions miss f(x) - f(baseline) by "
                    f"{section['completeness']['mean_relative']:.1%} on average (tolerance "
                    f"{self.tolerance:.1%}): raise steps (now {self.steps}) for a sound "
                    "attribution."
                )
        if x.ndim == 4:
            section.update(self._images(evidence, rows, x, attr, target, folder))
        else:
            section.update(self._table(evidence, rows, x, attr, target, folder))
        return section

    # -- images -------------------------------------------------------------------------------

    def _images(
        self,
        evidence: Evidence,
        rows: np.ndarray,
        x: np.ndarray,
        attr: np.ndarray,
        target: np.ndarray | None,
        folder: Path,
    ) -> dict[str, Any]:
        import numpy as np

        if target is None:  # regression: one map over all examples
            names, labels = ["all"], np.zeros(len(x), dtype=np.int64)
        else:
            k = len(evidence.class_names) if evidence.class_names else evidence.outputs.shape[1]
            names = evidence.class_names or [str(c) for c in range(k)]
            labels = target
        maps = class_maps(attr, labels, len(names))
        _class_figure(maps, names, folder / "attribution_classes.svg")
        shown = min(self.examples, len(x), MAX_SHOWN)
        if shown:
            _example_figure(evidence, rows[:shown], x[:shown], attr[:shown], folder)
        section: dict[str, Any] = {
            "classes": [
                {"class": name, "examples": int((labels == c).sum())}
                for c, name in enumerate(names)
            ],
            "figures": ["attribution_classes.svg"],
        }
        if self.method == "feature_ablation":
            section["patch"] = patch_size(*x.shape[2:])
        if shown:
            section["figures"].append("attribution_examples.svg")
            section["examples"] = shown
        if self.permutation:
            section["notes"] = ["permutation importance is computed for tables only"]
        return section

    # -- tables -------------------------------------------------------------------------------

    def _table(
        self,
        evidence: Evidence,
        rows: np.ndarray,
        x: np.ndarray,
        attr: np.ndarray,
        target: np.ndarray | None,
        folder: Path,
    ) -> dict[str, Any]:
        import numpy as np

        names = evidence.feature_names or [f"x{i}" for i in range(x.shape[1])]
        columns = list(evidence.raw.columns) if evidence.raw is not None else None
        groups = raw_groups(names, columns)
        grouped = np.stack([attr[:, idx].sum(axis=1) for _, idx in groups], axis=1)
        feature_importance = np.abs(attr).mean(axis=0)
        column_importance = np.abs(grouped).mean(axis=0)
        section: dict[str, Any] = {
            "importance": _ranked(names, feature_importance, "feature"),
            "importance_columns": _ranked([g for g, _ in groups], column_importance, "column"),
        }
        _write_attributions(folder / "attributions.csv", rows, evidence, target, names, attr)
        shown = min(self.examples, len(x))
        if shown:
            section["examples"] = [
                {
                    "row": int(rows[i]),
                    **(
                        {"predicted": _class_name(evidence, int(target[i]))}
                        if target is not None
                        else {}
                    ),
                    "strongest": [
                        {"column": groups[j][0], "attribution": _float(grouped[i, j])}
                        for j in np.argsort(-np.abs(grouped[i]), kind="stable")[:5]
                    ],
                }
                for i in range(shown)
            ]
        perm = None
        if self.permutation:
            perm = permutation(
                evidence.predict,
                x,
                evidence.y[rows],
                evidence.task,
                groups,
                self.repeats,
                evidence.seed,
            )
            section["permutation"] = {
                "score": "accuracy" if evidence.task == "classification" else "r2",
                "repeats": self.repeats,
                "columns": perm,
            }
        _importance_figure(section["importance_columns"], perm, self.method, folder)
        section["tables"] = ["attributions.csv"]
        section["figures"] = ["importance.svg"]
        return section


# -- the attributions ---------------------------------------------------------------------------


def _forward(evidence: Evidence) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The function attributions explain: the network's logits (classification) or prediction
    (regression), or, without a network, the probabilities ``evidence.predict`` gives."""
    import torch

    net = evidence.net
    regression = evidence.task == "regression"
    if net is not None:
        device = next((p.device for p in net.parameters()), torch.device("cpu"))

        def forward(x: torch.Tensor) -> torch.Tensor:
            out = net(x.to(device)).cpu()
            return out.reshape(len(x), -1)[:, 0] if regression else out  # (B,) or (B, K)

        return forward, "prediction" if regression else "logit"

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = torch.as_tensor(evidence.predict(x.detach().cpu().numpy()))
        return out.reshape(len(x), -1)[:, 0] if regression else out

    return predict, "prediction" if regression else "probability"


def attribute(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    target: np.ndarray | None,
    method: str,
    baseline: np.ndarray,
    steps: int = 50,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Captum's attributions of ``forward``'s output (column ``target`` of each row, or the
    scalar output when None) to the inputs ``x`` (N, ...): an array of ``x``'s shape, and the
    convergence delta of each row (integrated gradients only, else None)."""
    import numpy as np
    import torch
    from captum.attr import FeatureAblation, IntegratedGradients, Saliency

    base = torch.as_tensor(baseline, dtype=torch.float32)
    attrs, deltas = [], []
    # per example the rows a method evaluates at once: IG steps, ablation features
    per_example = steps if method == "integrated_gradients" else 1
    chunk = max(1, BATCH // per_example) if method == "integrated_gradients" else BATCH
    mask = None
    if method == "feature_ablation" and x.ndim == 4:
        mask = patches(x.shape[1:])
    for start in range(0, len(x), chunk):
        xs = torch.as_tensor(x[start : start + chunk], dtype=torch.float32)
        ts = None if target is None else torch.as_tensor(target[start : start + chunk])
        if method == "integrated_gradients":
            a, d = IntegratedGradients(forward).attribute(
                xs,
                baselines=base.expand_as(xs),
                target=ts,
                n_steps=steps,
                internal_batch_size=BATCH,
                return_convergence_delta=True,
            )
            deltas.append(d.detach().numpy())
        elif method == "saliency":
            a = Saliency(forward).attribute(xs.requires_grad_(), target=ts, abs=True)
        else:
            with torch.no_grad():
                a = FeatureAblation(forward).attribute(
                    xs,
                    baselines=base.expand_as(xs),
                    target=ts,
                    feature_mask=mask,
                    perturbations_per_eval=max(1, BATCH // len(xs)),
                )
        attrs.append(a.detach().numpy())
    delta = np.concatenate(deltas) if deltas else None
    return np.concatenate(attrs).astype(np.float64), delta


def patches(shape: tuple[int, ...]) -> torch.Tensor:
    """Feature ablation's features of an image ``(C, H, W)``: square patches of
    ``patch_size(H, W)`` pixels, each with all its channels, ids row by row, ``(1, C, H, W)``."""
    import torch

    c, h, w = shape
    size = patch_size(h, w)
    cols = -(-w // size)
    ys = torch.arange(h)[:, None] // size
    xs = torch.arange(w)[None, :] // size
    return (ys * cols + xs).reshape(1, 1, h, w).expand(1, c, h, w)


def patch_size(h: int, w: int) -> int:
    """The side of feature ablation's patches: at most PATCHES patches along the longer side."""
    return -(-max(h, w) // PATCHES)


def _output(
    forward: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, target: np.ndarray | None
) -> np.ndarray:
    """``forward(x)`` at each row's target, (N,) (a single baseline row broadcasts)."""
    import numpy as np
    import torch

    with torch.no_grad():
        out = forward(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    if target is None:
        return out
    if len(out) == 1:
        return out[0, target]
    return out[np.arange(len(out)), target]


def completeness(delta: np.ndarray, change: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Integrated gradients' completeness: ``delta`` = sum of attributions - (f(x) - f(b)) per
    example, absolute and relative to ``|f(x) - f(b)|`` (examples whose output hardly moves
    are left out of the relative figures)."""
    import numpy as np

    err = np.abs(delta.astype(np.float64))
    moved = np.abs(change) > FLAT
    relative = err[moved] / np.abs(change[moved])
    mean_rel = float(relative.mean()) if moved.any() else 0.0
    return {
        "max_abs_delta": _float(err.max()),
        "mean_abs_delta": _float(err.mean()),
        "mean_abs_change": _float(np.abs(change).mean()),
        "max_relative": _float(relative.max()) if moved.any() else None,
        "mean_relative": _float(mean_rel),
        "tolerance": tolerance,
        "sound": bool(mean_rel <= tolerance),
    }


def class_maps(attr: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """The average attribution of the examples of each class, ``(classes, *input shape)``;
    NaN for a class with no example in the sample."""
    import numpy as np

    maps = np.full((classes, *attr.shape[1:]), np.nan)
    for c in range(classes):
        if (labels == c).any():
            maps[c] = attr[labels == c].mean(axis=0)
    return maps


def raw_groups(feature_names: list[str], columns: list[str] | None) -> list[tuple[str, list[int]]]:
    """The raw column behind each encoded feature, as ``(column, feature indices)`` in first
    appearance order: a feature named after a column is that column; ``<column>_<category>``
    (scikit-learn's one-hot names, as mlx.data encodes categorical columns) belongs to the
    longest column it starts with. Without raw columns each feature is its own group."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(feature_names):
        owner = name
        if columns is not None and name not in columns:
            prefixes = [c for c in columns if name.startswith(f"{c}_")]
            owner = max(prefixes, key=len) if prefixes else name
        groups.setdefault(owner, []).append(i)
    return list(groups.items())


def permutation(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    groups: list[tuple[str, list[int]]],
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    """scikit-learn's permutation importance of each group of columns (a one-hot group is
    shuffled together): the drop of accuracy (classification) or R² (regression) when the
    group's values are shuffled across rows, as ``{"column", "value" (mean over repeats),
    "std", "low", "high" (min and max over repeats)}``, most important first."""
    import numpy as np
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import accuracy_score, r2_score

    # sklearn shuffles columns of X; here X holds, per group, the row whose values the group
    # takes: shuffling a column of row ids moves a whole group's values together
    ids = np.tile(np.arange(len(x))[:, None], (1, len(groups)))

    class Model:
        # scikit-learn asks for an estimator; the model is trained already
        def fit(self, rows: np.ndarray, truth: np.ndarray) -> Model:
            return self

        def predict(self, rows: np.ndarray) -> np.ndarray:
            mixed = np.empty_like(x)
            for g, (_, idx) in enumerate(groups):
                mixed[:, idx] = x[rows[:, g]][:, idx]
            out = predict(mixed)
            return out.argmax(axis=1) if task == "classification" else out.reshape(-1)

    def score(model: Model, rows: np.ndarray, truth: np.ndarray) -> float:
        pred = model.predict(rows)
        return accuracy_score(truth, pred) if task == "classification" else r2_score(truth, pred)

    result = permutation_importance(
        Model(), ids, y, scoring=score, n_repeats=repeats, random_state=seed
    )
    order = np.argsort(-result.importances_mean, kind="stable")
    return [
        {
            "column": groups[g][0],
            "value": _float(result.importances_mean[g]),
            "std": _float(result.importances_std[g]),
            "low": _float(result.importances[g].min()),
            "high": _float(result.importances[g].max()),
        }
        for g in order
    ]


# -- records, tables and figures ----------------------------------------------------------------


def _float(value: Any) -> float | None:
    import math

    value = float(value)
    return value if math.isfinite(value) else None


def _ranked(names: list[str], values: np.ndarray, key: str) -> list[dict[str, Any]]:
    import numpy as np

    order = np.argsort(-values, kind="stable")
    return [{key: names[i], "value": _float(values[i])} for i in order]


def _class_name(evidence: Evidence, c: int) -> str:
    return evidence.class_names[c] if evidence.class_names else str(c)


def _write_attributions(
    path: Path,
    rows: np.ndarray,
    evidence: Evidence,
    target: np.ndarray | None,
    names: list[str],
    attr: np.ndarray,
) -> None:
    preds = evidence.predictions[rows]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["row", "prediction", *names])
        for i, row in enumerate(rows):
            pred = _class_name(evidence, int(target[i])) if target is not None else preds[i]
            out.writerow([int(row), pred, *(f"{v:.6g}" for v in attr[i])])


def _class_figure(maps: np.ndarray, names: list[str], path: Path) -> None:
    """One panel per class: its average attribution summed over channels, red positive, blue
    negative, one colour scale for all panels."""
    import numpy as np

    plt = _plt()
    flat = np.nan_to_num(maps.sum(axis=1), nan=0.0)  # (K, H, W)
    scale = float(np.abs(flat).max()) or 1.0
    cols = min(len(names), 5)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for c, name in enumerate(names):
        ax = axes.flat[c]
        if np.isnan(maps[c]).all():
            ax.set_title(f"{name} (none)")
            continue
        ax.imshow(flat[c], cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(name)
    _save(fig, path)


def _example_figure(
    evidence: Evidence, rows: np.ndarray, x: np.ndarray, attr: np.ndarray, folder: Path
) -> None:
    """One column per example: the input above, its attribution over the input in grey below
    (red raises the explained output, blue lowers it; each example on its own scale)."""
    import numpy as np

    plt = _plt()
    fig, axes = plt.subplots(2, len(x), figsize=(1.6 * len(x), 3.6), squeeze=False)
    for i in range(len(x)):
        image = x[i].transpose(1, 2, 0)  # (H, W, C)
        span = image.max() - image.min()
        image = (image - image.min()) / (span if span > 0 else 1.0)
        grey = image.mean(axis=2)
        heat = attr[i].sum(axis=0)  # (H, W)
        scale = float(np.abs(heat).max()) or 1.0
        truth, pred = evidence.y[rows[i]], evidence.predictions[rows[i]]
        if evidence.task == "classification":
            title = (
                f"true {_class_name(evidence, int(truth))}\n"
                f"predicted {_class_name(evidence, int(pred))}"
            )
        else:
            title = f"true {float(truth):.3g}\npredicted {float(pred):.3g}"
        axes[0, i].imshow(grey if image.shape[2] == 1 else image, cmap="gray")
        axes[0, i].set_title(title, fontsize=7)
        axes[1, i].imshow(grey, cmap="gray", alpha=0.5)
        axes[1, i].imshow(heat, cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.75)
        for ax in axes[:, i]:
            ax.axis("off")
    axes[1, 0].set_title("attribution", fontsize=7, loc="left")
    _save(fig, folder / "attribution_examples.svg")


def _importance_figure(
    importance: list[dict[str, Any]],
    perm: list[dict[str, Any]] | None,
    method: str,
    folder: Path,
) -> None:
    """Bars of the mean |attribution| per raw column and, beside them, permutation importance
    with its spread over repeats (the strongest TOP columns)."""
    plt = _plt()
    panels = 2 if perm else 1
    top = importance[:TOP]
    height = 0.28 * max(len(top), len(perm[:TOP]) if perm else 0) + 1.0
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, height), squeeze=False)
    ax = axes[0, 0]
    ax.barh([d["column"] for d in top][::-1], [d["value"] or 0.0 for d in top][::-1])
    ax.set_xlabel(f"mean |attribution| ({method.replace('_', ' ')})")
    if perm:
        shown = perm[:TOP][::-1]
        ax = axes[0, 1]
        ax.barh(
            [d["column"] for d in shown],
            [d["value"] or 0.0 for d in shown],
            xerr=[d["std"] or 0.0 for d in shown],
            color="#dd8452",
        )
        ax.set_xlabel("permutation importance (score drop)")
    _save(fig, folder / "importance.svg")
