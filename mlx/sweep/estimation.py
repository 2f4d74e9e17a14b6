"""The ``estimation`` group (how a trial's performance is estimated) and multi-fidelity
strategies (a sampler paired with the pruner that gives it its fidelity schedule)."""

from __future__ import annotations

from typing import Any


class Estimation:
    """How each trial of a sweep is estimated.

    Args:
        pruner: an Optuna pruner (``optuna.pruners.MedianPruner``, ``HyperbandPruner``...) or
            :class:`mlx.sweep.CurveFittingPruner`; the job reports its validation curve and stops
            when the pruner says so. ``None``: every trial trains to the end.
        fidelity: config overrides applied to every trial (lower fidelity, for instance
            ``{trainer.max_epochs: 3, trainer.limit_train_batches: 0.25}``).
    """

    def __init__(self, pruner: Any = None, fidelity: dict[str, Any] | None = None) -> None:
        self.pruner = pruner
        self.fidelity = dict(fidelity or {})


class MultiFidelity:
    """A strategy that samples with ``sampler`` and promotes or stops trials with ``pruner``:
    Hyperband is random sampling with a Hyperband pruner; BOHB is a multivariate TPE sampler
    with one (the pairing Optuna documents as its BOHB).

    Args:
        sampler: an Optuna sampler.
        pruner: an Optuna pruner, usually ``optuna.pruners.HyperbandPruner``.
    """

    def __init__(self, sampler: Any, pruner: Any) -> None:
        self.sampler = sampler
        self.pruner = pruner
