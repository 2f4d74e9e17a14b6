"""``mlx run``: the config becomes objects, the objects run their stages, the run leaves a record.

Stages run in a fixed order: search -> train (fit, then test) -> compress -> analyse -> deploy.
A stage whose config group is empty is skipped. Each stage belongs to its area (see
:mod:`mlx.stages`); this module builds the objects and orders the stages.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mlx.config.locate import register_resolvers
from mlx.config.validate import validate
from mlx.engine.launch import global_rank, launched_externally
from mlx.errors import ConfigError, MlxError, report
from mlx.numbers import fmt
from mlx.record import Recorder, provenance
from mlx.stages import RunState, Stage, build_stages, check_stages

log = logging.getLogger("mlx")

register_resolvers()  # launchers that run jobs in other processes import this module first


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx run`` (and ``mlx sweep``, ``mlx nas``): validate, run the
    stages, return the objective's value."""
    return run(cfg, command="run")


def run(cfg: DictConfig, *, command: str = "run") -> float:
    """Run the stages of one configuration; returns ``objective.metric``'s best value (its
    test-split value for ``eval`` and ``compress``, which test a saved network instead of
    training one)."""
    out = Path(cfg.paths.output_dir)
    with errors_reported():
        resumed = continue_run(cfg, out) if command == "run" and single_run() else None
        validate(cfg)
        check_stages(cfg, command)
        stages = build_stages(cfg, command)
    # under torchrun or SLURM every process runs this function: rank 0 alone writes the record
    first = global_rank() == 0
    recorder = Recorder(
        out,
        OmegaConf.to_yaml(cfg, resolve=True),
        provenance(command=command, seed=cfg.seed, overrides=job_overrides()),
        writes=first,
    )
    if resumed is not None:
        recorder.extra["resumed"] = resumed
    with errors_reported(), tracking_finished(), recorder:
        state = RunState(out, recorder, command)
        for stage in stages:
            if stage.needs_objects and state.model is None:
                with recorder.stage("setup"):
                    build_objects(cfg, state, [s for s in stages if s.needs_objects])
            if recorder.status in ("pruned", "interrupted"):
                log.info("stage %s: skipped (the run was %s)", stage.name, recorder.status)
                continue
            with recorder.stage(stage.name):
                stage.run(state)
    if first:
        print_summary(out, recorder)
        if recorder.status == "interrupted":
            from mlx.engine.preemption import requeue_if_asked

            requeue_if_asked()  # SLURM's SIGUSR1: the record is written, the job goes back
    if state.exit_error is not None:
        with errors_reported():  # e.g. the validation gate's rejection: the record is written
            raise state.exit_error
    return recorder.objective["value"]


