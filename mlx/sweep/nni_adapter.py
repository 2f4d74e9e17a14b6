"""NNI behind mlx's sweep: its HPO tuners as a strategy, its curve-fitting assessor as an Optuna
pruner, and a fix for its experiment registry lock.

Every NNI import of the sweeper lives here, inside the function that needs it (``import nni`` takes
seconds), so an archived or changed NNI is replaced in this one file.

- :func:`nni_search_space` compiles a :class:`~mlx.sweep.space.SearchSpace` to NNI's search-space
  JSON. A conditional parameter (``when``) becomes a nested choice under the one choice it depends on.
- :class:`NniAdapter` drives an NNI tuner in-process (no experiment, no web server) with the
  propose / observe / replay cycle of the sweeper, and hands back flat ``name -> value`` dicts.
- :class:`CurveFittingPruner` is NNI's ``CurvefittingAssessor`` as an ``optuna.pruners.BasePruner``.
- :func:`fix_nni_registry_lock` makes ``nni.experiment.Experiment`` start with filelock >= 3.12.

Tuners known to work (NNI 3.0): ``nni.algorithms.hpo.evolution_tuner.EvolutionTuner``,
``nni.algorithms.hpo.hyperopt_tuner.HyperoptTuner`` (``algorithm_name``: ``anneal``, ``tpe`` or
``random_search``), ``nni.algorithms.hpo.tpe_tuner.TpeTuner``, ``nni.algorithms.hpo.random_tuner.RandomTuner``
and ``nni.algorithms.hpo.gridsearch_tuner.GridSearchTuner``; all five accept nested spaces, the
last three one level deep only (NNI 3.0's ``hpo_utils`` fails deeper). ``EvolutionTuner`` never
mutates a parameter nested under a choice it keeps, so in a conditional space some of its proposals
repeat an earlier one.

``nni.algorithms.hpo.regularized_evolution_tuner.RegularizedEvolutionTuner`` (aging evolution)
takes only ``layer_choice`` parameters, so for it :func:`layer_choice_space` compiles the space
flat: every parameter becomes a ``layer_choice`` over its finite values (a continuous range is
refused), and a conditional parameter is one more ``layer_choice`` that :func:`decode_layer_choices`
drops from a proposal whose conditions do not hold. Mutating such an inactive parameter yields a
repeat of the parent configuration.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import math
import os
import random
import threading
import time
import warnings
from typing import Any, Literal

import optuna

from mlx.sweep.space import Param, SearchSpace, SearchSpaceError, override_value

# Keys NNI reads inside a search space or a parameter set; a parameter cannot be named like them.
_RESERVED = ("_name", "_type", "_value", "_index")

_EVOLUTION = "nni.algorithms.hpo.evolution_tuner.EvolutionTuner"
_REGULARIZED = "nni.algorithms.hpo.regularized_evolution_tuner.RegularizedEvolutionTuner"
_HYPEROPT = "nni.algorithms.hpo.hyperopt_tuner.HyperoptTuner"
# Tuners built on nni.common.hpo_utils: ParameterSpec.is_activated_in looks up only the parent of
# a nested parameter and raises KeyError when the grandparent's option was not chosen.
_ONE_LEVEL_TUNERS = frozenset(
    {
        "nni.algorithms.hpo.tpe_tuner.TpeTuner",
        "nni.algorithms.hpo.random_tuner.RandomTuner",
        "nni.algorithms.hpo.gridsearch_tuner.GridSearchTuner",
    }
)
# Tuners whose NNI 3.0 source handles nested choices (``_name`` options).
_NESTED_TUNERS = frozenset({_EVOLUTION, _HYPEROPT} | _ONE_LEVEL_TUNERS)
# The most values one parameter may list as a layer_choice; a mutation draws one uniformly, so a
# longer list is searched as good as blindly.
MAX_LAYER_CHOICES = 10_000


class TunerExhausted(Exception):
    """The tuner has no further trial to propose now (a finished grid, a space fully explored, a
    population that waits for results)."""


# ---- the search space ------------------------------------------------------------------------


def nni_search_space(space: SearchSpace) -> dict[str, Any]:
    """Compile a search space to NNI's search-space JSON.

    ``choice`` keeps numbers and strings as they are; other values (lists, dicts, ``None``) become
    their override string (``"[16,32]"``), as in Optuna's stored form. An ``int`` with a step and a
    ``quniform`` become ``quniform`` (shifted to start at 0 when ``low`` is not a multiple of the
    step, since NNI rounds to multiples of ``q``); a log ``int`` becomes ``qloguniform`` with
    ``q = 1``; a range with ``low == high`` becomes a one-value choice. A parameter with ``when``
    is nested in the options of the choice it depends on (NNI's ``_name`` form).

    Args:
        space: the search space.

    Returns:
        NNI's search-space dict, keyed by parameter name (dots and all).

    Raises:
        SearchSpaceError: a condition NNI's nested form cannot express (on more than one parameter,
            or on a parameter that is not a choice), or a name NNI reserves.
    """
    by_name = {p.name: p for p in space}
    children: dict[str, list[Param]] = {p.name: [] for p in space}
    for p in space:
        if p.name in _RESERVED:
            raise SearchSpaceError(
                f"search_space '{p.name}': NNI reserves the names {', '.join(_RESERVED)}; rename the parameter."
            )
        if not p.when:
            continue
        if len(p.when) > 1:
            raise SearchSpaceError(
                f"search_space '{p.name}': NNI's nested search space can make a parameter depend on one "
                f"choice only; it depends on {', '.join(p.when)}."
            )
        (parent,) = p.when
        if by_name[parent].type != "choice":
            raise SearchSpaceError(
                f"search_space '{p.name}': NNI's nested search space can only nest under a choice; "
                f"'{parent}' is a {by_name[parent].type}."
            )
        children[parent].append(p)

    def spec(p: Param) -> dict[str, Any]:
        if p.type != "choice":
            return _number_spec(p)
        keys = _choice_keys(p)
        kids = children[p.name]
        if not kids:
            return {"_type": "choice", "_value": list(keys)}
        options = []
        for value, key in zip(p.values, keys, strict=True):
            option: dict[str, Any] = {"_name": key}
            for child in kids:
                if value in child.when[p.name]:
                    option[child.name] = spec(child)
            options.append(option)
        return {"_type": "choice", "_value": options}

    return {p.name: spec(p) for p in space if not p.when}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _choice_keys(p: Param) -> tuple[Any, ...]:
    """How each option of a choice appears to NNI: numbers and strings as they are."""
    keys = tuple(v if _scalar(v) else override_value(v) for v in p.values)
    if len({(type(k), k) for k in keys}) < len(keys):
        return tuple(range(len(keys)))  # ``True`` next to ``1``, or ``"[1]"`` next to ``[1]``
    return keys


def _choice_index(p: Param, key: Any) -> int:
    keys = _choice_keys(p)
    for exact in (True, False):
        for i, k in enumerate(keys):
            if k == key and (type(k) is type(key) or not exact):
                return i
    raise SearchSpaceError(
        f"search_space '{p.name}': {key!r} is not one of its values {list(p.values)}."
    )


def _value_index(p: Param, value: Any) -> int:
    for i, v in enumerate(p.values):
        if v == value and type(v) is type(value):
            return i
    for i, v in enumerate(p.values):
        if v == value:
            return i
    raise SearchSpaceError(
        f"search_space '{p.name}': {value!r} is not one of its values {list(p.values)}."
    )


def _step(p: Param) -> float | int:
    return p.step if p.step is not None else 1


def _count(p: Param) -> int:
    """How many values a stepped range holds (Optuna's rule: the top is cut down to the grid)."""
    return int(math.floor((p.high - p.low) / _step(p) + 1e-9)) + 1


def _stepped(p: Param) -> bool:
    return p.type in ("int", "quniform") and not p.log


def _single(p: Param) -> bool:
    return p.low == p.high or (_stepped(p) and _count(p) == 1)


def _offset(p: Param) -> float:
    """NNI rounds quantized values to multiples of ``q``; a grid that does not start on one is
    searched shifted to start at 0."""
    ratio = p.low / _step(p)
    return 0 if abs(ratio - round(ratio)) < 1e-9 else p.low


def _number_spec(p: Param) -> dict[str, Any]:
    if _single(p):
        return {"_type": "choice", "_value": [p.low]}
    if p.type == "int" and p.log:
        return {"_type": "qloguniform", "_value": [p.low, p.high, 1]}
    if _stepped(p):
        top = p.low + (_count(p) - 1) * _step(p)
        off = _offset(p)
        return {"_type": "quniform", "_value": [_tidy(p.low - off), _tidy(top - off), _step(p)]}
    return {"_type": "loguniform" if p.log else "uniform", "_value": [p.low, p.high]}


def _tidy(x: float) -> float | int:
    return x if isinstance(x, int) else round(x, 12)


def _decode_number(p: Param, raw: Any) -> int | float:
    if _single(p):
        return p.low
    x = float(raw)
    if _stepped(p):
        x += _offset(p)
        k = min(max(round((x - p.low) / _step(p)), 0), _count(p) - 1)
        x = p.low + k * _step(p)
        return int(round(x)) if p.type == "int" else round(x, 12)
    x = min(max(x, p.low), p.high)  # exp(log(high)) can land a hair above high
    return int(round(x)) if p.type == "int" else x


def _encode_number(p: Param, value: Any) -> float | int:
    if _single(p):
        return p.low
    if _stepped(p):
        return _tidy(value - _offset(p))
    return value


def _plain_numbers(x: Any) -> Any:
    """NumPy scalars to Python numbers, through dicts and lists."""
    if isinstance(x, dict):
        return {k: _plain_numbers(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain_numbers(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        return x.item()
    return x


def _nested(spec: dict[str, Any]) -> bool:
    return spec["_type"] == "choice" and isinstance(spec["_value"][0], dict)


def _levels(level: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, spec) for name, spec in level.items() if name != "_name"]


def decode(space: SearchSpace, tree: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """A tuner's parameter set (NNI's nested form) as a flat ``name -> value`` dict of the
    parameters active in it, in the space's order."""
    by_name = {p.name: p for p in space}
    flat: dict[str, Any] = {}

    def walk(level: dict[str, Any], got: dict[str, Any]) -> None:
        for name, spec in _levels(level):
            if name not in got:
                raise SearchSpaceError(f"the NNI tuner returned no value for '{name}': {raw!r}.")
            p, value = by_name[name], got[name]
            if p.type != "choice":
                flat[name] = _decode_number(p, value)
                continue
            key = value["_name"] if _nested(spec) else value
            i = _choice_index(p, key)
            flat[name] = copy.deepcopy(p.values[i])
            if _nested(spec):
                walk(spec["_value"][i], value)

    walk(tree, raw)
    return {p.name: flat[p.name] for p in space if p.name in flat}


def encode(space: SearchSpace, tree: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`decode`: a flat parameter dict in NNI's nested form."""
    by_name = {p.name: p for p in space}

    def walk(level: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in _levels(level):
            if name not in params:
                raise SearchSpaceError(f"search_space '{name}' has no value in {params!r}.")
            p = by_name[name]
            if p.type != "choice":
                out[name] = _encode_number(p, params[name])
                continue
            i = _value_index(p, params[name])
            key = _choice_keys(p)[i]
            out[name] = {"_name": key, **walk(spec["_value"][i])} if _nested(spec) else key
        return out

    return walk(tree)


def _indexed(tree: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """NNI's parameter set with each choice as ``{"_index": i, "_value": option}``: the form
    ``nni.utils.json2parameter`` builds and the evolution and hyperopt tuners keep internally."""

    def level(spec_level: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
        out = {name: one(spec, got[name]) for name, spec in _levels(spec_level)}
        if "_name" in spec_level:
            out["_name"] = spec_level["_name"]
        return out

    def one(spec: dict[str, Any], value: Any) -> Any:
        if spec["_type"] != "choice":
            return value
        options = spec["_value"]
        if _nested(spec):
            i = [o["_name"] for o in options].index(value["_name"])
            return {"_index": i, "_value": level(options[i], value)}
        i = next(j for j, o in enumerate(options) if o == value and type(o) is type(value))
        return {"_index": i, "_value": options[i]}

    return level(tree, raw)


# ---- the flat space of RegularizedEvolutionTuner ---------------------------------------------


def _finite_values(p: Param, strategy: str) -> list[Any]:
    """Every value of a range parameter, in order: ``low + k * step`` within ``[low, high]``."""
    if _single(p):
        return [p.low]
    if not _stepped(p):
        kind = "log int" if p.type == "int" else f"continuous {p.type}"
        hint = (
            "drop log and give it a step"
            if p.type == "int"
            else "give it a step or q (type int or quniform)"
        )
        raise SearchSpaceError(
            f"strategy {strategy} searches finite values only: search_space '{p.name}' is a "
            f"{kind} range; {hint}, make it a choice, or use strategy=evolution."
        )
    n = _count(p)
    if n > MAX_LAYER_CHOICES:
        raise SearchSpaceError(
            f"strategy {strategy}: search_space '{p.name}' holds {n} values (more than "
            f"{MAX_LAYER_CHOICES}); give it a coarser step or q, or use strategy=evolution."
        )
    if p.type == "int":
        return [int(p.low + k * _step(p)) for k in range(n)]
    return [round(p.low + k * _step(p), 12) for k in range(n)]


def layer_choice_space(
    space: SearchSpace, strategy: str = "RegularizedEvolutionTuner"
) -> dict[str, Any]:
    """Compile a search space to flat ``layer_choice`` parameters (NNI's NAS form).

    A ``choice`` lists its values as :func:`nni_search_space` does (numbers and strings as they
    are, other values as their override string); an ``int`` lists every value from ``low`` to
    ``high`` by its step; a ``quniform`` lists ``low + k * q`` within ``[low, high]``. A parameter
    with ``when`` is listed like any other: the space has no nesting, and :func:`decode_layer_choices`
    drops it where its conditions do not hold.

    Args:
        space: the search space.
        strategy: the strategy named in errors.

    Returns:
        ``name -> {"_type": "layer_choice", "_value": [...]}``, in the space's order.

    Raises:
        SearchSpaceError: a continuous range (``uniform``, ``loguniform``, a log ``int``), or a
            range of more than :data:`MAX_LAYER_CHOICES` values.
    """
    return {
        p.name: {
            "_type": "layer_choice",
            "_value": list(_choice_keys(p)) if p.type == "choice" else _finite_values(p, strategy),
        }
        for p in space
    }


def decode_layer_choices(
    space: SearchSpace, compiled: dict[str, Any], raw: dict[str, Any]
) -> dict[str, Any]:
    """A parameter set of :func:`layer_choice_space` (each value ``{"_value": v, "_idx": i}``) as a
    flat ``name -> value`` dict of the parameters active in it, in the space's order; a choice
    gives back its original value (a list stays a list)."""
    flat: dict[str, Any] = {}
    for p in space:
        if not p.active(flat):
            continue
        got = raw.get(p.name)
        if not isinstance(got, dict):
            raise SearchSpaceError(f"the NNI tuner returned no value for '{p.name}': {raw!r}.")
        options = compiled[p.name]["_value"]
        i = got.get("_idx")
        if not (isinstance(i, int) and 0 <= i < len(options) and options[i] == got.get("_value")):
            i = _choice_index(p, got.get("_value")) if p.type == "choice" else None
        if i is None:
            raise SearchSpaceError(
                f"the NNI tuner returned {got!r} for '{p.name}', not one of its values."
            )
        flat[p.name] = copy.deepcopy(p.values[i]) if p.type == "choice" else options[i]
    return flat


def encode_layer_choices(
    space: SearchSpace, compiled: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """The inverse of :func:`decode_layer_choices`. A parameter inactive in ``params`` gets a
    random option, as the tuner's own individuals carry one."""
    out: dict[str, Any] = {}
    for p in space:
        options = compiled[p.name]["_value"]
        if p.name not in params:
            if p.active(params):
                raise SearchSpaceError(f"search_space '{p.name}' has no value in {params!r}.")
            i = random.randrange(len(options))
        elif p.type == "choice":
            i = _value_index(p, params[p.name])
        else:
            k = round((params[p.name] - p.low) / _step(p)) if len(options) > 1 else 0
            i = min(max(k, 0), len(options) - 1)
        out[p.name] = {"_value": options[i], "_idx": i}
    return out


# ---- the tuner -------------------------------------------------------------------------------


def _param(space: SearchSpace, name: str) -> Param:
    return next(p for p in space if p.name == name)


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class NniAdapter:
    """An NNI HPO tuner used in-process as a sweep strategy.

    NNI tuners take ``optimize_mode`` when they are built (the strategy's config gives it); the
    adapter checks that it agrees with ``mode``. Proposals and observations go through the tuner's
    own API (``generate_parameters``, ``receive_trial_result``, ``trial_end``), with the trial
    number as NNI's parameter id. ``EvolutionTuner`` proposes at most ``population_size`` trials
    ahead of their results (then it raises ``RuntimeError: The population is empty``).

    ``RegularizedEvolutionTuner`` searches :func:`layer_choice_space`: finite values only, any
    conditions. It first proposes ``population_size`` random configurations, then mutations of
    tournament winners; asked for more than its starting population before any result has come
    back, it raises :class:`TunerExhausted`, which the sweeper reads as the end of the current
    batch of trials (it asks again once the batch has finished).

    Args:
        tuner: a built NNI tuner, e.g. ``EvolutionTuner(optimize_mode="maximize")``.
        space: the search space.
        mode: whether the sweep maximizes or minimizes its objective.

    Raises:
        SearchSpaceError: the space is conditional and the tuner is not known to take NNI's nested
            search spaces.
        ValueError: the tuner's ``optimize_mode`` contradicts ``mode``.
    """

    def __init__(self, tuner: Any, space: SearchSpace, mode: Literal["max", "min"]) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.tuner = tuner
        self.space = space
        self.mode = mode
        self.strategy = _qualname(tuner)
        declared = getattr(tuner, "optimize_mode", None)
        declared = getattr(declared, "value", declared)
        wanted = "maximize" if mode == "max" else "minimize"
        if declared in ("maximize", "minimize") and declared != wanted:
            raise ValueError(
                f"strategy {type(tuner).__name__} was built with optimize_mode={declared!r} but the "
                f"sweep {wanted}s its objective; set optimize_mode: {wanted}."
            )
        self._flat = self.strategy == _REGULARIZED
        if self._flat:
            self.search_space = layer_choice_space(space, type(tuner).__name__)
        else:
            self.search_space = nni_search_space(space)
        if space.conditional and not self._flat and self.strategy not in _NESTED_TUNERS:
            names = [p.name for p in space if p.when]
            raise SearchSpaceError(
                f"strategy {type(tuner).__name__} cannot search conditional parameters "
                f"({', '.join(names)}): it does not take NNI's nested search spaces; use "
                "EvolutionTuner, HyperoptTuner (anneal), TpeTuner, RandomTuner, GridSearchTuner "
                "or RegularizedEvolutionTuner."
            )
        deep = [p for p in space if p.when and any(_param(space, k).when for k in p.when)]
        if deep and self.strategy in _ONE_LEVEL_TUNERS:
            p = deep[0]
            (parent,) = p.when
            raise SearchSpaceError(
                f"strategy {type(tuner).__name__} takes one level of conditions (NNI 3.0 fails on "
                f"deeper nested spaces): '{p.name}' depends on '{parent}', which is conditional "
                "itself; use EvolutionTuner or HyperoptTuner (anneal), or flatten the condition."
            )
        tuner.update_search_space(copy.deepcopy(self.search_space))
        self._running: dict[int, dict[str, Any]] = {}  # trial number -> the tuner's parameter set
        self._replayed = 0

    def propose(self, number: int) -> dict[str, Any]:
        """The parameters of trial ``number``: a flat dict of the parameters active in it.

        Raises:
            TunerExhausted: the tuner has nothing more to propose.
        """
        import nni

        try:
            raw = self.tuner.generate_parameters(number)
        except nni.NoMoreTrialError as exc:
            if self._flat and self._running:
                raise TunerExhausted(
                    f"strategy {type(self.tuner).__name__} has proposed its whole starting "
                    f"population (population_size={self.tuner.population_size}) and no result has "
                    f"come back yet ({len(self._running)} trial(s) running); it proposes again once "
                    "one finishes, so run at most population_size trials at once."
                ) from exc
            raise TunerExhausted(
                f"strategy {type(self.tuner).__name__} has no more trials to propose ({exc or 'no more trials'})."
            ) from exc
        if self.strategy == _HYPEROPT:
            # NumPy 2 cannot compare its scalars with [] as the tuner does when it reads a result.
            self.tuner.total_data[number] = _plain_numbers(self.tuner.total_data[number])
        raw = _plain_numbers(raw)
        self._running[number] = raw
        return self._decode(raw)

    def _decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        if self._flat:
            return decode_layer_choices(self.space, self.search_space, raw)
        return decode(self.space, self.search_space, raw)

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._flat:
            return encode_layer_choices(self.space, self.search_space, params)
        return encode(self.space, self.search_space, params)

    def observe(self, number: int, params: dict[str, Any], value: float | None) -> None:
        """Report a finished trial; ``value`` None (or NaN) is a failed trial.

        A success goes to the tuner's ``receive_trial_result`` (then ``trial_end``), a failure to
        ``trial_end`` alone; ``RegularizedEvolutionTuner`` then forgets the trial and, when it was
        a random starter, queues a fresh random one in its place.

        Args:
            number: the trial number given to :meth:`propose`.
            params: the trial's parameters (used when the trial was proposed before a restart).
            value: the objective, or None when the trial failed.
        """
        failed = value is None or not math.isfinite(value)
        raw = self._running.pop(number, None)
        if raw is None:  # proposed by an earlier process: learn from it like a replayed trial
            if not failed:
                self.replay([(params, value)])
            return
        if failed:
            self.tuner.trial_end(number, False)
            return
        self.tuner.receive_trial_result(number, raw, float(value))
        self.tuner.trial_end(number, True)

    def replay(self, history: list[tuple[dict[str, Any], float]]) -> None:
        """Feed trials finished before a restart; failed ones (value None) are skipped.

        NNI 3.0's ``import_data`` is a no-op for ``EvolutionTuner`` and
        ``RegularizedEvolutionTuner`` and drops results equal to 0 (and nested parameters) for
        ``HyperoptTuner``, so those three are given each result the way their
        ``receive_trial_result`` expects it; other tuners get ``import_data``. In both evolution
        tuners each replayed trial takes the place of one random starting individual, so a
        restarted sweep does not start over.
        """
        imported = []
        for params, value in history:
            if value is None or not math.isfinite(value):
                continue
            raw = self._encode(params)
            if self.strategy not in (_EVOLUTION, _HYPEROPT, _REGULARIZED):
                imported.append({"parameter": raw, "value": float(value)})
                continue
            pid = f"replay-{self._replayed}"
            self._replayed += 1
            if self._flat:
                # receive_trial_result reads the parameters from history and keeps them in the
                # population (at most population_size, the oldest leaving first)
                self.tuner.history[pid] = raw
                self.tuner.receive_trial_result(pid, raw, float(value))
                del self.tuner.history[pid]
                if self.tuner.initial_population:
                    self.tuner.initial_population.popleft()
                continue
            internal = _indexed(self.search_space, raw)
            if self.strategy == _EVOLUTION:
                from nni.algorithms.hpo.evolution_tuner import Individual

                self.tuner.running_trials[pid] = Individual(config=internal)
                # the replayed trial once took the place of one random starting individual
                fresh = [i for i, ind in enumerate(self.tuner.population) if ind.result is None]
                if fresh:
                    self.tuner.population.pop(fresh[0])
            else:
                self.tuner.total_data[pid] = internal
            self.tuner.receive_trial_result(pid, raw, float(value))
        if imported:
            self.tuner.import_data(imported)


# ---- the pruner ------------------------------------------------------------------------------


class CurveFittingPruner(optuna.pruners.BasePruner):
    """NNI's curve-fitting assessor as an Optuna pruner.

    From ``start_step`` intermediate values on (then every ``gap`` values) it fits learning curves
    to the trial's values, predicts the value at step ``epoch_num``, and prunes the trial when the
    prediction is below ``threshold`` times the best final value of the study's completed trials
    (the last intermediate value of each, else its objective). Nothing is pruned before a trial
    has completed.

    The assessor models rising curves of positive values (accuracy). In a study that minimizes,
    the values are negated and the threshold inverted, so a trial is kept while its predicted loss
    stays under ``best_loss / threshold``; losses must then be positive.

    Args:
        epoch_num: the step whose value is predicted (the number of epochs of a full trial).
        start_step: how many intermediate values a trial reports before it can be pruned.
        threshold: the fraction of the best completed value a prediction must reach.
        gap: how many new intermediate values between two assessments of one trial.
    """

    def __init__(
        self, epoch_num: int, start_step: int = 6, threshold: float = 0.95, gap: int = 1
    ) -> None:
        if not isinstance(epoch_num, int) or epoch_num < 1:
            raise ValueError(f"epoch_num must be a positive int, got {epoch_num!r}.")
        if not isinstance(start_step, int) or start_step < 1:
            raise ValueError(f"start_step must be a positive int, got {start_step!r}.")
        if not isinstance(gap, int) or gap < 1:
            raise ValueError(f"gap must be a positive int, got {gap!r}.")
        if not threshold > 0:
            raise ValueError(f"threshold must be above 0, got {threshold!r}.")
        self.epoch_num = epoch_num
        self.start_step = start_step
        self.threshold = float(threshold)
        self.gap = gap
        self._reset()

    def _reset(self) -> None:
        self._assessor: Any = None
        self._study: str | None = None
        self._fed: set[int] = set()  # completed trials whose final value the assessor has seen

    def __getstate__(self) -> dict[str, Any]:
        # the assessor is rebuilt from the study wherever the pruner lands
        state = dict(self.__dict__)
        state.update(_assessor=None, _study=None, _fed=set())
        return state

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether to stop ``trial`` now (Optuna calls this from ``trial.should_prune()``)."""
        if len(study.directions) > 1:
            raise ValueError("CurveFittingPruner prunes single-objective studies only.")
        steps = sorted(trial.intermediate_values)
        if len(steps) < self.start_step:
            return False
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        assessor = self._assessor_for(study, sign)
        for done in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if done.number in self._fed:
                continue
            self._fed.add(done.number)
            values = done.intermediate_values
            final = values[max(values)] if values else done.value
            if final is None or not math.isfinite(final):
                continue
            # trial_end() reads the final value from the history assessed last, as NNI's
            # dispatcher ends a trial right after assessing its last value
            assessor.trial_history = [sign * final]
            assessor.trial_end(f"completed-{done.number}", True)
        history = [sign * trial.intermediate_values[s] for s in steps]
        if not all(math.isfinite(v) for v in history):
            return False
        import numpy as np
        from nni.assessor import AssessResult

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # curve fits overflow on the way
            result = assessor.assess_trial(str(trial.number), history)
        return result is AssessResult.Bad

    def _assessor_for(self, study: optuna.Study, sign: float) -> Any:
        if self._assessor is None or self._study != study.study_name:
            from nni.algorithms.hpo.curvefitting_assessor import CurvefittingAssessor

            self._reset()
            self._assessor = CurvefittingAssessor(
                epoch_num=self.epoch_num,
                start_step=self.start_step,
                threshold=self.threshold if sign > 0 else 1.0 / self.threshold,
                gap=self.gap,
            )
            self._study = study.study_name
        return self._assessor


# ---- NNI's experiment registry lock ----------------------------------------------------------


class PreemptiveFileLock:
    """The lock NNI keeps its experiment registry (``~/nni-experiments/.experiment``) under,
    rebuilt on plain file operations.

    NNI 3.0's ``SimplePreemptiveLock`` subclasses ``filelock.SoftFileLock`` and marks itself held
    by setting ``_lock_file_fd``, which filelock >= 3.12 no longer reads: the lock never counts as
    held and ``Experiment.start`` waits forever. This class keeps NNI's protocol, so it agrees with
    unpatched NNI processes: a holder owns a file ``<lock_file>.<pid>...``, and the lock is free
    when no such file younger than ``stale`` seconds exists (any age when ``stale`` < 0).

    Args:
        lock_file: the lock's path (NNI passes the registry path plus ``.lock``).
        stale: seconds after which another holder's file no longer counts; < 0 never.
        timeout: seconds :meth:`acquire` waits by default; < 0 forever.
        poll_interval: seconds between two looks at the lock files.
    """

    def __init__(
        self, lock_file: str, stale: float = -1, timeout: float = -1, poll_interval: float = 0.05
    ) -> None:
        self.lock_file = str(lock_file)
        self.stale = stale
        self.timeout = timeout
        self.poll_interval = poll_interval
        # pid first, as NNI names it; the id keeps two locks of one process apart
        self._own = f"{self.lock_file}.{os.getpid()}-{id(self):x}"
        self._count = 0
        self._guard = threading.RLock()

    @property
    def is_locked(self) -> bool:
        return self._count > 0

    def _others(self) -> bool:
        now = time.time()
        for name in glob.glob(glob.escape(self.lock_file) + ".*"):
            if name == self._own:
                continue
            try:
                age = now - os.stat(name).st_mtime
            except FileNotFoundError:
                continue
            if self.stale < 0 or age < self.stale:
                return True
        return False

    def _create(self) -> bool:
        try:
            fd = os.open(self._own, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._own)

    def acquire(self, timeout: float | None = None, poll_interval: float | None = None) -> _Held:
        """Take the lock (again, if this object holds it already); raises ``filelock.Timeout``.

        As with filelock, ``with lock.acquire(timeout=1):`` releases it at the end of the block.
        """
        timeout = self.timeout if timeout is None else timeout
        poll = self.poll_interval if poll_interval is None else poll_interval
        with self._guard:
            if self._count:
                self._count += 1
                return _Held(self)
            self._remove()  # left over by a crash of this very object
            start = time.monotonic()
            while True:
                if not self._others() and self._create():
                    if not self._others():
                        self._count = 1
                        return _Held(self)
                    self._remove()  # two takers at once: both step back, at random
                if 0 <= timeout < time.monotonic() - start:
                    import filelock

                    raise filelock.Timeout(self.lock_file)
                time.sleep(poll * random.uniform(0.5, 1.5))

    def release(self, force: bool = False) -> None:
        """Let go of the lock (fully when ``force``)."""
        with self._guard:
            if not self._count:
                return
            self._count = 0 if force else self._count - 1
            if not self._count:
                self._remove()

    def __enter__(self) -> PreemptiveFileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_count", 0):
            self.release(force=True)


class _Held:
    """What :meth:`PreemptiveFileLock.acquire` returns: a context that releases the lock."""

    def __init__(self, lock: PreemptiveFileLock) -> None:
        self.lock = lock

    def __enter__(self) -> PreemptiveFileLock:
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def fix_nni_registry_lock() -> None:
    """Replace NNI's experiment registry lock with :class:`PreemptiveFileLock` (idempotent).

    With filelock >= 3.12 (``ray[default]`` pulls >= 3.24; NNI 3.0 pins < 3.12) every
    ``nni.experiment.Experiment`` hangs at "Starting web server..." on that lock. The replacement
    works with old and new filelock alike. Call it before starting an NNI experiment.
    """
    from nni.tools.nnictl import common_utils

    if common_utils.SimplePreemptiveLock is not PreemptiveFileLock:
        # get_file_lock() looks the class up at call time
        common_utils.SimplePreemptiveLock = PreemptiveFileLock
