"""The train stage: fit, then test the best checkpoint (``mlx run``); or, for ``mlx eval`` and
``mlx compress``, test the network of a checkpoint or compressed file without training.

Its section of the record: the fit and test metrics, the objective, the network's size, epochs
and checkpoints; a sweep trial stopped by its pruner ends ``pruned``, untested.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlx.config.signature import TargetNotFoundError, static_signature
from mlx.config.values import plain_value as _value
from mlx.errors import ConfigError, paragraph

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")

# commands that test a saved network instead of training one
TESTING = {
    "eval": "mlx eval ckpt_path=PATH",
    "compress": "mlx compress ckpt_path=PATH",
    "deploy": "mlx deploy ckpt_path=PATH",
}


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
        errors: list[str] = []
        _check_optimizer(cfg, errors)
        _check_monitors(cfg, errors)
        _check_pipeline(cfg, errors)
        if not errors:
            _check_accelerator(cfg, errors)
            _check_precision(cfg, errors)
        if not errors:
            from mlx.engine.parallel_checks import check_parallelism

            check_parallelism(cfg, command, errors)
        if errors:
            raise ConfigError(paragraph(errors))
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
        from mlx.engine.callbacks import (
            ConfigInCheckpoint,
            HistoryCallback,
            RandomStates,
        )
        from mlx.engine.memory import MEMORY_DIR, MemoryCallback
        from mlx.engine.preemption import GracefulStop

        check_objective(self.cfg, state.model)
        if self.training:
            from mlx.engine.parallel_checks import check_network

            check_network(self.cfg, state.model.net)
        if _pipelined(self.cfg):
            # the network must cut into trainer.devices stages, before any process starts
            from mlx.engine.pipeline import describe_split, network_layers, split_layers

            parts = split_layers(network_layers(state.model.net), int(self.cfg.trainer.devices))
            log.info("pipeline: the network's layers on each stage\n%s", describe_split(parts))
        if self.cfg.ckpt_path is not None:
            from mlx.engine.checkpoint import load

            self.loaded = load(self.cfg.ckpt_path, trust=bool(self.cfg.get("trust_checkpoint")))
            if self.training:
                check_resume(self.loaded, OmegaConf.to_container(self.cfg.model.net, resolve=True))
        if self.training:
            config = OmegaConf.to_container(self.cfg, resolve=True)
            state.callbacks.append(ConfigInCheckpoint(config))
            state.callbacks.append(HistoryCallback(state.out / "history.csv"))
            state.callbacks.append(RandomStates())
            state.callbacks.append(GracefulStop())
            state.callbacks.append(MemoryCallback(state.out / MEMORY_DIR))
            if (pruning := trial_pruning(self.cfg)) is not None:
                state.callbacks.append(pruning)

    def run(self, state: RunState) -> None:
        if self.training:
            self._fit_and_test(state)
        else:
            self._test_saved(state)

    def _fit_and_test(self, state: RunState) -> None:
        """Fit, then test the best checkpoint; the record gets metrics, objective and summary."""
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        from mlx.engine.preemption import received, signals_forwarded

        recorder, trainer, model = state.recorder, state.trainer, state.model
        signals_forwarded(trainer)
        try:
            with gc_frozen():
                trainer.fit(
                    model,
                    datamodule=state.datamodule,
                    ckpt_path=self.cfg.ckpt_path,
                    weights_only=not self.cfg.get("trust_checkpoint"),
                )
        except SIGTERMException:
            # SIGTERM (SLURM, Kubernetes) or SLURM's SIGUSR1: every process stopped after the
            # same batch (mlx.engine.preemption). The partial epoch is abandoned:
            # checkpoints/last.ckpt, taken when the last whole epoch ended, is where the run
            # continues exactly when started again
            recorder.status = "interrupted"
            recorder.extra.update(run_summary(trainer, state.datamodule, state.out))
            recorder.objective = objective(self.cfg, trainer, {})
            log.warning(
                "%s: training stopped; run the same command again to continue from %s",
                " and ".join(received()) or "SIGTERM",
                recorder.extra["checkpoints"]["last"] or "the start (no epoch had ended)",
            )
            return
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

        dm = state.datamodule
        data = (
            f"the data here (examples of shape {tuple(dm.input_shape)}, {dm.num_outputs} outputs)"
        )
        restore(state.model, self.loaded, data)
        from mlx.engine.preemption import signals_forwarded

        signals_forwarded(state.trainer)
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


def check_objective(cfg: DictConfig, model: Any) -> None:
    """The objective and every callback's ``monitor`` must name a metric the model logs for
    the data's task (Lightning finds a wrong one only after the first epoch)."""
    names = {f"{split}/{m}" for split in ("train", "val", "test") for m in model.metric_names()}
    watched = {"objective.metric": cfg.objective.metric}
    for key, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if isinstance(monitor, str):
            watched[f"callbacks.{key}.monitor"] = monitor
    for key, metric in watched.items():
        if metric not in names:
            raise ConfigError(
                f"{key} '{metric}' is not logged for a {model.task} task; choose one of {', '.join(sorted(names))}."
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
    from mlx.engine.memory import MEMORY_DIR, read_memory
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
        # each process's parameter, gradient and optimizer-state bytes, by rank
        "memory": read_memory(out / MEMORY_DIR),
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


# ---- static checks of the train stage's config (no torch unless a GPU is named) ---------


def _check_monitors(cfg: Any, errors: list[str]) -> None:
    """Checkpointing and early stopping compare their monitor when validation ends (unless set
    to do it at the train epoch's end): an epoch's train/ metrics are logged after that, and
    test/ metrics never during training, so Lightning would fail after the first epoch."""
    from omegaconf import DictConfig, OmegaConf

    callbacks = OmegaConf.select(cfg, "callbacks", default=None)
    if not isinstance(callbacks, DictConfig):
        return
    watchers: dict[tuple[str, str], list[str]] = {}  # (where it is set, metric) -> callbacks
    for key in callbacks:
        node = callbacks._get_node(key)
        if not isinstance(node, DictConfig) or node._is_none() or "monitor" not in node:
            continue
        ok, monitor = _value(node, "monitor")
        if not ok or not isinstance(monitor, str):
            continue
        at_train_end = any(
            node.get(flag) is True
            for flag in ("save_on_train_epoch_end", "check_on_train_epoch_end")
        )
        split = monitor.partition("/")[0]
        if split == "test" or (split == "train" and not at_train_end):
            raw = str(node._get_node("monitor")._value())
            m = re.fullmatch(r"\$\{([\w.]+)\}", raw)
            where = m.group(1) if m else f"callbacks.{key}.monitor"
            watchers.setdefault((where, monitor), []).append(f"callbacks.{key}")
    for (where, metric), names in watchers.items():
        split, _, name = metric.partition("/")
        why = (
            "and test/ metrics exist only after training"
            if split == "test"
            else "before the epoch's train/ metrics are logged"
        )
        verb = "compare" if len(names) > 1 else "compares"
        errors.append(
            f"{where} is '{metric}', but {' and '.join(names)} {verb} it when validation ends, "
            f"{why}; use a val/ metric such as 'val/{name}'."
        )


def _check_optimizer(cfg: Any, errors: list[str]) -> None:
    """What torch and mlx's training module find only when the optimizer is built, after the
    data and the model are set up: ``LitModel`` passes ``lr`` and ``weight_decay`` to every
    optimizer, and torch's SGD refuses Nesterov momentum without momentum or with dampening."""
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, "model", default=None)
    if not isinstance(node, DictConfig) or not isinstance(node.get("optimizer"), DictConfig):
        return
    ok, opt = _value(node, "optimizer")
    if not ok or not isinstance(opt, dict) or not isinstance(opt.get("_target_"), str):
        return
    target = opt["_target_"]
    try:
        sig = static_signature(target)
    except TargetNotFoundError:
        return  # the walk has named it
    if (
        str(node.get("_target_")) == "mlx.engine.LitModel"
        and sig is not None
        and not sig.var_kwargs
    ):
        missing = [key for key in ("lr", "weight_decay") if key not in sig.names]
        if missing:
            errors.append(
                f"model.optimizer ({target}) takes no {' or '.join(missing)}, which the model "
                "passes to every optimizer (model.lr, model.weight_decay); choose an optimizer "
                "that takes both, such as torch.optim.AdamW, Adam, SGD or RMSprop."
            )
    if not target.endswith(".SGD"):
        return
    momentum, dampening = opt.get("momentum", 0), opt.get("dampening", 0)
    if opt.get("nesterov") is True and not (
        isinstance(momentum, int | float) and momentum > 0 and dampening == 0
    ):
        errors.append(
            "model.optimizer.nesterov=true needs momentum > 0 and dampening = 0, but momentum is "
            f"{momentum!r} and dampening {dampening!r}; set model.optimizer.nesterov=false or "
            "a momentum such as 0.9."
        )


