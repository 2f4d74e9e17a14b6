"""Privacy: what an attacker learns about the training data and the model from the model itself,
with the Adversarial Robustness Toolbox's inference and extraction attacks.

Three attacks, each its own entry of the section:

- ``membership``: is a row part of the training data? Members are a seeded draw of ``members``
  training rows, non-members as many test rows (the model never saw them). The *rule-based*
  attack (ART's ``MembershipInferenceBlackBoxRuleBased``) calls a row a member iff the model
  classifies it correctly, so its advantage (TPR - FPR) is exactly the model's accuracy on the
  members minus its accuracy on the non-members (Yeom et al., 2018). The *learned* attack (ART's
  ``MembershipInferenceBlackBox``, a random forest, gradient boosting or small network on each
  row's loss or predicted probabilities with its label) is fitted on one half of both samples
  and judged on the other half: its ROC AUC (scikit-learn, on the attack's probabilities) and
  its advantage at its own decision. Both sit beside the generalisation gap of the whole splits
  (train accuracy - test accuracy, train loss - test loss), the overfitting the attacks exploit.
- ``inversion``: MIFace (Fredrikson et al., 2015) climbs the model's gradient for each class from
  the training split's mean image; the reconstructions are drawn next to each class's mean
  training image. A reconstruction is *recognised* when the nearest class mean is its own class;
  the model's confidence in the class on it is reported too. Images and gradients only.
- ``extraction``: a thief trains a fresh, untrained network of the run's model config (CopycatCNN:
  on the victim's predicted labels; KnockoffNets, random sampling: on its probabilities) from
  ``q`` queries of the validation split (data the victim never trained on), for each budget of
  ``queries``. The thief's test accuracy and its fidelity (the share of test rows where thief
  and victim predict the same class) against the budget is the curve.

Intervals: Wilson's for shares of rows (TPR, FPR, accuracy, fidelity); a seeded percentile
bootstrap for the rest (AUC and advantages: members and non-members resampled apart, so each
resample keeps the balance; the gaps: train and test rows resampled apart). Every number is a key
of the validation gate, e.g. ``privacy.membership.learned.auc.high <= 0.6``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Interval

from mlx.analysis.evidence import DataInfo, Evidence
from mlx.analysis.metrics import interval, proportion, write_rows
from mlx.errors import ConfigError
from mlx.figures import pyplot as _plt
from mlx.figures import save_svg as _save

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import numpy as np

log = logging.getLogger("mlx")

WHERE = "analysis.privacy"
ATTACKS = ("membership", "inversion", "extraction")
LEARNED = ("loss", "prediction")
ATTACK_MODELS = ("rf", "gb", "nn")
THIEVES = ("copycat", "knockoff")
# what each thief learns from: the victim's predicted label, or its class probabilities
THIEF_LABELS = {"copycat": "labels", "knockoff": "probabilities"}
THIEF_BATCH = 32  # rows per step of the thief's training
THIEF_LR = 1e-3  # the thief's Adam learning rate (Adam's own default)
# the learned attack's network (attack_model=nn): ART's default rate, 1e-4, leaves its 100
# epochs on a few hundred rows at guessing even against a model that memorised its members
NN_LR = 1e-3
QUERY_BATCH = 256  # rows per query of the victim
# MIFace's step on the gradient of the class probability (inputs in [0, 1]: a step of 0.1
# barely moves a confident class's pixels, 5 saturates them)
INVERSION_LR = 1.0
# below this share of defined resamples a bootstrap interval is not reported
MIN_DEFINED = 0.5
_ENDS = ("", ".low", ".high")


def budget_key(queries: int) -> str:
    """The record key of one query budget: ``queries_250``."""
    return f"queries_{queries}"


class Privacy:
    """Membership inference, model inversion and model extraction attacks (ART).

    Args:
        attacks: which attacks: ``membership``, ``inversion``, ``extraction``; None runs every
            one that applies (inversion needs images and a model with gradients).
        members: rows drawn from the training split (members) and as many from the test split
            (non-members), seeded; fewer when a split is smaller. The learned attack fits on
            one half and is judged on the other.
        learned: what the learned membership attack reads per row: ``loss`` (the model's loss
            on it, which needs the network) or ``prediction`` (its class probabilities), each
            with the row's label; None takes ``loss`` when the model has gradients, else
            ``prediction``.
        attack_model: the learned attack's classifier: ``rf`` (random forest), ``gb``
            (gradient boosting) or ``nn`` (ART's small network).
        queries: the thief's query budgets (rows of the validation split it sends the victim),
            one extraction per budget; each at most the validation split's size.
        thief_epochs: epochs the thief trains on its queried rows.
        inversion_steps: MIFace's gradient steps per class.
        n_boot: bootstrap resamples for the intervals that are not shares (0: values only).
        confidence: the level of every interval.
    """

    name = "privacy"

    def __init__(
        self,
        attacks: list[str] | None = None,
        members: Annotated[int, Ge(4)] = 250,
        learned: Literal["loss", "prediction"] | None = None,
        attack_model: Literal["rf", "gb", "nn"] = "rf",
        queries: list[int] | None = None,
        thief_epochs: Annotated[int, Ge(1)] = 20,
        inversion_steps: Annotated[int, Ge(1)] = 200,
        n_boot: Annotated[int, Ge(0)] = 200,
        confidence: Annotated[float, Interval(gt=0, lt=1)] = 0.95,
    ) -> None:
        if isinstance(attacks, str):
            raise ConfigError(
                f"{WHERE}: attacks={attacks!r}: give a list, e.g. "
                f"analysis.privacy.attacks=[{attacks}], or null for every attack that applies."
            )
        self.attacks = None if attacks is None else [str(a) for a in attacks]
        if self.attacks is not None:
            unknown = [a for a in self.attacks if a not in ATTACKS]
            if unknown or not self.attacks:
                raise ConfigError(
                    f"{WHERE}: attacks={self.attacks}: choose from {', '.join(ATTACKS)} "
                    "(or null for every attack that applies to this data and model)."
                )
            if len(set(self.attacks)) != len(self.attacks):
                raise ConfigError(f"{WHERE}: attacks={self.attacks} names an attack twice.")
        if learned is not None and learned not in LEARNED:
            raise ConfigError(
                f"{WHERE}: learned={learned!r}: choose loss or prediction (or null: loss when the "
                "model has gradients, else prediction)."
            )
        if attack_model not in ATTACK_MODELS:
            raise ConfigError(
                f"{WHERE}: attack_model={attack_model!r}: choose rf (random forest), gb "
                "(gradient boosting) or nn (a small network)."
            )
        budgets = [25, 100, 250] if queries is None else queries
        if isinstance(budgets, int | str) or not budgets:
            raise ConfigError(f"{WHERE}: queries={queries!r}: give a list of query budgets.")
        if any(isinstance(q, bool) or not isinstance(q, int) or q < 1 for q in budgets):
            raise ConfigError(
                f"{WHERE}: queries={list(budgets)}: each budget is a whole number of queries, 1 "
                "or more."
            )
        if len(set(budgets)) != len(budgets):
            raise ConfigError(f"{WHERE}: queries={list(budgets)} names a budget twice.")
        for key, value, ok in (
            ("members", members, isinstance(members, int) and members >= 4),
            ("thief_epochs", thief_epochs, isinstance(thief_epochs, int) and thief_epochs >= 1),
            (
                "inversion_steps",
                inversion_steps,
                isinstance(inversion_steps, int) and inversion_steps >= 1,
            ),
            ("n_boot", n_boot, isinstance(n_boot, int) and n_boot >= 0),
            ("confidence", confidence, 0 < float(confidence) < 1),
        ):
            if not ok:
                raise ConfigError(f"{WHERE}: {key}={value!r} is out of range.")
        self.members = int(members)
        self.learned = learned
        self.attack_model = attack_model
        self.queries = sorted(int(q) for q in budgets)
        self.thief_epochs = int(thief_epochs)
        self.inversion_steps = int(inversion_steps)
        self.n_boot = int(n_boot)
        self.confidence = float(confidence)

    # -- before training ------------------------------------------------------------------------

    def chosen(self, info: DataInfo) -> list[str]:
        """The attacks that run: the listed ones, or (attacks=null) every one that applies."""
        if self.attacks is not None:
            return list(self.attacks)
        images = info.columns is None and len(info.input_shape) == 3
        return [a for a in ATTACKS if a != "inversion" or (images and info.gradients)]

    def learned_input(self, gradients: bool) -> str:
        """What the learned membership attack reads: ``loss`` or ``prediction``."""
        if self.learned is not None:
            return self.learned
        return "loss" if gradients else "prediction"

    def check(self, info: DataInfo) -> None:
        """Refuses a regression, inversion of a table or of a model without gradients, a loss
        attack on a model without gradients, and a query budget beyond the validation split."""
        if info.task != "classification":
            raise ConfigError(
                f"{WHERE}: membership inference (correct classification, class probabilities), "
                "model inversion (a reconstruction per class) and model extraction (the "
                f"thief's agreement on classes) are classification attacks, and this data is a "
                f"{info.task}; drop privacy from the analysis list."
            )
        attacks = self.chosen(info)
        if "inversion" in attacks:
            if info.columns is not None or len(info.input_shape) != 3:
                raise ConfigError(
                    f"{WHERE}: inversion reconstructs an image of each class, and this data is a "
                    "table; drop it: analysis.privacy.attacks=[membership,extraction] (or null, "
                    "every attack that applies)."
                )
            if not info.gradients:
                raise ConfigError(
                    f"{WHERE}: inversion (MIFace) climbs the model's gradients, and this model "
                    "has none (a graph such as an int8 ONNX model); analyse the trained network "
                    "(analysis.on=baseline) or drop it: analysis.privacy.attacks=[membership,"
                    "extraction]."
                )
        if "membership" in attacks and self.learned == "loss" and not info.gradients:
            raise ConfigError(
                f"{WHERE}: learned=loss reads the model's loss through its network, and this "
                "model has none (a graph such as an int8 ONNX model); use "
                "analysis.privacy.learned=prediction (or null, which chooses it here)."
            )
        if "extraction" in attacks and info.split_sizes is not None:
            limit = int(info.split_sizes.get("val", 0))
            over = [q for q in self.queries if q > limit]
            if over:
                raise ConfigError(
                    f"{WHERE}: queries={self.queries}: {over} is a query budget larger than the "
                    f"data the thief may use: it queries only the validation split (the victim "
                    f"never trained on it), which has {limit} rows. Choose budgets of at most "
                    f"{limit} (analysis.privacy.queries=[...]) or raise data.val_fraction."
                )

    def provides(self, info: DataInfo) -> list[str]:
        """The keys the validation gate may name (``privacy.`` prefixed by the stage)."""
        keys: list[str] = []
        attacks = self.chosen(info)
        if "membership" in attacks:
            for part, names in (("rule", ("advantage", "tpr", "fpr")), ("learned", LEARNED_KEYS)):
                keys += [f"membership.{part}.{m}{end}" for m in names for end in _ENDS]
            keys += [f"membership.gap.{m}{end}" for m in ("acc", "loss") for end in _ENDS]
            keys += [f"membership.{s}.{m}" for s in ("train", "test") for m in ("acc", "loss")]
            keys += ["membership.members"]
        if "inversion" in attacks:
            keys += [f"inversion.recognised{end}" for end in _ENDS]
            keys += ["inversion.mean_confidence", "inversion.seconds"]
        if "extraction" in attacks:
            keys += [f"extraction.victim_acc{end}" for end in _ENDS]
            for thief in THIEVES:
                for q in self.queries:
                    at = f"extraction.{thief}.{budget_key(q)}"
                    keys += [f"{at}.{m}{end}" for m in ("fidelity", "acc") for end in _ENDS]
                    keys.append(f"{at}.seconds_per_1000")
        return keys

    # -- on the model ---------------------------------------------------------------------------

    def run(self, evidence: Evidence, folder: Path) -> dict[str, Any]:
        """Each chosen attack's entry; writes its CSV and figure into ``folder``."""
        if evidence.task != "classification":
            raise ConfigError(f"{WHERE}: privacy attacks apply to classification only.")
        images = evidence.x.ndim == 4
        gradients = evidence.net is not None
        section: dict[str, Any] = {
            "attacks": [],
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "figures": {},
        }
        notes: list[str] = []
        if self.attacks is not None:
            attacks = list(self.attacks)
        else:
            attacks = ["membership"]
            if images and gradients:
                attacks.append("inversion")
            else:
                why = "this data is a table" if not images else "this model has no gradients"
                notes.append(f"inversion skipped: {why} (MIFace reconstructs images by gradients)")
            attacks.append("extraction")
        section["attacks"] = attacks
        failed: dict[str, str] = {}
        for attack in attacks:
            t0 = time.perf_counter()
            log.info("privacy: %s ...", attack)
            try:
                with _normal_floats():
                    if attack == "membership":
                        entry = self._membership(evidence, folder, section["figures"])
                    elif attack == "inversion":
                        entry = self._inversion(evidence, folder, section["figures"])
                    else:
                        entry = self._extraction(evidence, folder, section["figures"])
            except ConfigError:
                raise
            except Exception as e:  # one attack's failure keeps the others' results
                failed[attack] = f"{type(e).__name__}: {e}"
                log.error("privacy: %s failed: %s", attack, failed[attack])
                continue
            section[attack] = entry
            log.info("privacy: %s took %.1f s", attack, time.perf_counter() - t0)
        if notes:
            section["notes"] = notes
        if failed:
            section["failed"] = failed
            if len(failed) == len(attacks):
                raise RuntimeError(f"every privacy attack failed: {failed}")
        return section

    # -- membership inference -------------------------------------------------------------------

    def _membership(
        self, evidence: Evidence, folder: Path, figures: dict[str, str]
    ) -> dict[str, Any]:
        """The rule-based and the learned attack on balanced samples, and the splits' gap."""
        import numpy as np

        from mlx.analysis.metrics import _row_loss
        from mlx.analysis.toolbox import classifier, quiet

        if evidence.train is None:
            raise ConfigError(
                f"{WHERE}: membership inference needs the training split (the members); this "
                "evidence has none."
            )
        k = int(evidence.outputs.shape[1])
        train_x, train_y = np.asarray(evidence.train[0]), np.asarray(evidence.train[1])
        test_x, test_y = np.asarray(evidence.x), np.asarray(evidence.y).astype(np.int64)
        train_y = train_y.astype(np.int64)
        n = min(self.members, len(train_x), len(test_x))
        n -= n % 2  # two equal halves for the learned attack
        if n < 4:
            raise ConfigError(
                f"{WHERE}: membership inference needs at least 4 rows in each of the training "
                f"and test splits; there are {len(train_x)} and {len(test_x)}."
            )
        rng = np.random.default_rng(evidence.seed)
        member_rows = np.sort(rng.choice(len(train_x), n, replace=False))
        outsider_rows = np.sort(rng.choice(len(test_x), n, replace=False))
        xm, ym = train_x[member_rows].astype(np.float32), train_y[member_rows]
        xn, yn = test_x[outsider_rows].astype(np.float32), test_y[outsider_rows]
        victim = classifier(evidence)
        onehot = np.eye(k, dtype=np.float32)

        # the rule: a member iff classified correctly
        from art.attacks.inference.membership_inference import (
            MembershipInferenceBlackBox,
            MembershipInferenceBlackBoxRuleBased,
        )

        with quiet():
            rule = MembershipInferenceBlackBoxRuleBased(victim)
            said_m = np.asarray(rule.infer(xm, onehot[ym])).reshape(-1).astype(int)
            said_n = np.asarray(rule.infer(xn, onehot[yn])).reshape(-1).astype(int)
        boot = np.random.default_rng(evidence.seed + 1)
        rule_entry = self._decisions(said_m, said_n, boot)

        # the learned attack: fitted on the first half of both samples, judged on the second
        half = n // 2
        order_m, order_n = rng.permutation(n), rng.permutation(n)
        fit_m, judge_m = order_m[:half], order_m[half:]
        fit_n, judge_n = order_n[:half], order_n[half:]
        used = self.learned_input(evidence.net is not None)
        if used == "loss" and evidence.net is None:
            raise ConfigError(
                f"{WHERE}: learned=loss needs the model's network, and this model has none; use "
                "analysis.privacy.learned=prediction."
            )
        import torch

        with quiet(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(evidence.seed)
            attack = MembershipInferenceBlackBox(
                victim,
                input_type=used,
                attack_model_type=self.attack_model,
                nn_model_learning_rate=NN_LR,
            )
            if hasattr(attack.attack_model, "random_state"):
                attack.attack_model.set_params(random_state=evidence.seed)
            attack.fit(xm[fit_m], onehot[ym[fit_m]], xn[fit_n], onehot[yn[fit_n]])
            x_judge = np.concatenate([xm[judge_m], xn[judge_n]])
            y_judge = onehot[np.concatenate([ym[judge_m], yn[judge_n]])]
            scores = np.asarray(attack.infer(x_judge, y_judge, probabilities=True))
            decided = np.asarray(attack.infer(x_judge, y_judge)).reshape(-1).astype(int)
        scores = scores.reshape(len(x_judge), -1)[:, -1].astype(np.float64)  # P(member)
        m = len(judge_m)
        learned_entry = self._decisions(decided[:m], decided[m:], boot)
        learned_entry = {
            "auc": self._auc(scores[:m], scores[m:], boot),
            **learned_entry,
            "input": used,
            "attack_model": self.attack_model,
            "fitted_on": half,
            "judged_on": m,
        }

        # the generalisation gap on the whole splits
        train_probs = np.asarray(evidence.predict(train_x), dtype=np.float64)
        test_probs = np.asarray(evidence.outputs, dtype=np.float64)
        right_train = (train_probs.argmax(axis=1) == train_y).astype(np.float64)
        right_test = (test_probs.argmax(axis=1) == test_y).astype(np.float64)
        loss_train, loss_test = _row_loss(train_y, train_probs), _row_loss(test_y, test_probs)
        gap = {
            "acc": self._gap(right_train, right_test, boot),
            "loss": self._gap(loss_train, loss_test, boot),
        }
        entry: dict[str, Any] = {
            "members": n,
            "rule": rule_entry,
            "learned": learned_entry,
            "gap": gap,
            "train": {"acc": float(right_train.mean()), "loss": float(loss_train.mean())},
            "test": {"acc": float(right_test.mean()), "loss": float(loss_test.mean())},
        }
        write_rows(folder / "membership.csv", _membership_rows(entry))
        fpr, tpr = _roc(scores[:m], scores[m:])
        _membership_figure(entry, fpr, tpr, folder / "membership_roc.svg")
        figures["membership_roc.svg"] = (
            f"ROC of the learned membership attack ({used}, {self.attack_model}) on {m} held-out "
            "members and as many non-members; the dot is the rule-based attack (member iff "
            "correctly classified), the diagonal is guessing."
        )
        return entry

    def _decisions(
        self, said_m: np.ndarray, said_n: np.ndarray, rng: np.random.Generator
    ) -> dict[str, Any]:
        """TPR and FPR of member/non-member decisions (Wilson), and the advantage TPR - FPR
        (bootstrap: members and non-members resampled apart)."""
        tpr = proportion(int(said_m.sum()), len(said_m), self.confidence)
        fpr = proportion(int(said_n.sum()), len(said_n), self.confidence)
        value = float(said_m.mean()) - float(said_n.mean())

        def advantage(im: np.ndarray, inn: np.ndarray) -> np.ndarray:
            return said_m[im].mean(axis=1) - said_n[inn].mean(axis=1)

        return {
            "advantage": self._boot_interval(value, len(said_m), len(said_n), advantage, rng),
            "tpr": tpr,
            "fpr": fpr,
        }

    def _auc(self, members: np.ndarray, outsiders: np.ndarray, rng: np.random.Generator) -> Any:
        """ROC AUC of the attack's member probabilities (scikit-learn), with its interval."""
        import numpy as np
        from sklearn.metrics import roc_auc_score

        labels = np.r_[np.ones(len(members)), np.zeros(len(outsiders))]
        value = roc_auc_score(labels, np.r_[members, outsiders])

        def auc(im: np.ndarray, inn: np.ndarray) -> np.ndarray:
            return np.asarray(
                [
                    roc_auc_score(labels, np.r_[members[a], outsiders[b]])
                    for a, b in zip(im, inn, strict=True)
                ]
            )

        return self._boot_interval(value, len(members), len(outsiders), auc, rng)

    def _gap(self, train: np.ndarray, test: np.ndarray, rng: np.random.Generator) -> Any:
        """mean(train) - mean(test) with its interval (train and test rows resampled apart)."""

        def gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return train[a].mean(axis=1) - test[b].mean(axis=1)

        value = float(train.mean() - test.mean())
        return self._boot_interval(value, len(train), len(test), gap, rng)

    def _boot_interval(
        self,
        value: float,
        n_a: int,
        n_b: int,
        statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, float | None]:
        """A percentile bootstrap interval of ``statistic(rows_a, rows_b)``, each resample
        drawing both groups' rows apart (``(n_boot, n)`` index arrays)."""
        import numpy as np

        if self.n_boot == 0:
            return interval(value)
        a = rng.integers(0, n_a, (self.n_boot, n_a))
        b = rng.integers(0, n_b, (self.n_boot, n_b))
        samples = np.asarray(statistic(a, b), dtype=np.float64)
        finite = samples[np.isfinite(samples)]
        if len(finite) < MIN_DEFINED * len(samples):
            return interval(value)
        alpha = (1.0 - self.confidence) / 2.0
        low, high = np.quantile(finite, [alpha, 1.0 - alpha])
        return interval(value, low, high)

    # -- model inversion ------------------------------------------------------------------------

    def _inversion(
        self, evidence: Evidence, folder: Path, figures: dict[str, str]
    ) -> dict[str, Any]:
        """One MIFace reconstruction per class, from the training split's mean image."""
        import numpy as np
        import torch

        from mlx.analysis.toolbox import classifier, quiet

        if evidence.x.ndim != 4:
            raise ConfigError(
                f"{WHERE}: inversion reconstructs images, and this data is a table; use "
                "analysis.privacy.attacks=[membership,extraction]."
            )
        if evidence.net is None:
            raise ConfigError(
                f"{WHERE}: inversion needs the model's gradients, and this model has none; use "
                "analysis.privacy.attacks=[membership,extraction]."
            )
        from art.attacks.inference.model_inversion import MIFace

        k = int(evidence.outputs.shape[1])
        names = evidence.class_names or [str(c) for c in range(k)]
        seen = np.asarray(evidence.train[0] if evidence.train is not None else evidence.x)
        labels = np.asarray(evidence.train[1] if evidence.train is not None else evidence.y)
        start = np.repeat(seen.mean(axis=0, keepdims=True), k, axis=0).astype(np.float32)
        # MIFace's cost is 1 - the class probability (it reads the classifier's outputs as
        # probabilities): the victim's logits go through a softmax
        probabilities = torch.nn.Sequential(evidence.net, torch.nn.Softmax(dim=1)).eval()
        victim = classifier(evidence, net=probabilities)
        t0 = time.perf_counter()
        with quiet(), _normal_floats(one_thread=True):
            attack = MIFace(
                victim,
                max_iter=self.inversion_steps,
                window_length=self.inversion_steps,
                threshold=1.0,  # ART's stop: none, every class takes every step
                learning_rate=INVERSION_LR,
                batch_size=k,
                verbose=False,
            )
            recon = np.asarray(attack.infer(start, np.arange(k)), dtype=np.float32)
        seconds = time.perf_counter() - t0
        probs = np.asarray(evidence.predict(recon))
        confidence = probs[np.arange(k), np.arange(k)]
        # each class's mean training image, and which one each reconstruction lies nearest
        means = np.stack(
            [
                seen[labels == c].mean(axis=0)
                if (labels == c).any()
                else np.full_like(start[0], np.nan)
                for c in range(k)
            ]
        )
        flat_r, flat_m = recon.reshape(k, -1), means.reshape(k, -1)
        distance = np.linalg.norm(flat_r[:, None, :] - flat_m[None, :, :], axis=2)
        distance[~np.isfinite(distance)] = np.inf
        nearest = distance.argmin(axis=1)
        recognised = nearest == np.arange(k)
        classes = [
            {
                "class": names[c],
                "confidence": float(confidence[c]),
                "predicted": names[int(probs[c].argmax())],
                "nearest_mean": names[int(nearest[c])],
            }
            for c in range(k)
        ]
        entry = {
            "recognised": proportion(int(recognised.sum()), k, self.confidence),
            "mean_confidence": float(confidence.mean()),
            "steps": self.inversion_steps,
            "start": "the training split's mean image",
            "seconds": round(seconds, 3),
            "classes": classes,
        }
        write_rows(folder / "inversion.csv", classes)
        _inversion_figure(recon, means, names, confidence, folder / "inversion.svg")
        figures["inversion.svg"] = (
            "MIFace's reconstruction of each class from the model's gradients (top, with the "
            "model's confidence in the class) above the class's mean training image (bottom)."
        )
        return entry

    # -- model extraction -----------------------------------------------------------------------

    def _extraction(
        self, evidence: Evidence, folder: Path, figures: dict[str, str]
    ) -> dict[str, Any]:
        """Each thief at each query budget: its test accuracy and fidelity to the victim."""
        import numpy as np
        import torch

        from mlx.analysis.toolbox import classifier, quiet

        if evidence.val is None:
            raise ConfigError(
                f"{WHERE}: extraction queries the validation split (data the victim never "
                "trained on), and this evidence has none; drop extraction from "
                "analysis.privacy.attacks."
            )
        if evidence.build is None:
            raise ConfigError(
                f"{WHERE}: extraction trains a fresh network of the run's model config, and this "
                "run cannot build one (its model has no net config); drop extraction from "
                "analysis.privacy.attacks."
            )
        pool = np.asarray(evidence.val[0], dtype=np.float32)
        over = [q for q in self.queries if q > len(pool)]
        if over:
            raise ConfigError(
                f"{WHERE}: queries={self.queries}: {over} is a query budget larger than the data "
                f"the thief may use (the validation split, {len(pool)} rows); lower the budgets "
                "or raise data.val_fraction."
            )
        from art.attacks.extraction import CopycatCNN, KnockoffNets

        test_x = np.asarray(evidence.x, dtype=np.float32)
        test_y = np.asarray(evidence.y).astype(np.int64)
        victim_pred = np.asarray(evidence.predictions)
        n = len(test_x)
        # the thief only sees the victim's outputs, whatever the victim is
        victim = classifier(evidence, black_box=True)
        entry: dict[str, Any] = {
            "victim_acc": proportion(int((victim_pred == test_y).sum()), n, self.confidence),
            "pool": len(pool),
            "queries": list(self.queries),
            "epochs": self.thief_epochs,
        }
        rows: list[dict[str, Any]] = []
        for thief_name in THIEVES:
            per: dict[str, Any] = {"learns_from": THIEF_LABELS[thief_name]}
            for q in self.queries:
                t0 = time.perf_counter()
                with quiet(), torch.random.fork_rng(devices=[]):
                    torch.manual_seed(evidence.seed)  # the thief's initial weights, its batches
                    np.random.seed(evidence.seed)  # ART draws the queried rows from numpy
                    net = evidence.build()
                    thief = classifier(
                        evidence,
                        net=net,
                        optimizer=torch.optim.Adam(net.parameters(), lr=THIEF_LR),
                    )
                    common = {
                        "batch_size_fit": THIEF_BATCH,
                        "batch_size_query": QUERY_BATCH,
                        "nb_epochs": self.thief_epochs,
                        "nb_stolen": q,
                        "use_probability": THIEF_LABELS[thief_name] == "probabilities",
                    }
                    if thief_name == "copycat":
                        attack = CopycatCNN(victim, **common)
                    else:
                        attack = KnockoffNets(
                            victim, sampling_strategy="random", verbose=False, **common
                        )
                    stolen = attack.extract(pool, thieved_classifier=thief)
                    seconds = time.perf_counter() - t0
                    net.eval()
                    thief_pred = np.asarray(stolen.predict(test_x)).argmax(axis=1)
                point = {
                    "fidelity": proportion(
                        int((thief_pred == victim_pred).sum()), n, self.confidence
                    ),
                    "acc": proportion(int((thief_pred == test_y).sum()), n, self.confidence),
                    "seconds_per_1000": round(1000 * seconds / q, 3),
                }
                per[budget_key(q)] = point
                log.info(
                    "privacy: %s with %d queries: fidelity %.3f, accuracy %.3f",
                    thief_name,
                    q,
                    point["fidelity"]["value"],
                    point["acc"]["value"],
                )
                rows.append(_extraction_row(thief_name, q, point))
            entry[thief_name] = per
        write_rows(folder / "extraction.csv", rows)
        _extraction_figure(entry, self.queries, folder / "extraction.svg")
        figures["extraction.svg"] = (
            "The thief's fidelity (agreement with the victim's classes) and test accuracy against "
            "its query budget, with 95% Wilson bands; the dotted line is the victim's accuracy."
        )
        return entry


LEARNED_KEYS = ("auc", "advantage", "tpr", "fpr")


@contextlib.contextmanager
def _normal_floats(one_thread: bool = False) -> Iterator[None]:
    """Subnormal floats flushed to zero while the attacks run (torch's flag, restored after).
    A saturated softmax has subnormal probabilities (~1e-39) and gradients: KnockoffNets'
    soft labels and MIFace's class gradients are full of them, and CPUs compute on subnormals
    up to 100 times slower (measured on digits: MIFace's 200 steps ~4 s instead of minutes, a
    thief's training 1.7 s instead of 2 to 40 s). The flag is the calling thread's only, so
    ``one_thread`` also keeps torch's work on it (MIFace, whose every step is subnormal)."""
    import torch

    threads = torch.get_num_threads()
    if one_thread:
        torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


# -- outputs -----------------------------------------------------------------------------------


def _roc(members: np.ndarray, outsiders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(len(members)), np.zeros(len(outsiders))]
    fpr, tpr, _ = roc_curve(labels, np.r_[members, outsiders])
    return fpr, tpr


def _membership_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per number with an interval: attack, metric, value, low, high."""
    rows = []
    for attack, metrics in (
        ("rule", ("advantage", "tpr", "fpr")),
        ("learned", LEARNED_KEYS),
        ("gap", ("acc", "loss")),
    ):
        for metric in metrics:
            v = entry[attack][metric]
            rows.append({"attack": attack, "metric": metric, **v})
    return rows


def _extraction_row(thief: str, queries: int, point: dict[str, Any]) -> dict[str, Any]:
    return {
        "thief": thief,
        "queries": queries,
        "fidelity": point["fidelity"]["value"],
        "fidelity_low": point["fidelity"]["low"],
        "fidelity_high": point["fidelity"]["high"],
        "acc": point["acc"]["value"],
        "acc_low": point["acc"]["low"],
        "acc_high": point["acc"]["high"],
        "seconds_per_1000": point["seconds_per_1000"],
    }


def _membership_figure(entry: dict[str, Any], fpr: np.ndarray, tpr: np.ndarray, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    learned = entry["learned"]
    ax.plot(fpr, tpr, label=f"learned ({learned['input']}): AUC {learned['auc']['value']:.3f}")
    rule = entry["rule"]
    ax.plot(
        [rule["fpr"]["value"]],
        [rule["tpr"]["value"]],
        "o",
        label=f"rule: advantage {rule['advantage']['value']:.3f}",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="guessing")
    ax.set_xlabel("false positive rate (non-members called members)")
    ax.set_ylabel("true positive rate (members found)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    gap = entry["gap"]["acc"]["value"]
    ax.set_title(f"Membership inference (train - test accuracy {gap:.3f})", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    _save(fig, path)


def _inversion_figure(
    recon: np.ndarray, means: np.ndarray, names: list[str], confidence: np.ndarray, path: Path
) -> None:
    import numpy as np

    k = len(recon)
    plt = _plt()
    fig, axes = plt.subplots(2, k, figsize=(1.1 * k + 0.4, 2.8), squeeze=False)
    low = float(np.nanmin([recon.min(), np.nanmin(means)]))
    high = float(np.nanmax([recon.max(), np.nanmax(means)]))
    for c in range(k):
        for i, (image, title) in enumerate(
            ((recon[c], f"{names[c]}: {confidence[c]:.2f}"), (means[c], "mean"))
        ):
            ax = axes[i][c]
            img = image.mean(axis=0) if image.shape[0] != 3 else image.transpose(1, 2, 0)
            ax.imshow(img, cmap="gray", vmin=low, vmax=high)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle("MIFace reconstructions (class: model's confidence) and class means", fontsize=9)
    _save(fig, path)


def _extraction_figure(entry: dict[str, Any], queries: list[int], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), squeeze=False)
    for ax, metric, label in (
        (axes[0][0], "fidelity", "fidelity (agreement with the victim)"),
        (axes[0][1], "acc", "thief's test accuracy"),
    ):
        for thief in THIEVES:
            points = [entry[thief][budget_key(q)][metric] for q in queries]
            ax.plot(queries, [p["value"] for p in points], marker="o", label=thief)
            ax.fill_between(
                queries, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2
            )
        if metric == "acc":
            ax.axhline(entry["victim_acc"]["value"], color="grey", linestyle=":", label="victim")
        ax.set_xlabel("queries")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False)
    fig.suptitle("Model extraction against the query budget")
    _save(fig, path)
