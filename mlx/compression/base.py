"""What every compression stage shares: the errors it raises, the tools the pipeline lends it,
and the protocol the pipeline drives.

A stage is an object built from its ``conf/compression/<name>.yaml`` (``_target_`` to a public
class of ``mlx.compression``). The pipeline calls ``check`` for every stage before any training
starts, then ``apply`` in the listed order, each on the previous stage's network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mlx.errors import MlxError

if TYPE_CHECKING:
    from torch import Tensor, nn


class CompressionError(MlxError):
    """Bad compression settings, found before any work starts."""


@dataclass
class StageInput:
    """What a stage knows about the network it will receive, before anything is trained.

    Attributes:
        net: the network as the previous stage will hand it over (for the first stage, the
            trained model's network; stages only read it in ``check``).
        input_shape: shape of one example, e.g. ``(1, 8, 8)`` or ``(30,)``.
        num_outputs: classes, or 1 for regression.
        task: ``classification`` or ``regression``.
        before: names of the stages that run earlier, in order (``["distill", "prune"]``).
        rebuild: builds a fresh network of the run's model config for another input shape.
    """

    net: nn.Module
    input_shape: tuple[int, ...]
    num_outputs: int
    task: str
    before: list[str]
    rebuild: Callable[[tuple[int, ...]], nn.Module] | None = None


@dataclass
class Tools:
    """What the pipeline lends a stage while it applies.

    Attributes:
        input_shape: shape of one example.
        num_outputs: classes, or 1 for regression.
        task: ``classification`` or ``regression``.
        train_batches: a fresh pass over the training split, ``(x, y)`` batches;
            ``x`` is ``(B, *input_shape)``.
        loss: the task's loss of a network's output against labels.
        fine_tune: ``fine_tune(net, epochs, lr_scale=1.0)`` trains ``net`` in place on the
            training split with the run's optimizer, scheduler and learning rate (times
            ``lr_scale``), no checkpoints, and returns it. ``epochs=0`` returns it untouched.
        evaluate: ``evaluate(net)`` -> ``{"val/acc": ..., "test/acc": ...}`` (the task's
            metrics on the val and test splits).
        log: a line of progress for the user.
        initial_state: the network's weights at initialisation, before any training (keys of
            ``net.state_dict()`` of the first stage's network), for lottery-ticket rewinding.
        early_state: its weights after the first training epoch (late rewinding), or None.
        fit: ``fit(net, epochs, loss_fn)`` trains ``net`` like ``fine_tune`` but with its own
            loss, ``loss_fn(net, x, y) -> loss`` (distillation).
        rebuild: ``rebuild(input_shape)`` builds a fresh, untrained network of the run's model
            config for another input shape (PCA).
        test_split: ``test_split()`` -> the test split's ``(x, y)`` tensors, for stages that
            measure more than the task's metrics on it (hardening's robust accuracy).
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    task: str
    train_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]
    loss: Callable[[Tensor, Tensor], Tensor]
    fine_tune: Callable[..., nn.Module]
    evaluate: Callable[[nn.Module], dict[str, float]]
    log: Callable[[str], None]
    initial_state: dict[str, Tensor] | None = None
    early_state: dict[str, Tensor] | None = None
    fit: (
        Callable[[nn.Module, int, Callable[[nn.Module, Tensor, Tensor], Tensor]], nn.Module] | None
    ) = None
    rebuild: Callable[[tuple[int, ...]], nn.Module] | None = None
    test_split: Callable[[], tuple[Tensor, Tensor]] | None = None


class Stage(Protocol):
    """One compression step."""

    name: str  # shown in the table and the run record: "prune", "quantize"...

    def check(self, given: StageInput) -> None:
        """Raise :class:`CompressionError` if this stage cannot run on ``given``; no training."""
        ...

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        """The compressed network (a new module, or ``net`` changed in place)."""
        ...

    def details(self) -> dict[str, object]:
        """What this stage did, for the run record (sparsity per step, layers skipped...)."""
        ...
