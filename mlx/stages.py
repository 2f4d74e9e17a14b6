"""The stage protocol: how a run's stages are checked, prepared and run.

A run is a fixed order of stages: search -> train -> compress -> analyse -> deploy. Each area
owns its stage in its own package (``mlx.nas.stage``, ``mlx.engine.stage``,
``mlx.compression.stage``...) and the entry point (:mod:`mlx.run`) only orders them:

1. ``check(cfg)``, static, before Hydra launches anything (``mlx`` runs it on the composed
   command line; no torch, no data);
2. the entry point builds the stage from the config (``from_config``; None when its group is
   empty, and the stage is skipped);
3. ``prepare(state)`` once the data and model exist and before any stage runs: it checks what
   needs the built objects and may add Lightning callbacks (the trainer is built after);
4. ``run(state)`` in order, inside ``recorder.stage(name)``: it works on the current network in
   memory (``state.model.net``; the trained one, then the compressed one) and writes its own
   section of the record. A stage with ``needs_objects = False`` (the search) runs before the
   data and the model are built, since what it finds decides the network.

This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mlx.record import Recorder


@dataclass
class RunState:
    """What the stages of one run share.

    Attributes:
        out: the run's output folder.
        recorder: the run record; each stage writes its own section.
        command: the command that runs (``run``, ``eval``, ``compress``, ``nas``).
        datamodule: the LightningDataModule (set up), once built.
        model: the LightningModule; ``model.net`` is the current network.
        trainer: the Lightning Trainer, once built.
        callbacks: Lightning callbacks that stages add in ``prepare``, given to the trainer.
        keep_networks: set in ``prepare`` by a stage that reads every compression stage's
            network: the compress stage then fills ``networks``.
        networks: (label, network) of the trained network and of each compression stage's,
            in order, when ``keep_networks`` asked for them.
        exit_error: an error a stage found that ends the command once the record is written
            (the validation gate's rejection with ``fail_run``).
    """

    out: Path
    recorder: Recorder
    command: str = "run"
    datamodule: Any = None
    model: Any = None
    trainer: Any = None
    callbacks: list[Any] = field(default_factory=list)
    keep_networks: bool = False
    networks: list[tuple[str, Any]] = field(default_factory=list)
    exit_error: Exception | None = None


class Stage(Protocol):
    """One stage of a run (see the module's docstring for the order of calls)."""

    name: str
    needs_objects: bool  # False: runs before the data and model are built (the search)

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        """Static check of this stage's config; raises an :class:`~mlx.errors.MlxError`."""
        ...

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> Stage | None:
        """The stage for this config, or None when it has nothing to do."""
        ...

    def prepare(self, state: RunState) -> None:
        """Checks that need the built objects; may add callbacks to ``state.callbacks``."""
        ...

    def run(self, state: RunState) -> None:
        """Do the work on ``state`` and write this stage's section of the record."""
        ...


def stage_classes() -> list[type[Stage]]:
    """The stage classes in their run order (each module is light until its stage runs)."""
    from mlx.analysis.stage import AnalyseStage
    from mlx.compression.stage import CompressStage
    from mlx.deploy.stage import DeployStage
    from mlx.engine.stage import TrainStage
    from mlx.nas.stage import SearchStage

    return [SearchStage, TrainStage, CompressStage, AnalyseStage, DeployStage]


def check_stages(cfg: DictConfig, command: str) -> None:
    """Every stage's static check, in order; raises an :class:`~mlx.errors.MlxError`."""
    for stage in stage_classes():
        stage.check(cfg, command)


def build_stages(cfg: DictConfig, command: str) -> list[Stage]:
    """The stages this config runs, in order."""
    stages = [s.from_config(cfg, command) for s in stage_classes()]
    return [s for s in stages if s is not None]