def run_saved(cfg: DictConfig, command: str) -> float:
    """Run ``command`` (``compress``, ``deploy``) on the saved network ``cfg.ckpt_path``: the
    file's own model, data, objective and seed replace the command line's, and the train stage
    tests the file's network instead of training one."""
    from mlx.engine.checkpoint import load

    with errors_reported():
        check_stages(cfg, command)
        saved = load(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint"))).config
        if saved is None:
            raise ConfigError(
                f"{cfg.ckpt_path} is not an mlx checkpoint (it holds no mlx config): mlx {command} "
                "takes a checkpoint written by mlx run, or a compressed/*.onnx."
            )
    with open_dict(cfg):
        for key in ("model", "data", "objective", "seed"):
            cfg[key] = saved[key]
    return run(cfg, command=command)


RESUMES_FILE = "resumes.json"
# keys that may differ between a run and its continuation
RESUME_FREE = ("ckpt_path", "trust_checkpoint")


def continue_run(cfg: DictConfig, out: Path) -> dict[str, Any] | None:
    """Continue the run that ``out`` holds, if any: an unfinished run of the same config with
    a ``checkpoints/last.ckpt`` resumes from it (``ckpt_path`` is set to it); a run killed
    before its first checkpoint starts over. Returns what the record says about the resume
    (None when nothing is resumed).

    Raises:
        ConfigError: ``out`` holds a finished run, a run of another config (the differing keys
            are named), or something that is not a run; or ``ckpt_path`` is set as well.
    """
    import json

    from mlx.record import CONFIG_FILE, METRICS_FILE, write_json

    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    saved_file = out / CONFIG_FILE
    if not saved_file.is_file():
        raise ConfigError(
            f"{out} holds checkpoints/last.ckpt but no {CONFIG_FILE}: it is not an mlx run folder; "
            "choose another hydra.run.dir, or name the checkpoint with ckpt_path=."
        )
    status = None
    if (out / METRICS_FILE).is_file():
        status = json.loads((out / METRICS_FILE).read_text()).get("status")
    if status in ("completed", "pruned"):
        raise ConfigError(
            f"{out} holds a finished run (status {status}); mlx does not overwrite results: "
            "choose another hydra.run.dir, or delete the folder to run it again."
        )
    if cfg.get("ckpt_path") is not None:
        raise ConfigError(
            f"{out} holds an unfinished run, which continues from its own checkpoints/last.ckpt; "
            f"ckpt_path={cfg.ckpt_path} cannot be used with it: drop ckpt_path, or choose another "
            "hydra.run.dir to start a new run from that checkpoint."
        )
    saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=False)
    current = OmegaConf.to_container(cfg, resolve=True)
    diff = _differing_keys(saved, current)
    diff = [k for k in diff if k.split(".")[0] not in RESUME_FREE]
    if diff:
        shown = ", ".join(
            f"{k} ({_at(saved, k)!r} there, {_at(current, k)!r} now)" for k in diff[:10]
        )
        more = f" and {len(diff) - 10} more" if len(diff) > 10 else ""
        raise ConfigError(
            f"{out} holds an unfinished run of another config, which cannot be continued with "
            f"this one: {shown}{more} differ. Rerun its own config (mlx run resume={out}) or "
            "choose another hydra.run.dir."
        )
    from mlx.engine.checkpoint import load

    loaded = load(last, trust=bool(cfg.get("trust_checkpoint")))
    epoch = loaded.epoch or 0
    resumes_file = out / RESUMES_FILE
    resumes = json.loads(resumes_file.read_text())["resumes"] if resumes_file.is_file() else []
    resumes.append({"from_epoch": epoch, "checkpoint": str(last.resolve()), "status": status})
    if global_rank() == 0:  # under torchrun or SLURM every process continues the run
        write_json(resumes_file, {"resumes": resumes})
    with open_dict(cfg):
        cfg.ckpt_path = str(last)
    log.info(
        "continuing the unfinished run in %s from epoch %d (resume %d)", out, epoch, len(resumes)
    )
    return {"from_epoch": epoch, "times": len(resumes)}


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            keys += _differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return keys
    return [] if a == b else [prefix.rstrip(".")]


