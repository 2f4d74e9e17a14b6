"""Validation of a composed config before any work starts.

Two layers, both fast (no torch or Lightning import, unless a GPU is asked for by name):

1. :func:`compose_checked` composes the command line with Hydra's compose API and turns Hydra's
   errors (unknown group option, unknown key, bad override syntax) into one-paragraph messages
   with the options that exist (for ``hydra/*`` groups, those of the installed plugins) and a
   close match.
2. :func:`validate` walks the composed config: every ``_target_`` is bound to its signature,
   read from source (see :mod:`mlx.config.signature`), so unknown keys, missing arguments, wrong
   types and out-of-range values (see :mod:`mlx.config.values`) are named with what was
   expected; ``LIBRARY_LIMITS`` narrows library parameters that their own annotations leave
   open; the top-level keys get the same treatment. Then the data (sources check their files and
   tell their size and example shape, which the split fractions and the network are checked
   against) and the outputs folder. The rules of one area (search, train, compress) are its
   stage's ``check`` (:mod:`mlx.stages`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlx.config.locate import ConfigTree
from mlx.config.signature import TargetNotFoundError, static_signature
from mlx.config.values import check_value, literal_options
from mlx.config.values import plain_value as _value
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
        "max_steps": "Annotated[int, Ge(-1)]",
        "min_steps": "Optional[Annotated[int, Ge(0)]]",
        "reload_dataloaders_every_n_epochs": "Annotated[int, Ge(0)]",
        "gradient_clip_algorithm": "Optional[Literal['norm', 'value']]",
        # batches (an int), a share of the epoch (a float), or a time ('DD:HH:MM:SS', a dict)
        "val_check_interval": "Optional[Union[Annotated[int, Ge(1)], Annotated[float, Interval(gt=0, le=1)], str, dict]]",
        # Lightning annotates these with type aliases or plain `str`, and rejects other values
        # only once the Trainer is built (lightning_fabric.connector, Trainer's setup)
        "precision": "Optional[Literal['32-true', '16-mixed', 'bf16-mixed', '16-true', "
        "'bf16-true', '64-true', 'transformer-engine', 'transformer-engine-float16', "
        "'32', '16', 'bf16', '64', 32, 16, 64]]",
        "accelerator": "Literal['auto', 'cpu', 'gpu', 'cuda', 'mps', 'tpu']",
        # StrategyRegistry.available_strategies() of Lightning 2.6, and 'auto'
        "strategy": "Literal['auto', 'ddp', 'ddp_spawn', 'ddp_fork', 'ddp_notebook', "
        "'ddp_find_unused_parameters_true', 'ddp_find_unused_parameters_false', "
        "'ddp_spawn_find_unused_parameters_true', 'ddp_spawn_find_unused_parameters_false', "
        "'ddp_fork_find_unused_parameters_true', 'ddp_fork_find_unused_parameters_false', "
        "'ddp_notebook_find_unused_parameters_true', "
        "'ddp_notebook_find_unused_parameters_false', 'fsdp', 'fsdp_cpu_offload', 'deepspeed', "
        "'deepspeed_stage_1', 'deepspeed_stage_2', 'deepspeed_stage_2_offload', "
        "'deepspeed_stage_3', 'deepspeed_stage_3_offload', 'deepspeed_stage_3_offload_nvme', "
        "'single_device', 'single_tpu', 'single_xla', 'xla', 'xla_debug']",
        # a count (-1: every device), device indices, or 'auto'; a string such as "0,1" is
        # also Lightning's, but the list [0, 1] says the same
        "devices": "Union[Literal['auto', '-1', -1], Annotated[int, Ge(1)], "
        "Annotated[list[Annotated[int, Ge(0)]], MinLen(1)]]",
        "deterministic": "Optional[Union[bool, Literal['warn']]]",
        "profiler": "Optional[Literal['simple', 'advanced', 'pytorch', 'xla']]",
        "default_root_dir": "Optional[str]",
    },
    "pytorch_lightning.strategies.DDPStrategy": {
        # torch.distributed's built-in backends; a wrong one fails inside each spawned process
        "process_group_backend": "Optional[Literal['gloo', 'nccl', 'mpi', 'ucc', 'xccl']]",
    },
    "pytorch_lightning.loggers.WandbLogger": {
        # W&B's Settings.mode; anything else fails inside wandb.init
        "mode": "Literal['offline', 'online', 'disabled', 'shared', 'dryrun', 'run']",
        "tags": "Optional[list[str]]",
    },
    # torch.optim checks these when the optimizer is built, after the data and model are set up
    "torch.optim.SGD": {
        "momentum": "Annotated[float, Ge(0)]",
        "dampening": "Annotated[float, Ge(0)]",
        "weight_decay": "Annotated[float, Ge(0)]",
    },
    "torch.optim.Adam": {
        "betas": "tuple[Annotated[float, Interval(ge=0, lt=1)], Annotated[float, Interval(ge=0, lt=1)]]",
        "eps": "Annotated[float, Ge(0)]",
        "weight_decay": "Annotated[float, Ge(0)]",
    },
    "torch.optim.AdamW": {
        "betas": "tuple[Annotated[float, Interval(ge=0, lt=1)], Annotated[float, Interval(ge=0, lt=1)]]",
        "eps": "Annotated[float, Ge(0)]",
        "weight_decay": "Annotated[float, Ge(0)]",
    },
    "torch.optim.RMSprop": {
        "alpha": "Annotated[float, Ge(0)]",
        "eps": "Annotated[float, Ge(0)]",
        "momentum": "Annotated[float, Ge(0)]",
        "weight_decay": "Annotated[float, Ge(0)]",
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
    "seed": "Annotated[int, Interval(ge=0, le=4294967295)]",  # numpy's seed range
    "ckpt_path": "Optional[str]",
    "trust_checkpoint": "bool",
    "trial": "Optional[dict]",
    "budget": "Optional[dict]",
}
# ---------------------------------------------------------------------------------------------
# 1. composing the command line


def _group_options(tree: ConfigTree, group: str) -> list[str]:
    """The options of a config group as Hydra sees them: the config tree and every search-path
    plugin (Hydra's own ``hydra/*`` groups get their options from installed plugins, such as the
    joblib and submitit launchers). Call it while Hydra is initialised; outside, only the tree."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        try:
            return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
        except Exception:  # a broken plugin must not hide the user's own mistake
            pass
    return tree.options(group)


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
    options = _group_options(tree, group)
    if not options:
        return _empty_group(group, option)
    return ConfigError(
        f"Unknown option '{option}' for config group '{group}'. Available options: "
        f"{', '.join(options)}.{did_you_mean(option, options)}"
    )


