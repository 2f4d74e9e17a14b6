"""The mlx Hydra sweeper: asks a search library for trials, launches them through whichever
Hydra launcher is configured, and tells the library (and the ledger) how they ended.

Selected with ``hydra/sweeper=mlx`` (every file in ``sweeps/`` does). It reads the composed
config's ``search_space``, ``strategy`` and ``estimation`` groups plus the command line's sweep
overrides (``choice()``, ``interval()``, ``range()``, ``tag(log, ...)``, ``a,b,c``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from mlx.errors import MlxError
from mlx.sweep.space import SearchSpace, SearchSpaceError, from_override, override_value

log = logging.getLogger("mlx.sweep")


class SweepError(MlxError):
    """A sweep that cannot start; the message is for the user."""


class SweepStopped(SweepError):
    """A sweep stopped by its failures (``max_failure_rate``)."""

    exit_code = 1


@dataclass
class Objective:
    metric: str
    mode: str

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"


@dataclass
class Plan:
    """Everything a sweep needs, checked before the first trial."""

    name: str
    sweep_dir: Path
    space: SearchSpace
    objectives: list[Objective]
    base: list[str]  # the command line's fixed overrides, given to every trial
    fidelity: list[str]  # estimation's lower-fidelity overrides
    strategy_cfg: dict[str, Any]
    estimation_cfg: dict[str, Any] | None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    nas: Any = None  # a NAS search's mlx.nas.search.NasContext (space, choices, budget)


class MlxSweeper(Sweeper):
    """Hydra sweeper driving Optuna samplers and NNI tuners by ask-and-tell.

    Args:
        n_trials: trials in the sweep, counting those of earlier (resumed) invocations.
        n_jobs: trials launched together (the launcher decides whether they run in parallel).
        timeout: seconds after which no new trial starts (running ones finish).
        max_failure_rate: the sweep stops once more than this fraction of its (at least 3)
            finished trials failed.
        objectives: ``[{metric, mode}, ...]``; several give a Pareto front. Default: the
            config's ``objective``.
        export_dir: where the best trial is written as an experiment file (default: the
            project's ``experiments/`` folder).
        name: the sweep's name (default: the ``sweep`` option, else the sweep folder's name).
    """

    def __init__(
        self,
        n_trials: int = 20,
        n_jobs: int = 1,
        timeout: float | None = None,
        max_failure_rate: float = 0.5,
        objectives: list[dict[str, str]] | None = None,
        export_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.timeout = timeout
        self.max_failure_rate = max_failure_rate
        self.objectives = objectives
        self.export_dir = export_dir
        self.name = name
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ---- planning ----------------------------------------------------------------------------

    def plan(self, arguments: list[str]) -> Plan:
        """Parse and check the sweep; raises :class:`SweepError` before any trial runs."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        assert self.config is not None
        cfg = self.config
        check_budget(self.n_trials, self.n_jobs, self.timeout, self.max_failure_rate)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space, base, nas = searched_space(cfg, arguments, parser)
        objectives = [
            Objective(str(o["metric"]), str(o["mode"]))
            for o in (self.objectives or [OmegaConf.to_container(cfg.objective, resolve=True)])
        ]
        for o in objectives:
            if o.mode not in ("min", "max"):
                raise SweepError(f"objective {o.metric}: mode must be min or max, got {o.mode!r}.")
        strategy_cfg = OmegaConf.to_container(cfg.strategy, resolve=True)
        estimation = cfg.get("estimation")
        estimation_cfg = OmegaConf.to_container(estimation, resolve=True) if estimation else None
        fidelity_values = (estimation_cfg or {}).get("fidelity") or {}
        check_fidelity_keys(cfg, fidelity_values)
        fidelity = [f"{k}={override_value(v)}" for k, v in fidelity_values.items()]
        sweep_dir = Path(cfg.hydra.sweep.dir)
        name = self.name or cfg.hydra.runtime.choices.get("sweep") or sweep_dir.name
        if nas is not None:
            from mlx.nas.search import experiment_name

            name = experiment_name(cfg).removeprefix("nas_")
        plan = Plan(
            name=str(name).replace("/", "_"),
            sweep_dir=sweep_dir,
            space=space,
            objectives=objectives,
            base=base,
            fidelity=fidelity,
            strategy_cfg=strategy_cfg,
            estimation_cfg=estimation_cfg,
            nas=nas,
        )
        plan.fingerprint = {
            "search_space": space.describe(),
            **(
                {"nas space": nas.space_cfg, "budget": asdict(nas.budget)}
                if nas is not None
                else {}
            ),
            "strategy": {k: v for k, v in strategy_cfg.items() if k != "seed"},
            "estimation": estimation_cfg or {},
            "objectives": {"list": [f"{o.metric}:{o.mode}" for o in objectives]},
            "fixed overrides": {"list": sorted(base)},
        }
        return plan

    def changed_groups(self) -> dict[str, str]:
        """Group options this sweep's config chose away from the primary config's defaults (the
        sweep file's and the command line's), which an exported experiment must repeat."""
        from hydra.types import RunMode

        assert self.config is not None
        default = self.hydra_context.config_loader.load_configuration(
            config_name=self.config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN
        ).hydra.runtime.choices
        skip = {"sweep", "experiment", "search_space", "strategy", "estimation"}
        return {
            group: str(choice)
            for group, choice in self.config.hydra.runtime.choices.items()
            if not group.startswith("hydra") and group not in skip and choice != default.get(group)
        }

    # ---- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        """Run the sweep; bad input (any :class:`~mlx.errors.MlxError`) ends the process with its
        one-paragraph message (exit 2; 1 for a sweep stopped by its failures), not a traceback."""
        from mlx.errors import MlxError, report

        try:
            return self.run_sweep(arguments)
        except MlxError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            raise SystemExit(report(e)) from None

    def run_sweep(self, arguments: list[str]) -> Any:
        import optuna

        from mlx.sweep.ledger import LEDGER_FILE, ledger_url, open_study
        from mlx.sweep.results import export_best, print_results, write_results

        assert self.config is not None and self.launcher is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        plan = self.plan(arguments)
        strategy = build_strategy(self.config, plan, seed_offset=0)
        check_combination(plan, strategy)
        ledger = plan.sweep_dir / LEDGER_FILE
        study, resumed = open_study(
            ledger,
            plan.name,
            [o.direction for o in plan.objectives],
            strategy.sampler,
            strategy.pruner,
            plan.fingerprint,
        )
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, plan.sweep_dir / "multirun.yaml")
        budget = self.n_trials
        if strategy.grid_size is not None:
            budget = min(budget, strategy.grid_size)
        if resumed:
            n_old = len(study.trials)
            interrupted = recover_interrupted(study)
            # a seeded sampler restarted from its seed would repeat the first proposals
            strategy = build_strategy(self.config, plan, seed_offset=n_old)
            study.sampler = strategy.sampler
            if strategy.adapter is not None:
                strategy.adapter.replay(finished_history(study, plan.space))
            log.info(
                "resuming sweep %s from %s: %d trial(s) finished%s",
                plan.name,
                ledger,
                count_done(study),
                f", {len(interrupted)} interrupted and queued again ({', '.join(map(str, interrupted))})"
                if interrupted
                else "",
            )
        log.info(
            "sweep %s: %d trial(s), strategy %s, objective %s, ledger %s",
            plan.name,
            budget,
            strategy.label,
            ", ".join(f"{o.metric} ({o.mode})" for o in plan.objectives),
            ledger,
        )
        url = ledger_url(ledger)
        started = time.monotonic()
        returns = []
        stop_reason = None
        rejected_in_a_row = 0
        while True:
            done = count_done(study)
            if done >= budget:
                break
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                stop_reason = f"timeout of {self.timeout:g} s reached"
                break
            asked = []
            for _ in range(min(self.n_jobs, budget - done)):
                try:
                    asked.append(ask(study, plan.space, strategy))
                except StopIteration:
                    break
            if not asked:
                stop_reason = "the strategy has no more trials to propose"
                break
            if plan.nas is not None and plan.nas.budget.active:
                asked = [
                    (t, p) for t, p in asked if not reject_over_budget(study, t, p, plan, strategy)
                ]
                rejected_in_a_row = 0 if asked else rejected_in_a_row + 1
                if rejected_in_a_row >= MAX_REJECTED_ROUNDS:
                    stop_reason = (
                        f"the last {MAX_REJECTED_ROUNDS} rounds of candidates were all over budget"
                    )
                    break
                if not asked:
                    continue
            batch = [trial_overrides(plan, t, params, url, study.study_name) for t, params in asked]
            first = asked[0][0].number
            try:
                results = list(self.launcher.launch(batch, initial_job_idx=first))
            except Exception as e:  # the launcher itself failed (a killed worker, a lost node)
                log.error("launcher failed on trials %s: %s", [t.number for t, _ in asked], e)
                results = [e] * len(asked)
            for (trial, params), ret in zip(asked, results, strict=True):
                tell(study, trial, params, ret, plan, strategy)
            returns.append(results)
            write_results(study, plan, self.n_trials)
            rate = failure_rate(study)
            if rate is not None and rate[0] / rate[1] > self.max_failure_rate:
                stop_reason = (
                    f"{rate[0]} of {rate[1]} finished trials failed "
                    f"({rate[0] / rate[1]:.0%} > max_failure_rate {self.max_failure_rate:.0%})"
                )
                break
        write_results(study, plan, self.n_trials, stop_reason=stop_reason)
        print_results(study, plan)
        exported = export_best(study, plan, self.export_dir, self.changed_groups())
        for path in exported:
            log.info("best configuration: %s (mlx run experiment=%s)", path, path.stem)
        if stop_reason and stop_reason.startswith(tuple("0123456789")):
            errors = [
                f"trial {t.number}: {t.user_attrs.get('error', '?')}"
                for t in study.trials
                if t.state == optuna.trial.TrialState.FAIL
            ][-3:]
            raise SweepStopped(
                f"sweep {plan.name} stopped: {stop_reason}. Last errors: {'; '.join(errors)}. "
                f"Results so far: {plan.sweep_dir / 'trials.csv'}."
            )
        if stop_reason:
            log.info("sweep %s stopped: %s", plan.name, stop_reason)
        return returns


# ---- the pieces, as functions ---------------------------------------------------------------


def is_mlx_sweeper(cfg: DictConfig) -> bool:
    target = OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or ""
    return str(target).endswith("MlxSweeper")


def check_sweep_config(cfg: DictConfig, arguments: list[str]) -> None:
    """What :meth:`MlxSweeper.plan` checks, from a composed config (``mlx``'s pre-check runs it
    before Hydra starts); raises :class:`SweepError`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = cfg.hydra.sweeper
    check_budget(sweeper.n_trials, sweeper.n_jobs, sweeper.timeout, sweeper.max_failure_rate)
    space, _, _ = searched_space(cfg, arguments, OverridesParser.create())
    estimation = cfg.get("estimation")
    check_fidelity_keys(cfg, (estimation.get("fidelity") if estimation else None) or {})
    if OmegaConf.select(cfg, "strategy._target_") == "optuna.samplers.GridSampler":
        check_grid_size(space.grid())
    objectives = sweeper.objectives or [cfg.objective]
    pruner = OmegaConf.select(cfg, "estimation.pruner") or OmegaConf.select(cfg, "strategy.pruner")
    if len(objectives) > 1 and pruner is not None:
        raise SweepError(
            "pruning needs a single objective; with several objectives use estimation=full or estimation=low_fidelity."
        )
    if OmegaConf.select(cfg, "estimation.pruner") and OmegaConf.select(cfg, "strategy.pruner"):
        raise SweepError(
            "the strategy prunes trials itself (Hyperband), so estimation cannot add a pruner; use estimation=full or estimation=low_fidelity."
        )