def _check_precision(cfg: Any, errors: list[str]) -> None:
    """bf16 on a GPU that has no bfloat16 (before Ampere): Lightning would fail in the first
    step. A CPU always has it (torch emulates it where the instructions are missing)."""
    from omegaconf import OmegaConf

    precision = str(OmegaConf.select(cfg, "trainer.precision", default="") or "")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    if not precision.startswith("bf16") or accelerator not in ("gpu", "cuda", "auto"):
        return
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        errors.append(
            f"trainer.precision={precision} needs bfloat16, which {torch.cuda.get_device_name()} "
            "does not have; use trainer.precision=16-mixed (float16 with loss scaling) or 32-true."
        )


def _pipelined(cfg: Any) -> bool:
    target = OmegaConf.select(cfg, "trainer.strategy._target_", default=None)
    return isinstance(target, str) and target.endswith("PipelineStrategy")


def _check_pipeline(cfg: Any, errors: list[str]) -> None:
    """parallelism=pipeline: a stage per process, batches that split into the micro-batches,
    the precision the pipeline supports."""
    if not _pipelined(cfg):
        return
    node = cfg.trainer.strategy
    ok_d, devices = _value(cfg.trainer, "devices")
    ok_m, micro = _value(node, "micro_batches")
    ok_b, batch = _value(cfg.data, "batch_size") if "data" in cfg else (False, None)
    ok_p, precision = _value(cfg.trainer, "precision") if "precision" in cfg.trainer else (True, 32)
    if ok_d and not (isinstance(devices, int) and devices >= 2):
        errors.append(
            f"parallelism=pipeline runs one stage per process and needs trainer.devices >= 2 "
            f"(a number), not {devices!r}; use parallelism=single for one process."
        )
    if ok_m and ok_b and isinstance(micro, int) and isinstance(batch, int) and batch % micro:
        errors.append(
            f"data.batch_size={batch} does not split into trainer.strategy.micro_batches={micro} "
            f"equal micro-batches; use a batch size that is a multiple of {micro}."
        )
    schedule = node.get("schedule", "GPipe")
    ints = isinstance(micro, int) and isinstance(devices, int)
    if ok_m and ok_d and schedule == "1F1B" and ints and micro < devices:
        errors.append(
            f"the 1F1B schedule needs at least one micro-batch per stage: "
            f"trainer.strategy.micro_batches={micro} < trainer.devices={devices}; raise "
            "micro_batches or use schedule=GPipe."
        )
    if ok_p and str(precision) not in ("32", "32-true"):
        errors.append(
            f"parallelism=pipeline trains in 32-bit precision only (trainer.precision={precision!r} "
            "is not supported: the stages exchange activations whose dtype is fixed when the "
            "pipeline is built); use trainer.precision=32-true."
        )


