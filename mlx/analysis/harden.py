"""Hardening: adversarial training (Madry et al., 2018) as a stage of the ``compression`` group,
the post-training stages that change the network (``mlx run compression=[harden]``).

The trained network is trained further on PGD adversarial examples made from each batch, against
the network as it is at that step: ART's PGD (L-infinity, random start) makes them, and the
run's own engine trains on them (a Lightning Trainer with the run's optimizer, learning rate and
scheduler, the training split's loader), so the stage is measured, saved and analysed like any
other: the compression table gives its clean accuracy next to the model before it, and
``analysis=[robustness] analysis.on=all`` its robustness curves next to the trained model's.
The stage itself reports the robust accuracy under a stronger PGD at the training budget
before and after (the gain) and the clean accuracy it costs, on a seeded test sample.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Gt, Interval

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

log = logging.getLogger("mlx")


class Harden:
    """Adversarial training against PGD.

    Args:
        eps: the L-infinity budget trained against, in the units the network takes (images in
            [0, 1]).
        steps: PGD iterations per training batch (step size ``2.5 * eps / steps``).
        epochs: epochs of adversarial training.
        adversarial_weight: the weight of the loss on adversarial examples; the rest is the
            loss on the clean batch (1.0: adversarial examples only, as Madry et al.).
        lr_scale: the run's learning rate times this.
        from_scratch: train a fresh network of the run's model config instead of the trained one.
        eval_steps: iterations of the PGD that measures robust accuracy before and after.
        eval_samples: test examples that measurement attacks (a seeded draw).
        seed: seeds the sample and PGD's random starts.
    """

    name = "harden"

    def __init__(
        self,
        eps: Annotated[float, Gt(0)] = 0.1,
        steps: Annotated[int, Ge(1)] = 7,
        epochs: Annotated[int, Ge(1)] = 3,
        adversarial_weight: Annotated[float, Interval(gt=0, le=1)] = 1.0,
        lr_scale: Annotated[float, Gt(0)] = 1.0,
        from_scratch: bool = False,
        eval_steps: Annotated[int, Ge(1)] = 20,
        eval_samples: Annotated[int, Ge(1)] = 500,
        seed: Annotated[int, Ge(0)] = 0,
    ) -> None:
        self.eps = eps
        self.steps = steps
        self.epochs = epochs
        self.adversarial_weight = adversarial_weight
        self.lr_scale = lr_scale
        self.from_scratch = from_scratch
        self.eval_steps = eval_steps
        self.eval_samples = eval_samples
        self.seed = seed
        self._details: dict[str, Any] = {}
        self._shape: tuple[int, ...] = ()
        self._outputs = 0

    def check(self, given: StageInput) -> None:
        if given.task != "classification":
            raise CompressionError(
                "compression.harden trains against adversarial examples of a classifier; this "
                f"run's task is {given.task}."
            )
        if "quantize" in given.before:
            raise CompressionError(
                "harden after quantize: an int8 graph has no gradients to attack or train; list "
                "harden before quantize (compression=[harden,quantize])."
            )
        if not any(True for _ in given.net.parameters()):
            raise CompressionError(
                "compression.harden needs a network with gradients to train; this one has none."
            )
        if self.from_scratch and given.rebuild is None:
            raise CompressionError(
                "compression.harden.from_scratch needs the run's model config to build a fresh "
                "network; drop from_scratch to harden the trained network."
            )

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from mlx.analysis.toolbox import quiet

        if tools.fit is None:
            raise CompressionError("hardening needs a trainer: the pipeline lends none here.")
        self._shape, self._outputs = tuple(tools.input_shape), int(tools.num_outputs)
        clip = _train_range(tools)
        test = self._test_sample(tools)
        before = self._measure(net, test, clip) if test is not None else None
        if self.from_scratch and tools.rebuild is not None:
            net = tools.rebuild(tuple(tools.input_shape))
        make = _pgd(net, self._shape, self._outputs, clip, self.eps, self.steps)
        weight = self.adversarial_weight
        np.random.seed(self.seed)  # ART draws PGD's random starts from numpy

        def loss_fn(n: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            with quiet():
                adv = make.generate(x.detach().numpy(), y=y.numpy())
            n.train()  # ART reads gradients in eval mode; training goes on in train mode
            loss = F.cross_entropy(n(torch.as_tensor(adv, dtype=x.dtype)), y)
            if weight < 1:
                loss = weight * loss + (1 - weight) * F.cross_entropy(n(x), y)
            return loss

        tools.log(
            f"harden: PGD adversarial training at eps={self.eps:g} ({self.steps} steps a batch), "
            f"{self.epochs} epochs{' from scratch' if self.from_scratch else ''}"
        )
        net = tools.fit(net, self.epochs, loss_fn, self.lr_scale)
        net.eval()
        self._details = {
            "eps": self.eps,
            "steps": self.steps,
            "epochs": self.epochs,
            "adversarial_weight": weight,
            "from_scratch": self.from_scratch,
        }
        if test is not None and before is not None:
            after = self._measure(net, test, clip)
            self._details.update(
                {
                    "eval": f"PGD, {self.eval_steps} steps, eps={self.eps:g}, "
                    f"{len(test[0])} test examples",
                    "clean_acc_before": before["clean"],
                    "clean_acc_after": after["clean"],
                    "clean_cost": before["clean"] - after["clean"],
                    "robust_acc_before": before["robust"],
                    "robust_acc_after": after["robust"],
                    "robust_gain": after["robust"] - before["robust"],
                }
            )
            tools.log(
                f"harden: robust accuracy {before['robust']:.3f} -> {after['robust']:.3f}, "
                f"clean {before['clean']:.3f} -> {after['clean']:.3f}"
            )
        return net

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _test_sample(self, tools: Tools) -> tuple[np.ndarray, np.ndarray] | None:
        import numpy as np

        if tools.test_split is None:
            return None
        x, y = (t.numpy() for t in tools.test_split())
        rng = np.random.default_rng(self.seed)
        if self.eval_samples < len(x):
            rows = np.sort(rng.choice(len(x), self.eval_samples, replace=False))
            x, y = x[rows], y[rows]
        return x.astype(np.float32), y.astype(np.int64)

    def _measure(
        self, net: nn.Module, test: tuple[np.ndarray, np.ndarray], clip: tuple[Any, Any]
    ) -> dict[str, float]:
        """Clean and robust accuracy (PGD at the training budget, ``eval_steps`` steps)."""
        import numpy as np
        import torch

        from mlx.analysis.toolbox import quiet

        x, y = test
        was = net.training
        net.eval()
        attack = _pgd(net, self._shape, self._outputs, clip, self.eps, self.eval_steps, len(x))
        np.random.seed(self.seed)
        with quiet():
            adv = attack.generate(x, y=y)
        with torch.no_grad():
            clean = (net(torch.as_tensor(x)).argmax(1).numpy() == y).mean()
            robust = (net(torch.as_tensor(adv, dtype=torch.float32)).argmax(1).numpy() == y).mean()
        net.train(was)
        return {"clean": float(clean), "robust": float(robust)}


def _train_range(tools: Tools) -> tuple[Any, Any]:
    """The training split's range (images: one pair; tables: per column)."""
    import torch

    low = high = None
    for x, _ in tools.train_batches():
        # tables (B, F): one bound per column; images: one bound for every value
        flat = x if x.ndim == 2 else x.reshape(-1, 1)
        lo, hi = flat.min(dim=0).values, flat.max(dim=0).values
        low = lo if low is None else torch.minimum(low, lo)
        high = hi if high is None else torch.maximum(high, hi)
    if low is None or high is None:
        raise CompressionError("compression.harden: the training split is empty.")
    if len(tools.input_shape) == 1:
        return low.numpy(), high.numpy()
    return float(low[0]), float(high[0])


def _pgd(
    net: nn.Module,
    shape: tuple[int, ...],
    outputs: int,
    clip: tuple[Any, Any],
    eps: float,
    steps: int,
    batch: int = 512,
) -> Any:
    """ART's PGD (L-infinity, one random start) on ``net`` as ART's PyTorch classifier."""
    from mlx.analysis.toolbox import pgd, white_box

    return pgd(white_box(net, shape, outputs, clip), eps, steps, 1, batch)
