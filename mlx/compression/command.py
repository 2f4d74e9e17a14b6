"""``mlx compress ckpt_path=... compression=[...]``: compress a trained checkpoint without
training it again. The checkpoint's own model, data, objective and seed are used (the seed
rebuilds the initial weights that lottery tickets rewind to); the run is ``mlx run``'s, with
the train stage testing the checkpoint's weights instead of training.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from mlx.config.locate import register_resolvers

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx compress``; returns the checkpoint's test-split objective."""
    from mlx.engine.checkpoint import load
    from mlx.errors import ConfigError
    from mlx.run import errors_reported, run
    from mlx.stages import check_stages

    with errors_reported():
        check_stages(cfg, "compress")
        saved = load(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint"))).config
        if saved is None:
            raise ConfigError(
                f"{cfg.ckpt_path} is not an mlx checkpoint (it holds no mlx config): compress a checkpoint written by mlx run."
            )
    with open_dict(cfg):
        for key in ("model", "data", "objective", "seed"):
            cfg[key] = saved[key]
    return run(cfg, command="compress")