def _empty_group(group: str, option: str) -> ConfigError:
    return ConfigError(
        f"The config group '{group}' has no options yet, so '{group}={option}' cannot be "
        f"composed. Leave '{group}' empty to skip its stage."
    )


def _keys_at(cfg: Any, path: str) -> list[str]:
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, path) if path else cfg
    # _target_, _partial_ and friends are Hydra's, not keys a user sets
    return (
        [str(k) for k in node if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
    )


def _bad_override(
    tree: ConfigTree, config_name: str, e: Exception, overrides: list[str]
) -> ConfigError:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Could not (?:append|delete) .*?'([^']+)'", text
    )
    if m is None:
        merging = re.match(r"Error merging override (\S+?)=", text)
        cause = str(e.__cause__ or "").strip().splitlines()
        if merging and cause:
            # a typed (structured) config refused the value: OmegaConf's first line says why
            return ConfigError(f"Bad value for '{merging.group(1)}': {cause[0].rstrip('.')}.")
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        if "LexerNoViableAltException" in first or "Syntax error" in first:
            first += (
                " (a value with spaces or symbols such as >= or ~ needs quotes inside the "
                "override, and the whole override quoted for the shell: "
                "'key=[\"test/acc >= 0.9\"]')"
            )
        return ConfigError(f"Could not compose the config: {first}")
    key = m.group(1)
    rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        base = compose_checked(tree, config_name, rest)
    except ConfigError:
        base = None
    parent, _, leaf = key.rpartition(".")
    choices = _keys_at(base, "hydra.runtime.choices") if base is not None else []
    if key in choices and not _group_options(tree, key):
        # a group of the defaults list (analysis, deployment) with no option files: Hydra
        # takes it for a key
        given = (o.partition("=")[2] for o in overrides if o.lstrip("+~").startswith(f"{key}="))
        return _empty_group(key, next(given, "..."))
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
                    _bad_value(_join(path, key), annotation, expected, value, _reference(child))
                )
                break


def _bad_value(
    key: str, annotation: str, expected: str, value: Any, source: str | None = None
) -> str:
    """The message for a value that does not fit its annotation, with a close match among the
    annotation's literal values (an activation, a precision, a strategy name...), and the key
    it was interpolated from, which is the one to change."""
    hint = ""
    if isinstance(value, str):
        hint = did_you_mean(value, [o for o in literal_options(annotation) if isinstance(o, str)])
    where = f" (set from '{source}')" if source else ""
    return f"Bad value for '{key}'{where}: expected {expected}, got {value!r}.{hint}"


