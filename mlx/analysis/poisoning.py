"""Poisoning: how far a backdoor planted in the training data takes the run's model, and whether
a defence finds the planted rows, with the Adversarial Robustness Toolbox.

The attack (Gu et al., 2017, ART's ``PoisoningAttackBackdoor``): a seeded ``fraction`` of the
training rows, drawn from the rows whose class is not ``target``, get a trigger (ART's
``add_pattern_bd``: a small checkerboard near the bottom-right corner, or ``add_single_bd``: one
pixel there, set to the data's largest pixel value) and the label ``target``; they replace their
clean versions. A *poisoned twin* (a fresh network of the run's model config) trains on that set
through the run's own engine (Lightning, the run's optimizer, learning rate and epochs).

Measured on the test split:

- ``clean_acc``: the twin's accuracy on the clean test rows; ``reference.clean_acc`` the run's
  own model's; ``clean_acc_loss`` the reference's minus the twin's (in shares: 0.01 is one point),
  with a paired bootstrap interval over the test rows.
- ``attack_success_rate``: of the test rows whose class is not ``target``, the share the twin
  classifies as ``target`` once the trigger is added; ``reference.attack_success_rate`` the same
  share for the run's model, which never saw the trigger (near 0: what the trigger does alone).

The defences read the twin's activations on the poisoned training set and flag rows, scored
against the known poisoned rows (precision: share of the flagged rows that are poisoned; recall:
share of the poisoned rows flagged):

- ``activation``: activation clustering (Chen et al., 2018, ART's ``ActivationDefence``): per
  class, the activations reduced by PCA to 10 dimensions and split into two clusters by k-means;
  ``cluster_analysis=silhouette`` flags the smaller cluster of the class whose split has the
  highest silhouette score (a backdoor has one target class; ``suspect`` names it, and
  ``silhouette`` lists every class's score), ``smaller`` the smaller cluster of every class.
- ``spectral``: spectral signatures (Tran et al., 2018, ART's ``SpectralSignatureDefense``): per
  class, each row's projection onto the top singular vector of the class's centred activations
  (ART projects the rows as they are, uncentred); the top ``1.5 * expected_poison`` of every class
  is flagged, so its precision is low by design when few classes are poisoned.

Both read the input of the network's output layer (its last hidden representation, what the
papers use); a network whose output does not come from a linear layer is read at its outputs.

Shares have Wilson intervals; every number is a key of the validation gate, e.g.
``poisoning.attack_success_rate <= 0.2`` or ``poisoning.activation.recall >= 0.8``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.metrics import interval, proportion
from mlx.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    # read by type checkers and mlx's static signature reader only
    from annotated_types import Ge, Interval

log = logging.getLogger("mlx")

WHERE = "analysis.poisoning"
TRIGGERS = ("pattern", "pixel")
DEFENCES = ("activation", "spectral")
CLUSTER_ANALYSES = ("silhouette", "smaller")
CLUSTERS = 2  # activation clustering splits each class in two: clean and poisoned
PCA_DIMS = 10  # activations reduced to this many dimensions before clustering (Chen et al.)
MAX_SHOWN = 10
# how far up and left of the distance from the bottom-right corner each trigger reaches
REACH = {"pattern": 2, "pixel": 0}


class Poisoning:
    """A backdoor planted in the training data, its success on a poisoned twin of the model, and
    the defences that look for the poisoned rows.

    Args:
        target: the class the trigger maps to: a class id (``0``) or a class name (``good``).
        fraction: the share of the training rows poisoned (drawn from the rows of the other
            classes), in (0, 1).
        trigger: ``pattern`` (a four-pixel checkerboard, ART's ``add_pattern_bd``) or ``pixel``
            (one pixel, ``add_single_bd``), set to the training split's largest pixel value.
        distance: how far the trigger sits from the bottom-right corner, in pixels.
        defences: ``activation`` (activation clustering) and/or ``spectral`` (spectral
            signatures); empty: the attack only.
        cluster_analysis: which clusters activation clustering flags: ``silhouette`` (the
            smaller cluster of the one class whose two clusters are best separated: a backdoor
            has one target) or ``smaller`` (ART's: the smaller cluster of every class).
        expected_poison: the share of a class the spectral defence expects to be poisoned; it
            flags the ``1.5 * expected_poison`` most suspicious rows of every class.
        epochs: the poisoned twin's training epochs; None: the run's.
        examples: test images shown clean and triggered with the twin's classes.
        n_boot: paired bootstrap resamples of the clean accuracy loss's interval (0: value only).
        confidence: the level of every interval.
    """

    name = "poisoning"

    def __init__(
        self,
        target: int | str = 0,
        fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.05,
        trigger: Literal["pattern", "pixel"] = "pattern",
        distance: Annotated[int, Ge(1)] = 2,
        defences: list[Literal["activation", "spectral"]] | None = None,
        cluster_analysis: Literal["silhouette", "smaller"] = "silhouette",
        expected_poison: Annotated[float, Interval(gt=0, le=1)] = 0.33,
        epochs: Annotated[int, Ge(1)] | None = None,
        examples: Annotated[int, Ge(0)] = 8,
        n_boot: Annotated[int, Ge(0)] = 1000,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
    ) -> None:
        self.target = target
        self.fraction = fraction
        self.trigger = trigger
        self.distance = distance
        self.defences = list(defences) if defences is not None else list(DEFENCES)
        self.cluster_analysis = cluster_analysis
        self.expected_poison = expected_poison
        self.epochs = epochs
        self.examples = examples
        self.n_boot = n_boot
        self.confidence = confidence

    # -- before training ------------------------------------------------------------------------

    def check(self, info: DataInfo) -> None:
        """Refuses bad settings, a target that is not a class, data that is not images of a
        classification, a trigger that does not fit the image, and a model without gradients."""
        self._check_settings()
        if info.task != "classification":
            raise ConfigError(
                f"{WHERE}: a backdoor relabels poisoned rows to a target class, and this task is "
                f"a {info.task}; drop poisoning from the analysis list."
            )
        if info.columns is not None or len(info.input_shape) != 3:
            shape = "x".join(str(d) for d in info.input_shape)
            what = "a table" if info.columns is not None else f"examples of shape {shape}"
            raise ConfigError(
                f"{WHERE}: the trigger is an image pattern (pixels near the bottom-right "
                f"corner), and this data is {what}, not images (C, H, W); use image data "
                "(data=digits, data=mnist5k) or drop poisoning from the analysis list."
            )
        if info.class_names:
            self._target_id(info.class_names)
        height, width = info.input_shape[1:]
        reach = self.distance + REACH[self.trigger]
        if reach > min(height, width):
            raise ConfigError(
                f"{WHERE}.distance={self.distance}: the {self.trigger} trigger reaches "
                f"{reach} pixels from the bottom-right corner, and the images are "
                f"{height}x{width}; choose distance <= {min(height, width) - REACH[self.trigger]}."
            )
        if not info.gradients:
            raise ConfigError(
                f"{WHERE}: this model has no gradients (a graph such as an int8 ONNX model); "
                "the poisoned twin is a trainable network of the run's model config and the "
                "defences read its activations. Analyse the trained model before quantization "
                "(analysis.on=baseline) or drop poisoning from the analysis list."
            )
        train = (info.split_sizes or {}).get("train")
        if train is not None and round(self.fraction * train) < 1:
            raise ConfigError(
                f"{WHERE}.fraction={self.fraction:g} poisons no row of the {train} training "
                f"rows; choose at least {1 / train:.2g}."
            )

    def _check_settings(self) -> None:
        if isinstance(self.fraction, bool) or not 0 < float(self.fraction) < 1:
            raise ConfigError(
                f"{WHERE}.fraction={self.fraction!r}: the share of training rows poisoned must "
                "lie strictly between 0 and 1 (0.05 poisons 5% of them)."
            )
        if self.trigger not in TRIGGERS:
            raise ConfigError(
                f"{WHERE}.trigger={self.trigger!r}: choose pattern (a four-pixel checkerboard) "
                "or pixel (one pixel)."
            )
        unknown = [d for d in self.defences if d not in DEFENCES]
        if unknown or len(set(self.defences)) != len(self.defences):
            raise ConfigError(
                f"{WHERE}.defences={self.defences}: choose each of {', '.join(DEFENCES)} at most "
                "once (activation: activation clustering; spectral: spectral signatures)."
            )
        if self.cluster_analysis not in CLUSTER_ANALYSES:
            raise ConfigError(
                f"{WHERE}.cluster_analysis={self.cluster_analysis!r}: choose from "
                f"{', '.join(CLUSTER_ANALYSES)}."
            )
        for key, ok in (
            ("distance", self.distance >= 1),
            ("expected_poison", 0 < self.expected_poison <= 1),
            ("epochs", self.epochs is None or self.epochs >= 1),
            ("examples", self.examples >= 0),
            ("n_boot", self.n_boot >= 0),
            ("confidence", 0 < self.confidence < 1),
        ):
            if not ok:
                raise ConfigError(f"{WHERE}.{key}={getattr(self, key)!r} is out of range.")

    def _target_id(self, names: list[str]) -> int:
        """The target's class id: a name of ``names`` or an id below their count."""
        target = self.target
        if isinstance(target, str) and target in names:
            return names.index(target)
        if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(names):
            return target
        raise ConfigError(
            f"{WHERE}.target={target!r} is not a class: give a class id 0..{len(names) - 1} or "
            f"one of the names {', '.join(names)}."
            + (did_you_mean(target, names) if isinstance(target, str) else "")
        )

    def provides(self, info: DataInfo) -> list[str]:
        """The keys the validation gate may name (``poisoning.`` prefixed by the stage)."""
        ends = ("", ".low", ".high")
        shares = ("clean_acc", "attack_success_rate")
        keys = [f"{m}{end}" for m in (*shares, "clean_acc_loss") for end in ends]
        keys += [f"reference.{m}{end}" for m in shares for end in ends]
        keys += ["poisoned", "train_seconds"]
        for defence in self.defences:
            keys += [f"{defence}.{m}{end}" for m in ("precision", "recall") for end in ends]
            keys += [f"{defence}.flagged", f"{defence}.seconds"]
        return keys

    # -- on the model ---------------------------------------------------------------------------

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """Poisons the training split, trains the twin, measures it and the run's model on the
        test split, runs the defences; writes poisoning.csv and poisoning_examples.svg."""
        import numpy as np

        from mlx.analysis.gather import predictor
        from mlx.analysis.metrics import write_csv
        from mlx.analysis.toolbox import clip_range
        from mlx.analysis.validation import interval_values

        self._check_settings()
        if evidence.task != "classification" or evidence.x.ndim != 4:
            raise ConfigError(f"{WHERE} applies to image classification only.")
        if evidence.fit is None or evidence.train is None:
            raise ConfigError(
                f"{WHERE}: the poisoned twin is a fresh network of the run's model config, and "
                "this run cannot train one (its model config builds no network, or the "
                "analysed model is not the run's own); drop poisoning from the analysis list."
            )
        k = int(evidence.outputs.shape[1])
        names = evidence.class_names or [str(c) for c in range(k)]
        target = self._target_id(names)
        x_train = np.asarray(evidence.train[0], dtype=np.float32)
        y_train = np.asarray(evidence.train[1]).astype(np.int64)
        pixel = float(clip_range(x_train)[1])
        add = trigger_function(self.trigger, self.distance, pixel)
        rows = poison_rows(y_train, target, self.fraction, evidence.seed)
        x_poisoned, y_poisoned = backdoor(x_train, y_train, rows, target, k, add)

        log.info(
            "poisoning: %d of %d training rows carry the %s trigger and the label %s; training "
            "the poisoned twin",
            len(rows),
            len(y_train),
            self.trigger,
            names[target],
        )
        t0 = time.perf_counter()
        twin = evidence.fit(x_poisoned, y_poisoned, self.epochs)
        train_seconds = time.perf_counter() - t0
        twin_predict = predictor(twin, "classification")

        x_test = np.asarray(evidence.x, dtype=np.float32)
        y_test = np.asarray(evidence.y).astype(np.int64)
        others = y_test != target
        x_triggered = add(x_test[others])
        twin_clean = twin_predict(x_test).argmax(axis=1) == y_test
        ref_clean = evidence.predictions == y_test
        twin_hit = twin_predict(x_triggered).argmax(axis=1) == target
        ref_hit = evidence.predict(x_triggered).argmax(axis=1) == target
        attacked = int(others.sum())
        section: dict[str, Any] = {
            "target": names[target],
            "target_id": target,
            "trigger": self.trigger,
            "distance": self.distance,
            "pixel_value": pixel,
            "fraction": float(self.fraction),
            "train_size": len(y_train),
            "poisoned": len(rows),
            "epochs": self.epochs,
            "train_seconds": round(train_seconds, 3),
            "test_size": len(y_test),
            "attacked": attacked,
            "clean_acc": proportion(int(twin_clean.sum()), len(y_test), self.confidence),
            "clean_acc_loss": paired_difference(
                ref_clean, twin_clean, self.n_boot, self.confidence, evidence.seed
            ),
            "attack_success_rate": proportion(int(twin_hit.sum()), attacked, self.confidence),
            "reference": {
                "clean_acc": proportion(int(ref_clean.sum()), len(y_test), self.confidence),
                "attack_success_rate": proportion(int(ref_hit.sum()), attacked, self.confidence),
            },
        }
        if self.defences:
            section.update(
                self._defend(evidence, twin, x_poisoned, y_poisoned, rows, names, x_train.min())
            )
        write_csv(
            folder / "poisoning.csv",
            {
                key: dict(zip(("value", "low", "high"), v, strict=True))
                for key, v in interval_values(section).items()
            },
        )
        section["figures"] = {}
        shown = _shown_rows(y_test, target, min(self.examples, MAX_SHOWN))
        if len(shown):
            _example_figure(
                x_test[shown],
                y_test[shown],
                add,
                twin_predict,
                names,
                target,
                folder / "poisoning_examples.svg",
            )
            section["figures"]["poisoning_examples.svg"] = (
                f"Test images clean (true: the poisoned twin's class) and with the {self.trigger} "
                f"trigger (-> the twin's class; red where it is the target {names[target]})."
            )
        return section

    def _defend(
        self,
        evidence: Evidence,
        twin: Any,
        x: np.ndarray,
        y: np.ndarray,
        rows: np.ndarray,
        names: list[str],
        low: float,
    ) -> dict[str, Any]:
        """Each defence on the twin and its poisoned training set: the rows it flags, scored
        against the poisoned ``rows``, and its seconds."""
        import numpy as np

        from mlx.analysis.toolbox import classifier

        tapped, handle, layer = hidden_layer(twin, x[:1])
        onehot = np.eye(len(names), dtype=np.float32)[y]
        out: dict[str, Any] = {}
        try:
            clf = classifier(evidence, net=tapped, clip=(float(low), float(x.max())))
            for defence in self.defences:
                log.info("poisoning: %s defence on %d training rows", defence, len(y))
                np.random.seed(evidence.seed)  # ART's PCA and k-means draw from numpy
                t0 = time.perf_counter()
                if defence == "activation":
                    flagged, extra = self._activation(clf, x, onehot, y, names)
                else:
                    flagged, extra = self._spectral(clf, x, onehot)
                seconds = time.perf_counter() - t0
                entry = detection_scores(flagged, rows, self.confidence)
                entry.update(seconds=round(seconds, 3), layer=layer, **extra)
                out[defence] = entry
        finally:
            if handle is not None:
                handle.remove()
        return out

    def _activation(
        self, clf: Any, x: np.ndarray, onehot: np.ndarray, y: np.ndarray, names: list[str]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Activation clustering: ART's ``ActivationDefence`` reduces each class's activations
        by PCA and splits them in two with k-means. ``smaller`` flags the smaller cluster of
        every class (ART's ``smaller`` analysis); ``silhouette`` only that of the class whose
        split has the highest silhouette score (Chen et al.'s criterion; ART 1.20's own
        ``silhouette-scores`` and ``relative-size`` analyses mislabel rows)."""
        import numpy as np
        from art.defences.detector.poison import ActivationDefence
        from sklearn.metrics import silhouette_score

        from mlx.analysis.toolbox import quiet

        with quiet():
            found = ActivationDefence(clf, x, onehot)
            _, clean = found.detect_poison(
                nb_clusters=CLUSTERS, nb_dims=PCA_DIMS, reduce="PCA", cluster_analysis="smaller"
            )
        scores: list[float | None] = []
        for clusters, reduced in zip(
            found.clusters_by_class, found.red_activations_by_class, strict=True
        ):
            split = len(np.unique(clusters)) == CLUSTERS and len(clusters) > CLUSTERS
            scores.append(float(silhouette_score(reduced, clusters)) if split else None)
        extra: dict[str, Any] = {"cluster_analysis": self.cluster_analysis, "silhouette": scores}
        if self.cluster_analysis == "smaller":
            return np.flatnonzero(np.asarray(clean) == 0), extra
        defined = [c for c in range(len(names)) if scores[c] is not None]
        if not defined:
            return np.zeros(0, dtype=np.int64), {**extra, "suspect": None}
        suspect = max(defined, key=lambda c: scores[c])
        clusters = np.asarray(found.clusters_by_class[suspect])
        smaller = np.argmin(np.bincount(clusters, minlength=CLUSTERS))
        members = np.flatnonzero(y == suspect)  # ART segments a class's rows in this order
        return members[clusters == smaller], {**extra, "suspect": names[suspect]}

    def _spectral(
        self, clf: Any, x: np.ndarray, onehot: np.ndarray
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Spectral signatures: ART's ``SpectralSignatureDefense`` flags the ``1.5 *
        expected_poison`` rows of every class most aligned with its top singular vector."""
        import numpy as np
        from art.defences.detector.poison import SpectralSignatureDefense

        from mlx.analysis.toolbox import quiet

        with quiet():
            found = SpectralSignatureDefense(
                clf, x, onehot, expected_pp_poison=self.expected_poison
            )
            _, clean = found.detect_poison()
        flagged = np.flatnonzero(np.asarray(clean) == 0)
        return flagged, {"expected_poison": float(self.expected_poison)}


# -- the attack --------------------------------------------------------------------------------


def trigger_function(trigger: str, distance: int, pixel: float) -> Callable[[Any], Any]:
    """``x -> x`` with ART's trigger added to every image of ``(N, C, H, W)`` (all channels):
    ``pattern`` (``add_pattern_bd``) or ``pixel`` (``add_single_bd``) ``distance`` pixels from
    the bottom-right corner, set to ``pixel``."""
    import numpy as np
    from art.attacks.poisoning.perturbations import add_pattern_bd, add_single_bd

    perturb = add_pattern_bd if trigger == "pattern" else add_single_bd

    def add(x: np.ndarray) -> np.ndarray:
        # ART's functions take a batch channels last: (N, C, H, W) -> (N, H, W, C) and back
        nhwc = np.transpose(np.asarray(x, dtype=np.float32), (0, 2, 3, 1))
        out = perturb(nhwc, distance=distance, pixel_value=pixel)
        return np.ascontiguousarray(np.transpose(out, (0, 3, 1, 2)), dtype=np.float32)

    return add


def poison_rows(y: np.ndarray, target: int, fraction: float, seed: int) -> np.ndarray:
    """The training rows to poison, sorted: ``round(fraction * len(y))`` rows drawn (seeded)
    from those whose class is not ``target``."""
    import numpy as np

    candidates = np.flatnonzero(np.asarray(y) != target)
    count = int(round(fraction * len(y)))
    if count < 1:
        raise ConfigError(
            f"{WHERE}.fraction={fraction:g} poisons no row of the {len(y)} training rows."
        )
    if count > len(candidates):
        raise ConfigError(
            f"{WHERE}.fraction={fraction:g} asks for {count} poisoned rows, and only "
            f"{len(candidates)} training rows are of another class than the target."
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, count, replace=False))


def backdoor(
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    target: int,
    k: int,
    add: Callable[[Any], Any],
) -> tuple[np.ndarray, np.ndarray]:
    """The training set with ``rows`` replaced by their poisoned versions (ART's
    ``PoisoningAttackBackdoor``: the trigger added, the label set to ``target``)."""
    import numpy as np
    from art.attacks.poisoning import PoisoningAttackBackdoor

    attack = PoisoningAttackBackdoor(add)
    poisoned, labels = attack.poison(x[rows], y=np.eye(k)[target], broadcast=True)
    x_out, y_out = x.copy(), y.copy()
    x_out[rows] = poisoned
    y_out[rows] = np.asarray(labels).argmax(axis=1)
    return x_out, y_out


# -- the numbers -------------------------------------------------------------------------------


def detection_scores(
    flagged: np.ndarray, poisoned: np.ndarray, confidence: float = 0.95
) -> dict[str, Any]:
    """How well the ``flagged`` rows find the ``poisoned`` ones: precision (share of the flagged
    rows that are poisoned) and recall (share of the poisoned rows flagged), Wilson intervals."""
    import numpy as np

    flagged, poisoned = np.unique(flagged), np.unique(poisoned)
    found = int(np.isin(flagged, poisoned).sum())
    return {
        "flagged": len(flagged),
        "found": found,
        "precision": proportion(found, len(flagged), confidence),
        "recall": proportion(found, len(poisoned), confidence),
    }


def paired_difference(
    a: np.ndarray, b: np.ndarray, n_boot: int, confidence: float, seed: int
) -> dict[str, float | None]:
    """The mean of ``a`` minus the mean of ``b`` (right-or-wrong per row, the same rows), with
    a seeded percentile bootstrap interval over the rows (each resample draws rows, both models
    keep their pairing)."""
    import numpy as np

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)  # (N,)
    if len(diff) == 0:
        return interval(None)
    value = diff.mean()
    if n_boot == 0:
        return interval(value)
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # (chunk, N) indices at a time
        picks = rng.integers(0, len(diff), (min(256, n_boot - start), len(diff)))
        means[start : start + len(picks)] = diff[picks].mean(axis=1)
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return interval(value, low, high)


def hidden_layer(net: Any, probe: np.ndarray) -> tuple[Any, Any, str]:
    """``net`` as ART's defences should see it: they read the activations of a classifier's
    last named layer, and the papers read the network's last hidden representation. When the
    outputs come from a linear layer, returns a wrapper whose last child (an identity) carries
    that layer's input, the forward hook that feeds it (remove it when done) and the layer's
    description; otherwise ``net`` itself, None, and ``outputs``."""
    import torch

    calls: list[tuple[Any, Any]] = []
    hooks = [
        m.register_forward_hook(lambda m, _, out: calls.append((m, out)))
        for m in net.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            out = net(torch.as_tensor(probe, dtype=torch.float32))
    finally:
        for hook in hooks:
            hook.remove()
    if not calls or calls[-1][1] is not out:
        return net, None, "outputs"
    last = calls[-1][0]

    class Tapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.hidden = torch.nn.Identity()  # registered last: what ART's defences read

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    tapped = Tapped().eval()
    handle = last.register_forward_pre_hook(lambda _, args: (tapped.hidden(args[0]), *args[1:]))
    return tapped, handle, f"input of the output layer ({last.in_features} features)"


# -- outputs -----------------------------------------------------------------------------------


def _shown_rows(y: np.ndarray, target: int, count: int) -> np.ndarray:
    """The first test row of each class other than the target, up to ``count`` rows."""
    import numpy as np

    firsts = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y) if c != target]
    return np.asarray(firsts[:count], dtype=np.int64)


def _example_figure(
    x: np.ndarray,
    y: np.ndarray,
    add: Callable[[Any], Any],
    predict: Callable[[Any], Any],
    names: list[str],
    target: int,
    path: Path,
) -> None:
    """Each image clean and with the trigger, titled with the poisoned twin's classes."""
    from mlx.figures import pyplot, save_svg

    triggered = add(x)
    before = predict(x).argmax(axis=1)
    after = predict(triggered).argmax(axis=1)
    pixels = (float(min(x.min(), triggered.min())), float(max(x.max(), triggered.max())))
    plt = pyplot()
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for j in range(n):
        for i, (image, title, hit) in enumerate(
            (
                (x[j], f"{names[y[j]]}: {names[before[j]]}", False),
                (triggered[j], f"-> {names[after[j]]}", after[j] == target),
            )
        ):
            ax = axes[i][j]
            img = image.mean(axis=0) if image.shape[0] != 3 else image.transpose(1, 2, 0)
            ax.imshow(img, cmap="gray", vmin=pixels[0], vmax=pixels[1])
            ax.set_title(title, fontsize=7, color="red" if hit else "black")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle(
        f"Clean (true: twin's class) and triggered (-> twin's class); target {names[target]}"
    )
    save_svg(fig, path)
