"""The compress stage: the ``compression`` group's stages, checked against the built network
before anything trains, then applied in their listed order to the trained network in memory.

Its section of the record: the ``compression`` table (baseline and each stage, measured) and
the final stage's ``compressed/*`` metrics. The compressed network becomes the run's current
network (``state.model.net``) for the stages after it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")


class CompressStage:
    """Applies and measures the configured compression stages."""

    name = "compress"
    needs_objects = True

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.steps: list[Any] = []
        self.initial: dict[str, Any] | None = None
        self.early: Any = None
        self._num_outputs = 1

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        if command == "compress" and not cfg.get("compression"):
            raise ConfigError(
                "mlx compress needs at least one stage: compression=prune or compression=[distill,prune] (options: distill, harden, lottery, pca, prune, quantize)."
            )

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> CompressStage | None:
        if command == "eval" or not cfg.get("compression"):
            log.info("stage compress: skipped (compression is empty)")
            return None
        return cls(cfg)

    def prepare(self, state: RunState) -> None:
        from hydra.utils import instantiate

        from mlx.compression.pipeline import check_stages

        dm, model = state.datamodule, state.model
        self._num_outputs = dm.num_outputs
        self.steps = [instantiate(node) for node in self.cfg.compression.values() if node]
        check_stages(
            self.steps, model.net, tuple(dm.input_shape), dm.num_outputs, dm.task, self.rebuild
        )
        log.info("compression: %s", " -> ".join(s.name for s in self.steps))
        rewinds = {getattr(s, "rewind", None) for s in self.steps}
        if "init" in rewinds:
            # the weights before training (the seed rebuilds them for `mlx compress`)
            self.initial = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        if "early" in rewinds and state.command != "compress":
            from mlx.engine.callbacks import WeightsAfterFirstEpoch

            self.early = WeightsAfterFirstEpoch()
            state.callbacks.append(self.early)

    def rebuild(self, input_shape: tuple[int, ...]) -> Any:
        """A fresh network of the run's model config for another input shape (PCA)."""
        from hydra.utils import instantiate

        return instantiate(self.cfg.model.net)(
            input_shape=tuple(input_shape), num_outputs=self._num_outputs
        )

    def run(self, state: RunState) -> None:
        from hydra.utils import instantiate

        from mlx.compression.pipeline import compress, make_tools, print_table

        cfg = self.cfg
        tools = make_tools(
            state.model,
            state.datamodule,
            progress_bar=bool(
                cfg.trainer.enable_progress_bar and cfg.callbacks.get("progress_bar")
            ),
            initial_state=self.initial,
            early_state=self.early.state if self.early is not None else None,
            rebuild=self.rebuild,
        )
        rows, net = compress(
            self.steps,
            state.model.net,
            tools,
            instantiate(cfg.latency),
            Path(state.out),
            OmegaConf.to_container(cfg, resolve=True),
            keep=state.networks if state.keep_networks else None,
        )
        state.model.net = net  # the next stage works on the compressed network
        state.recorder.extra["compression"] = rows
        for key, value in rows[-1].items():
            if (
                key.startswith(("val/", "test/"))
                or key in ("params", "macs", "size_bytes")
                or key.startswith("latency_")
            ):
                state.recorder.metrics[f"compressed/{key}"] = value
        print_table(rows, cfg.objective.metric.replace("train/", "val/"))


Stage = CompressStage
