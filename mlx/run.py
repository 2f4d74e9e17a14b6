"""``mlx run``: the config becomes objects, the objects run their stages, the run leaves a record.

Stages run in a fixed order: search -> train (fit, then test) -> compress -> analyse -> deploy.
A stage whose config group is empty is skipped.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlx.compression.measure import count_params
from mlx.config.locate import register_resolvers
from mlx.config.validate import ConfigError, validate
from mlx.record import Recorder, provenance

log = logging.getLogger("mlx")

# groups of the stages that later parts of mlx implement; empty groups skip their stage
LATER_STAGES = {
    "search": "search_space",
    "compress": "compression",
    "analyse": "analysis",
    "deploy": "deployment",
}

register_resolvers()  # launchers that run jobs in other processes import this module first


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx run``: validate, run, return the objective's value."""
    with config_errors_reported():
        validate(cfg)
        search_stage(cfg)
        return run(cfg)


@contextmanager
def config_errors_reported() -> Iterator[None]:
    """Bad input found inside a single run (checks that need the data or the model) ends the
    command with mlx's one-paragraph error and exit status 2, as the command-line checks do.
    In a multirun the error stays an exception: the launcher records the job as failed."""
    try:
        yield
    except ConfigError as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        # only a command-line run ends the process; a caller in Python gets the exception
        single = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN
        if not single or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from mlx.cli import _fail

        raise SystemExit(_fail(str(e))) from None


def run(cfg: DictConfig, *, train: bool = True) -> float:
    """Train and test one configuration, then run its later stages; returns
    ``objective.metric``'s best value. Without ``train`` (``mlx compress``), the weights come
    from ``ckpt_path`` and are only tested before the later stages."""
    out = Path(cfg.paths.output_dir)
    recorder = Recorder(
        out,
        OmegaConf.to_yaml(cfg, resolve=True),
        provenance(
            command="run" if train else "compress", seed=cfg.seed, overrides=job_overrides()
        ),
    )
    with tracking_finished(), recorder:
        with recorder.stage("setup"):
            import pytorch_lightning as pl

            from mlx.engine.callbacks import WeightsAfterFirstEpoch

            quiet_lightning()
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            dm, model = build_data_and_model(cfg)
            check_objective(cfg, model)
            check_resume(cfg)
            stages = build_compression(cfg, model, dm)
            trainer = build_trainer(cfg, training=train)
            early = WeightsAfterFirstEpoch() if stages and train else None
            if early is not None:
                trainer.callbacks.append(early)
            # the weights before training, for lottery-ticket rewinding
            initial = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        if train:
            train_and_test(cfg, recorder, dm, model, trainer)
        else:
            test_checkpoint(cfg, recorder, dm, model, trainer)
        if recorder.status != "pruned":
            if stages:
                with recorder.stage("compress"):
                    compress_stage(
                        cfg, recorder, dm, model, stages, initial, early.state if early else None
                    )
            else:
                log.info("stage compress: skipped (compression is empty)")
        skip_stages(cfg, ["analyse", "deploy"])
    print_summary(out, recorder)
    return recorder.objective["value"]


def train_and_test(cfg: DictConfig, recorder: Recorder, dm: Any, model: Any, trainer: Any) -> None:
    """Fit, then test the best checkpoint; the record gets metrics, objective and summary."""
    out = Path(cfg.paths.output_dir)
    with recorder.stage("train"), gc_frozen():
        trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    fit_metrics = scalar_metrics(trainer)
    # read before testing: testing restores the best checkpoint's callback state
    recorder.extra = run_summary(trainer, dm, out)
    recorder.objective = objective(cfg, trainer, fit_metrics)
    size = {"model/params": count_params(model), "model/macs": count_macs(model, dm)}
    recorder.metrics = {**fit_metrics, **size}
    if (epoch := pruned_epoch(trainer)) is not None:
        # the sweep's pruner stopped this trial: no test, the record says so
        recorder.status = "pruned"
        recorder.extra["pruned_at_epoch"] = epoch
        log.info("trial pruned at epoch %d by the sweep's pruner", epoch)
        return
    best = recorder.extra["checkpoints"].get("best") or None
    with recorder.stage("test"), gc_frozen():
        trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)
    recorder.metrics = {**fit_metrics, **scalar_metrics(trainer), **size}
    recorder.objective = objective(cfg, trainer, recorder.metrics)


