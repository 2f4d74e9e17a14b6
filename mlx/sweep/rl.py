"""Policy-based reinforcement learning as an Optuna sampler: the ``rl`` strategy.

The controller of Zoph & Le's neural architecture search ("Neural Architecture Search with
Reinforcement Learning", 2017), trained with REINFORCE (Williams, 1992), made small enough for a
hyperparameter sweep: the policy is one softmax over the candidates of each finite parameter (a
factorised categorical, where Zoph & Le use an LSTM), and each finished trial is one episode whose
reward is its objective value. After trial ``t`` with advantage ``A``, the logits of every
parameter it set move by ``learning_rate * A * (onehot(chosen) - probabilities)``, plus an optional
entropy bonus that keeps the policy from collapsing early.

Design:

- **Rewards** are the objective value, sign-flipped when the study minimises. The advantage is
  ``(reward - baseline) / std``, where the baseline is an exponential moving average of the
  rewards and ``std`` the square root of an exponential moving average of the squared deviations
  from it, both with ``baseline_decay``. So the learning rate means the same for an accuracy in
  [0, 1] as for a loss in the thousands, and one advantage is at most ``1 / sqrt(1 -
  baseline_decay)`` (about 3.2 by default) however far off a reward is. One far-off reward (a
  diverging loss) still inflates the scale, and so slows learning, for some tens of trials.
- **The policy is a function of the study's trials**, read again from ``study.get_trials`` on
  every call and replayed in trial-number order, each trial once. A sweep resumed from its SQLite
  ledger with a fresh sampler therefore has the same policy as the one that was interrupted, and
  trials told out of order (``n_jobs > 1``) give the same policy as trials told in order.
- **Pruned trials** count with their last reported intermediate value (the objective at the epoch
  they stopped): a pruner stops the configurations that look worse, and skipping them would hide
  exactly those from the policy. Pruned trials without intermediate values and failed trials teach
  nothing (Optuna's samplers treat failed trials as deleted too).
- **Conditional parameters** (``when:`` in a search space) are learned only from the trials in
  which they appear. Parameters present in every finished trial are drawn together by
  ``sample_relative``; the others, conditional ones included, by ``sample_independent``, from the
  same per-parameter policy.
- **Only finite parameters**: choices, int ranges and quniform ranges of at most
  :data:`MAX_CANDIDATES` values. A continuous range is refused (``ValueError`` naming it) rather
  than drawn at random behind the user's back; use ``tpe`` or ``random`` for those.
- **One objective**: a multi-objective study is refused.

NNI's own ``PolicyBasedRL`` is a NAS strategy that drives NNI's execution engine itself (PPO from
tianshou over a gym environment) rather than proposing trials by ask-and-tell, so the mlx sweeper,
which owns the trials, their ledger and their launchers, cannot drive it; this sampler is the
same idea (policy-based reinforcement learning) as an Optuna sampler that any sweep can use.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import optuna
from annotated_types import Ge, Gt, Interval
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.study import Study

    from mlx.sweep.space import SearchSpace

# a softmax over more values than this learns too slowly to beat random draws in a sweep's budget
MAX_CANDIDATES = 1000


def candidates(name: str, distribution: BaseDistribution) -> list[Any]:
    """The values a parameter can take, in order.

    Args:
        name: the parameter's name, for the error message.
        distribution: its Optuna distribution.

    Returns:
        The choices of a categorical, or every step of an int or stepped float range.

    Raises:
        ValueError: the range is continuous, or has more than :data:`MAX_CANDIDATES` values.
    """
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution):
        n = (d.high - d.low) // d.step + 1
    elif isinstance(d, FloatDistribution) and d.step is not None:
        # Optuna moves high onto the grid; the epsilon absorbs the float division's error
        n = math.floor((d.high - d.low) / d.step + 1e-8) + 1
    else:
        raise ValueError(
            f"strategy rl (PolicyGradientSampler) needs a finite set of values for every "
            f"parameter, but '{name}' is a continuous range [{d.low:g}, {d.high:g}]; make it a "
            f"choice, an int or a quniform range, or use strategy tpe or random."
        )
    if n > MAX_CANDIDATES:
        raise ValueError(
            f"strategy rl (PolicyGradientSampler): '{name}' has {n} values, more than "
            f"{MAX_CANDIDATES}; give it a coarser step, or use strategy tpe or random."
        )
    if isinstance(d, IntDistribution):
        return list(range(d.low, d.high + 1, d.step))
    return [min(d.low + i * d.step, d.high) for i in range(n)]


def check_space(space: SearchSpace) -> None:
    """Check before a sweep starts that every parameter of ``space`` is finite.

    Args:
        space: the sweep's search space.

    Raises:
        SearchSpaceError: a parameter is continuous or has too many values; the message names it.
    """
    from mlx.sweep.space import SearchSpaceError

    for p in space:
        if p.type == "choice":
            continue
        if p.type == "int":
            dist: BaseDistribution = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            dist = FloatDistribution(p.low, p.high, step=p.step)  # step None: continuous
        try:
            candidates(p.name, dist)
        except ValueError as e:
            raise SearchSpaceError(str(e)) from None


def _prior(distribution: BaseDistribution, values: list[Any]) -> np.ndarray:
    """Initial logits: uniform over the values, except that a log int range starts log-uniform
    (probability proportional to 1/value), as the user asked for by declaring it log."""
    if isinstance(distribution, IntDistribution) and distribution.log:
        return -np.log(np.asarray(values, dtype=float))
    return np.zeros(len(values))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


@dataclass
class _Policy:
    """The softmax over one parameter's values (for one distribution of it)."""

    distribution: BaseDistribution
    values: list[Any]
    prior: np.ndarray
    logits: np.ndarray

    def index(self, value: Any) -> int | None:
        """The position of a stored trial's value, or None when it is not one of ours."""
        d = self.distribution
        try:
            if isinstance(d, CategoricalDistribution):
                i = int(d.to_internal_repr(value))
            elif isinstance(d, IntDistribution):
                i = (int(value) - d.low) // d.step
            else:
                i = round((float(value) - d.low) / d.step)
        except (ValueError, TypeError):
            return None
        return i if 0 <= i < len(self.values) else None