def searched_space(
    cfg: DictConfig, arguments: list[str], parser: Any
) -> tuple[SearchSpace, list[str], Any]:
    """The search space (the ``search_space`` group's parameters, or a NAS space's choices, then
    the command line's sweep overrides), the command line's fixed overrides, and a NAS search's
    context (None for hyperparameters); checks that the sweep can start."""
    base: list[str] = []
    nas = None
    space_cfg = cfg.get("search_space")
    budget = OmegaConf.select(cfg, "budget", default=None)
    if budget is not None and any(v is not None for v in budget.values()):
        from mlx.nas.search import is_nas_space

        if not is_nas_space(space_cfg):
            raise SweepError(
                "budget limits the candidates of a neural architecture search (search_space=macro_cnn, cell or macro_mlp); this sweep searches hyperparameters."
            )
    from mlx.nas.search import is_one_shot

    if is_one_shot(cfg.get("strategy")):
        raise SweepError(
            f"strategy {cfg.hydra.runtime.choices.get('strategy')} is a one-shot architecture search that trains one supernet, not a sweep of trials: run it with `mlx nas search_space=... strategy={cfg.hydra.runtime.choices.get('strategy')}`."
        )
    try:
        from mlx.nas.search import is_nas_space

        if is_nas_space(space_cfg):
            from mlx.nas.search import nas_context, sweep_params

            nas = nas_context(cfg)
            nas.check_feasible(int(cfg.seed))
            space = SearchSpace(sweep_params(nas.choices))
        else:
            space = SearchSpace(space_cfg.params if space_cfg is not None else {})
        for o in parser.parse_overrides(list(arguments)):
            if o.is_sweep_override():
                space.add(from_override(o))
            else:
                base.append(o.input_line)
    except SearchSpaceError as e:
        raise SweepError(str(e)) from None
    if not len(space):
        raise SweepError(
            "the sweep has nothing to search: set search_space (a file in conf/search_space, or search_space.params) or give sweep overrides such as model.lr=tag(log,interval(1e-4,1e-1))."
        )
    check_keys(cfg, space)
    if cfg.get("strategy") is None:
        raise SweepError(
            f"the mlx sweeper needs a strategy: add strategy=NAME ({', '.join(strategy_options())})."
        )
    return space, base, nas


