"""``mlx eval ckpt_path=...``: evaluate a saved network on the test split of its data.

The file (a checkpoint written by ``mlx run``, or a compressed ``.onnx`` written by the compress
stage) carries the config it was trained with; its ``model`` and ``data`` settings are used (so
the architecture and the split always match the weights) unless the command line changes the
``data`` group or its keys. The run is ``mlx run``'s, with the train stage testing the file's
network instead of training one.
"""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from mlx.config.locate import register_resolvers

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx eval``; returns the objective's test-split value."""
    from mlx.run import errors_reported, job_overrides, run
    from mlx.stages import check_stages

    with errors_reported():
        check_stages(cfg, "eval")
        from mlx.engine.checkpoint import load

        saved = load(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint"))).config
    with open_dict(cfg):
        if saved is not None:
            cfg.model = saved["model"]
            if not any(o.lstrip("+~").startswith("data") for o in job_overrides()):
                cfg.data = saved["data"]
                cfg.objective = saved["objective"]
    return run(cfg, command="eval")