def test_checkpoint(cfg: DictConfig, recorder: Recorder, dm: Any, model: Any, trainer: Any) -> None:
    """``mlx compress``: no training; the checkpoint's weights are tested as the baseline."""
    import torch

    ckpt = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    with recorder.stage("test"):
        trainer.test(model, datamodule=dm, verbose=False)
    size = {"model/params": count_params(model), "model/macs": count_macs(model, dm)}
    recorder.metrics = {**scalar_metrics(trainer), **size}
    name = cfg.objective.metric.replace("val/", "test/").replace("train/", "test/")
    value = recorder.metrics.get(name, float("nan"))
    recorder.objective = {"metric": name, "mode": cfg.objective.mode, "value": value}
    recorder.extra = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "data": dm.describe()}


def job_overrides() -> list[str]:
    """This job's own overrides (one job of a multirun has its own)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


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


@contextmanager
def tracking_finished() -> Iterator[None]:
    """Always close the W&B run, marking it failed on error, so the next job starts its own."""
    ok = False
    try:
        yield
        ok = True
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=0 if ok else 1)


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """Silence Lightning's advice that does not apply to mlx runs."""
    # in-memory batches need no loader workers
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())


def build_data_and_model(cfg: DictConfig) -> tuple[Any, Any]:
    """The data module (set up, so its shapes are known) and the LightningModule."""
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("fit")
    log.info("data: %s", dm.describe())
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    log.info("model: %s with %s parameters", type(model.net).__name__, f"{count_params(model):,}")
    return dm, model


def build_trainer(cfg: DictConfig, *, training: bool) -> Any:
    """The Lightning Trainer with the configured callbacks, logger and mlx's own callbacks;
    without ``training``, only the callbacks that matter for testing (no checkpoints)."""
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from mlx.engine import ConfigInCheckpoint, HistoryCallback

    out = Path(cfg.paths.output_dir)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if training:
        callbacks.append(ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True)))
        callbacks.append(HistoryCallback(out / "history.csv"))
        if (pruning := trial_pruning(cfg)) is not None:
            callbacks.append(pruning)
    else:
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint | EarlyStopping)]
    logger = instantiate(cfg.tracking) if cfg.get("tracking") else False
    trainer = instantiate(cfg.trainer)(callbacks=callbacks, logger=logger)
    if logger:
        try:
            # W&B starts its run here: a missing login or a refused setting surfaces now
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        except Exception as e:
            if not type(e).__module__.startswith("wandb.errors"):
                raise
            raise ConfigError(
                f"tracking: W&B cannot start the run: {e} (tracking.mode=offline, the default, "
                "needs no account; tracking=csv or none log without W&B)."
            ) from e
    log.info(
        "trainer: %s, %s logger, callbacks %s",
        trainer.strategy.__class__.__name__,
        type(logger).__name__ if logger else "no",
        [type(c).__name__ for c in callbacks],
    )
    return trainer


def search_stage(cfg: DictConfig) -> None:
    """Search, when the run's own job does it: a one-shot architecture search trains its supernet
    here, then ``cfg`` holds the architecture found, which the train stage retrains from scratch.
    Multi-trial searches belong to the sweeper: a trial skips the stage, and a plain run with a
    search space is told how to run the sweep."""
    from mlx.nas.search import is_nas_space, is_one_shot

    space = cfg.get("search_space")
    if cfg.get("trial") is not None:
        log.info("stage search: trial %s of a sweep", cfg.trial.number)
    elif is_nas_space(space) and is_one_shot(cfg.get("strategy")):
        from mlx.nas.search import one_shot_search
        from mlx.nas.spaces import NasError

        try:
            arch, space_cfg = one_shot_search(cfg, Path(cfg.paths.output_dir))
        except NasError as e:
            raise ConfigError(str(e)) from None
        # the record keeps search_space and strategy (how the network was found); the network
        # itself no longer depends on them
        OmegaConf.update(cfg, "model.net.space", space_cfg, merge=False)
        OmegaConf.update(cfg, "model.net.arch", arch, merge=False)
    elif space is not None:
        how = "`mlx nas`" if is_nas_space(space) else "`mlx sweep NAME`"
        raise ConfigError(
            f"search_space is searched by a sweep: run it with {how} or `mlx run -m hydra/sweeper=mlx strategy=NAME ...`."
        )
    else:
        log.info("stage search: skipped (search_space is empty)")


