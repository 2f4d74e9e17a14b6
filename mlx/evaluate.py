"""``mlx eval ckpt_path=...``: evaluate a saved model on the test split of its data.

The checkpoint carries the config it was trained with; its ``model`` and ``data`` settings are
used (so the architecture and the split always match the weights) unless the command line
changes the ``data`` group or its keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mlx.compression.measure import count_params
from mlx.config.locate import register_resolvers
from mlx.config.validate import ConfigError, validate
from mlx.record import Recorder, provenance
from mlx.run import (
    build_data_and_model,
    build_trainer,
    config_errors_reported,
    job_overrides,
    print_summary,
    quiet_lightning,
    scalar_metrics,
    tracking_finished,
)

log = logging.getLogger("mlx")

register_resolvers()


def main(cfg: DictConfig) -> float:
    """Hydra task function of ``mlx eval``; returns the objective's test-split value."""
    with config_errors_reported():
        if cfg.ckpt_path is None:
            raise ConfigError("mlx eval needs a checkpoint: mlx eval ckpt_path=PATH")
        validate(cfg)
        from mlx.engine.checkpoint import saved_config

        saved = saved_config(cfg.ckpt_path)
        overrides = job_overrides()
        with open_dict(cfg):
            if saved is not None:
                cfg.model = saved["model"]
                if not any(o.lstrip("+~").startswith("data") for o in overrides):
                    cfg.data = saved["data"]
                    cfg.objective = saved["objective"]
        return evaluate(cfg, overrides)


def evaluate(cfg: DictConfig, overrides: list[str]) -> float:
    out = Path(cfg.paths.output_dir)
    recorder = Recorder(
        out,
        OmegaConf.to_yaml(cfg, resolve=True),
        provenance(command="eval", seed=cfg.seed, overrides=overrides),
    )
    with tracking_finished(), recorder:
        with recorder.stage("setup"):
            quiet_lightning()
            dm, model = build_data_and_model(cfg)
            trainer = build_trainer(cfg, training=False)
        import torch

        from mlx.compression.pipeline import compressed_net

        ckpt = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
        net = compressed_net(ckpt)
        if net is None:
            check_weights_fit(model, ckpt.get("state_dict", {}), cfg.ckpt_path, dm)
        with recorder.stage("test"):
            if net is not None:
                # a network written by the compress stage (pruned, distilled...): whole, not weights
                model.net = net
                trainer.test(model, datamodule=dm, verbose=False)
            else:
                trainer.test(model, datamodule=dm, ckpt_path=cfg.ckpt_path, verbose=False)
        recorder.metrics = {**scalar_metrics(trainer), "model/params": count_params(model)}
        name = cfg.objective.metric.replace("val/", "test/").replace("train/", "test/")
        recorder.objective = {
            "metric": name,
            "mode": cfg.objective.mode,
            "value": recorder.metrics.get(name, float("nan")),
        }
        recorder.extra = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "data": dm.describe()}
    print_summary(out, recorder)
    return recorder.objective["value"]


def check_weights_fit(model: Any, state: dict[str, Any], ckpt_path: str, dm: Any) -> None:
    """The checkpoint's weights must fit the network built for the data being evaluated: data
    of another shape or with other classes (``mlx eval ... data=...``) would fail deep in
    Lightning's checkpoint loading.

    Raises:
        ConfigError: a weight's shape differs.
    """
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"ckpt_path {ckpt_path} holds a network for other data: its weight {key} has "
                f"shape {tuple(tensor.shape)}, but the data evaluated here (examples of shape "
                f"{tuple(dm.input_shape)}, {dm.num_outputs} outputs) need {tuple(own[key].shape)}. "
                "Evaluate it on the data it was trained on (leave data unset) or on data of the "
                "same shape and classes."
            )
