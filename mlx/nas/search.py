"""The search stage of ``mlx nas``: a NAS space from the config, its candidates, their cost
against the hardware budget, the one-shot search, and the exported architecture.

Multi-trial strategies run through the mlx sweeper (one trial per candidate, with its ledger,
resume, launchers and pruning): :func:`sweep_space` turns the space's choices into sweep
parameters on ``model.net.arch``. One-shot strategies train a single supernet inside the run's
search stage (:func:`one_shot_search`), then the run retrains the architecture it found.

Config objects stop here: the functions below hand typed values to :mod:`mlx.nas.spaces`,
:mod:`mlx.measure` and :mod:`mlx.nas.oneshot`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlx.numbers import fmt

log = logging.getLogger("mlx")

ARCH_KEY = "model.net.arch"
ARCH_TARGET = "mlx.nas.architecture"
# NNI's weight-sharing strategies; every other strategy is multi-trial (a sweep)
ONE_SHOT_TARGETS = {
    f"nni.nas.strategy.{name}"
    for name in ("DARTS", "GumbelDARTS", "ENAS", "Proxyless", "RandomOneShot")
}
SEARCH_RECORD = "search.json"
# candidates whose cost is computed to prove that some candidate meets the budget
FEASIBILITY_SAMPLES = 64


def is_nas_space(node: Any) -> bool:
    """Whether a ``search_space`` node is a NAS space (an ``mlx.nas`` model space) rather than
    a hyperparameter space."""
    if node is None:
        return False
    target = node.get("_target_") if isinstance(node, dict | DictConfig) else None
    return isinstance(target, str) and target.startswith("mlx.nas.")


def is_one_shot(strategy: Any) -> bool:
    """Whether a ``strategy`` node builds one of NNI's one-shot (weight-sharing) strategies."""
    if strategy is None:
        return False
    target = strategy.get("_target_") if isinstance(strategy, dict | DictConfig) else None
    return target in ONE_SHOT_TARGETS


@dataclass(frozen=True)
class Budget:
    """A hardware budget for candidates; ``None`` means no limit.

    Args:
        max_params: parameters (all of them, as counted in every record).
        max_macs: multiply-accumulates of one forward pass on one example.
        max_latency_ms: median CPU latency of one forward pass on one example.
    """

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Budget:
        from mlx.nas.spaces import NasError

        values = OmegaConf.to_container(cfg.budget, resolve=True) if cfg.get("budget") else {}
        assert isinstance(values, dict)
        unknown = sorted(set(values) - {"max_params", "max_macs", "max_latency_ms"})
        if unknown:
            raise NasError(
                f"budget has no key {unknown[0]!r}; it takes max_params, max_macs and max_latency_ms."
            )
        return cls(**values)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_macs, self.max_latency_ms))

    def violation(self, cost: dict[str, float]) -> str | None:
        """Why a candidate of this cost is over budget, or None."""
        limits = [
            ("params", self.max_params, "max_params"),
            ("macs", self.max_macs, "max_macs"),
            ("latency_ms", self.max_latency_ms, "max_latency_ms"),
        ]
        for key, limit, name in limits:
            if limit is not None and key in cost and cost[key] > limit:
                return f"{key} {fmt(cost[key])} > budget.{name} {fmt(limit)}"
        return None


