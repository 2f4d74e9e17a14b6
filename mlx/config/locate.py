"""Where the config tree lives, and the custom resolvers its YAML uses."""

from __future__ import annotations

from pathlib import Path

# conf/ sits beside the package in the repository (an editable install); experiments/ and
# sweeps/ join it as the `experiment` and `sweep` groups through the links conf/experiment and
# conf/sweep.
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "conf"
CONFIG_NAME = "config"


def config_dir() -> Path:
    """The primary config folder; fails clearly when mlx is installed without its configs."""
    if not (CONFIG_DIR / f"{CONFIG_NAME}.yaml").is_file():
        raise FileNotFoundError(
            f"mlx's config tree is missing at {CONFIG_DIR}; install mlx from its repository "
            "with `pip install -e .` so that conf/, experiments/ and sweeps/ stay beside it"
        )
    return CONFIG_DIR


def _sweep_group() -> str | None:
    """The W&B group of a run: the multirun folder's name inside a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir).name


def register_resolvers() -> None:
    """Register mlx's OmegaConf resolvers (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("mlx.sweep_group"):
        OmegaConf.register_new_resolver("mlx.sweep_group", _sweep_group)