def _check_accelerator(cfg: Any, errors: list[str]) -> None:
    """A GPU (or other accelerator) asked for by name must exist: Lightning finds out only
    when the Trainer is built, after the data and the model are set up. torch is imported only
    when such an accelerator is named (the run imports it anyway)."""
    from omegaconf import OmegaConf

    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    if accelerator not in ("gpu", "cuda", "mps", "tpu"):
        return
    ok, devices = _value(cfg.trainer, "devices")
    if accelerator == "tpu":
        import importlib.util

        if importlib.util.find_spec("torch_xla") is None:
            errors.append(
                "trainer.accelerator=tpu needs the torch_xla package, which is not installed; "
                "use trainer.accelerator=auto or cpu."
            )
        return
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = 1 if torch.backends.mps.is_available() else 0
    count = {"cuda": cuda, "mps": mps, "gpu": cuda or mps}[accelerator]
    if count == 0:
        what = {"cuda": "a CUDA GPU", "mps": "an Apple GPU (MPS)", "gpu": "a GPU (CUDA or MPS)"}[
            accelerator
        ]
        errors.append(
            f"trainer.accelerator={accelerator} asks for {what}, but torch {torch.__version__} "
            "finds none on this machine; use trainer.accelerator=auto (the GPU when there is one, "
            "else the CPU) or cpu."
        )
        return
    wanted = len(devices) if isinstance(devices, list) else devices
    too_high = [i for i in devices if i >= count] if isinstance(devices, list) else []
    if ok and isinstance(wanted, int) and (wanted > count or too_high):
        errors.append(
            f"trainer.devices={devices!r} asks for more than the {count} {accelerator} "
            f"device(s) torch finds on this machine (numbered 0 to {count - 1}); use "
            f"trainer.devices={count} or fewer, or -1 for all of them."
        )
