"""The deploy stage: the run's final model becomes the next version in a model repository.

It runs last, after training, compression and analysis (or for a saved model with
``mlx deploy ckpt_path=...``). A model the validation gate rejected is not exported unless
``deployment.force=true`` (and its signature then says so). Its section of the record,
``deployment``: where the version went, its files and sizes, the checks of each file against the
network, and the budget of an embedded target; or why nothing was exported.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError, MlxError

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")


def default_name(cfg: DictConfig) -> str:
    """``<data>_<model>``, read from the config (the source's name or file, the network's
    class), so that a saved model deployed later gets the same name."""
    source = OmegaConf.select(cfg, "data.source", default=None) or {}
    data = source.get("name") or (Path(str(source["path"])).stem if source.get("path") else None)
    if not data:  # the source's class: GermanCredit -> german_credit
        data = str(source.get("_target_", "data")).rsplit(".", 1)[-1]
        data = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", data)
    net = str(OmegaConf.select(cfg, "model.net._target_", default="model")).rsplit(".", 1)[-1]
    name = f"{data}_{net}".lower()
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)


def build(node: DictConfig) -> Any:
    """The :class:`~mlx.deploy.Deployment` of a ``deployment`` node; its own ConfigError (not
    Hydra's wrapper of it) when a setting is refused."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, MlxError):
            raise e.__cause__ from None
        raise


class DeployStage:
    """Exports the run's final network (see the module's docstring)."""

    name = "deploy"
    needs_objects = True

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.deployment: Any = None

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        if command == "deploy" and not cfg.get("deployment"):
            raise ConfigError(
                "mlx deploy needs a target: deployment=datacenter or deployment=embedded."
            )
        if cfg.get("deployment"):
            build(cfg.deployment)  # settings objects only: raises ConfigError

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> DeployStage | None:
        if command == "eval" or not cfg.get("deployment"):
            log.info("stage deploy: skipped (deployment is empty)")
            return None
        return cls(cfg)

    def prepare(self, state: RunState) -> None:
        self.deployment = build(self.cfg.deployment)
        if self.deployment.name is None:
            self.deployment.name = default_name(self.cfg)

    def run(self, state: RunState) -> None:
        from mlx.deploy.export import DeployError, export_version

        d, recorder = self.deployment, state.recorder
        section: dict[str, Any] = {
            "target": d.target,
            "repository": str(d.repository.resolve()),
            "name": d.name,
        }
        recorder.extra["deployment"] = section
        verdict = recorder.extra.get("validation")
        rejected = bool(verdict) and verdict["verdict"] == "rejected"
        if rejected and not d.force:
            section["exported"] = False
            section["reason"] = (
                f"the validation gate rejected the model ({'; '.join(verdict['failed'])}); "
                "deployment.force=true exports it anyway"
            )
            log.warning("deploy: nothing exported: %s", section["reason"])
            return
        metrics = {
            k: v
            for k, v in recorder.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        extra = {
            "metrics": metrics,
            "validation": verdict,
            "forced": rejected,
            "target": d.target,
            "server": asdict(d.server) if d.server is not None else None,
            "source": {
                "run": str(Path(state.out).resolve()),
                "command": state.command,
                "ckpt_path": self.cfg.get("ckpt_path"),
            },
        }
        try:
            folder, sig = export_version(
                d.repository,
                d.name,
                state.model.net,
                state.datamodule,
                formats=d.formats,
                tolerance=d.tolerance,
                extra=extra,
                budget=d.budget,
            )
        except DeployError as e:
            section["exported"] = False
            section["reason"] = str(e)
            state.exit_error = e  # the record is written, then the command ends with exit 2
            return
        section.update(
            exported=True,
            forced=rejected,
            version=sig["version"],
            folder=str(folder.resolve()),
            files=sig["sizes"],
            checks=sig["checks"],
        )
        if d.cluster is not None:
            section["cluster_files"] = self._cluster_files(d)
        summary = ", ".join(f"{f} {size / 1024:.1f} KB" for f, size in sig["sizes"].items())
        log.info(
            "deploy: %s version %d in %s (%s)%s; serve it: mlx serve %s",
            d.name,
            sig["version"],
            folder,
            summary,
            " FORCED past the gate's rejection" if rejected else "",
            d.repository,
        )

    def _cluster_files(self, d: Any) -> dict[str, Any]:
        from mlx.deploy.cluster import mlx_wheel, write_cluster_files

        c = d.cluster
        server_args = d.server.args() if d.server is not None else []
        paths = write_cluster_files(
            d.repository,
            name=d.name,
            image=c.image,
            replicas=c.replicas,
            min_replicas=c.min_replicas,
            max_replicas=c.max_replicas,
            cpu_target_percent=c.cpu_target_percent,
            cpu=c.cpu,
            memory=c.memory,
            server_args=server_args,
        )
        wheel = mlx_wheel(d.repository / "wheels")
        return {
            "files": [str(Path(p).relative_to(d.repository)) for p in paths],
            "wheel": wheel.name if wheel is not None else None,
        }
