"""Validation of a composed config before any work starts.

Two layers, both fast (no torch or Lightning import):

1. :func:`compose_checked` composes the command line with Hydra's compose API and turns Hydra's
   errors (unknown group option, unknown key, bad override syntax) into one-paragraph messages
   with the options that exist and a close match.
2. :func:`validate` walks the composed config: every ``_target_`` is bound to its signature,
   read from source (see :mod:`mlx.config.signature`), so unknown keys, missing arguments, wrong
   types and out-of-range values (see :mod:`mlx.config.values`) are named with what was
   expected; data sources check their files; the top-level keys get the same treatment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlx.config.locate import ConfigTree
from mlx.config.signature import TargetNotFoundError, static_signature
from mlx.config.values import check_value
from mlx.errors import ConfigError, did_you_mean, paragraph

# Ranges that mlx enforces on library parameters whose own annotations are too loose for a run
# to make sense (Lightning reads max_epochs=-1 as "train forever", for instance). The values are
# annotations in the same language our own signatures use.
LIBRARY_LIMITS: dict[str, dict[str, str]] = {
    "pytorch_lightning.Trainer": {
        "max_epochs": "Optional[Annotated[int, Ge(1)]]",
        "min_epochs": "Optional[Annotated[int, Ge(0)]]",
        "num_nodes": "Annotated[int, Ge(1)]",
        "accumulate_grad_batches": "Annotated[int, Ge(1)]",
        "log_every_n_steps": "Optional[Annotated[int, Ge(1)]]",
        "check_val_every_n_epoch": "Optional[Annotated[int, Ge(1)]]",
        "num_sanity_val_steps": "Optional[Annotated[int, Ge(-1)]]",
        "gradient_clip_val": "Optional[Annotated[float, Ge(0)]]",
        "fast_dev_run": "Union[bool, Annotated[int, Ge(0)]]",
        "overfit_batches": "Union[Annotated[int, Ge(0)], Annotated[float, Interval(ge=0, le=1)]]",
        "limit_train_batches": "Optional[Union[Annotated[int, Ge(0)], Annotated[float, Interval(ge=0, le=1)]]]",
        "limit_val_batches": "Optional[Union[Annotated[int, Ge(0)], Annotated[float, Interval(ge=0, le=1)]]]",
        "limit_test_batches": "Optional[Union[Annotated[int, Ge(0)], Annotated[float, Interval(ge=0, le=1)]]]",
    },
    "pytorch_lightning.callbacks.EarlyStopping": {
        "patience": "Annotated[int, Ge(0)]",
        "mode": "Literal['min', 'max']",
    },
    "pytorch_lightning.callbacks.ModelCheckpoint": {
        "mode": "Literal['min', 'max']",
        "save_top_k": "Annotated[int, Ge(-1)]",
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"T_max": "Annotated[int, Ge(1)]"},
    "torch.optim.lr_scheduler.StepLR": {"step_size": "Annotated[int, Ge(1)]"},
}

# Top-level keys of config.yaml that no `_target_` reads; the entry points read them.
TOP_LEVEL: dict[str, str] = {
    "task_name": "Annotated[str, MinLen(1)]",
    "seed": "Annotated[int, Ge(0)]",
    "ckpt_path": "Optional[str]",
    "trust_checkpoint": "bool",
    "trial": "Optional[dict]",
    "budget": "Optional[dict]",
}
# ---------------------------------------------------------------------------------------------
# 1. composing the command line


def job_override_sets(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the jobs to check: one for a run; for a multirun with Hydra's basic
    sweep syntax, every value of every swept key (with the other keys at their first value)."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "hydra.cc" not in ln]
        raise ConfigError(
            " ".join(lines) + " (see `mlx run --help` for the override grammar)."
        ) from None
    choices: list[list[str]] = []
    for o in parsed:
        if o.is_sweep_override() and not o.is_interval_sweep():
            values = list(o.sweep_string_iterator())
            if not values:
                raise ConfigError(f"The sweep '{o.input_line}' has no values.")
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in values])
        elif o.is_sweep_override():
            continue  # continuous ranges are the sweeper's to sample; the key is checked below
        else:
            choices.append([o.input_line])
    first = [c[0] for c in choices]
    sets = [first]
    for i, c in enumerate(choices):
        for value in c[1:]:
            sets.append(first[:i] + [value] + first[i + 1 :])
    return sets


def compose_checked(tree: ConfigTree, config_name: str, overrides: list[str]) -> Any:
    """Compose ``overrides`` over ``tree``'s search path (the one ``mlx run`` launches with),
    translating Hydra's errors."""
    from hydra import compose, version
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    version.setbase("1.3")
    GlobalHydra.instance().clear()
    try:  # what hydra.initialize_config_dir does, with the search path the launch uses
        Hydra.create_main_hydra2(task_name="mlx", config_search_path=tree.search_path())
        return compose(config_name, overrides=overrides, return_hydra_config=True)
    except MissingConfigException as e:
        raise _missing_option(tree, e, overrides) from e
    except HydraException as e:
        raise _bad_override(tree, config_name, e, overrides) from e
    finally:
        GlobalHydra.instance().clear()


