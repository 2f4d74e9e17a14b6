"""Experiment files that mlx writes itself: a sweep's best trial, a NAS architecture.

One writer for both: the file is an ordinary experiment (``# @package _global_``, the group
options it selects as ``override /group: option``, then the values it changes), written to the
project's ``experiments/`` folder (:func:`mlx.config.locate.experiments_dir`) so that
``mlx run experiment=NAME`` retrains it; never into mlx's installed package.
"""

from __future__ import annotations

from pathlib import Path

# override keys that belong to the run that wrote the file, not to the experiment
_SKIPPED = ("trial", "sweep", "experiment")


def experiment_yaml(
    overrides: list[str], groups: set[str], header: str, choices: dict[str, str] | None = None
) -> str:
    """An experiment file's text that selects ``choices`` (group -> option) and applies
    ``overrides``; an override of a key in ``groups`` becomes a group choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_overrides(overrides)
    chosen = dict(choices or {})
    body = OmegaConf.create({})
    for o in parsed:
        key = o.get_key_element().lstrip("+~")
        if key in _SKIPPED or key.startswith("hydra."):
            continue
        value = o.value()
        if key in groups:
            chosen[key] = value
        else:
            OmegaConf.update(body, key, value, force_add=True)
    text = f"# @package _global_\n{header}"
    defaults = [{f"override /{group}": option} for group, option in chosen.items()]
    if defaults:
        text += OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults}))
    if len(body):
        text += OmegaConf.to_yaml(body)
    return text


def write_experiment(
    name: str,
    overrides: list[str],
    header: str,
    choices: dict[str, str] | None = None,
    folder: str | Path | None = None,
) -> Path:
    """Write ``<folder>/<name>.yaml`` and return its path.

    Args:
        name: the experiment's name (``mlx run experiment=NAME``); ``STEM`` in ``header`` is
            replaced by it.
        overrides: command-line overrides the experiment applies.
        header: comment lines after ``# @package _global_`` (why it exists, how to run it).
        choices: group options it selects (group -> option), before ``overrides``.
        folder: where to write it; default: the project's ``experiments/``.
    """
    from mlx.config.locate import config_tree, experiments_dir
    from mlx.record import write_text

    path = (Path(folder) if folder else experiments_dir()) / f"{name}.yaml"
    groups = set(config_tree().groups())
    write_text(path, experiment_yaml(overrides, groups, header.replace("STEM", name), choices))
    return path


__all__ = ["experiment_yaml", "write_experiment"]
