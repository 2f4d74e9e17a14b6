"""Evasion: how far the model's accuracy falls when an attacker perturbs its inputs, with the
Adversarial Robustness Toolbox's attacks on a seeded sample of the test split.

Two kinds of attack, each reported its own way:

- *budgeted* L-infinity attacks, run once per epsilon of ``eps`` (each pixel or numeric column
  moves by at most epsilon): FGSM and PGD (white-box, the model's gradients) and Square
  (black-box, the model's outputs only). Each epsilon gives the robust accuracy (accuracy on the
  attacked inputs, with its Wilson interval), the attack's success rate (share of the correctly
  classified examples it turns wrong) and the perturbation's mean L-infinity and L2 norms: the
  robust accuracy against epsilon is the curve.
- *minimal* L2 attacks, run once: Carlini-Wagner L2 (white-box) and HopSkipJump (black-box,
  decisions only) look for the smallest perturbation that changes the class. They give the
  success rate, the norm of what they found, and the robust accuracy at each L2 radius of
  ``radii`` (an example counts as robust at a radius when the attack found nothing smaller).

Robust accuracy against an attack is an upper bound on the true robust accuracy: a stronger
attack can only find more. Inputs stay inside the data's range (images: the smallest and largest
pixel of the training split and the attacked examples; tables: each column's), and on tables only numeric columns move (one-hot
columns stay as they are). Every number is a key of the validation gate, e.g.
``robustness.pgd.eps_0.1.robust_acc >= 0.6``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Interval

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.metrics import interval, proportion, write_rows
from mlx.errors import ConfigError
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("mlx")

LINF = ("fgsm", "pgd", "square")  # budgeted: one run per epsilon
L2 = ("cw", "hopskipjump")  # minimal perturbation: one run
ATTACKS = LINF + L2
WHITE_BOX = ("fgsm", "pgd", "cw")
BLACK_BOX = ("square", "hopskipjump")
# attacks that keep a mask of columns fixed (one-hot columns of a table)
MASKED = ("fgsm", "pgd", "square", "hopskipjump")
TOLERANCE = 1e-5  # float32 slack when checking that a perturbation stays within its budget
MAX_SHOWN = 12


def budget_key(prefix: str, value: float) -> str:
    """The record key of one budget: ``eps_0.1``, ``radius_2``."""
    return f"{prefix}_{value:g}"


class Robustness:
    """Robust accuracy under evasion attacks (ART), against the perturbation budget.

    Args:
        attacks: which attacks: ``fgsm``, ``pgd``, ``square`` (L-infinity, one run per
            epsilon), ``cw``, ``hopskipjump`` (minimal L2). ``square`` and ``hopskipjump`` only
            query the model's outputs, so they also attack a model without gradients.
        eps: the L-infinity budgets, in the units of the inputs the network takes (images in
            [0, 1]: 0.1 is a tenth of the pixel range); 0 gives the clean accuracy.
        radii: the L2 radii at which the minimal attacks' robust accuracy is read.
        samples: test examples attacked (a seeded draw; all when fewer).
        pgd_steps: PGD's iterations (step size ``2.5 * eps / pgd_steps``, as Madry et al.).
        random_starts: PGD's random starts inside the epsilon ball.
        square_queries: Square's iterations (one query per example each).
        cw_steps: Carlini-Wagner's optimisation steps per binary-search step.
        cw_search: Carlini-Wagner's binary-search steps over its trade-off constant.
        hsj_steps: HopSkipJump's iterations.
        hsj_evals: HopSkipJump's most model queries per gradient estimate.
        examples: adversarial images shown next to their originals (images only).
        batch: examples an attack works on at once.
        confidence: the level of every interval.
    """

    name = "robustness"

    def __init__(
        self,
        attacks: list[str] | None = None,
        eps: list[float] | None = None,
        radii: list[float] | None = None,
        samples: Annotated[int, Ge(1)] = 200,
        pgd_steps: Annotated[int, Ge(1)] = 10,
        random_starts: Annotated[int, Ge(0)] = 1,
        square_queries: Annotated[int, Ge(1)] = 200,
        cw_steps: Annotated[int, Ge(1)] = 10,
        cw_search: Annotated[int, Ge(1)] = 5,
        hsj_steps: Annotated[int, Ge(1)] = 10,
        hsj_evals: Annotated[int, Ge(1)] = 500,
        examples: Annotated[int, Ge(0)] = 8,
        batch: Annotated[int, Ge(1)] = 128,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
    ) -> None:
        self.attacks = list(attacks) if attacks is not None else ["fgsm", "pgd", "cw", "square"]
        self.eps = sorted(float(e) for e in (eps if eps is not None else [0, 0.05, 0.1, 0.2]))
        self.radii = sorted(float(r) for r in (radii if radii is not None else [0.5, 1, 2]))
        self.samples = samples
        self.pgd_steps = pgd_steps
        self.random_starts = random_starts
        self.square_queries = square_queries
        self.cw_steps = cw_steps
        self.cw_search = cw_search
        self.hsj_steps = hsj_steps
        self.hsj_evals = hsj_evals
        self.examples = examples
        self.batch = batch
        self.confidence = confidence

    # -- before training ------------------------------------------------------------------------

    def check(self, info: DataInfo) -> None:
        where = "analysis.robustness"
        if info.task != "classification":
            raise ConfigError(
                f"{where}: robust accuracy is a classification measure, and this data is a "
                f"{info.task}; drop robustness from the analysis list."
            )
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ConfigError(
                f"{where}.attacks={self.attacks}: choose from {', '.join(ATTACKS)} "
                "(fgsm, pgd, square: L-infinity, one run per epsilon; cw, hopskipjump: "
                "minimal L2 perturbation)."
            )
        if len(set(self.attacks)) != len(self.attacks):
            raise ConfigError(f"{where}.attacks={self.attacks} names an attack twice.")
        if any(e < 0 for e in self.eps) or any(r <= 0 for r in self.radii):
            raise ConfigError(f"{where}: eps={self.eps} must be >= 0 and radii={self.radii} > 0.")
        if info.value_range is not None:
            low, high = info.value_range
            width = high - low
            outside = [e for e in self.eps if e > width]
            if outside:
                raise ConfigError(
                    f"{where}.eps={self.eps}: {outside} lies outside the data's range: the "
                    f"inputs span [{low:g}, {high:g}] (width {width:g}), and a budget wider "
                    f"than that is no budget; choose eps between 0 and {width:g}."
                )
        if not info.gradients:
            white = [a for a in self.attacks if a in WHITE_BOX]
            if white:
                raise ConfigError(
                    f"{where}: {', '.join(white)} need the model's gradients, and this model has "
                    "none (a graph such as an int8 ONNX model). Use the black-box attacks, which "
                    "only query its outputs: analysis.robustness.attacks=[square,hopskipjump] "
                    "(square: L-infinity budgets, hopskipjump: minimal L2)."
                )
        if len(info.input_shape) == 1 and "square" in self.attacks:
            raise ConfigError(
                f"{where}: square perturbs square patches of an image, and this data is a table; "
                "use hopskipjump (black-box) or fgsm and pgd (white-box) on tables."
            )
        if info.numeric is not None:
            if not any(info.numeric):
                raise ConfigError(
                    f"{where}: this table has no numeric column to perturb (every encoded "
                    "column is one-hot); evasion here needs continuous features."
                )
            unmasked = [a for a in self.attacks if a not in MASKED]
            if unmasked and not all(info.numeric):
                raise ConfigError(
                    f"{where}: {', '.join(unmasked)} would move the one-hot columns of this "
                    "table too (ART's Carlini-Wagner takes no mask); use fgsm, pgd, square or "
                    "hopskipjump, which keep categorical columns as they are."
                )

    def provides(self, info: DataInfo) -> list[str]:
        """The keys the validation gate may name (``robustness.`` prefixed by the stage)."""
        ends = ("", ".low", ".high")
        keys = [f"clean_acc{end}" for end in ends]
        for attack in self.attacks:
            keys.append(f"{attack}.seconds_per_1000")
            if attack in LINF:
                for e in self.eps:
                    at = f"{attack}.{budget_key('eps', e)}"
                    keys += [
                        f"{at}.{m}{end}" for m in ("robust_acc", "success_rate") for end in ends
                    ]
                    keys += [f"{at}.mean_linf", f"{at}.mean_l2"]
            else:
                keys += [f"{attack}.success_rate{end}" for end in ends]
                keys += [f"{attack}.mean_l2", f"{attack}.median_l2"]
                for r in self.radii:
                    keys += [f"{attack}.{budget_key('radius', r)}.robust_acc{end}" for end in ends]
        return keys

    # -- on the model ---------------------------------------------------------------------------

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        import numpy as np

        from mlx.analysis.toolbox import classifier, clip_range

        if evidence.task != "classification":
            raise ConfigError("analysis.robustness applies to classification only.")
        if evidence.net is None and any(a in WHITE_BOX for a in self.attacks):
            raise ConfigError(
                "analysis.robustness: this model has no gradients; use attacks=[square,"
                "hopskipjump]."
            )
        rng = np.random.default_rng(evidence.seed)
        n_all = len(evidence.x)
        rows = np.sort(rng.choice(n_all, self.samples, replace=False))
        rows = rows if self.samples < n_all else np.arange(n_all)
        x = np.asarray(evidence.x[rows], dtype=np.float32)
        y = np.asarray(evidence.y[rows]).astype(np.int64)
        n = len(x)
        # the data's range: the training split's and the attacked rows' own (a test row may
        # lie a little outside what training saw, and stays where it is)
        seen = x if evidence.train is None else np.concatenate([evidence.train[0], x])
        clip = clip_range(seen)
        mask = None
        if x.ndim == 2 and evidence.numeric is not None and not all(evidence.numeric):
            mask = np.asarray(evidence.numeric, dtype=np.float32)  # (F,): 1 where a column moves
        # white-box attacks read the network's gradients; black-box ones only its outputs
        white = classifier(evidence, clip=clip) if evidence.net is not None else None
        black = classifier(evidence, clip=clip, black_box=True)
        correct = evidence.predictions[rows] == y
        section: dict[str, Any] = {
            "samples": n,
            "clean_acc": proportion(int(correct.sum()), n, self.confidence),
            "clip": _describe_clip(clip),
            "bound": "robust accuracy against these attacks: an upper bound on the true one",
        }
        if mask is not None:
            section["fixed_columns"] = int((mask == 0).sum())
        rows_csv: list[dict[str, Any]] = []
        shown: tuple[str, float, np.ndarray] | None = None
        failed: dict[str, str] = {}
        for attack in self.attacks:
            clf = white if attack in WHITE_BOX else black
            try:
                if attack in LINF:
                    entry, adv = self._budgeted(attack, clf, evidence, x, y, correct, clip, mask)
                else:
                    entry, adv = self._minimal(attack, clf, evidence, x, y, correct, mask)
            except Exception as e:  # one attack's failure keeps the others' results
                failed[attack] = f"{type(e).__name__}: {e}"
                log.error("robustness: %s failed: %s", attack, failed[attack])
                continue
            if attack in LINF:
                if adv is not None and (shown is None or shown[0] == "fgsm"):
                    shown = (attack, self.eps[-1], adv)
                for e in self.eps:
                    rows_csv.append(_csv_row(attack, "linf", e, entry[budget_key("eps", e)]))
            else:
                if shown is None:
                    shown = (attack, float("nan"), adv)
                for r in self.radii:
                    rows_csv.append(_csv_row(attack, "l2", r, entry[budget_key("radius", r)]))
            section[attack] = entry
        if failed:
            section["failed"] = failed
        done = [a for a in self.attacks if a in section]
        if not done:
            raise RuntimeError(f"every attack failed: {failed}")
        write_rows(folder / "robustness.csv", rows_csv)
        section["figures"] = {
            "robustness_curve.svg": "Robust accuracy against the attack's budget (L-infinity "
            "epsilon; L2 radius for the minimal attacks), with 95% Wilson bands; the dotted line "
            "is the clean accuracy."
        }
        _curve_figure(section, done, self.eps, self.radii, folder / "robustness_curve.svg")
        if x.ndim == 4 and self.examples and shown is not None:
            _example_figure(
                evidence, x, y, shown, self.examples, folder / "adversarial_examples.svg"
            )
            section["figures"]["adversarial_examples.svg"] = (
                f"Test examples (true: predicted class), their adversarial versions under "
                f"{shown[0]} and the perturbation (red: the attack changed the class)."
            )
        return section

    def _attack(self, attack: str, clf: Any, eps: float = 0.0) -> Any:
        """ART's attack object for one run."""
        import numpy as np
        from art.attacks.evasion import (
            CarliniL2Method,
            FastGradientMethod,
            HopSkipJump,
            SquareAttack,
        )

        from mlx.analysis.toolbox import pgd

        if attack == "fgsm":
            return FastGradientMethod(
                clf, norm=np.inf, eps=eps, eps_step=eps, batch_size=self.batch
            )
        if attack == "pgd":
            return pgd(clf, eps, self.pgd_steps, self.random_starts, self.batch)
        if attack == "square":
            return SquareAttack(
                clf,
                norm=np.inf,
                eps=eps,
                max_iter=self.square_queries,
                nb_restarts=1,
                batch_size=self.batch,
                verbose=False,
            )
        if attack == "cw":
            return CarliniL2Method(
                clf,
                confidence=0.0,
                learning_rate=0.1,
                binary_search_steps=self.cw_search,
                max_iter=self.cw_steps,
                initial_const=1.0,
                # ART's line search halves or doubles the step up to 5 times by default, each a
                # forward pass of the batch; 2 finds as small perturbations (digits: median L2
                # 0.764 against 0.777) in a sixth of the time
                max_halving=2,
                max_doubling=2,
                batch_size=self.batch,
                verbose=False,
            )
        return HopSkipJump(
            clf,
            batch_size=self.batch,
            norm=2,
            max_iter=self.hsj_steps,
            max_eval=self.hsj_evals,
            init_eval=min(100, self.hsj_evals),
            verbose=False,
        )

    def _budgeted(
        self,
        attack: str,
        clf: Any,
        evidence: Evidence,
        x: np.ndarray,
        y: np.ndarray,
        correct: np.ndarray,
        clip: tuple[Any, Any],
        mask: np.ndarray | None,
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        """One run per epsilon; the adversarial inputs at the largest."""
        import numpy as np

        from mlx.analysis.toolbox import quiet

        entry: dict[str, Any] = {"norm": "linf"}
        spent, attacked, adv = 0.0, 0, None
        for i, eps in enumerate(self.eps, start=1):
            log.info("robustness: %s at eps=%g (%d/%d)", attack, eps, i, len(self.eps))
            t0 = time.perf_counter()
            if eps == 0:
                adv = x.copy()
            else:
                np.random.seed(evidence.seed)  # ART draws its random starts from numpy
                kwargs = {"mask": mask} if mask is not None else {}
                with quiet():
                    adv = self._attack(attack, clf, eps).generate(x, y=y, **kwargs)
                adv = np.asarray(adv, dtype=np.float32)
                spent += time.perf_counter() - t0
                attacked += len(x)
            entry[budget_key("eps", eps)] = self._measure(evidence, x, adv, y, correct, clip, eps)
            entry[budget_key("eps", eps)]["seconds"] = round(time.perf_counter() - t0, 3)
        entry["seconds_per_1000"] = round(1000 * spent / attacked, 3) if attacked else 0.0
        return entry, adv if self.eps[-1] > 0 else None

    def _minimal(
        self,
        attack: str,
        clf: Any,
        evidence: Evidence,
        x: np.ndarray,
        y: np.ndarray,
        correct: np.ndarray,
        mask: np.ndarray | None,
    ) -> tuple[dict[str, Any], np.ndarray]:
        """One run; robust accuracy read at each radius from the perturbations found."""
        import numpy as np

        from mlx.analysis.toolbox import quiet

        log.info("robustness: %s (minimal L2 perturbation) on %d examples", attack, len(x))
        np.random.seed(evidence.seed)
        t0 = time.perf_counter()
        kwargs = {"mask": mask} if mask is not None and attack in MASKED else {}
        with quiet():
            adv = np.asarray(self._attack(attack, clf).generate(x, y=y, **kwargs), np.float32)
        seconds = time.perf_counter() - t0
        wrong = evidence.predict(adv).argmax(axis=1) != y
        broken = correct & wrong  # correctly classified, and the attack found a way out
        l2 = np.linalg.norm((adv - x).reshape(len(x), -1), axis=1)
        found = l2[broken]
        entry: dict[str, Any] = {
            "norm": "l2",
            "success_rate": proportion(int(broken.sum()), int(correct.sum()), self.confidence),
            "mean_l2": float(found.mean()) if len(found) else None,
            "median_l2": float(np.median(found)) if len(found) else None,
            "seconds_per_1000": round(1000 * seconds / len(x), 3),
        }
        for r in self.radii:
            robust = correct & ~(broken & (l2 <= r + TOLERANCE))
            entry[budget_key("radius", r)] = {
                "robust_acc": proportion(int(robust.sum()), len(x), self.confidence)
            }
        return entry, adv

    def _measure(
        self,
        evidence: Evidence,
        x: np.ndarray,
        adv: np.ndarray,
        y: np.ndarray,
        correct: np.ndarray,
        clip: tuple[Any, Any],
        eps: float,
    ) -> dict[str, Any]:
        """Robust accuracy, success rate and norms of one epsilon's adversarial inputs; checks
        that each stays within epsilon of its original and inside the clip range."""
        import numpy as np

        delta = (adv - x).reshape(len(x), -1)
        linf = np.abs(delta).max(axis=1)
        low, high = (np.asarray(c, dtype=np.float32) for c in clip)
        inside = bool((adv >= low - TOLERANCE).all() and (adv <= high + TOLERANCE).all())
        if linf.max(initial=0.0) > eps + TOLERANCE or not inside:
            raise RuntimeError(
                f"an adversarial input left its budget (max |delta| {linf.max():.4g} > eps {eps:g}"
                f", or outside the clip range): ART's attack misbehaved; no result recorded."
            )
        robust = evidence.predict(adv).argmax(axis=1) == y
        broken = correct & ~robust
        return {
            "robust_acc": proportion(int(robust.sum()), len(x), self.confidence),
            "success_rate": proportion(int(broken.sum()), int(correct.sum()), self.confidence),
            "mean_linf": float(linf.mean()),
            "mean_l2": float(np.linalg.norm(delta, axis=1).mean()),
        }


def _describe_clip(clip: tuple[Any, Any]) -> Any:
    import numpy as np

    low, high = (np.asarray(c, dtype=np.float64) for c in clip)
    if low.ndim == 0:
        return [float(low), float(high)]
    return "per column: the training split's minimum and maximum"


def _csv_row(attack: str, norm: str, budget: float, point: dict[str, Any]) -> dict[str, Any]:
    acc = point["robust_acc"]
    success = point.get("success_rate") or interval(None)
    return {
        "attack": attack,
        "norm": norm,
        "budget": budget,
        "robust_acc": acc["value"],
        "low": acc["low"],
        "high": acc["high"],
        "success_rate": success["value"],
        "mean_linf": point.get("mean_linf"),
        "mean_l2": point.get("mean_l2"),
    }


def _curve_figure(
    section: dict[str, Any], attacks: list[str], eps: list[float], radii: list[float], path: Path
) -> None:
    """Robust accuracy against epsilon (L-infinity attacks) and against the L2 radius (minimal
    attacks), each with its interval band."""
    plt = _plt()
    panels = [("linf", [a for a in attacks if a in LINF], eps, "eps", "L-infinity epsilon")]
    panels.append(("l2", [a for a in attacks if a in L2], radii, "radius", "L2 radius"))
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (_, names, budgets, prefix, label) in zip(axes[0], panels, strict=True):
        for name in names:
            points = [section[name][budget_key(prefix, b)]["robust_acc"] for b in budgets]
            values = [p["value"] for p in points]
            ax.plot(budgets, values, marker="o", label=name)
            ax.fill_between(
                budgets, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2
            )
        ax.axhline(section["clean_acc"]["value"], color="grey", linestyle=":", label="clean")
        ax.set_xlabel(label)
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False)
    fig.suptitle(f"Robust accuracy on {section['samples']} test examples")
    _save(fig, path)


