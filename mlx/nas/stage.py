"""The search stage: a one-shot architecture search inside the run, before the network is built.

Multi-trial searches (hyperparameter sweeps and multi-trial NAS) belong to the mlx sweeper: each
trial is a run whose search stage only says which trial it is. A plain run that sets a search
space without a sweeper is told how to run the sweep. The NAS rules (space, network, strategy,
budget) are checked here, before Hydra launches anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError, did_you_mean, paragraph
from mlx.nas.search import ARCH_TARGET, is_nas_space, is_one_shot

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")

# the keys of `budget` and their types
BUDGET: dict[str, str] = {
    "max_params": "Optional[Annotated[int, Ge(1)]]",
    "max_macs": "Optional[Annotated[int, Ge(1)]]",
    "max_latency_ms": "Optional[Annotated[float, Gt(0)]]",
}


def one_shot(cfg: DictConfig) -> bool:
    """Whether this config's search is a one-shot one (a supernet trained inside the run)."""
    return is_nas_space(cfg.get("search_space")) and is_one_shot(cfg.get("strategy"))


def _mlx_sweeper(cfg: DictConfig) -> bool:
    target = OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or ""
    return str(target).startswith("hydra_plugins.mlx_sweeper")


class SearchStage:
    """Trains a one-shot strategy's supernet, then hands the run the architecture it found."""

    name = "search"
    needs_objects = False

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg  # the architecture found is written into the run's config

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        errors: list[str] = []
        _check_budget(cfg, errors)
        _check_nas(cfg, errors)
        if errors:
            raise ConfigError(paragraph(errors))
        space = cfg.get("search_space")
        if space is not None and cfg.get("trial") is None and not _mlx_sweeper(cfg):
            if not one_shot(cfg):
                how = "`mlx nas`" if is_nas_space(space) else "`mlx sweep NAME`"
                raise ConfigError(
                    f"search_space is searched by a sweep: run it with {how} or `mlx run -m hydra/sweeper=mlx strategy=NAME ...`."
                )
            if "hydra" in cfg:
                # the command line's composed config: check what the search will meet before
                # Hydra launches (inside the job, the search itself checks first)
                from mlx.nas.search import precheck_one_shot

                precheck_one_shot(cfg)

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> SearchStage | None:
        if cfg.get("trial") is not None:
            log.info("stage search: trial %s of a sweep", cfg.trial.number)
            return None
        if not one_shot(cfg):
            log.info("stage search: skipped (search_space is empty)")
            return None
        return cls(cfg)

    def prepare(self, state: RunState) -> None:
        return None

    def run(self, state: RunState) -> None:
        from mlx.nas.search import one_shot_search

        arch, space_cfg = one_shot_search(self.cfg, Path(state.out))
        # the record keeps search_space and strategy (how the network was found); the network
        # itself no longer depends on them
        OmegaConf.update(self.cfg, "model.net.space", space_cfg, merge=False)
        OmegaConf.update(self.cfg, "model.net.arch", arch, merge=False)
        state.recorder.extra["search"] = {"architecture": arch}


def _check_budget(cfg: DictConfig, errors: list[str]) -> None:
    from mlx.config.values import check_value, plain_value

    _, budget = plain_value(cfg, "budget") if "budget" in cfg else (False, None)
    if not isinstance(budget, dict):
        return
    for key, value in budget.items():
        if key not in BUDGET:
            errors.append(f"Unknown key 'budget.{key}'.{did_you_mean(key, BUDGET)}")
        elif (expected := check_value(BUDGET[key], value)) is not None:
            errors.append(f"Bad value for 'budget.{key}': expected {expected}, got {value!r}.")


def _check_nas(cfg: DictConfig, errors: list[str]) -> None:
    """A NAS space, the searched network (model=nas) and one-shot strategies go together."""
    net = str(OmegaConf.select(cfg, "model.net._target_", default="") or "")
    nas_space = is_nas_space(cfg.get("search_space"))
    if nas_space and net != ARCH_TARGET:
        errors.append(
            "search_space is a neural architecture space, but the model's network is fixed "
            f"({net or 'none'}); the searched network is model=nas, which `mlx nas` sets."
        )
    if net == ARCH_TARGET and not nas_space:
        arch = OmegaConf.select(cfg, "model.net.arch", default=None)
        if not arch or OmegaConf.select(cfg, "model.net.space", default=None) is None:
            errors.append(
                "model=nas is the network an architecture search looks for: run "
                "`mlx nas search_space=macro_cnn|cell|macro_mlp strategy=...`, or retrain a found "
                "one with `mlx run experiment=nas_<name>`."
            )
    if is_one_shot(cfg.get("strategy")) and not nas_space:
        errors.append(
            "strategy is a one-shot architecture search (a supernet): it needs a NAS "
            "search_space (macro_cnn, cell or macro_mlp), run with `mlx nas`."
        )


Stage = SearchStage