def _missing_option(tree: ConfigTree, e: Any, overrides: list[str]) -> ConfigError:
    missing = (e.missing_cfg_file or "").strip("/")
    group, _, option = missing.rpartition("/")
    if not group:
        return ConfigError(str(e))
    options = tree.options(group)
    if not options:
        return ConfigError(
            f"The config group '{group}' has no options yet, so '{group}={option}' cannot be "
            f"composed. Leave '{group}' empty to skip its stage."
        )
    return ConfigError(
        f"Unknown option '{option}' for config group '{group}'. Available options: "
        f"{', '.join(options)}.{did_you_mean(option, options)}"
    )


def _keys_at(cfg: Any, path: str) -> list[str]:
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, path) if path else cfg
    return [str(k) for k in node] if isinstance(node, DictConfig) else []


def _bad_override(
    tree: ConfigTree, config_name: str, e: Exception, overrides: list[str]
) -> ConfigError:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Could not (?:append|delete) .*?'([^']+)'", text
    )
    if m is None:
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        return ConfigError(f"Could not compose the config: {first}")
    key = m.group(1)
    rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        base = compose_checked(tree, config_name, rest)
    except ConfigError:
        base = None
    parent, _, leaf = key.rpartition(".")
    known: list[str] = _keys_at(base, parent) if base is not None else []
    if not parent:
        known += tree.groups()
    where = f"'{parent}'" if parent else "the config"
    if known:
        hint = did_you_mean(leaf, known) or f" Keys in {where}: {', '.join(sorted(set(known)))}."
    else:
        hint = ""
    if "No match in the defaults list" in text:
        return ConfigError(f"'{key}' is neither a config group nor a key.{hint}")
    return ConfigError(
        f"Unknown key '{key}': {where} has no key '{leaf}'.{hint} "
        f"(To add a new key on purpose, write +{key}=...)"
    )


# ---------------------------------------------------------------------------------------------
# 2. the composed config