def check_fidelity_keys(cfg: DictConfig, fidelity: dict[str, Any]) -> None:
    """Every key an estimation's fidelity sets must be a key of the composed config."""
    for key in fidelity:
        parent, _, leaf = str(key).rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node:
            option = cfg.hydra.runtime.choices.get("estimation")
            raise SweepError(
                f"estimation={option} sets '{key}', which this config does not have"
                + (
                    " (it is a parameter of search_space=cell)"
                    if str(key).startswith("search_space.")
                    else ""
                )
                + "; choose another estimation."
            )


# Optuna's GridSampler lists every combination up front
MAX_GRID = 100_000


def check_grid_size(grid: dict[str, list[Any]]) -> int:
    """The number of combinations of a grid; a grid too large to list is refused."""
    size = math.prod(len(v) for v in grid.values())
    if size > MAX_GRID:
        raise SweepError(
            f"strategy grid would list {size:.3g} combinations (more than {MAX_GRID:,}); narrow the search space or use strategy=random, tpe, regularized_evolution or rl."
        )
    return size


def check_budget(n_trials: Any, n_jobs: Any, timeout: Any, max_failure_rate: Any) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(n_trials) or n_trials < 1:
        raise SweepError(f"hydra.sweeper.n_trials must be an integer >= 1, got {n_trials!r}.")
    if not is_int(n_jobs) or n_jobs < 1:
        raise SweepError(f"hydra.sweeper.n_jobs must be an integer >= 1, got {n_jobs!r}.")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise SweepError(f"hydra.sweeper.timeout must be seconds > 0 or null, got {timeout!r}.")
    if not isinstance(max_failure_rate, int | float) or not 0 <= max_failure_rate <= 1:
        raise SweepError(
            f"hydra.sweeper.max_failure_rate must be between 0 and 1, got {max_failure_rate!r}."
        )