def _at(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def build_objects(cfg: DictConfig, state: RunState, stages: list[Stage]) -> None:
    """Data, model, each stage's preparation, then the trainer with the stages' callbacks. The
    config is written again first: a search stage may have chosen the network."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from mlx.engine.logs import quiet_lightning
    from mlx.engine.stage import TESTING
    from mlx.measure import count_params

    state.recorder.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    state.datamodule = dm = instantiate(cfg.data)
    dm.setup("fit")
    log.info("data: %s", dm.describe())
    state.model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    net = state.model.net
    log.info("model: %s with %s parameters", type(net).__name__, f"{count_params(net):,}")
    for stage in stages:
        stage.prepare(state)
    state.trainer = build_trainer(cfg, state.callbacks, training=state.command not in TESTING)


def build_trainer(cfg: DictConfig, extra: list[Any], *, training: bool) -> Any:
    """The Lightning Trainer with the configured callbacks and logger plus the stages' own;
    without ``training``, no checkpoints or early stopping."""
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if not training:
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint | EarlyStopping)]
    callbacks += extra
    logger = instantiate(cfg.tracking, **wandb_run_id(cfg)) if cfg.get("tracking") else False
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = instantiate(trainer_config(cfg))(callbacks=callbacks, logger=logger)
    except MisconfigurationException as e:  # a combination of settings Lightning refuses
        raise ConfigError(f"trainer: Lightning refuses these settings: {e}") from e
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


WANDB_ID_FILE = "wandb_id.txt"


def wandb_run_id(cfg: DictConfig) -> dict[str, Any]:
    """A W&B run id kept in the run folder (made on first use), so that a resumed run logs to
    the same W&B run (``resume="allow"``); nothing for other loggers or a configured id."""
    target = str(OmegaConf.select(cfg, "tracking._target_", default="") or "")
    if not target.endswith("WandbLogger") or OmegaConf.select(cfg, "tracking.id") is not None:
        return {}
    import secrets

    from mlx.record import write_text

    path = Path(cfg.paths.output_dir) / WANDB_ID_FILE
    if path.is_file():
        run_id = path.read_text().strip()
    else:
        run_id = secrets.token_hex(4)
        if global_rank() == 0:  # the other processes of a torchrun/SLURM run log nothing
            write_text(path, run_id + "\n")
    return {"id": run_id, "resume": "allow"}


@contextmanager
def errors_reported() -> Iterator[None]:
    """Bad input found inside a single run (checks that need the data or the model) ends the
    command with mlx's one-paragraph error and exit status 2, as the command-line checks do.
    In a multirun the error stays an exception: the launcher records the job as failed; a
    caller in Python gets the exception too."""
    try:
        yield
    except MlxError as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        single = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN
        if not single or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise SystemExit(report(e)) from None


def single_run() -> bool:
    """Whether this is a single run (not a job of a multirun, whose sweeper resumes its own
    trials, nor a run started from Python without Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def job_overrides() -> list[str]:
    """This job's own overrides (one job of a multirun has its own)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def trainer_config(cfg: DictConfig) -> DictConfig:
    """``cfg.trainer``, except that a strategy which spawns its processes does not spawn when
    torchrun or SLURM already started one process per device: each of those runs the strategy
    in place (Lightning's ``popen`` launcher leaves externally created processes alone). Spawned
    there, every fit and test would start a child that joins a fresh process group through
    torchrun's agent store, and the second one waits forever."""
    trainer = cfg.trainer
    if launched_externally() and OmegaConf.select(trainer, "strategy.start_method") == "spawn":
        trainer = trainer.copy()
        trainer.strategy.start_method = "popen"
    return trainer


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


def print_summary(out: Path, recorder: Recorder) -> None:
    from rich.console import Console
    from rich.table import Table

    times = ", ".join(f"{k} {v:.1f} s" for k, v in recorder.stages.items() if k != "setup")
    ending = "interrupted" if recorder.status == "interrupted" else "finished"
    table = Table(title=f"run {ending} ({times})", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in recorder.metrics.items():
        table.add_row(key, fmt(value))
    console = Console()
    console.print(table)
    objective = recorder.objective
    console.print(
        f"objective {objective['metric']} ({objective['mode']}) = {fmt(objective['value'])}"
    )
    for name, why in (recorder.extra.get("analysis_failed") or {}).items():
        console.print(f"[bold red]analysis {name} failed[/bold red]: {why}", highlight=False)
    if gate := recorder.extra.get("validation"):
        failed = "; ".join(gate["failed"])
        colour = "green" if gate["verdict"] == "blessed" else "red"
        console.print(
            f"validation: [bold {colour}]{gate['verdict']}[/bold {colour}]"
            + (f" (failed: {failed})" if failed else ""),
            highlight=False,
        )
    if deployed := recorder.extra.get("deployment"):
        if deployed.get("exported"):
            forced = (
                " [bold red](forced past the gate)[/bold red]" if deployed.get("forced") else ""
            )
            console.print(
                f"deployed: {deployed['name']} version {deployed['version']} in "
                f"{deployed['folder']}{forced}; serve it: mlx serve {deployed['repository']}",
                highlight=False,
            )
        else:
            console.print(
                f"[bold red]not deployed[/bold red]: {deployed['reason']}", highlight=False
            )
    files = ", ".join(
        sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name[0] != ".")
    )
    console.print(f"outputs: [bold]{out.resolve()}[/bold] ({files})")