def build_compression(cfg: DictConfig, model: Any, dm: Any) -> list[Any]:
    """The compression stages in their listed order, each checked before anything trains."""
    if not cfg.get("compression"):
        return []
    from hydra.utils import instantiate

    from mlx.compression.base import CompressionError
    from mlx.compression.pipeline import check_stages

    stages = [instantiate(node) for node in cfg.compression.values() if node is not None]
    try:
        check_stages(
            stages, model.net, tuple(dm.input_shape), dm.num_outputs, dm.task, rebuilder(cfg, dm)
        )
    except CompressionError as e:
        raise ConfigError(str(e)) from e
    log.info("compression: %s", " -> ".join(s.name for s in stages))
    return stages


def rebuilder(cfg: DictConfig, dm: Any) -> Any:
    """Builds a fresh network of the run's model config for another input shape."""
    from hydra.utils import instantiate

    def rebuild(input_shape: tuple[int, ...]) -> Any:
        return instantiate(cfg.model.net)(
            input_shape=tuple(input_shape), num_outputs=dm.num_outputs
        )

    return rebuild


def compress_stage(
    cfg: DictConfig,
    recorder: Recorder,
    dm: Any,
    model: Any,
    stages: list[Any],
    initial: dict[str, Any] | None,
    early: dict[str, Any] | None,
) -> None:
    """Apply the compression stages to the trained (best) network; the table goes to the record."""
    from hydra.utils import instantiate

    from mlx.compression.base import CompressionError
    from mlx.compression.pipeline import compress, make_tools, print_table

    tools = make_tools(
        model,
        dm,
        progress_bar=bool(cfg.trainer.enable_progress_bar and cfg.callbacks.get("progress_bar")),
        initial_state=initial,
        early_state=early,
        rebuild=rebuilder(cfg, dm),
    )
    try:
        rows = compress(
            stages,
            model.net,
            tools,
            instantiate(cfg.latency),
            Path(cfg.paths.output_dir),
            OmegaConf.to_container(cfg, resolve=True),
        )
    except CompressionError as e:
        # what only the trained network tells (a budget no pruning ratio reaches): the
        # trained model and its record stay, and the command ends as for any bad input
        raise ConfigError(str(e)) from e
    recorder.extra["compression"] = rows
    final = rows[-1]
    for key, value in final.items():
        if (
            key.startswith(("val/", "test/"))
            or key in ("params", "macs", "size_bytes")
            or key.startswith("latency_")
        ):
            recorder.metrics[f"compressed/{key}"] = value
    print_table(rows, cfg.objective.metric.replace("train/", "val/"))


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


def count_macs(model: Any, dm: Any) -> int:
    """Multiply-accumulates of one forward pass on one example."""
    from mlx.nas.cost import model_cost

    return model_cost(model.net, tuple(dm.input_shape))["macs"]


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


def check_resume(cfg: DictConfig) -> None:
    """Refuse to resume from a checkpoint whose network differs from the configured one."""
    if cfg.ckpt_path is None:
        return
    from mlx.engine.checkpoint import saved_config

    saved = saved_config(cfg.ckpt_path)
    if saved is None:
        return
    now = OmegaConf.to_container(cfg.model.net, resolve=True)
    if saved["model"]["net"] != now:
        diff = sorted(
            k
            for k in set(now) | set(saved["model"]["net"])
            if now.get(k) != saved["model"]["net"].get(k)
        )
        raise ConfigError(
            f"ckpt_path {cfg.ckpt_path} holds a different network: model.net differs in {', '.join(diff)}; resume with the checkpoint's model settings."
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


def skip_stages(cfg: DictConfig, stages: list[str]) -> None:
    for stage in stages:
        group = LATER_STAGES[stage]
        if cfg.get(group):
            raise ConfigError(
                f"the {stage} stage ({group}={cfg[group]}) is not available in this version of mlx"
            )
        log.info("stage %s: skipped (%s is empty)", stage, group)


def print_summary(out: Path, recorder: Recorder) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="run finished ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in recorder.stages.items() if k != "setup")
        + ")",
        show_header=True,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in recorder.metrics.items():
        table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    console = Console()
    console.print(table)
    console.print(
        f"objective {recorder.objective['metric']} ({recorder.objective['mode']}) = {recorder.objective['value']:.4f}"
    )
    files = ", ".join(
        sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in out.iterdir()
            if not p.name.startswith(".")
        )
    )
    console.print(f"outputs: [bold]{out.resolve()}[/bold] ({files})")
