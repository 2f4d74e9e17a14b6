"""``mlx deploy ckpt_path=... deployment=datacenter``: export a saved model without training it
again. The checkpoint's own model, data, objective and seed are used; the run is ``mlx run``'s,
with the train stage testing the saved network (and analyses, the gate included, on the test
split) before the deploy stage exports it.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from mlx.config.locate import register_resolvers

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx deploy``; returns the saved model's test-split objective."""
    from mlx.engine.checkpoint import load
    from mlx.errors import ConfigError
    from mlx.run import errors_reported, run
    from mlx.stages import check_stages

    with errors_reported():
        check_stages(cfg, "deploy")
        saved = load(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint"))).config
        if saved is None:
            raise ConfigError(
                f"{cfg.ckpt_path} is not an mlx checkpoint (it holds no mlx config): deploy a checkpoint written by mlx run, or a compressed/*.onnx."
            )
    with open_dict(cfg):
        for key in ("model", "data", "objective", "seed"):
            cfg[key] = saved[key]
    return run(cfg, command="deploy")
