"""The train stage: fit, then test the best checkpoint (``mlx run``); or, for ``mlx eval`` and
``mlx compress``, test the network of a checkpoint or compressed file without training.

Its section of the record: the fit and test metrics, the objective, the network's size, epochs
and checkpoints; a sweep trial stopped by its pruner ends ``pruned``, untested.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")

# commands that test a saved network instead of training one
TESTING = {"eval": "mlx eval ckpt_path=PATH", "compress": "mlx compress ckpt_path=PATH"}


class TrainStage:
    """Fits and tests the run's model (or tests a saved network, without ``training``)."""

    needs_objects = True

    def __init__(self, cfg: DictConfig, *, training: bool) -> None:
        self.cfg = cfg
        self.training = training
        self.name = "train" if training else "test"
        self.loaded: Any = None

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        if command in TESTING and cfg.get("ckpt_path") is None:
            raise ConfigError(
                f"mlx {command} needs a checkpoint: {TESTING[command]} (a .ckpt written by mlx run, or a compressed/*.onnx)."
            )
        if cfg.get("ckpt_path") is not None and "hydra" in cfg:
            # the command line's check: a file that cannot be read safely is refused before
            # Hydra launches anything (inside the job, prepare loads it)
            from mlx.engine.checkpoint import load

            load(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint")))
        spawned = OmegaConf.select(cfg, "trainer.strategy.start_method", default=None) == "spawn"
        logger = str(OmegaConf.select(cfg, "tracking._target_", default="") or "")
        if spawned and logger.endswith("CSVLogger"):
            raise ConfigError(
                "tracking=csv cannot be used with spawned DDP processes (parallelism=ddp): Lightning's "
                "CSV logger cannot add the test metrics to the file the training processes wrote. Use "
                "tracking=wandb or tracking=none; the run record's history.csv still holds every epoch."
            )

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> TrainStage:
        return cls(cfg, training=command not in TESTING)

    def prepare(self, state: RunState) -> None:
        from mlx.engine.callbacks import ConfigInCheckpoint, HistoryCallback

        check_objective(self.cfg.objective.metric, state.model)
        if self.cfg.ckpt_path is not None:
            from mlx.engine.checkpoint import load

            self.loaded = load(self.cfg.ckpt_path, trust=bool(self.cfg.get("trust_checkpoint")))
            if self.training:
                check_resume(self.loaded, OmegaConf.to_container(self.cfg.model.net, resolve=True))
        if self.training:
            config = OmegaConf.to_container(self.cfg, resolve=True)
            state.callbacks.append(ConfigInCheckpoint(config))
            state.callbacks.append(HistoryCallback(state.out / "history.csv"))
            if (pruning := trial_pruning(self.cfg)) is not None:
                state.callbacks.append(pruning)

    def run(self, state: RunState) -> None:
        if self.training:
            self._fit_and_test(state)
        else:
            self._test_saved(state)

    def _fit_and_test(self, state: RunState) -> None:
        """Fit, then test the best checkpoint; the record gets metrics, objective and summary."""
        recorder, trainer, model = state.recorder, state.trainer, state.model
        with gc_frozen():
            trainer.fit(
                model, datamodule=state.datamodule, ckpt_path=self.cfg.ckpt_path, weights_only=True
            )
        fit_metrics = scalar_metrics(trainer)
        # read before testing: testing restores the best checkpoint's callback state
        recorder.extra.update(run_summary(trainer, state.datamodule, state.out))
        recorder.objective = objective(self.cfg, trainer, fit_metrics)
        size = network_size(model, state.datamodule)
        recorder.metrics = {**fit_metrics, **size}
        if (epoch := pruned_epoch(trainer)) is not None:
            # the sweep's pruner stopped this trial: no test, the record says so
            recorder.status = "pruned"
            recorder.extra["pruned_at_epoch"] = epoch
            log.info("trial pruned at epoch %d by the sweep's pruner", epoch)
            return
        best = recorder.extra["checkpoints"].get("best") or None
        with gc_frozen():
            trainer.test(model, datamodule=state.datamodule, ckpt_path=best, weights_only=True)
        recorder.metrics = {**fit_metrics, **scalar_metrics(trainer), **size}
        recorder.objective = objective(self.cfg, trainer, recorder.metrics)

    def _test_saved(self, state: RunState) -> None:
        """No training: the saved network is tested (the baseline of ``mlx compress``)."""
        from mlx.engine.checkpoint import restore

        restore(state.model, self.loaded)
        state.trainer.test(state.model, datamodule=state.datamodule, verbose=False)
        recorder = state.recorder
        recorder.metrics = {
            **scalar_metrics(state.trainer),
            **network_size(state.model, state.datamodule),
        }
        name = self.cfg.objective.metric.replace("val/", "test/").replace("train/", "test/")
        value = recorder.metrics.get(name, float("nan"))
        recorder.objective = {"metric": name, "mode": self.cfg.objective.mode, "value": value}
        recorder.extra.update(
            {
                "checkpoint": str(Path(self.cfg.ckpt_path).resolve()),
                "data": state.datamodule.describe(),
            }
        )


Stage = TrainStage


@contextmanager
def gc_frozen() -> Iterator[None]:
    """Keep what was built before training out of Python's cyclic garbage collector while the
    trainer runs. By then torch, Lightning and Hydra hold about half a million objects, and each
    full collection re-scans them all (about 150 ms, in the middle of an epoch); frozen, they are
    skipped (measured: epochs 3% shorter on the default CNN). Unfrozen afterwards, so that a
    process running many trials still frees what each one leaves behind. No collection first:
    one costs as much as those it saves (setup's garbage is collected after the unfreeze)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def network_size(model: Any, dm: Any) -> dict[str, int]:
    """``model/params`` (all parameters, trainable or not) and ``model/macs`` (one example)."""
    from mlx.measure import count_macs, count_params

    macs = count_macs(model.net, tuple(dm.input_shape))  # None for an ONNX network
    size = {"model/params": count_params(model.net)}
    return {**size, "model/macs": macs} if macs is not None else size


def scalar_metrics(trainer: Any) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if "/" in k}


def check_objective(metric: str, model: Any) -> None:
    names = {f"{split}/{m}" for split in ("train", "val", "test") for m in model.metric_names()}
    if metric not in names:
        raise ConfigError(
            f"objective.metric '{metric}' is not logged for a {model.task} task; choose one of {', '.join(sorted(names))}."
        )


def check_resume(loaded: Any, net: dict[str, Any]) -> None:
    """Refuse to resume from a checkpoint whose network differs from the configured one."""
    if loaded.config is None:
        return
    saved = loaded.config["model"]["net"]
    if saved != net:
        diff = sorted(k for k in set(net) | set(saved) if net.get(k) != saved.get(k))
        raise ConfigError(
            f"ckpt_path {loaded.path} holds a different network: model.net differs in {', '.join(diff)}; resume with the checkpoint's model settings."
        )


def objective(cfg: DictConfig, trainer: Any, metrics: dict[str, float]) -> dict[str, Any]:
    cb = trainer.checkpoint_callback
    name, mode = cfg.objective.metric, cfg.objective.mode
    value = metrics.get(name, float("nan"))
    if cb is not None and cb.monitor == name and cb.best_model_score is not None:
        value = float(cb.best_model_score)
    return {"metric": name, "mode": mode, "value": value}


def run_summary(trainer: Any, dm: Any, out: Path) -> dict[str, Any]:
    """Epochs and checkpoints, read from what the run left on disk: with spawned DDP processes
    the training state never comes back to this process, the files do."""
    from mlx.record import HISTORY_FILE, read_history

    history = read_history(out / HISTORY_FILE)
    cb = trainer.checkpoint_callback
    last = [
        Path(c.format_checkpoint_name({}))
        for c in trainer.checkpoint_callbacks
        if c.monitor is None
    ]
    return {
        "epochs_trained": len(history),
        "last_epoch": int(history[-1]["epoch"]) if history else None,
        "data": dm.describe(),
        "checkpoints": {
            "best": (cb.best_model_path or None) if cb else None,
            "last": str(last[0]) if last and last[0].is_file() else None,
        },
    }


def trial_pruning(cfg: DictConfig) -> Any:
    """The pruning callback of a sweep trial whose estimation or strategy has a pruner."""
    if cfg.get("trial") is None:
        return None
    from hydra.utils import instantiate

    pruner_cfg = OmegaConf.select(cfg, "estimation.pruner") or OmegaConf.select(
        cfg, "strategy.pruner"
    )
    if pruner_cfg is None:
        return None
    from mlx.sweep.trial import TrialHandle, TrialPruning

    handle = TrialHandle(**OmegaConf.to_container(cfg.trial, resolve=True))
    return TrialPruning(handle, instantiate(pruner_cfg), cfg.objective.metric)


def pruned_epoch(trainer: Any) -> int | None:
    if "mlx.sweep.trial" not in sys.modules:
        return None
    from mlx.sweep.trial import pruned_at

    return pruned_at(trainer)