def _example_figure(
    evidence: Evidence,
    x: np.ndarray,
    y: np.ndarray,
    shown: tuple[str, float, np.ndarray],
    count: int,
    path: Path,
) -> None:
    """Originals, their adversarial versions and the perturbation, with the model's classes."""
    import numpy as np

    attack, eps, adv = shown
    k = min(count, len(x), MAX_SHOWN)
    names = evidence.class_names or [str(c) for c in range(evidence.outputs.shape[1])]
    before = evidence.predict(x[:k]).argmax(axis=1)
    after = evidence.predict(adv[:k]).argmax(axis=1)
    # originals and adversarial images on one grey scale, so only the attack's change shows
    pixels = (float(min(x[:k].min(), adv[:k].min())), float(max(x[:k].max(), adv[:k].max())))
    plt = _plt()
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.2), squeeze=False)
    for j in range(k):
        delta = adv[j] - x[j]
        scale = float(np.abs(delta).max()) or 1.0
        for i, (image, title, cmap, lim) in enumerate(
            (
                (x[j], f"{names[y[j]]}: {names[before[j]]}", "gray", pixels),
                (adv[j], f"-> {names[after[j]]}", "gray", pixels),
                (delta, "perturbation", "coolwarm", (-scale, scale)),
            )
        ):
            ax = axes[i][j]
            img = image.mean(axis=0) if image.shape[0] != 3 else image.transpose(1, 2, 0)
            kwargs = {"vmin": lim[0], "vmax": lim[1]} if lim else {}
            ax.imshow(img, cmap=cmap, **kwargs)
            ax.set_title(
                title if i < 2 else "",
                fontsize=7,
                color="red" if i == 1 and after[j] != y[j] else "black",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    budget = f"eps={eps:g}" if eps == eps else "minimal L2"
    fig.suptitle(f"{attack} ({budget}): original (true: predicted), adversarial, perturbation")
    _save(fig, path)