def _value(node: Any, key: str) -> tuple[bool, Any]:
    """(resolvable, plain value) of ``node[key]``; values that need a running Hydra job (the
    output folder, say) cannot be resolved here and are skipped."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    try:
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except Exception:
        return False, None
    return True, value


def _is_target(value: Any) -> bool:
    return isinstance(value, dict) and "_target_" in value


def _check_target(node: Any, path: str, errors: list[str]) -> None:
    from omegaconf import DictConfig

    target = node.get("_target_")
    label = path or "the config"
    if not isinstance(target, str):
        errors.append(f"{label}._target_ must be a dotted path string, not {target!r}.")
        return
    try:
        sig = static_signature(target)
    except TargetNotFoundError as e:
        errors.append(f"{label}._target_ '{target}' does not exist: {e.reason}.{_hint(e)}")
        return
    keys = [str(k) for k in node if not str(k).startswith("_") or str(k) == "_args_"]
    partial = bool(node.get("_partial_", False))
    limits = {**LIBRARY_LIMITS.get(target, {})}
    if sig is not None:
        limits = {**LIBRARY_LIMITS.get(sig.qualname, {}), **limits}
        names = sig.names
        for key in keys:
            if key == "_args_":
                continue
            if key not in names and not sig.var_kwargs:
                errors.append(
                    f"Unknown key '{_join(path, key)}': {target} takes no argument '{key}'."
                    f"{did_you_mean(key, names)}"
                )
        if not partial:
            for p in sig.params:
                required = p.kind in ("positional_or_keyword", "keyword_only") and not p.has_default
                if required and p.name not in keys:
                    errors.append(f"Missing key '{_join(path, p.name)}': {target} needs it.")
    for key in keys:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and "_target_" in child:
            continue  # nested objects are checked on their own
        ok, value = _value(node, key)
        if not ok or value == "???":
            continue
        if _is_target(value):
            continue
        annotations = []
        if sig is not None and (p := sig.get(key)) is not None and p.annotation:
            annotations.append(p.annotation)
        if key in limits:
            annotations.append(limits[key])
        for annotation in annotations:
            expected = check_value(annotation, value)
            if expected is not None:
                errors.append(
                    f"Bad value for '{_join(path, key)}': expected {expected}, got {value!r}."
                )
                break


def _hint(e: TargetNotFoundError) -> str:
    return f" Did you mean '{e.suggestions[0]}'?" if getattr(e, "suggestions", None) else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(node: Any, path: str, errors: list[str]) -> None:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        if node._is_missing() or node._is_none():
            return
        if "_target_" in node:
            _check_target(node, path, errors)
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                _walk(child, _join(path, str(key)), errors)
    elif isinstance(node, ListConfig) and not (node._is_missing() or node._is_none()):
        for i, child in enumerate(node._iter_ex(resolve=False)):
            if isinstance(child, DictConfig | ListConfig):
                _walk(child, f"{path}[{i}]", errors)


def _check_missing(cfg: Any, path: str, errors: list[str]) -> None:
    from omegaconf import DictConfig, OmegaConf

    for key in cfg:
        full = _join(path, str(key))
        if full == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            errors.append(f"Missing value for '{full}': set it on the command line ({full}=...).")
            continue
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _check_missing(child, full, errors)


def validate(cfg: Any, *, check_sources: bool = True) -> None:
    """Check a composed config; raise :class:`ConfigError` naming every problem found.

    Args:
        cfg: the composed ``DictConfig`` (with or without its ``hydra`` node).
        check_sources: also build ``data.source`` (sources check their files when built).
    """
    from omegaconf import DictConfig, ListConfig

    errors: list[str] = []
    _check_missing(cfg, "", errors)
    body = cfg
    for key, annotation in TOP_LEVEL.items():
        if key in body:
            ok, value = _value(body, key)
            if ok and (expected := check_value(annotation, value)) is not None:
                errors.append(f"Bad value for '{key}': expected {expected}, got {value!r}.")
    ok, ckpt = _value(body, "ckpt_path")
    if ok and isinstance(ckpt, str) and not Path(ckpt).is_file():
        errors.append(f"ckpt_path '{ckpt}' is not a file ({Path(ckpt).resolve()}).")
    ok, objective = _value(body, "objective")
    if ok and isinstance(objective, dict):
        if objective.get("mode") not in ("min", "max"):
            errors.append(
                f"Bad value for 'objective.mode': expected one of 'min', 'max', got {objective.get('mode')!r}."
            )
        metric = objective.get("metric")
        if not (isinstance(metric, str) and re.fullmatch(r"(train|val|test)/\w+", metric)):
            errors.append(
                f"Bad value for 'objective.metric': expected a 'split/name' key such as 'val/acc', got {metric!r}."
            )
    for key in body:
        if key == "hydra":
            continue
        child = body._get_node(key)
        if isinstance(child, DictConfig | ListConfig):
            _walk(child, str(key), errors)
    if not errors and check_sources:
        _check_source(body, errors)
    if errors:
        raise ConfigError(paragraph(errors))


def _check_source(cfg: Any, errors: list[str]) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    source = OmegaConf.select(cfg, "data.source", throw_on_missing=False)
    if source is None or "_target_" not in source:
        return
    try:
        instantiate(source)
    except Exception as e:
        cause = e
        while cause.__cause__ is not None and type(cause).__name__ == "InstantiationException":
            cause = cause.__cause__
        errors.append(f"data.source: {cause}")


def check_command_line(
    tree: ConfigTree, config_name: str, overrides: list[str], multirun: bool, command: str = "run"
) -> None:
    """Compose and validate every job a command line would run over ``tree`` (mlx's configs,
    the project's, ``--config-dir`` folders), then every stage's own check; raise an
    :class:`~mlx.errors.MlxError`."""
    from mlx.stages import check_stages

    if problems := tree.problems():
        raise ConfigError(paragraph(problems))
    seen: set[tuple[str, ...]] = set()
    for i, job in enumerate(job_override_sets(overrides, multirun)):
        if tuple(job) in seen:
            continue
        seen.add(tuple(job))
        cfg = compose_checked(tree, config_name, job)
        validate(cfg)
        if i == 0 and multirun:
            from mlx.sweep.sweeper import check_sweep_config, is_mlx_sweeper

            if is_mlx_sweeper(cfg):
                # a sweep's jobs are its trials: the sweeper checks their values
                check_stages(cfg, command)
                check_sweep_config(cfg, overrides)
                return
        check_stages(cfg, command)


__all__ = [
    "ConfigError",
    "check_command_line",
    "compose_checked",
    "job_override_sets",
    "validate",
]
