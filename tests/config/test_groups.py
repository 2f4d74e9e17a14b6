"""Every option of every group composes, and every `_target_` binds to its signature."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlx.config.locate import MLX_ROOT, Layout
from mlx.config.signature import static_signature
from mlx.config.validate import validate
from tests.conftest import compose_cfg

# mlx's own tree: conf/'s groups, and experiments/ and sweeps/ as the experiment and sweep groups
MLX = Layout(MLX_ROOT)
GROUPS = MLX.groups()
OPTIONS = [(g, o) for g in GROUPS for o in MLX.options(g)]


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "table.csv"
    rows = ["a,b,color,label"] + [
        f"{i},{i * 0.5},{'red' if i % 2 else 'blue'},{i % 3}" for i in range(60)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


# NAS options only make sense together: a NAS space, the searched network, a one-shot strategy
NAS_SPACES = {"macro_cnn", "cell", "macro_mlp"}
ONE_SHOT = {"darts", "gumbel_darts", "enas", "proxyless", "random_one_shot"}


# tables need a network for flat inputs: the default CNN on one is refused
TABULAR = {"breast_cancer", "diabetes", "csv", "german_credit"}


def extra_for(group: str, option: str, table_csv: Path) -> list[str]:
    if group == "data" and option == "csv":
        return [f"data.source.path={table_csv}", "data.source.target=label", "model=mlp"]
    if group == "data" and option in TABULAR:
        return ["model=mlp"]
    if (group, option) == ("analysis", "fairness"):
        # a required list of sensitive raw columns, so it needs a table that has them
        return ["data=german_credit", "model=mlp", "analysis.fairness.sensitive=[sex]"]
    if (group, option) == ("model", "nas"):
        return ["search_space=cell"]
    if group == "search_space" and option in NAS_SPACES:
        return ["model=nas"]
    if group == "strategy" and option in ONE_SHOT:
        return ["model=nas", "search_space=cell"]
    return []


def test_every_group_has_options() -> None:
    for group in (
        "data",
        "model",
        "trainer",
        "parallelism",
        "input",
        "tracking",
        "paths",
        "debug",
        "callbacks",
    ):
        assert (group, "default") in OPTIONS or any(g == group for g, _ in OPTIONS), group


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_validates(
    group: str, option: str, table_csv: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg([f"{group}={option}", *extra_for(group, option, table_csv)], tmp_path)
    validate(cfg)
    assert OmegaConf.select(cfg, "hydra") is None or True


def targets(node, path=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node["_target_"]
        for k, v in node.items():
            yield from targets(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from targets(v, f"{path}[{i}]")


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_target_is_statically_readable(
    group: str, option: str, table_csv: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg([f"{group}={option}", *extra_for(group, option, table_csv)], tmp_path)
    container = OmegaConf.to_container(cfg, resolve=False)
    found = list(targets(container))
    assert found
    for path, target in found:
        sig = static_signature(target)
        assert sig is not None, f"{path}: {target} has no readable signature"
        node = OmegaConf.select(cfg, path)
        for key in node:
            if not str(key).startswith("_"):
                assert key in sig.names or sig.var_kwargs, (
                    f"{path}.{key} is not a parameter of {target}"
                )
