"""Search spaces: one format, declared in YAML or with Hydra's sweep grammar, compiled to Optuna
distributions, to a grid, or to NNI's search-space format.

A space maps config keys (``model.lr``) or config groups (``model``) to a parameter::

    params:
      model.lr: {type: loguniform, low: 1.0e-4, high: 0.1}
      model.net.hidden: {type: int, low: 32, high: 256, step: 32}
      model.net.dropout: {type: quniform, low: 0.0, high: 0.5, q: 0.1}
      model: {type: choice, values: [mlp, cnn]}
      model.net.channels: {type: choice, values: [[16, 32], [32, 64]], when: {model: cnn}}

``when`` makes a parameter conditional: it exists only in trials whose named parameters (declared
above it) take one of the given values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from mlx.errors import MlxError

TYPES = ("choice", "uniform", "loguniform", "quniform", "int")
_FIELDS = {
    "choice": {"values"},
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "quniform": {"low", "high", "q"},
    "int": {"low", "high", "step", "log"},
}


class SearchSpaceError(MlxError):
    """A search space that cannot be searched; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    """One searched parameter.

    Attributes:
        name: the config key (``model.lr``) or group (``model``) it overrides.
        type: one of ``choice``, ``uniform``, ``loguniform``, ``quniform``, ``int``.
        values: the options of a ``choice``.
        low: lower bound (inclusive).
        high: upper bound (inclusive).
        step: quantization of ``quniform`` (``q``) and ``int`` (``step``).
        log: sample ``int`` on a log scale.
        when: condition on earlier parameters: name -> allowed values.
    """

    name: str
    type: str
    values: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (the ledger compares these on resume)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "choice":
            out["values"] = list(self.values)
        else:
            out.update(low=self.low, high=self.high)
            if self.step is not None:
                out["step"] = self.step
            if self.log:
                out["log"] = True
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether this parameter exists given the values chosen so far."""
        return all(k in chosen and chosen[k] in allowed for k, allowed in self.when.items())


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SearchSpaceError(f"search_space '{name}': {key} must be a number, got {value!r}.")
    return value


def parse_param(name: str, spec: Any) -> Param:
    """One parameter from its YAML mapping; raises :class:`SearchSpaceError` naming ``name``."""
    if not isinstance(spec, dict):
        raise SearchSpaceError(
            f"search_space '{name}' must be a mapping with a 'type' ({', '.join(TYPES)}), got {spec!r}."
        )
    spec = dict(spec)
    kind = spec.pop("type", None)
    when = spec.pop("when", None) or {}
    if kind not in TYPES:
        import difflib

        close = difflib.get_close_matches(str(kind), TYPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SearchSpaceError(
            f"search_space '{name}' has unknown type {kind!r}; use one of {', '.join(TYPES)}.{hint}"
        )
    unknown = set(spec) - _FIELDS[kind]
    if unknown:
        raise SearchSpaceError(
            f"search_space '{name}' ({kind}) does not take {', '.join(sorted(unknown))}; it takes {', '.join(sorted(_FIELDS[kind]))}."
        )
    if not isinstance(when, dict):
        raise SearchSpaceError(f"search_space '{name}': when must map parameters to values.")
    conditions = {
        str(k): tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in when.items()
    }
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list | tuple) or not values:
            raise SearchSpaceError(
                f"search_space '{name}': choice needs a non-empty 'values' list."
            )
        return Param(name, kind, values=tuple(_plain(v) for v in values), when=conditions)
    for key in ("low", "high") + (("q",) if kind == "quniform" else ()):
        if key not in spec:
            raise SearchSpaceError(f"search_space '{name}' ({kind}) needs '{key}'.")
    low, high = _number(name, "low", spec["low"]), _number(name, "high", spec["high"])
    if low > high:
        raise SearchSpaceError(f"search_space '{name}': low ({low}) is greater than high ({high}).")
    log = bool(spec.get("log", False)) or kind == "loguniform"
    if log and low <= 0:
        raise SearchSpaceError(
            f"search_space '{name}': a log range must be above 0, got low={low}."
        )
    step = None
    if kind == "quniform":
        step = _number(name, "q", spec["q"])
    elif kind == "int":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SearchSpaceError(f"search_space '{name}': int needs integer low and high.")
        step = spec.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool):
            raise SearchSpaceError(f"search_space '{name}': int step must be an integer.")
        if log and step != 1:
            raise SearchSpaceError(f"search_space '{name}': a log int range takes no step.")
    if step is not None and step <= 0:
        raise SearchSpaceError(f"search_space '{name}': the step must be above 0, got {step}.")
    return Param(name, kind, low=low, high=high, step=step, log=log, when=conditions)


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain lists and dicts."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SearchSpace:
    """An ordered set of parameters; the public entry point of the ``search_space`` group.

    Args:
        params: config key or group -> parameter mapping (see the module docstring).
    """

    def __init__(self, params: dict[str, Any]) -> None:
        params = _plain(params) or {}
        if not isinstance(params, dict):
            raise SearchSpaceError("search_space.params must map config keys to parameters.")
        self.params: list[Param] = []
        for name, spec in params.items():
            self.add(parse_param(str(name), spec))

    @classmethod
    def of(cls, params: list[Param]) -> SearchSpace:
        space = cls({})
        for p in params:
            space.add(p)
        return space

    def add(self, param: Param) -> None:
        names = {p.name for p in self.params}
        if param.name in names:
            raise SearchSpaceError(f"search_space '{param.name}' is declared twice.")
        for dep, allowed in param.when.items():
            parent = next((p for p in self.params if p.name == dep), None)
            if parent is None:
                raise SearchSpaceError(
                    f"search_space '{param.name}': its condition names '{dep}', which is not a parameter declared before it."
                )
            if parent.type == "choice":
                missing = [v for v in allowed if v not in parent.values]
                if missing:
                    raise SearchSpaceError(
                        f"search_space '{param.name}': condition value(s) {missing} are not among '{dep}' values {list(parent.values)}."
                    )
        self.params.append(param)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params)

    def describe(self) -> dict[str, Any]:
        return {p.name: p.describe() for p in self.params}

    # ---- Optuna ------------------------------------------------------------------------------

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for the values of the parameters active in it (define-by-run)."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if not p.active(chosen):
                continue
            if p.type == "choice":
                idx = trial.suggest_categorical(p.name, list(_keys(p.values)))
                chosen[p.name] = p.values[list(_keys(p.values)).index(idx)]
            elif p.type == "int":
                chosen[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step, log=p.log)
            else:
                chosen[p.name] = trial.suggest_float(
                    p.name, p.low, p.high, step=p.step, log=p.log and p.step is None
                )
        return chosen

    def to_optuna_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Parameter values as Optuna stores them (a choice of lists is stored as its string)."""
        out = {}
        for p in self.params:
            if p.name in values:
                v = values[p.name]
                out[p.name] = _key(v) if p.type == "choice" else v
        return out

    def from_optuna_params(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`to_optuna_params`."""
        out = {}
        for p in self.params:
            if p.name in stored:
                v = stored[p.name]
                if p.type == "choice":
                    keys = list(_keys(p.values))
                    v = p.values[keys.index(v)] if v in keys else v
                out[p.name] = v
        return out

    # ---- grid --------------------------------------------------------------------------------

    def grid(self) -> dict[str, list[Any]]:
        """The finite values of every parameter, for a grid search (Optuna's stored form)."""
        if self.conditional:
            names = [p.name for p in self.params if p.when]
            raise SearchSpaceError(
                f"strategy grid cannot search conditional parameters ({', '.join(names)}); use random or tpe."
            )
        out: dict[str, list[Any]] = {}
        for p in self.params:
            if p.type == "choice":
                out[p.name] = list(_keys(p.values))
            elif p.step is not None and not p.log:
                n = int(math.floor((p.high - p.low) / p.step + 1e-9)) + 1
                vals = [p.low + i * p.step for i in range(n)]
                out[p.name] = (
                    [int(v) for v in vals] if p.type == "int" else [round(v, 12) for v in vals]
                )
            else:
                raise SearchSpaceError(
                    f"strategy grid needs finite values: search_space '{p.name}' is a continuous {p.type} range; make it a choice, an int or a quniform."
                )
        return out

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def _key(value: Any) -> Any:
    """Optuna categorical choices must be None, bool, int, float or str."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return override_value(value)


def _keys(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_key(v) for v in values)


# ---- Hydra's sweep grammar -------------------------------------------------------------------


def from_override(override: Any) -> Param:
    """A parameter from one parsed Hydra sweep override (``choice``, ``range``, ``interval``,
    ``tag(log, interval(...))`` or ``a,b,c``)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    name = override.get_key_element()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        values = [_plain(v) for v in value.list]
        if not values:
            raise SearchSpaceError(f"search_space '{name}': choice() is empty.")
        return Param(name, "choice", values=tuple(values))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if step == 0 or (stop - start) * step <= 0:
            raise SearchSpaceError(
                f"search_space '{name}': range({start}, {stop}, {step}) is empty."
            )
        if all(isinstance(v, int) for v in (start, stop, step)) and step > 0:
            last = start + ((stop - start - 1) // step) * step
            return Param(name, "int", low=start, high=last, step=step)
        values = []
        v = start
        while (v < stop) if step > 0 else (v > stop):
            values.append(round(v, 12))
            v += step
        return Param(name, "choice", values=tuple(values))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if low > high:
            raise SearchSpaceError(
                f"search_space '{name}': low ({low}) is greater than high ({high})."
            )
        log = "log" in (value.tags or set())
        if log and low <= 0:
            raise SearchSpaceError(
                f"search_space '{name}': a log range must be above 0, got low={low}."
            )
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return Param(name, "int", low=low, high=high, step=1, log=log)
        return Param(
            name, "loguniform" if log else "uniform", low=float(low), high=float(high), log=log
        )
    raise SearchSpaceError(
        f"'{override.input_line}': the mlx sweeper takes choice(), range(), interval(), tag(log, interval()) or a,b,c."
    )


_BARE = re.compile(r"^[A-Za-z_/][\w./\-]*$")


def override_value(value: Any) -> str:
    """A Python value written in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.match(text) and text not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
