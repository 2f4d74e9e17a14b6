"""The hook Hydra discovers: registers ``hydra/sweeper=mlx``. The logic is in ``mlx.sweep``."""
# (no `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules,
# where dataclasses cannot resolve string annotations)

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from mlx.sweep import sweeper


class MlxSweeper(sweeper.MlxSweeper):
    """Hydra instantiates plugins from the hydra_plugins package only: this is that handle on
    :class:`mlx.sweep.sweeper.MlxSweeper`."""


@dataclass
class MlxSweeperConf:
    _target_: str = "hydra_plugins.mlx_sweeper.mlx_sweeper.MlxSweeper"
    # trials in the sweep, counting those of earlier (resumed) invocations
    n_trials: int = 20
    # trials launched together; the launcher decides whether they run in parallel
    n_jobs: int = 1
    # seconds after which no new trial starts
    timeout: Any = None
    # stop once more than this fraction of (at least 3) finished trials failed
    max_failure_rate: float = 0.5
    # [{metric, mode}, ...]; several give a Pareto front; null: the config's `objective`
    objectives: Any = None
    # where the best trial is written as an experiment file; null: the project's experiments/
    export_dir: Any = None
    # the sweep's name; null: the `sweep` option, else the sweep folder's name
    name: Any = None


ConfigStore.instance().store(group="hydra/sweeper", name="mlx", node=MlxSweeperConf, provider="mlx")

__all__ = ["MlxSweeper"]
