"""One-shot (weight-sharing) architecture search: NNI 3.0's DARTS, GumbelDARTS, Proxyless, ENAS
and RandomOneShot train one supernet in this process and export the architecture they found.

The strategies run as NNI runs them, without an NNI experiment or its web server: the space and
a Lightning evaluator become a ``RawFormatModelSpace``, a ``SequentialExecutionEngine`` trains it
in-process, and the strategy's one-shot module exports the architecture. The evaluator's module
is :class:`SupernetModule`: mlx's losses and metrics (those of ``mlx.engine.LitModel``) in the
form NNI's strategies wrap.

Adapters for NNI 3.0 (archived) on today's libraries, all in this module:

- NNI imports only the ``pytorch_lightning`` namespace, which mlx uses too; DARTS, GumbelDARTS,
  Proxyless and RandomOneShot train with Lightning 2.6 as they are.
- torch 2.13 adds non-module names to ``torch.nn`` (``Buffer``...); NNI warns about each when
  ``nni.nas`` is imported. The warnings are silenced on import (:func:`_import_nni`).
- NNI's ``list_models`` calls ``set_model`` again before exporting, and ENAS's ``set_model``
  builds a new, untrained controller: the architecture would be a random draw. mlx exports from
  the trained one-shot module directly (:func:`_export`).
- A strategy turns the space into a supernet in place and patches the data module's loader
  methods; mlx searches a copy of the space and restores the data module afterwards.
- Proxyless exports extra keys for a repeat's inner choices; the architecture keeps exactly the
  space's own labels.
- ENAS chains the train and val loaders and reads each batch's loader index, which Lightning
  2.6 no longer passes to ``training_step``; mlx tags each batch with its loader
  (:func:`_tag_batches`), in the form ENAS also reads.
- ENAS's controller (``nni.nas.strategy._rl_impl``) needs tianshou 0.5 and imports ``gym``,
  which is unmaintained and does not support NumPy 2. When ``gym`` is not installed, gymnasium
  (its maintained successor, a dependency of tianshou) stands in for it (:func:`_import_rl`).
- NNI's strategies skip Lightning's validation loop (DARTS's family feeds validation batches to
  its architecture steps). So that every strategy reports the same metrics, validation runs
  after each epoch in :func:`_epoch_history`: the supernet as the strategy runs it (DARTS's
  softmax mixture; one sampled path per batch for the sampling strategies) on the val split.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from torch import Tensor, nn

# where NNI defines its one-shot strategies; ``nni.nas.strategy`` re-exports them
ONE_SHOT_MODULE = "nni.nas.oneshot"
# each NNI one-shot strategy and its option in conf/strategy
OPTIONS = {
    "DARTS": "darts",
    "GumbelDARTS": "gumbel_darts",
    "Proxyless": "proxyless",
    "ENAS": "enas",
    "RandomOneShot": "random_one_shot",
}
# ENAS's controller is rewarded with this per-batch value: accuracy, or -MSE for regression
REWARD_KEY = "val/reward"
TIANSHOU = "tianshou>=0.5.1,<0.6"


@dataclass
class OneShotResult:
    """What a one-shot search found.

    Attributes:
        arch: one value per label of the space (plain Python values); ``space.freeze(arch)``
            builds the network.
        seconds: wall time of the supernet's training.
        val_metric: the supernet's last ``val/acc`` (classification) or ``val/loss``
            (regression), or None when no epoch finished.
        history: one row per epoch: ``epoch``, ``seconds``, ``train/*`` and ``val/*`` metrics and,
            for the strategies that learn them, the choices' probabilities (``prob/<label>/<value>``).
    """

    arch: dict[str, Any]
    seconds: float
    val_metric: float | None
    history: list[dict[str, float]] = field(default_factory=list)


def is_one_shot(strategy: Any) -> bool:
    """Whether ``strategy`` is one of NNI's one-shot strategies (an instance, a class, or a
    ``_target_`` dotpath such as ``nni.nas.strategy.DARTS``). Imports nothing."""
    if isinstance(strategy, str):
        module, _, name = strategy.rpartition(".")
        return name in OPTIONS and (
            module == "nni.nas.strategy" or module.startswith(ONE_SHOT_MODULE)
        )
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return any(c.__module__.startswith(ONE_SHOT_MODULE) for c in cls.__mro__)


# ---- the check before training ----------------------------------------------------------------


def check_one_shot(space: nn.Module, strategy: Any) -> None:
    """Raise NasError when ``strategy`` cannot search ``space``, before any training.

    The strategy turns a copy of the space into its supernet (NNI's own mutation, the step that
    refuses what the strategy does not support) and, when the space records its input shape,
    runs one forward and backward pass of two zero examples through it: about one small training
    step, no training. The space and the strategy are left as they were.

    Args:
        space: an NNI ModelSpace.
        strategy: an NNI one-shot strategy, as built from ``conf/strategy``.

    Raises:
        NasError: not a one-shot strategy, not a model space, a space without choices, a choice
            the strategy cannot search (naming it and the strategies that can), or ENAS without
            its RL library.
    """
    from mlx.nas.spaces import NasError

    if not is_one_shot(strategy):
        raise NasError(
            f"{type(strategy).__name__} is not a one-shot strategy; the one-shot strategies are "
            f"{_options()}, and the others run as a sweep of trials (mlx nas)."
        )
    _import_nni()
    from nni.mutable import MutableAnnotation
    from nni.nas.nn.pytorch import ModelSpace

    name = _name(strategy)
    option = OPTIONS.get(name, name)
    if not isinstance(space, ModelSpace):
        raise NasError(
            f"strategy={option} searches an NNI model space (mlx.nas.MacroCNN, CellCNN or "
            f"MacroMLP), not a {type(space).__name__}."
        )
    labels = [k for k, v in space.simplify().items() if not isinstance(v, MutableAnnotation)]
    if not labels:
        raise NasError(f"{type(space).__name__} has no choices: there is nothing to search.")
    problem = _problem(space, strategy, dry_run=True)
    if problem is None:
        missing = _rl_problem() if name == "ENAS" else None
        if missing:
            raise NasError(
                f"strategy=enas needs tianshou 0.5 for its RL controller ({missing}); install "
                f"'{TIANSHOU}', or use strategy=darts, gumbel_darts, proxyless or random_one_shot."
            )
        return
    what, reason, label = problem
    # the others are checked without the dry run: a refusal must stay quick
    others = [
        OPTIONS[other]
        for other in OPTIONS
        if other != name
        and (other != "ENAS" or _rl_problem() is None)
        and _problem(space, _default_strategy(other), dry_run=False) is None
    ]
    hints = [f"give {label} a single candidate in the search space"] if label else []
    if others:
        hints.append(f"use strategy={', '.join(others)} instead")
    hints.append(
        "use a multi-trial strategy (strategy=random, tpe or regularized_evolution), which "
        "trains each candidate on its own"
    )
    raise NasError(
        f"strategy={option} ({name}) cannot search {type(space).__name__}'s {what} ({reason}); "
        f"{', or '.join(hints)}."
    )


def _problem(space: nn.Module, strategy: Any, *, dry_run: bool) -> tuple[str, str, str] | None:
    """What ``strategy`` cannot search in ``space``, or None.

    Returns:
        ``(what, reason, label)``: the choice as a phrase (``MutableConv2d argument
        'stage0_width'``), why (NNI's words), and its label(s), empty when no single choice is
        to blame.
    """
    from nni.mutable import Categorical, CategoricalMultiple, MutableAnnotation
    from nni.nas.strategy import DARTS, ENAS

    for label, mutable in space.simplify().items():
        if isinstance(mutable, MutableAnnotation):
            continue
        if isinstance(strategy, DARTS | ENAS) and not isinstance(
            mutable, Categorical | CategoricalMultiple
        ):
            kind = type(mutable).__name__
            return f"{kind} '{label}'", "it searches categorical choices only", label
        if (
            isinstance(strategy, ENAS)
            and isinstance(mutable, CategoricalMultiple)
            and mutable.n_chosen not in (1, None)
        ):
            reason = f"its controller picks one input at a time, not {mutable.n_chosen}"
            return f"input choice '{label}'", reason, label

    # NNI visits the modules one by one: the last one visited is the one it refused
    probe = copy.copy(strategy)
    visited: list[tuple[str, nn.Module]] = []
    mutate = probe._execute_mutation_hooks

    def watched(name: str, module: nn.Module, hooks: list[Any]) -> Any:
        visited.append((name, module))
        return mutate(name, module, hooks)

    probe._execute_mutation_hooks = watched
    supernet = copy.deepcopy(space)
    try:
        with _quiet_nni():
            probe.mutate_model(supernet)
    except Exception as e:
        where, module = visited[-1] if visited else ("", space)
        label = _label(module)
        what = f"{_kind(module)} '{label}'" if label else f"module '{where}'"
        return what, _reason(e), label
    if dry_run:
        try:
            _dry_run(supernet, _input_shape(space))
        except Exception as e:
            return "supernet", f"a forward and backward pass fails: {_reason(e)}", ""
    return None


def _dry_run(supernet: nn.Module, input_shape: tuple[int, ...] | None) -> None:
    """One forward and backward pass of two zero examples, each choice resampled first."""
    import torch
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    if input_shape is None:
        return
    memo: dict[str, Any] = {}
    for module in supernet.modules():
        if isinstance(module, BaseSuperNetModule):
            memo.update(module.resample(memo=memo))
    supernet.train()
    out = supernet(torch.zeros(2, *input_shape))  # (2, num_outputs)
    out.float().sum().backward()


def _input_shape(space: nn.Module) -> tuple[int, ...] | None:
    shape = getattr(space, "input_shape", None)
    if shape is None:
        shape = (getattr(space, "trace_kwargs", None) or {}).get("input_shape")
    try:
        return tuple(int(n) for n in shape) if shape is not None else None
    except (TypeError, ValueError):
        return None


_KINDS = {  # NNI's mutable modules, as the user wrote them
    "LayerChoice": "layer choice",
    "InputChoice": "input choice",
    "Repeat": "repeat",
    "Cell": "cell",
}


def _kind(module: nn.Module) -> str:
    for cls in type(module).__mro__:
        if cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
    return f"{type(module).__name__} argument"  # a ParametrizedModule such as MutableConv2d


def _label(module: nn.Module) -> str:
    label = getattr(module, "label", None)
    if isinstance(label, str):
        return label
    simplify = getattr(module, "simplify", None)
    return ", ".join(simplify()) if callable(simplify) else ""


def _reason(error: BaseException) -> str:
    """NNI's message, first sentence only (the rest tells NNI's own users what to implement)."""
    lines = str(error).strip().splitlines()
    first = lines[0].split(". ")[0].rstrip(".") if lines else type(error).__name__
    return f"NNI: {first}"


def _name(strategy: Any) -> str:
    for cls in type(strategy).__mro__:
        if cls.__name__ in OPTIONS and cls.__module__.startswith(ONE_SHOT_MODULE):
            return cls.__name__
    return type(strategy).__name__


def _options() -> str:
    return ", ".join(f"strategy={o}" for o in OPTIONS.values())


def _default_strategy(name: str) -> Any:
    import nni.nas.strategy as strategies

    return getattr(strategies, name)()


def _rl_problem() -> str | None:
    """Why ENAS's RL controller does not import, or None when it does."""
    try:
        _import_rl()
    except ImportError as e:
        return str(e)
    return None


# ---- the search -------------------------------------------------------------------------------


def search_one_shot(
    space: nn.Module,
    strategy: Any,
    datamodule: pl.LightningDataModule,
    *,
    max_epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    limit_train_batches: float | int | None = None,
    seed: int = 0,
    progress: bool = False,
    log_dir: str | Path | None = None,
) -> OneShotResult:
    """Train ``strategy``'s supernet of ``space`` on ``datamodule`` and export its architecture.

    Runs on CPU in this process, seeded by ``seed`` (the data module's shuffling too, so that
    two searches with one seed see the same batches). ``space``, ``strategy`` and
    ``datamodule`` are left as they were: the strategy trains a copy of the space.

    Args:
        space: an NNI ModelSpace (e.g. ``mlx.nas.MacroCNN``) built for the data.
        strategy: an NNI one-shot strategy (``conf/strategy``: darts, gumbel_darts, proxyless,
            enas, random_one_shot).
        datamodule: a Lightning data module with ``task`` (``classification`` or
            ``regression``) after ``setup("fit")``, such as ``mlx.data.ArrayDataModule``.
        max_epochs: epochs of supernet training.
        lr: AdamW's learning rate for the supernet's weights.
        weight_decay: AdamW's weight decay.
        limit_train_batches: Lightning's limit on train batches per epoch (a fraction or a
            count); None for all.
        seed: seeds Python, NumPy, torch and the data order.
        progress: show Lightning's progress bar.
        log_dir: where Lightning writes its CSV log and the last supernet checkpoint; None
            writes nothing.

    Returns:
        The architecture, the training time, the supernet's final validation metric and the
        per-epoch history.

    Raises:
        NasError: the strategy cannot search the space (see :func:`check_one_shot`).
    """
    check_one_shot(space, strategy)
    _import_nni()
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Lightning, Trainer
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace
    from pytorch_lightning.loggers import CSVLogger

    from mlx.engine.logs import quiet_lightning

    name = _name(strategy)
    strategy = copy.deepcopy(strategy)  # a strategy runs once; the caller's stays fresh
    if name == "ENAS":
        strategy.reward_metric_name = REWARD_KEY  # the only per-batch score the module logs
        _tag_batches(strategy)
    quiet_lightning()
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule.setup("fit")
    generator = getattr(datamodule, "generator", None)
    if generator is not None:  # ArrayDataModule shuffles with its own generator
        generator.manual_seed(seed)
    supernet = copy.deepcopy(space)  # NNI turns the space into the supernet in place
    module = _supernet_module()(
        datamodule.task,
        lr=lr,
        weight_decay=weight_decay,
        reward_key=REWARD_KEY if name == "ENAS" else None,
    )
    # the data module's own val loader: the strategy replaces the data module's loader methods
    history = _epoch_history(datamodule.val_dataloader)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlx-oneshot-") as tmp, _quiet():
        trainer = Trainer(
            max_epochs=max_epochs,
            limit_train_batches=limit_train_batches,
            limit_val_batches=0,  # validation runs in _epoch_history, the same for every strategy
            num_sanity_val_steps=0,
            accelerator="cpu",
            devices=1,
            deterministic=True,
            logger=CSVLogger(str(log_dir), name="supernet") if log_dir is not None else False,
            enable_checkpointing=log_dir is not None,
            default_root_dir=str(log_dir) if log_dir is not None else tmp,
            enable_progress_bar=progress,
            enable_model_summary=False,
            callbacks=[history],
        )
        evaluator = Lightning(module, trainer, datamodule=datamodule)
        try:
            strategy(
                RawFormatModelSpace.from_model(supernet, evaluator), SequentialExecutionEngine()
            )
        finally:
            for method in ("train_dataloader", "val_dataloader"):
                vars(datamodule).pop(method, None)  # back to the class's methods
        arch = _export(strategy, space)
    seconds = time.perf_counter() - started
    key = "val/acc" if datamodule.task == "classification" else "val/loss"
    val_metric = history.rows[-1].get(key) if history.rows else None
    return OneShotResult(arch=arch, seconds=seconds, val_metric=val_metric, history=history.rows)


def _tag_batches(strategy: Any) -> None:
    """Let ENAS tell its train batches from its validation batches on Lightning 2.6.

    ENAS chains the two loaders and expects each batch with the index of its loader, as
    Lightning 2.0 passed it; Lightning 2.6 passes the batch alone, which ENAS then mistakes for
    the Lightning 1.x form ``(batch, "train" | "val")``. Tagging each batch that way makes the
    form true; the chained loader keeps Lightning's per-loader batch limits.
    """
    chain = strategy.train_dataloader

    def train_dataloader(train_fn: Callable[[], Any], val_fn: Callable[[], Any]) -> Any:
        return chain(lambda: _Tagged(train_fn(), "train"), lambda: _Tagged(val_fn(), "val"))

    strategy.train_dataloader = train_dataloader


class _Tagged:
    """A loader whose batches come as ``(batch, tag)``."""

    def __init__(self, loader: Any, tag: str) -> None:
        self.loader = loader
        self.tag = tag

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        for batch in self.loader:
            yield batch, self.tag

    def __len__(self) -> int:
        return len(self.loader)


def _export(strategy: Any, space: nn.Module) -> dict[str, Any]:
    """The trained strategy's architecture: exactly the space's labels, plain values."""
    from nni.mutable import MutableAnnotation

    # not strategy.list_models(): it calls set_model again, which resets ENAS's controller
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Direct export from RandomOneShot", UserWarning)
        sample = strategy.oneshot_module.export()
    labels = [k for k, v in space.simplify().items() if not isinstance(v, MutableAnnotation)]
    missing = [label for label in labels if label not in sample]
    if missing:
        raise RuntimeError(
            f"{_name(strategy)} exported no value for {', '.join(missing)} (exported {sample})."
        )
    arch = {str(label): _plain(sample[label]) for label in labels}  # NNI's labels subclass str
    try:
        space.freeze(arch)
    except Exception as e:
        raise RuntimeError(
            f"the architecture {_name(strategy)} exported does not build the space: {e} ({arch})"
        ) from e
    return arch


def _plain(value: Any) -> Any:
    """A value as YAML writes it: built-in types only."""
    for kind in (bool, int, float, str):  # bool first: it is an int too
        if isinstance(value, kind):
            return kind(value)  # subclasses too, such as NNI's labels
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return value


# ---- the training recipe ----------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    # SupernetModule subclasses NNI's LightningModule: defined on first use, as importing NNI
    # takes seconds
    if name == "SupernetModule":
        return _supernet_module()
    raise AttributeError(f"module 'mlx.nas.oneshot' has no attribute '{name}'")


@functools.cache
def _supernet_module() -> type:
    _import_nni()
    import torch
    import torch.nn.functional as F
    from nni.nas.evaluator.pytorch import LightningModule

    from mlx.engine.module import epoch_metrics

    class SupernetModule(LightningModule):
        """The Lightning module NNI's strategies wrap: mlx's losses and metrics, AdamW.

        Classification: cross-entropy, ``loss`` and ``acc``; regression: MSE, ``loss``, ``mae``
        and ``r2`` (those of ``mlx.engine.LitModel``). The strategy gives it the supernet with
        ``set_model`` and calls its steps; metrics accumulate per epoch for :func:`_epoch_history`.

        Args:
            task: ``classification`` or ``regression``.
            lr: AdamW's learning rate.
            weight_decay: AdamW's weight decay.
            reward_key: ENAS only: the key under which each validation batch's reward is logged.
        """

        def __init__(
            self,
            task: str,
            *,
            lr: float,
            weight_decay: float = 0.0,
            reward_key: str | None = None,
        ) -> None:
            super().__init__()
            if task not in ("classification", "regression"):
                raise ValueError(f"task must be classification or regression, not {task!r}")
            self.task = task
            self.lr = lr
            self.weight_decay = weight_decay
            self.reward_key = reward_key
            self.epoch_metrics = epoch_metrics(task, ("train", "val"))

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)

        def loss(self, out: Tensor, y: Tensor) -> Tensor:
            if self.task == "classification":
                return F.cross_entropy(out, y)
            return F.mse_loss(out.squeeze(-1), y)

        def update(self, split: str, out: Tensor, y: Tensor, loss: Tensor) -> None:
            """Add one batch to the split's epoch metrics."""
            m, n = self.epoch_metrics, y.shape[0]
            m[f"{split}_loss"].update(loss.detach(), n)
            if self.task == "classification":
                m[f"{split}_acc"].update((out.argmax(dim=1) == y).float().mean(), n)
            else:
                pred = out.detach().squeeze(-1)  # (B,)
                m[f"{split}_mae"].update((pred - y).abs().mean(), n)
                m[f"{split}_r2"].update(pred, y)

        def compute(self, split: str) -> dict[str, float]:
            """The split's epoch metrics as ``split/name``; resets them."""
            values: dict[str, float] = {}
            for key, metric in self.epoch_metrics.items():
                if key.startswith(f"{split}_"):
                    if metric.update_called:
                        values[key.replace("_", "/", 1)] = float(metric.compute())
                    metric.reset()
            return values

        def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
            x, y = batch  # (B, *input_shape), (B,)
            out = self.model(x)  # (B, num_outputs)
            # DARTS's family calls this for its architecture steps too (on validation batches)
            # and returns only the weight step's output: train metrics count in on_train_batch_end
            return {"loss": self.loss(out, y), "out": out.detach(), "target": y}

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if isinstance(outputs, dict) and "out" in outputs:
                self.update("train", outputs["out"], outputs["target"], outputs["loss"])

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            # only ENAS calls this, inside its training loop: the batch's score rewards the path
            # its controller sampled
            x, y = batch
            with torch.no_grad():
                out = self.model(x)
                if self.task == "classification":
                    reward = (out.argmax(dim=1) == y).float().mean()
                else:
                    reward = -self.loss(out, y)
            if self.reward_key is not None:
                self.log(self.reward_key, reward, on_step=True, on_epoch=False)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    SupernetModule.__module__ = __name__
    SupernetModule.__qualname__ = "SupernetModule"  # importable as mlx.nas.oneshot.SupernetModule
    return SupernetModule


def _epoch_history(val_loader: Callable[[], Iterable[Any]]) -> Any:
    """A Lightning callback that keeps one row per epoch in ``rows``: the weight steps' train
    metrics, then the supernet on ``val_loader``'s batches, logged as ``val/*``."""
    import pytorch_lightning as pl
    import torch

    class EpochHistory(pl.Callback):
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            module = pl_module.training_module  # the SupernetModule inside NNI's one-shot module
            values = module.compute("train")
            loss = values.get("train/loss", 0.0)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"train/loss is {loss} at epoch {trainer.current_epoch}: the supernet's "
                    "training diverged (lower model.lr, or the strategy's arc_learning_rate)"
                )
            was_training = pl_module.training
            pl_module.eval()
            with torch.no_grad():
                for x, y in val_loader():
                    pl_module.resample()  # a path per batch (sampling strategies); DARTS mixes
                    out = module.model(x)  # (B, num_outputs)
                    module.update("val", out, y, module.loss(out, y))
            pl_module.train(was_training)
            values.update(module.compute("val"))
            pl_module.log_dict(values, prog_bar=True)
            probs = {
                k: float(v)
                for k, v in sorted(trainer.callback_metrics.items())
                if k.startswith("prob/")
            }
            seconds = round(time.perf_counter() - self._start, 4)
            self.rows.append(
                {"epoch": trainer.current_epoch, **values, **probs, "seconds": seconds}
            )

    return EpochHistory()


# ---- NNI, imported on first use ---------------------------------------------------------------


@functools.cache
def _import_nni() -> None:
    """Import ``nni.nas`` (about 8 s) without its warnings about torch 2.13's ``torch.nn``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is found to be not a nn.Module.*", RuntimeWarning)
        import nni.nas.nn.pytorch  # noqa: F401
        import nni.nas.strategy  # noqa: F401


def _import_rl() -> None:
    """Import ENAS's RL controller, with gymnasium standing in for a missing ``gym``.

    Raises:
        ImportError: tianshou is missing or not 0.5 (NNI 3.0 uses its 0.5 API).
    """
    import sys
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("tianshou")
    except PackageNotFoundError:
        raise ImportError("tianshou is not installed") from None
    if not found.startswith("0.5."):
        raise ImportError(f"tianshou {found} is installed, and NNI 3.0 uses the 0.5 API")
    if "gym" not in sys.modules and importlib.util.find_spec("gym") is None:
        import gymnasium  # tianshou 0.5 depends on it

        sys.modules["gym"] = gymnasium  # NNI uses gym.Env and gym.spaces only
    import nni.nas.strategy._rl_impl  # noqa: F401


@contextmanager
def _quiet_nni() -> Iterator[None]:
    """NNI logs what it then raises, and its progress, at INFO to the console."""
    logger = logging.getLogger("nni")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's and NNI's console lines and warnings off during the search (the progress bar
    is the Trainer's to show)."""
    names = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with _quiet_nni(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            # DARTS's family has no validation_step by design: its validation runs elsewhere
            warnings.filterwarnings("ignore", ".*have no `validation_step`.*")
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


__all__ = [
    "OneShotResult",
    "check_one_shot",
    "is_one_shot",
    "search_one_shot",
]
