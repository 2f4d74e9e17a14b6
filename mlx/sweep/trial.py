"""The trial side of a sweep: what runs inside the job that a launcher started.

The sweeper hands each job a ``trial`` node (ledger URL, study name, trial id). From it the job
reopens the sweep's Optuna study, whichever process, machine or launcher it runs in, and reports
its validation curve there; the study's pruner decides whether to stop it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl


@dataclass(frozen=True)
class TrialHandle:
    """Where a trial lives in its sweep's ledger.

    Attributes:
        storage: the ledger's database URL (``sqlite:////abs/path/sweep.db``).
        study: the study's name.
        id: the trial's id in that storage.
        number: the trial's number in the sweep (its output folder's name).
    """

    storage: str
    study: str
    id: int
    number: int

    def open(self, pruner: Any = None) -> Any:
        """The live ``optuna.trial.Trial`` of this job, with ``pruner`` deciding on pruning."""
        import optuna

        from mlx.sweep.ledger import rdb_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(
            study_name=self.study, storage=rdb_storage(self.storage), pruner=pruner
        )
        return optuna.trial.Trial(study, self.id)

    def pruned_epoch(self) -> int | None:
        """The epoch at which this trial was pruned, as the ledger records it (spawned DDP
        processes decide there; their callbacks' state does not come back)."""
        from mlx.sweep.ledger import rdb_storage

        attrs = rdb_storage(self.storage).get_trial(self.id).user_attrs
        epoch = attrs.get("pruned_at_epoch")
        return None if epoch is None else int(epoch)


class TrialPruning(pl.Callback):
    """Reports ``metric`` after every validation to the sweep's ledger and stops training when
    the pruner says the trial is not worth finishing.

    The run then ends with status ``pruned`` (its record keeps the epochs it trained); the sweep
    records the trial as pruned. Under DDP, rank 0 reports and decides; the decision is
    broadcast so that every process stops at the same epoch.

    Args:
        trial: the job's trial handle.
        pruner: an Optuna pruner (``optuna.pruners.*`` or :class:`mlx.sweep.CurveFittingPruner`).
        metric: the ``split/name`` metric to report, normally ``objective.metric``.
    """

    def __init__(self, trial: TrialHandle, pruner: Any, metric: str) -> None:
        self.handle = trial
        self.pruner = pruner
        self.metric = metric
        self.pruned_at: int | None = None
        self._trial: Any = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.metric)
            if value is not None and math.isfinite(float(value)):
                if self._trial is None:
                    self._trial = self.handle.open(self.pruner)
                self._trial.report(float(value), step=trainer.current_epoch)
                prune = bool(self._trial.should_prune())
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at = trainer.current_epoch
            if trainer.is_global_zero:
                self._trial.set_user_attr("pruned_at_epoch", self.pruned_at)
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"pruned_at": self.pruned_at}


def pruned_at(trainer: Any) -> int | None:
    """The epoch at which a :class:`TrialPruning` callback stopped ``trainer``, if it did."""
    for cb in trainer.callbacks:
        if isinstance(cb, TrialPruning):
            return cb.pruned_at if cb.pruned_at is not None else cb.handle.pruned_epoch()
    return None
