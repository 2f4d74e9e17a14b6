"""``mlx compress ckpt_path=... compression=[...]``: compress a trained checkpoint without
training it again. The checkpoint's own model, data, objective and seed are used (the seed
rebuilds the initial weights that lottery tickets rewind to); the run is ``mlx run``'s, with
the train stage testing the checkpoint's weights instead of training.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mlx.config.locate import register_resolvers

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx compress``; returns the checkpoint's test-split objective."""
    from mlx.run import run_saved

    return run_saved(cfg, "compress")
