"""The boundary to IBM's Adversarial Robustness Toolbox (ART): the run's model wrapped as ART's
classifier, the data's clip range, and ART's progress output kept quiet.

Every ART import of mlx lives in ``mlx.analysis`` (this module and the analyses that use it), so
the library can be replaced in one place. ART costs about 3.5 s to import: only the functions
that need it import it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from mlx.analysis.evidence import Evidence


def clip_range(x_train: np.ndarray) -> tuple[Any, Any]:
    """The range attacks keep inputs in: for images one ``(low, high)`` pair of floats (the
    training split's smallest and largest pixel value); for tables one bound per column
    (arrays ``(F,)``), so a perturbed row never leaves what the training data spans."""
    import numpy as np

    x = np.asarray(x_train, dtype=np.float32)
    if x.ndim == 2:
        return x.min(axis=0), x.max(axis=0)
    return float(x.min()), float(x.max())


def classifier(
    evidence: Evidence,
    *,
    net: Any = None,
    clip: tuple[Any, Any] | None = None,
    optimizer: Any = None,
    black_box: bool = False,
) -> Any:
    """``evidence``'s model as an ART classifier: its network as ART's ``PyTorchClassifier``
    (white-box: gradients, cross-entropy loss) when it has one, else its outputs as a
    ``BlackBoxClassifierNeuralNetwork`` (an ONNX graph: only predictions). ``net`` wraps
    another network of the same shape instead (a thief, a poisoned twin), ``optimizer`` lets
    ART train it. ``clip`` defaults to the training split's range."""
    import numpy as np

    shape = tuple(evidence.x.shape[1:])
    classes = int(evidence.outputs.shape[1])
    if clip is None:
        clip = clip_range(evidence.train[0] if evidence.train is not None else evidence.x)
    low, high = (np.asarray(c, dtype=np.float32) for c in clip)
    bounds = (low, high) if low.ndim else (float(low), float(high))
    model = net if net is not None else evidence.net
    with quiet():
        if model is None or black_box:
            from art.estimators.classification import BlackBoxClassifierNeuralNetwork

            predict: Callable[[np.ndarray], np.ndarray] = evidence.predict
            return BlackBoxClassifierNeuralNetwork(
                lambda x: predict(np.asarray(x, dtype=np.float32)),
                input_shape=shape,
                nb_classes=classes,
                clip_values=bounds,
            )
        return white_box(model, shape, classes, bounds, optimizer)


def white_box(
    net: Any,
    shape: tuple[int, ...],
    classes: int,
    clip: tuple[Any, Any],
    optimizer: Any = None,
) -> Any:
    """``net`` as ART's ``PyTorchClassifier`` on CPU (cross-entropy loss, inputs clipped to
    ``clip``: floats, or one bound per column)."""
    import numpy as np
    import torch
    from art.estimators.classification import PyTorchClassifier

    low, high = (np.asarray(c, dtype=np.float32) for c in clip)
    bounds = (low, high) if low.ndim else (float(low), float(high))
    with quiet():
        return PyTorchClassifier(
            model=net,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=tuple(shape),
            nb_classes=int(classes),
            optimizer=optimizer,
            clip_values=bounds,
            device_type="cpu",
        )


def pgd(clf: Any, eps: float, steps: int, random_starts: int, batch: int) -> Any:
    """ART's L-infinity PGD on ``clf``: ``steps`` steps of ``2.5 * eps / steps`` (Madry et al.)
    from ``random_starts`` random starts inside the epsilon ball."""
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent

    return ProjectedGradientDescent(
        clf,
        norm=np.inf,
        eps=eps,
        eps_step=2.5 * eps / steps,
        max_iter=steps,
        num_random_init=random_starts,
        batch_size=batch,
        verbose=False,
    )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ART's own INFO logging off while it works (mlx logs its own progress)."""
    logger = logging.getLogger("art")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
