"""``mlx deploy ckpt_path=... deployment=datacenter``: export a saved model without training it
again. The checkpoint's own model, data, objective and seed are used; the run is ``mlx run``'s,
with the train stage testing the saved network (and analyses, the gate included, on the test
split) before the deploy stage exports it.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mlx.config.locate import register_resolvers

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx deploy``; returns the saved model's test-split objective."""
    from mlx.run import run_saved

    return run_saved(cfg, "deploy")