class PolicyGradientSampler(optuna.samplers.BaseSampler):
    """REINFORCE over a factorised categorical policy (see the module docstring).

    Args:
        learning_rate: step size of the logits per trial, in units of normalised advantage.
        baseline_decay: weight of the past in the moving averages of the reward (the baseline)
            and of its squared deviation (the scale); 0 compares each reward with the last one.
        entropy_weight: weight of the entropy bonus; above 0 it keeps some probability on every
            value, trading exploitation for exploration.
        n_startup_trials: finished trials drawn from the prior (uniform; log-uniform for a log
            int range) before the learned policy is used; the policy learns from them all the
            same.
        seed: seed of the draws; the same seed and the same trial results give the same trials.
    """

    def __init__(
        self,
        learning_rate: Annotated[float, Gt(0)] = 0.1,
        baseline_decay: Annotated[float, Interval(ge=0, lt=1)] = 0.9,
        entropy_weight: Annotated[float, Ge(0)] = 0.0,
        n_startup_trials: Annotated[int, Ge(0)] = 0,
        seed: int | None = None,
    ) -> None:
        # the config validator checks these for configs; this is for direct Python use
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}.")
        if not entropy_weight >= 0:
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}.")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials}.")
        self.learning_rate = float(learning_rate)
        self.baseline_decay = float(baseline_decay)
        self.entropy_weight = float(entropy_weight)
        self.n_startup_trials = int(n_startup_trials)
        self._rng = np.random.RandomState(seed)
        # study.optimize(n_jobs > 1) calls one sampler from several threads
        self._lock = threading.RLock()
        self._study_name: str | None = None
        self._space = IntersectionSearchSpace()
        self._forget()

    def _forget(self) -> None:
        """Back to the untrained policy (the draws' random state is kept)."""
        self._policies: dict[tuple[str, BaseDistribution], _Policy] = {}
        self._learned: list[int] = []
        self._baseline: float | None = None
        self._variance = 0.0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # locks cannot be pickled or deep-copied
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ---- the policy --------------------------------------------------------------------------

    def learn(self, study: Study) -> None:
        """Bring the policy up to date with the study's finished trials.

        Called by every sampling method; call it yourself to inspect the policy of a study
        without sampling (:meth:`probabilities`, :meth:`logits`).

        Args:
            study: a single-objective study.

        Raises:
            ValueError: the study has several objectives.
        """
        if len(study.directions) > 1:
            raise ValueError(
                f"strategy rl (PolicyGradientSampler) optimises one objective, but the study has "
                f"{len(study.directions)}; use nsga2 or tpe for a Pareto front."
            )
        with self._lock:
            if study.study_name != self._study_name:
                self._study_name = study.study_name
                self._space = IntersectionSearchSpace()
                self._forget()
            maximize = study.direction == StudyDirection.MAXIMIZE
            episodes = []
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            ):
                reward = _reward(t, maximize)
                if reward is not None:
                    episodes.append((t.number, t, reward))
            episodes.sort(key=lambda e: e[0])
            numbers = [n for n, _, _ in episodes]
            # a trial that finished before one already learned (n_jobs > 1), or a study that
            # shows fewer trials (a pruner's bracket): replay all, so that the policy depends
            # only on the trials, in number order
            if numbers[: len(self._learned)] != self._learned:
                self._forget()
            for number, trial, reward in episodes[len(self._learned) :]:
                self._update(trial, reward)
                self._learned.append(number)

    def _update(self, trial: FrozenTrial, reward: float) -> None:
        decay = self.baseline_decay
        if self._baseline is None:
            self._baseline = reward
            advantage = 0.0  # nothing to compare the first reward with
        else:
            delta = reward - self._baseline
            # the scale includes this reward, so the advantage is at most 1/sqrt(1-decay)
            self._variance = decay * self._variance + (1 - decay) * delta**2
            advantage = delta / math.sqrt(self._variance) if self._variance > 0 else 0.0
            self._baseline = decay * self._baseline + (1 - decay) * reward
        for name, distribution in trial.distributions.items():
            policy = self._policy(name, distribution, strict=False)
            if policy is None:
                continue
            chosen = policy.index(trial.params[name])
            if chosen is None:
                continue
            p = _softmax(policy.logits)
            # gradient of log p[chosen] with respect to the logits
            step = -advantage * p
            step[chosen] += advantage
            if self.entropy_weight:
                log_p = np.log(np.maximum(p, 1e-300))
                entropy = -(p * log_p).sum()
                step += self.entropy_weight * -p * (log_p + entropy)
            policy.logits = policy.logits + self.learning_rate * step

    def _policy(self, name: str, distribution: BaseDistribution, strict: bool) -> _Policy | None:
        """The policy of ``name`` under ``distribution``, made on first use; None (or the error
        when ``strict``) for a single-valued or non-finite parameter."""
        key = (name, distribution)
        if key not in self._policies:
            if distribution.single():
                return None
            try:
                values = candidates(name, distribution)
            except ValueError:
                if strict:
                    raise
                return None
            prior = _prior(distribution, values)
            self._policies[key] = _Policy(distribution, values, prior, prior.copy())
        return self._policies[key]

    def _latest(self, name: str) -> _Policy:
        found = [p for (n, _), p in self._policies.items() if n == name]
        if not found:
            raise KeyError(f"no policy for '{name}' yet; call learn(study) or sample it first.")
        return found[-1]

    @property
    def learned_trials(self) -> list[int]:
        """The numbers of the trials the policy has learned from, in the order it learned."""
        return list(self._learned)

    def logits(self, name: str) -> np.ndarray:
        """A copy of the logits of parameter ``name`` (its latest distribution).

        Raises:
            KeyError: the sampler has not seen ``name`` yet.
        """
        return self._latest(name).logits.copy()

    def probabilities(self, name: str) -> dict[Any, float]:
        """The policy's probability of each value of parameter ``name`` (its latest
        distribution).

        Raises:
            KeyError: the sampler has not seen ``name`` yet.
        """
        policy = self._latest(name)
        return dict(zip(policy.values, _softmax(policy.logits).tolist(), strict=True))

    def _draw(self, name: str, distribution: BaseDistribution) -> Any:
        policy = self._policy(name, distribution, strict=True)
        assert policy is not None, name  # Optuna does not sample single-valued parameters
        warm = len(self._learned) >= self.n_startup_trials
        p = _softmax(policy.logits if warm else policy.prior)
        return policy.values[self._rng.choice(len(p), p=p)]

    # ---- Optuna's sampler interface ----------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """The finite parameters present in every finished trial (non-finite ones are left to
        :meth:`sample_independent`, which refuses them)."""
        self.learn(study)
        with self._lock:
            space = self._space.calculate(study)
        out = {}
        for name, distribution in space.items():
            if distribution.single():
                continue
            try:
                candidates(name, distribution)
            except ValueError:
                continue
            out[name] = distribution
        return out

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Draw every parameter of ``search_space`` from its softmax."""
        if not search_space:
            return {}
        with self._lock:
            self.learn(study)
            return {name: self._draw(name, d) for name, d in search_space.items()}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """Draw one parameter (a conditional one, or any before the first trial finishes).

        Raises:
            ValueError: the parameter is continuous or has too many values.
        """
        with self._lock:
            self.learn(study)
            return self._draw(param_name, param_distribution)

    def reseed_rng(self) -> None:
        """Give the draws a fresh random seed (Optuna does so for each of ``n_jobs`` threads)."""
        with self._lock:
            self._rng = np.random.RandomState()


def _reward(trial: FrozenTrial, maximize: bool) -> float | None:
    """The reward of a finished trial (larger is better), or None when it has none."""
    if trial.state == TrialState.COMPLETE:
        value = trial.value
    elif trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    else:
        return None
    if value is None or not math.isfinite(value):
        return None
    return float(value) if maximize else -float(value)


__all__ = ["MAX_CANDIDATES", "PolicyGradientSampler", "candidates", "check_space"]