def strategy_options() -> list[str]:
    from mlx.config.locate import config_tree

    return config_tree().options("strategy")


def check_keys(cfg: DictConfig, space: SearchSpace) -> None:
    """Every searched key must exist in the composed config (or be a config group)."""
    import difflib

    groups = set(cfg.hydra.runtime.choices.keys())
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    leaves = _leaf_keys(body)
    for p in space:
        if p.name in groups:
            continue
        adding = p.name.startswith("+")  # `+key`: added to the config, so only its parent exists
        parent, _, leaf = p.name.lstrip("+").rpartition(".")
        node = OmegaConf.select(body, parent) if parent else body
        if isinstance(node, DictConfig) and (adding or leaf in node):
            continue
        close = difflib.get_close_matches(p.name, sorted(leaves | groups), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SweepError(
            f"search_space '{p.name}' is not a key of the composed config nor a config group.{hint}"
        )


def _leaf_keys(node: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(node, DictConfig):
        for k in node:
            full = f"{prefix}.{k}" if prefix else str(k)
            out.add(full)
            child = node._get_node(k)
            if isinstance(child, DictConfig) and not child._is_none():
                out |= _leaf_keys(child, full)
    return out


@dataclass
class Strategy:
    """The built strategy: an Optuna sampler (and pruner), or an NNI tuner behind an adapter."""

    label: str
    sampler: Any
    pruner: Any
    adapter: Any = None
    grid_size: int | None = None


def build_strategy(cfg: DictConfig, plan: Plan, seed_offset: int) -> Strategy:
    """Instantiate ``strategy`` (and ``estimation``'s pruner) for ``plan``."""
    import optuna
    from hydra.utils import instantiate

    from mlx.sweep.estimation import Estimation, MultiFidelity

    node = OmegaConf.create(plan.strategy_cfg)
    if "seed" in node and node.seed is not None:
        node.seed = int(node.seed) + seed_offset
    target = str(plan.strategy_cfg.get("_target_", ""))
    label = cfg.hydra.runtime.choices.get("strategy") or target.rpartition(".")[2]
    try:
        obj = instantiate(node)
    except Exception as e:
        raise SweepError(f"strategy {label}: {_cause(e)}") from None
    estimation = None
    if plan.estimation_cfg is not None:
        try:
            estimation = instantiate(plan.estimation_cfg)
        except Exception as e:
            raise SweepError(f"estimation: {_cause(e)}") from None
        if not isinstance(estimation, Estimation):
            raise SweepError("estimation must build an mlx.sweep.Estimation.")
    pruner = estimation.pruner if estimation else None
    grid_size = None
    adapter = None
    if isinstance(obj, functools.partial):
        if obj.func is optuna.samplers.GridSampler:
            grid = plan.space.grid()
            grid_size = check_grid_size(grid)
            obj = obj(search_space=grid)
        elif obj.func.__module__.startswith("nni"):
            obj = obj(optimize_mode=plan.objectives[0].direction)
        else:
            obj = obj()
    if isinstance(obj, MultiFidelity):
        if pruner is not None:
            raise SweepError(
                f"strategy {label} prunes trials itself (Hyperband), so estimation cannot add a pruner; use estimation=full or estimation=low_fidelity."
            )
        sampler, pruner = obj.sampler, obj.pruner
    elif isinstance(obj, optuna.samplers.BaseSampler):
        sampler = obj
    elif type(obj).__module__.startswith("nni"):
        from mlx.sweep.nni_adapter import NniAdapter

        if len(plan.objectives) > 1:
            raise SweepError(f"strategy {label} (an NNI tuner) optimises one objective only.")
        adapter = NniAdapter(obj, plan.space, plan.objectives[0].mode)
        sampler = optuna.samplers.RandomSampler(seed=cfg.seed + seed_offset)
    else:
        raise SweepError(
            f"strategy {label} builds a {type(obj).__name__}; a strategy must build an Optuna sampler, an mlx.sweep.MultiFidelity or an NNI tuner."
        )
    return Strategy(label, sampler, pruner or optuna.pruners.NopPruner(), adapter, grid_size)


def check_combination(plan: Plan, strategy: Strategy) -> None:
    import optuna

    multi = len(plan.objectives) > 1
    if multi and not isinstance(strategy.pruner, optuna.pruners.NopPruner):
        raise SweepError(
            "pruning needs a single objective; with several objectives use estimation=full or estimation=low_fidelity."
        )
    if multi and isinstance(strategy.sampler, optuna.samplers.CmaEsSampler):
        raise SweepError("strategy cmaes optimises one objective only; use nsga2 or tpe.")
    from mlx.sweep.rl import PolicyGradientSampler, check_space

    if isinstance(strategy.sampler, PolicyGradientSampler):
        if multi:
            raise SweepError("strategy rl optimises one objective only; use nsga2 or tpe.")
        check_space(plan.space)  # a SearchSpaceError, which run_sweep reports as a SweepError


def _cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}"


def count_done(study: Any) -> int:
    """Trials that count against ``n_trials``: those that ran (not interrupted ones, nor
    candidates rejected before training for being over budget)."""
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and not t.user_attrs.get("interrupted")
        and not t.user_attrs.get("rejected")
    )