def _reference(node: Any) -> str | None:
    """The key that a node is a plain interpolation of (``${trainer.max_epochs}``), or None."""
    try:
        raw = node._value() if node is not None and node._is_interpolation() else None
    except Exception:
        return None
    m = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
    return m.group(1) if m else None


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
                errors.append(_bad_value(key, annotation, expected, value))
    ok, ckpt = _value(body, "ckpt_path")
    if ok and isinstance(ckpt, str) and not Path(ckpt).is_file():
        errors.append(f"ckpt_path '{ckpt}' is not a file ({Path(ckpt).resolve()}).")
    ok, objective = _value(body, "objective")
    if ok and isinstance(objective, dict):
        if objective.get("mode") not in ("min", "max"):
            errors.append(
                _bad_value(
                    "objective.mode",
                    "Literal['min', 'max']",
                    "one of 'min', 'max'",
                    objective.get("mode"),
                )
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
    _check_outputs(body, errors)
    _check_callbacks_allowed(body, errors)
    if not errors and check_sources:
        _check_source(body, errors)
    if errors:
        raise ConfigError(paragraph(errors))


# trainer switches that turn a kind of callback off, and Lightning's classes of that kind
_SWITCHED_CALLBACKS = {
    "enable_progress_bar": ("ProgressBar", "callbacks.progress_bar=null"),
    "enable_checkpointing": ("ModelCheckpoint", "callbacks.checkpoint=null"),
}


def _check_callbacks_allowed(cfg: Any, errors: list[str]) -> None:
    """``trainer.enable_progress_bar=false`` (or ``enable_checkpointing``) with such a callback
    configured: Lightning refuses the pair when it builds the Trainer, after the data is set up."""
    if "trainer" not in cfg or "callbacks" not in cfg:
        return
    for switch, (kind, removal) in _SWITCHED_CALLBACKS.items():
        ok, enabled = _value(cfg.trainer, switch) if switch in cfg.trainer else (False, None)
        if not ok or enabled is not False:
            continue
        named = [
            str(name)
            for name in cfg.callbacks
            if (node := cfg.callbacks.get(name)) is not None
            and str(node.get("_target_", "")).rsplit(".", 1)[-1].endswith(kind)
        ]
        if named:
            errors.append(
                f"trainer.{switch}=false, but callbacks {', '.join(named)} configure a {kind} "
                f"that Lightning would then refuse: remove {'them' if len(named) > 1 else 'it'} "
                f"too ({removal if len(named) == 1 else 'callbacks.<name>=null each'}) or use "
                "callbacks=minimal."
            )


def _check_outputs(cfg: Any, errors: list[str]) -> None:
    """Runs are written under ``paths.outputs``: a file on its way, or a folder that cannot be
    written, fails when Hydra creates the run folder."""
    import os

    ok, outputs = _value(cfg.paths, "outputs") if "paths" in cfg else (False, None)
    if not ok or not isinstance(outputs, str):
        return
    folder = Path(outputs).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        errors.append(
            f"paths.outputs '{outputs}' cannot hold the run folders: {existing} is a file."
        )
    elif not os.access(existing, os.W_OK | os.X_OK):
        errors.append(f"paths.outputs '{outputs}' cannot be written: {existing} is read-only.")


def _check_source(cfg: Any, errors: list[str]) -> None:
    """Build the data's cheap parts: the source (which checks its files) and the loader
    settings (the ``input`` group); then check the split against the number of examples and
    the network against the shape of one example, where the source knows them unloaded."""
    from omegaconf import DictConfig, OmegaConf

    data = OmegaConf.select(cfg, "data", throw_on_missing=False)
    if not isinstance(data, DictConfig):
        return
    source = loader = None
    for key in ("source", "loader"):
        node = data.get(key)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        # an interpolation such as ${input} is named by the group the user sets
        raw = str(data._get_node(key)._value())
        label = m.group(1) if (m := re.fullmatch(r"\$\{([\w.]+)\}", raw)) else f"data.{key}"
        try:
            built = _build(node)
        except Exception as e:
            errors.append(f"{label}: {e}")
            continue
        source = built if key == "source" else source
        loader = built if key == "loader" else loader
    if source is None or errors:
        return
    shape = getattr(source, "example_shape", None)
    augment = getattr(loader, "augment", None)
    if augment and isinstance(shape, tuple) and len(shape) != 3:
        errors.append(
            f"input.augment={list(augment)}: image augmentations need image data (examples of "
            f"shape (channels, height, width)), but the data ({source!r}) has examples of shape "
            f"{shape}; set input.augment=[]."
        )
        return
    if str(data.get("_target_")) in (
        "mlx.data.ArrayDataModule",
        "mlx.data.datamodule.ArrayDataModule",
    ):
        _check_split(data, getattr(source, "size", None), errors)
        if not errors:
            _check_batch_norm(cfg, data, getattr(source, "size", None), errors)
    _check_example_shape(cfg, source, errors)


def _build(node: Any) -> Any:
    """``instantiate(node)``, raising the object's own error rather than Hydra's wrapper."""
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except Exception as e:
        cause: BaseException = e
        while cause.__cause__ is not None and type(cause).__name__ == "InstantiationException":
            cause = cause.__cause__
        raise cause from None


def _check_split(data: Any, size: Any, errors: list[str]) -> None:
    from mlx.data.sources import DataConfigError, check_split

    fractions = [_value(data, key) for key in ("val_fraction", "test_fraction")]
    if not all(ok and isinstance(v, int | float) for ok, v in fractions):
        return  # the annotations have named the bad value already
    try:
        check_split(fractions[0][1], fractions[1][1], size if isinstance(size, int) else None)
    except DataConfigError as e:
        errors.append(f"data: {e}")


def _check_batch_norm(cfg: Any, data: Any, size: Any, errors: list[str]) -> None:
    """A network with batch norm on flat features (``model.net.batch_norm``) cannot train on a
    batch of one example; torch fails on the epoch's last batch when the training split leaves
    one over. Checked when every training batch is used, in one process."""
    from omegaconf import OmegaConf

    from mlx.data.sources import split_sizes

    if OmegaConf.select(cfg, "model.net.batch_norm", default=None) is not True:
        return
    ok, batch = _value(data, "batch_size")
    if not ok or not isinstance(batch, int):
        return
    trainer = {
        key: OmegaConf.select(cfg, f"trainer.{key}", default=None)
        for key in ("limit_train_batches", "overfit_batches", "devices", "fast_dev_run")
    }
    every_batch = (
        # an int is a count of batches (1: one batch), a float a share
        (
            trainer["limit_train_batches"] is None
            or trainer["limit_train_batches"] == 1.0
            and isinstance(trainer["limit_train_batches"], float)
        )
        and trainer["overfit_batches"] in (None, 0, 0.0)
        and trainer["fast_dev_run"] in (None, False)
        and trainer["devices"] in (1, "auto")
    )
    train = None
    if isinstance(size, int):
        train = split_sizes(size, float(data.val_fraction), float(data.test_fraction))["train"]
    if batch == 1:
        why = "data.batch_size=1"
    elif every_batch and train is not None and train % batch == 1:
        why = f"the {train} training examples in batches of {batch} leave a last batch of 1"
    else:
        return
    other = next(b for b in (batch + 1, batch - 1, batch + 2) if b > 1 and (train or 0) % b != 1)
    errors.append(
        f"model.net.batch_norm=true needs at least 2 examples in every training batch, but "
        f"{why}; choose another data.batch_size (such as {other}) or model.net.batch_norm=false."
    )


def _check_example_shape(cfg: Any, source: Any, errors: list[str]) -> None:
    """The network's ``input_shape`` annotation against the shape of the source's examples:
    a convolutional network (``tuple[int, int, int]``) on a table fails here, not in setup."""
    from omegaconf import DictConfig, OmegaConf

    if cfg.get("ckpt_path") is not None:
        # mlx eval and mlx compress take the network from the checkpoint, not from model;
        # a resumed run's network meets the data when it is built (still before training)
        return
    shape = getattr(source, "example_shape", None)
    net = OmegaConf.select(cfg, "model.net", default=None)
    if not isinstance(shape, tuple) or not isinstance(net, DictConfig):
        return
    target = net.get("_target_")
    try:
        sig = static_signature(target) if isinstance(target, str) else None
    except TargetNotFoundError:
        return
    param = sig.get("input_shape") if sig is not None else None
    if param is None or (expected := check_value(param.annotation, shape)) is None:
        return
    hint = "; for tabular data use model=mlp" if len(shape) == 1 else ""
    errors.append(
        f"model.net ({target}) takes examples whose input_shape is {expected}, but the data "
        f"({source!r}) has examples of shape {shape}{hint}."
    )


def check_command_line(
    tree: ConfigTree, config_name: str, overrides: list[str], multirun: bool, command: str = "run"
) -> None:
    """Compose and validate every job a command line would run over ``tree`` (mlx's configs,
    the project's, ``--config-dir`` folders), then every stage's own check; raise an
    :class:`~mlx.errors.MlxError`."""
    from mlx.engine.launch import check_shared_output
    from mlx.stages import check_stages

    if problems := tree.problems():
        raise ConfigError(paragraph(problems))
    if not multirun:
        check_shared_output(any(o.startswith("hydra.run.dir=") for o in overrides))
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
