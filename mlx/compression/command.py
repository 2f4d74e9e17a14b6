"""``mlx compress ckpt_path=... compression=[...]``: compress a trained checkpoint without
training it again. The checkpoint's own model, data, objective and seed are used (the seed
rebuilds the initial weights that lottery tickets rewind to); the run is ``mlx run``'s, with
the train stage replaced by a test of the checkpoint's weights.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from mlx.config.locate import register_resolvers
from mlx.config.validate import ConfigError, validate

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx compress``; returns the checkpoint's test-split objective."""
    from mlx.run import config_errors_reported, run

    with config_errors_reported():
        if cfg.ckpt_path is None:
            raise ConfigError(
                "mlx compress needs a checkpoint: mlx compress ckpt_path=PATH compression=[distill,prune]"
            )
        if not cfg.get("compression"):
            raise ConfigError(
                "mlx compress needs at least one stage: compression=prune or compression=[distill,prune] (options: distill, lottery, pca, prune)."
            )
        validate(cfg)
        from mlx.engine.checkpoint import saved_config

        saved = saved_config(cfg.ckpt_path)
        if saved is None:
            raise ConfigError(
                f"{cfg.ckpt_path} is not an mlx checkpoint (it holds no mlx config): compress a checkpoint written by mlx run."
            )
        with open_dict(cfg):
            for key in ("model", "data", "objective", "seed"):
                cfg[key] = saved[key]
        return run(cfg, train=False)