@dataclass
class NasContext:
    """A NAS space built for the run's data, with its choices and budget."""

    space: Any  # the nni ModelSpace instance
    space_cfg: dict[str, Any]  # the resolved search_space config, as an exported file needs it
    input_shape: tuple[int, ...]
    num_outputs: int
    choices: dict[str, list[Any]]
    budget: Budget
    datamodule: Any = None
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def cost(self, arch: dict[str, Any], *, latency: bool | None = None) -> dict[str, float]:
        """Params and MACs (and latency when the budget limits it) of one candidate."""
        from mlx.measure import latency_ms, model_cost

        net = self.space.freeze(arch)
        cost: dict[str, float] = dict(model_cost(net, self.input_shape))
        if latency if latency is not None else self.budget.max_latency_ms is not None:
            cost["latency_ms"] = round(latency_ms(net, self.input_shape), 3)
        return cost

    def check_feasible(self, seed: int) -> None:
        """Raise NasError when no candidate meets the budget: every candidate of a small space
        is checked, else a seeded sample of candidates."""
        from mlx.nas.spaces import NasError

        if not self.budget.active:
            return
        size = math.prod(len(v) for v in self.choices.values())
        if size <= FEASIBILITY_SAMPLES:
            import itertools

            labels = list(self.choices)
            archs = [
                dict(zip(labels, combo, strict=True))
                for combo in itertools.product(*self.choices.values())
            ]
        else:
            rng = random.Random(seed)
            archs = [
                {k: rng.choice(v) for k, v in self.choices.items()}
                for _ in range(FEASIBILITY_SAMPLES)
            ]
            # the cheapest value of each choice is a strong candidate for the cheapest network
            archs.append({k: v[0] for k, v in self.choices.items()})
        best: tuple[float, dict[str, float]] | None = None
        for arch in archs:
            cost = self.cost(arch, latency=False)
            if self.budget.max_latency_ms is None and self.budget.violation(cost) is None:
                return
            if self.budget.violation(cost) is None:
                cost = self.cost(arch, latency=True)
                if self.budget.violation(cost) is None:
                    return
            score = cost.get("macs", 0)
            if best is None or score < best[0]:
                best = (score, cost)
        checked = "all" if size <= FEASIBILITY_SAMPLES else f"{len(archs)} sampled"
        cheapest = best[1] if best else {}
        raise NasError(
            f"no candidate of the search space meets the budget ({_budget_text(self.budget)}): "
            f"of {checked} candidates, the cheapest has "
            + ", ".join(f"{k} {fmt(v)}" for k, v in cheapest.items())
            + ". Raise the budget or search a smaller space (fewer channels, layers or cells)."
        )


def _budget_text(b: Budget) -> str:
    parts = [
        f"{name} {fmt(v)}"
        for name, v in (
            ("max_params", b.max_params),
            ("max_macs", b.max_macs),
            ("max_latency_ms", b.max_latency_ms),
        )
        if v is not None
    ]
    return ", ".join(parts)


def check_nas_config(cfg: DictConfig) -> None:
    """What a NAS config must hold before anything is built; raises NasError."""
    from mlx.nas.spaces import NasError

    target = OmegaConf.select(cfg, "model.net._target_", default=None)
    if target != ARCH_TARGET:
        raise NasError(
            f"search_space={_choice(cfg, 'search_space')} is a neural architecture space, but "
            f"model={_choice(cfg, 'model')} is a fixed network; the searched network is model=nas "
            "(`mlx nas` sets it)."
        )
    if cfg.get("strategy") is None:
        raise NasError(
            "a neural architecture search needs a strategy: strategy=random, tpe, "
            "regularized_evolution, rl, grid (multi-trial) or darts, gumbel_darts, enas, "
            "proxyless, random_one_shot (one-shot)."
        )


def _choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for ``group``: from the running Hydra job, else from the composed
    config's ``hydra`` node (the command-line check composes one)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group))
    try:
        return str(cfg.hydra.runtime.choices.get(group))
    except Exception:
        return "?"


def nas_context(cfg: DictConfig, *, fidelity: dict[str, Any] | None = None) -> NasContext:
    """Build the data module and the space (with ``fidelity``'s ``search_space.*`` values, when
    given) and check the budget's keys; raises NasError."""
    from hydra.utils import instantiate

    from mlx.nas.spaces import NasError, space_choices

    check_nas_config(cfg)
    space_cfg = OmegaConf.to_container(cfg.search_space, resolve=True)
    assert isinstance(space_cfg, dict)
    for key, value in (fidelity or {}).items():
        if key.startswith("search_space."):
            space_cfg[key.removeprefix("search_space.")] = value
    dm = instantiate(cfg.data)
    dm.setup("fit")
    try:
        space = instantiate(space_cfg)(input_shape=dm.input_shape, num_outputs=dm.num_outputs)
    except NasError:
        raise
    except Exception as e:
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, NasError):
            raise cause from None
        raise NasError(f"search_space: {cause}") from None
    return NasContext(
        space=space,
        space_cfg=space_cfg,
        input_shape=tuple(dm.input_shape),
        num_outputs=dm.num_outputs,
        choices=space_choices(space),
        budget=Budget.from_cfg(cfg),
        datamodule=dm,
    )