# a NAS sweep whose strategy keeps proposing over-budget candidates stops after this many
# rounds in a row
MAX_REJECTED_ROUNDS = 200


def reject_over_budget(
    study: Any, trial: Any, params: dict[str, Any], plan: Plan, strategy: Strategy
) -> bool:
    """Check a NAS candidate's cost against the budget before it trains; an over-budget one is
    told to the ledger as failed with a ``rejected`` reason and is not launched."""
    from optuna.trial import TrialState

    from mlx.nas.search import arch_of

    cost = plan.nas.cost(arch_of(params))
    for key, value in cost.items():
        trial.set_user_attr(key, value)
    reason = plan.nas.budget.violation(cost)
    if reason is None:
        return False
    trial.set_user_attr("rejected", reason)
    trial.set_user_attr("error", f"rejected before training: {reason}")
    study.tell(trial, state=TrialState.FAIL)
    if strategy.adapter is not None:
        strategy.adapter.observe(trial.user_attrs.get("tuner_id", trial.number), params, None)
    log.info("candidate %d rejected before training: %s", trial.number, reason)
    return True


def failure_rate(study: Any) -> tuple[int, int] | None:
    from optuna.trial import TrialState

    ended = [
        t
        for t in study.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and not t.user_attrs.get("interrupted")
        and not t.user_attrs.get("rejected")
    ]
    if len(ended) < 3:
        return None
    return sum(t.state == TrialState.FAIL for t in ended), len(ended)


