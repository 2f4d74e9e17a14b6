"""The analyse stage: the ``analysis`` group's analyses, checked against the data before
anything trains, run in their listed order on the final model (or on every compression stage's,
``analysis.on``), and the validation gate's verdict last.

Its section of the record: ``analysis`` (each analysis' own section by its name; with
``analysis.on=all``, one such mapping per network, named in ``analysis_networks``),
``analysis_seconds`` (each analysis' wall time), ``analysis_failed`` (which
analysis failed and why: a failing analysis never loses the training result) and, with the gate,
``validation`` (the verdict, every condition with its value). Tables and figures go into the
run folder's ``analysis/<name>/`` (``analysis/<network>/<name>/`` per network).
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mlx.errors import ConfigError, MlxError

if TYPE_CHECKING:
    from mlx.stages import RunState

log = logging.getLogger("mlx")

FOLDER = "analysis"  # in the run folder
ON = ("final", "baseline", "all")
SETTINGS = ("on",)  # keys of the analysis node that are settings, not analyses
GATE = "validation"


def listed(cfg: DictConfig) -> list[str]:
    """The analyses the config lists, in order (the gate last)."""
    node = cfg.get("analysis") or {}
    names = [str(k) for k, v in node.items() if k not in SETTINGS and v is not None]
    return sorted(names, key=lambda n: n == GATE)


class AnalyseStage:
    """Runs the configured analyses and the validation gate."""

    name = "analyse"
    needs_objects = True

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.analyses: list[Any] = []
        self.gate: Any = None
        self.baseline_model: Any = None  # the gate's baseline checkpoint, built in prepare
        self.on = str(cfg.analysis.get("on", "final"))

    @classmethod
    def check(cls, cfg: DictConfig, command: str) -> None:
        names = listed(cfg)
        if not names:
            return
        on = cfg.analysis.get("on", "final")
        if on not in ON:
            raise ConfigError(
                f"analysis.on={on!r}: choose final (the model the run ends with), baseline "
                "(the trained model before compression) or all (each compression stage too)."
            )
        if on != "final" and not cfg.get("compression"):
            raise ConfigError(
                f"analysis.on={on} analyses the compression stages' models, but compression is "
                "empty: drop analysis.on, or add compression (e.g. compression=[prune])."
            )
        if GATE in names:
            from mlx.analysis.validation import parse, read_baseline

            gate = cfg.analysis[GATE]
            for text in gate.get("thresholds") or []:
                parse(text)
            if gate.get("baseline") and not Path(str(gate.baseline)).is_file():
                read_baseline(str(gate.baseline))  # a run folder; a checkpoint loads in prepare

    @classmethod
    def from_config(cls, cfg: DictConfig, command: str) -> AnalyseStage | None:
        if not listed(cfg):
            log.info("stage analyse: skipped (analysis is empty)")
            return None
        return cls(cfg)

    def prepare(self, state: RunState) -> None:
        from hydra.utils import instantiate

        from mlx.analysis.gather import data_info

        info = data_info(state.datamodule, state.model.net)
        # the analysed network has no gradients when it is an ONNX graph: a saved .onnx model
        # (loaded after this check) or the int8 output of a final quantize stage
        stages = list(self.cfg.get("compression") or {})
        onnx = str(self.cfg.get("ckpt_path") or "").endswith(".onnx") and state.command != "run"
        quantized = bool(stages) and stages[-1] == "quantize" and self.on != "baseline"
        if onnx or quantized:
            info.gradients = False
        for name in listed(self.cfg):
            built = instantiate(self.cfg.analysis[name])
            if name == GATE:
                self.gate = built
            else:
                built.check(info)
                self.analyses.append(built)
        if self.gate is not None:
            self.gate.check_data(state.datamodule.describe())
            keys = self._keys(state, info)
            if self.gate.baseline_checkpoint is not None:
                self.baseline_model = self._baseline_model(state)
                # a checkpoint is evaluated on the test split only
                self.gate.check_keys(
                    {k for k in keys if not k.startswith(("train/", "val/", "compressed/"))},
                    self._slice_columns(info),
                    baseline=True,
                )
            self.gate.check_keys(keys, self._slice_columns(info))
        state.keep_networks = self.on != "final"  # the compress stage keeps each network
        log.info("analysis: %s", " -> ".join(listed(self.cfg)))

    def _baseline_model(self, state: RunState) -> Any:
        """The gate's baseline checkpoint as a LightningModule built for this run's data
        (checked to be the data it was trained on)."""
        from hydra.utils import instantiate

        from mlx.engine.checkpoint import CheckpointError, load, restore

        path = self.gate.baseline_checkpoint
        loaded = load(path, trust=bool(self.cfg.get("trust_checkpoint")))
        if loaded.config is None:
            raise CheckpointError(
                f"analysis.validation.baseline {path} is not an mlx checkpoint (it holds no mlx "
                "config): name a checkpoint or ONNX network written by mlx, or a run folder."
            )
        ours = OmegaConf.to_container(self.cfg.data, resolve=True)
        theirs = loaded.config.get("data") or {}
        self.gate.check_checkpoint_data(theirs, ours)  # type: ignore[arg-type]
        dm = state.datamodule
        model = instantiate(OmegaConf.create(loaded.config).model)(
            input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
        )
        restore(model, loaded, "this run's data")
        return model

    def _evaluate_baseline(self, state: RunState, folder: Path) -> dict[str, Any]:
        """The baseline checkpoint's test metrics (the LightningModule's own metric code) and
        its analyses, on this run's test split."""
        import torch

        from mlx.analysis.gather import BATCH, gather

        model = self.baseline_model
        model.eval()
        x, y = state.datamodule.datasets["test"].tensors
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                batch = x[start : start + BATCH]
                model.score(model.net(batch), y[start : start + BATCH], "test")
        metrics = model.epoch_values("test")
        evidence = gather(model.net, state.datamodule, "test", int(self.cfg.seed))
        sections: dict[str, Any] = {}
        for analysis in self.analyses:
            where = folder / analysis.name
            where.mkdir(parents=True, exist_ok=True)
            try:
                sections[analysis.name] = analysis.run(evidence, where)
            except Exception as e:  # the verdict names what is missing
                log.error("analysis %s of the baseline failed: %s", analysis.name, e)
        return {"metrics": metrics, "analysis": sections}

    def _refitter(self, state: RunState) -> tuple[Any, Any]:
        """``(fit, build)``: trains, and builds untrained, fresh networks of the run's model
        config for the analyses that need them; ``(None, None)`` when the config has none."""
        from hydra.utils import instantiate

        from mlx.analysis.gather import refitter

        net = self.cfg.model.get("net")
        if net is None or not hasattr(state.model, "make_optimizer"):
            return None, None
        make = instantiate(net)
        dm = state.datamodule
        epochs = int(self.cfg.trainer.get("max_epochs") or 1)
        fit = refitter(state.model, dm, make, epochs, int(self.cfg.seed))

        def build() -> Any:
            return make(input_shape=tuple(dm.input_shape), num_outputs=int(dm.num_outputs))

        return fit, build

    def _keys(self, state: RunState, info: Any) -> set[str]:
        """What the run will compute: its metrics and each analysis' keys."""
        from mlx.engine.stage import TESTING

        names = state.model.metric_names()
        # eval and compress test a saved network: only test metrics
        splits = ("test",) if state.command in TESTING else ("train", "val", "test")
        keys = {f"{split}/{n}" for split in splits for n in names}
        if self.cfg.get("compression"):
            keys |= {f"compressed/{k}" for k in keys if not k.startswith("train/")}
        for analysis in self.analyses:
            provides = getattr(analysis, "provides", None)
            if callable(provides):
                keys |= {f"{analysis.name}.{k}" for k in provides(info)}
        return keys

    def _slice_columns(self, info: Any) -> set[str] | None:
        for analysis in self.analyses:
            if analysis.name == "slices":
                return set(analysis.features())
        return None

    def networks(self, state: RunState) -> list[tuple[str, Any]]:
        """The networks ``analysis.on`` asks for: (label, network), in run order."""
        kept = state.networks or [("final", state.model.net)]
        if self.on == "final":
            return [("final", kept[-1][1])]
        if self.on == "baseline":
            return [kept[0]]
        return kept

    def run(self, state: RunState) -> None:
        from mlx.analysis.gather import gather

        out = Path(state.out)
        recorder = state.recorder
        sections: dict[str, Any] = {}
        failed: dict[str, str] = {}
        seconds: dict[str, float] = {}  # each analysis' wall time
        nets = self.networks(state)
        seed = int(self.cfg.seed)
        fit, build = self._refitter(state)
        for label, net in nets:
            evidence = gather(net, state.datamodule, "test", seed, fit, build)
            own: dict[str, Any] = {}
            for analysis in self.analyses:
                where = f"{label}/{analysis.name}" if len(nets) > 1 else analysis.name
                folder = out / FOLDER / where
                folder.mkdir(parents=True, exist_ok=True)
                log.info("analysis %s ...", where)
                t0 = time.perf_counter()
                try:
                    own[analysis.name] = analysis.run(evidence, folder)
                except MlxError as e:
                    failed[where] = str(e)
                    log.error("analysis %s failed: %s", where, e)
                except Exception as e:  # an analysis' bug must not lose the training result
                    failed[where] = "".join(traceback.format_exception_only(type(e), e)).strip()
                    log.error("analysis %s failed:\n%s", where, traceback.format_exc())
                seconds[where] = round(time.perf_counter() - t0, 4)
            sections[label] = own
        analysis_record = sections[nets[0][0]] if len(nets) == 1 else sections
        recorder.extra["analysis"] = analysis_record
        if len(nets) > 1:
            recorder.extra["analysis_networks"] = [label for label, _ in nets]
        recorder.extra["analysis_seconds"] = seconds
        if failed:
            recorder.extra["analysis_failed"] = failed
        verdict = None
        if self.gate is not None:
            if self.gate.baseline_checkpoint is not None:
                log.info("analysis: evaluating the baseline %s", self.gate.baseline_checkpoint)
                baseline = self._evaluate_baseline(state, out / FOLDER / "baseline_checkpoint")
                self.gate.set_baseline_record(baseline)
                recorder.extra["validation_baseline"] = baseline
            final = sections[nets[-1][0]]
            record = {"metrics": recorder.metrics, "analysis": final}
            verdict = self.gate.verdict(record)
            recorder.extra[GATE] = verdict
            self._log_verdict(verdict)
        self._log_to_wandb(state, sections, verdict)
        if verdict is not None and verdict["verdict"] == "rejected" and self.gate.fail_run:
            from mlx.analysis.validation import ModelRejected

            state.exit_error = ModelRejected(
                "the validation gate rejected the model: "
                + "; ".join(verdict["failed"])
                + f" (the record, {out / 'metrics.json'}, has each condition's value; "
                "analysis.validation.fail_run=false records the verdict and exits 0)."
            )

    @staticmethod
    def _log_to_wandb(state: RunState, sections: dict[str, Any], verdict: Any) -> None:
        """With W&B tracking: each analysis' values as a ``wandb.Table``, its figures as HTML
        media (the SVGs inline), and the verdict and values in the run's summary."""
        logger = getattr(state.trainer, "logger", None)
        if type(logger).__name__ != "WandbLogger" or not state.recorder.writes:
            return
        import wandb

        from mlx.analysis.validation import interval_values

        run = logger.experiment
        out = Path(state.out) / FOLDER
        for label, own in sections.items():
            prefix = f"{label}/" if len(sections) > 1 else ""
            for name, section in own.items():
                values = interval_values(section)
                rows = [[k, v, lo, hi] for k, (v, lo, hi) in values.items()]
                payload: dict[str, Any] = {}
                if rows:
                    payload[f"analysis/{prefix}{name}"] = wandb.Table(
                        columns=["key", "value", "low", "high"], data=rows
                    )
                    for k, (v, _, _) in values.items():
                        if v is not None:
                            run.summary[f"analysis/{prefix}{name}.{k}"] = v
                for svg in sorted((out / prefix / name).glob("*.svg")):
                    payload[f"analysis/{prefix}{name}/{svg.stem}"] = wandb.Html(svg.read_text())
                if payload:
                    run.log(payload)
        if verdict is not None:
            run.summary["validation/verdict"] = verdict["verdict"]
            run.summary["validation/failed"] = verdict["failed"]

    @staticmethod
    def _log_verdict(verdict: dict[str, Any]) -> None:
        for row in verdict["conditions"]:
            mark = "pass" if row["passed"] else "FAIL"
            value = row.get("value")
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            log.info("validation %s: %s (value %s)", mark, row["condition"], shown)
        log.info("validation verdict: %s", verdict["verdict"])


Stage = AnalyseStage