def sweep_params(choices: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """The space's choices as sweep parameters (``+model.net.arch.<label>``: the base config's
    ``arch`` is empty, so each label is added to it)."""
    return {
        f"+{ARCH_KEY}.{label}": {"type": "choice", "values": list(values)}
        for label, values in choices.items()
    }


def arch_of(params: dict[str, Any]) -> dict[str, Any]:
    """The architecture in a trial's sweep parameters."""
    prefix = f"{ARCH_KEY}."
    return {
        k.lstrip("+").removeprefix(prefix): v
        for k, v in params.items()
        if k.lstrip("+").startswith(prefix)
    }


def precheck_one_shot(cfg: DictConfig) -> None:
    """What a one-shot search checks before it trains, from a composed config (``mlx``'s
    command-line check runs it before Hydra starts); raises NasError."""
    from hydra.utils import instantiate

    from mlx.nas.oneshot import check_one_shot

    check_one_shot(_one_shot_context(cfg).space, instantiate(cfg.strategy))


def _one_shot_context(cfg: DictConfig) -> NasContext:
    """The space a one-shot strategy searches (at the estimation's fidelity), after the checks
    that need no space; raises NasError."""
    from mlx.nas.spaces import NasError

    fidelity = dict(OmegaConf.select(cfg, "estimation.fidelity", default=None) or {})
    if OmegaConf.select(cfg, "estimation.pruner", default=None) is not None:
        raise NasError(
            f"estimation={_choice(cfg, 'estimation')} stops candidates early, but a one-shot strategy trains one supernet; use estimation=full, low_fidelity or proxy."
        )
    budget = Budget.from_cfg(cfg)
    if budget.active:
        raise NasError(
            f"a budget ({_budget_text(budget)}) rejects candidates before they train, but a one-shot strategy trains all of them at once in a supernet; use a multi-trial strategy (random, tpe, regularized_evolution, rl) with a budget."
        )
    return nas_context(cfg, fidelity=fidelity)


# ---- one-shot search --------------------------------------------------------------------------


def one_shot_search(cfg: DictConfig, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train NNI's one-shot strategy's supernet on the run's data, write the search record and
    the exported experiment; return the architecture found and the (full-fidelity) space's
    config."""
    from hydra.utils import instantiate

    from mlx.nas.oneshot import search_one_shot

    ctx = _one_shot_context(cfg)
    fidelity = dict(OmegaConf.select(cfg, "estimation.fidelity", default=None) or {})
    strategy = instantiate(cfg.strategy)  # search_one_shot checks it can search the space
    name = experiment_name(cfg)
    log.info(
        "stage search: one-shot %s over %s (%d choices), supernet on %s",
        _choice(cfg, "strategy"),
        _choice(cfg, "search_space"),
        len(ctx.choices),
        type(ctx.datamodule).__name__,
    )
    epochs = int(fidelity.get("trainer.max_epochs", cfg.trainer.max_epochs))
    started = time.perf_counter()
    result = search_one_shot(
        ctx.space,
        strategy,
        ctx.datamodule,
        max_epochs=epochs,
        lr=float(cfg.model.lr),
        weight_decay=float(cfg.model.get("weight_decay") or 0.0),
        limit_train_batches=fidelity.get(
            "trainer.limit_train_batches", cfg.trainer.limit_train_batches
        ),
        seed=int(cfg.seed),
        progress=bool(cfg.trainer.enable_progress_bar),
    )
    seconds = time.perf_counter() - started
    arch = {k: _plain(v) for k, v in result.arch.items()}
    full = nas_context(cfg)  # the architecture at full fidelity (cells and channels)
    cost = full.cost(arch, latency=True)
    record = {
        "kind": "one-shot",
        "strategy": _choice(cfg, "strategy"),
        "search_space": _choice(cfg, "search_space"),
        "candidates": [
            {
                "number": 0,
                "state": "complete",
                "arch": arch,
                "metric": result.val_metric,
                "seconds": round(seconds, 3),
                **cost,
            }
        ],
        "supernet_history": result.history,
    }
    path = export_experiment(
        name, full.space_cfg, arch, user_overrides(), _header(cfg, result.val_metric, cost)
    )
    record["experiment"] = str(path)
    from mlx.record import write_json

    write_json(out / SEARCH_RECORD, record)
    log.info(
        "stage search: done in %.1f s; architecture %s (%s params, %s MACs); retrain: mlx run experiment=%s",
        seconds,
        json.dumps(arch),
        f"{int(cost['params']):,}",
        f"{int(cost['macs']):,}",
        path.stem,
    )
    return arch, full.space_cfg


def _header(cfg: DictConfig, metric: float | None, cost: dict[str, float]) -> str:
    score = f"supernet {cfg.objective.metric} {metric:.4g}, " if metric is not None else ""
    return (
        f"# the architecture found by one-shot NAS ({_choice(cfg, 'strategy')} over "
        f"search_space {_choice(cfg, 'search_space')}; {score}{int(cost['params']):,} params, "
        f"{int(cost['macs']):,} MACs), written by mlx nas.\n"
        "# It retrains from scratch at full fidelity: mlx run experiment=STEM\n"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def experiment_name(cfg: DictConfig) -> str:
    """``nas_<name>``: the sweep's name when one is set, else ``<search_space>_<strategy>``."""
    name = OmegaConf.select(cfg, "hydra.sweeper.name", default=None) if "hydra" in cfg else None
    if not name:
        name = f"{_choice(cfg, 'search_space')}_{_choice(cfg, 'strategy')}"
    return f"nas_{str(name).replace('/', '_')}"


# ---- the exported experiment ------------------------------------------------------------------

# overrides that belong to the search, not to the architecture's training
SEARCH_KEYS = (
    "search_space",
    "strategy",
    "estimation",
    "budget",
    "trial",
    "sweep",
    "experiment",
    "model",
)


def user_overrides() -> list[str]:
    """The running job's command-line overrides that the retrained experiment keeps."""
    from hydra.core.hydra_config import HydraConfig

    try:
        task = list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra job (tests calling the stage directly)
        return []
    return [o for o in task if not _is_search_override(o)]


def _is_search_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key.startswith("hydra.") or key.split(".")[0] in SEARCH_KEYS


def export_experiment(
    name: str,
    space_cfg: dict[str, Any],
    arch: dict[str, Any],
    overrides: list[str],
    header: str,
    choices: dict[str, str] | None = None,
    export_dir: str | Path | None = None,
) -> Path:
    """Write ``<name>.yaml`` in ``export_dir`` or the project's ``experiments/``: model=nas with
    the space and architecture written out, plus the run's other overrides (data, trainer...);
    full fidelity, as a fresh run trains."""
    from mlx.config.experiment_file import write_experiment
    from mlx.sweep.space import override_value

    nas = [
        "model=nas",
        f"model.net.space={override_value(space_cfg)}",
        *(f"{ARCH_KEY}.{k}={override_value(v)}" for k, v in arch.items()),
    ]
    return write_experiment(
        name,
        [*[o for o in overrides if not _is_search_override(o)], *nas],
        header,
        {g: c for g, c in (choices or {}).items() if g not in SEARCH_KEYS},
        export_dir,
    )


__all__ = [
    "ARCH_KEY",
    "Budget",
    "NasContext",
    "arch_of",
    "check_nas_config",
    "experiment_name",
    "export_experiment",
    "is_nas_space",
    "is_one_shot",
    "nas_context",
    "one_shot_search",
    "sweep_params",
]
