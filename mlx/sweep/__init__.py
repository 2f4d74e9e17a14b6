"""Sweeps and HPO: the mlx Hydra sweeper, search spaces, strategies, estimation and the ledger.

Importing this package is cheap: Optuna, NNI and Lightning load inside the functions that use
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlx.sweep.estimation import Estimation, MultiFidelity
from mlx.sweep.space import Param, SearchSpace, SearchSpaceError

if TYPE_CHECKING:
    from mlx.sweep.nni_adapter import CurveFittingPruner
    from mlx.sweep.rl import PolicyGradientSampler
    from mlx.sweep.trial import TrialPruning


def __getattr__(name: str) -> Any:
    # the heavier public names load on first use
    if name == "CurveFittingPruner":
        from mlx.sweep.nni_adapter import CurveFittingPruner

        return CurveFittingPruner
    if name == "PolicyGradientSampler":
        from mlx.sweep.rl import PolicyGradientSampler

        return PolicyGradientSampler
    if name == "TrialPruning":
        from mlx.sweep.trial import TrialPruning

        return TrialPruning
    raise AttributeError(name)


__all__ = [
    "CurveFittingPruner",
    "Estimation",
    "MultiFidelity",
    "Param",
    "PolicyGradientSampler",
    "SearchSpace",
    "SearchSpaceError",
    "TrialPruning",
]