def recover_interrupted(study: Any) -> list[int]:
    """Trials left running by a killed sweep: mark them failed (interrupted) and queue their
    parameters again."""
    import optuna
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        live = optuna.trial.Trial(study, t._trial_id)
        live.set_user_attr("interrupted", True)
        live.set_user_attr("error", "interrupted: the sweep stopped while this trial ran")
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
        numbers.append(t.number)
    return numbers


def finished_history(study: Any, space: SearchSpace) -> list[tuple[dict[str, Any], float]]:
    from optuna.trial import TrialState

    return [
        (space.from_optuna_params(t.params), t.value)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]


def ask(study: Any, space: SearchSpace, strategy: Strategy) -> tuple[Any, dict[str, Any]]:
    """A new trial and its parameter values (raises StopIteration when the tuner is done)."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if strategy.adapter is not None and not waiting:
        from mlx.sweep.nni_adapter import TunerExhausted

        number = len(study.trials)
        try:
            proposal = strategy.adapter.propose(number)
        except TunerExhausted:
            raise StopIteration from None
        study.enqueue_trial(space.to_optuna_params(proposal), user_attrs={"tuner_id": number})
    trial = study.ask()
    params = space.suggest(trial)
    return trial, params


def trial_overrides(
    plan: Plan, trial: Any, params: dict[str, Any], url: str, study: str
) -> list[str]:
    """The command line of one trial: fixed overrides, fidelity, parameters, trial handle."""
    handle = (
        f"trial={{storage:{override_value(url)},study:{override_value(study)},"
        f"id:{trial._trial_id},number:{trial.number}}}"
    )
    values = [f"{k}={override_value(v)}" for k, v in params.items()]
    return [*plan.base, *plan.fidelity, *values, handle]


def _output_dir(ret: Any) -> Path | None:
    try:
        return Path(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:
        return None


def tell(
    study: Any,
    trial: Any,
    params: dict[str, Any],
    ret: Any,
    plan: Plan,
    strategy: Strategy,
) -> None:
    """Record how a trial ended, in the ledger, the strategy and the log."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    from mlx.record import RecordError, read_record

    out = None if isinstance(ret, BaseException) else _output_dir(ret)
    if out is not None:
        trial.set_user_attr("output_dir", str(out))
    state, values, error = TrialState.FAIL, None, None
    if isinstance(ret, BaseException):
        error = f"{type(ret).__name__}: {ret}"
    elif ret.status != JobStatus.COMPLETED:
        exc = ret._return_value
        error = f"{type(exc).__name__}: {exc}".strip()
    else:
        try:
            record = read_record(out) if out is not None else None
        except RecordError as e:
            record, error = None, str(e)
        if record is not None:
            for key in ("params", "macs"):
                if f"model/{key}" in record.metrics:
                    trial.set_user_attr(key, record.metrics[f"model/{key}"])
            values, error = objective_values(record, plan.objectives)
            if record.status == "pruned":
                state = TrialState.PRUNED
                trial.set_user_attr("pruned_at_epoch", record.summary.get("pruned_at_epoch"))
            elif error is None:
                state = TrialState.COMPLETE
    if error:
        trial.set_user_attr("error", error[:2000])
    try:
        if state == TrialState.COMPLETE:
            study.tell(trial, values)
        else:
            study.tell(trial, state=state)
    except RuntimeError as e:
        # GridSampler calls study.stop() once the grid is used up, which Optuna allows only
        # inside study.optimize; the trial's state is stored before that, and the sweeper
        # caps the budget at the grid's size, so there is nothing left to stop
        if "Study.stop" not in str(e):
            raise
    if strategy.adapter is not None:
        strategy.adapter.observe(
            trial.user_attrs.get("tuner_id", trial.number),
            params,
            values[0] if values and state == TrialState.COMPLETE else None,
        )
    frozen = study.trials[trial.number]
    seconds = (
        (frozen.datetime_complete - frozen.datetime_start).total_seconds()
        if frozen.datetime_complete and frozen.datetime_start
        else float("nan")
    )
    shown = (
        " ".join(f"{o.metric}={v:.4g}" for o, v in zip(plan.objectives, values, strict=True))
        if values and state == TrialState.COMPLETE
        else (error or "")
    )
    if state == TrialState.PRUNED:
        shown = f"at epoch {frozen.user_attrs.get('pruned_at_epoch')}"
    log.info(
        "trial %d %s %s (%.1f s) %s",
        trial.number,
        state.name.lower(),
        shown,
        seconds,
        " ".join(f"{k}={_short(v)}" for k, v in params.items()),
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else override_value(value)


def objective_values(
    record: Any, objectives: list[Objective]
) -> tuple[list[float] | None, str | None]:
    """The trial's objective values from its run record; an error text if one is unusable."""
    values = []
    for o in objectives:
        if record.summary.get("objective", {}).get("metric") == o.metric:
            value = record.summary["objective"].get("value")
        else:
            value = record.metrics.get(o.metric)
        if value is None:
            known = ", ".join(sorted(record.metrics))
            return None, f"objective {o.metric} is not in the run record (it has {known})"
        value = float(value)
        if not math.isfinite(value):
            return None, f"objective {o.metric} is {value}"
        values.append(value)
    return values, None


__all__ = ["MlxSweeper", "SweepError", "check_sweep_config"]
