"""Knowledge distillation (Hinton et al., 2015): a smaller student learns from the trained
network (the teacher) as well as from the labels.

For classification the student's loss is ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
(1 - alpha) * CE(s, y)``; the ``T^2`` keeps the soft term's gradients on the scale of the hard
term's. For regression the soft target is the teacher's prediction: ``alpha * MSE(s, t) +
(1 - alpha) * MSE(s, y)``. With ``feature_weight > 0`` the student's penultimate features are
also pulled towards the teacher's (FitNets-style), through a learned linear map when widths
differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Gt, Interval

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    from torch import Tensor, nn


def distillation_loss(
    student: Tensor, teacher: Tensor, y: Tensor, temperature: float, alpha: float, task: str
) -> Tensor:
    """The student's loss against soft targets (the teacher's outputs) and hard labels.

    Args:
        student: student outputs, ``(B, num_outputs)``.
        teacher: teacher outputs, ``(B, num_outputs)``.
        y: labels, ``(B,)`` (class indices, or targets for regression).
        temperature: softens both distributions (classification).
        alpha: weight of the soft term; ``1 - alpha`` weighs the hard labels.
        task: ``classification`` or ``regression``.
    """
    import torch.nn.functional as F

    if task == "classification":
        soft = F.kl_div(
            F.log_softmax(student / temperature, dim=1),
            F.log_softmax(teacher / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        ) * (temperature**2)
        hard = F.cross_entropy(student, y)
    else:
        soft = F.mse_loss(student.squeeze(-1), teacher.squeeze(-1))
        hard = F.mse_loss(student.squeeze(-1), y)
    return alpha * soft + (1 - alpha) * hard


class Distill:
    """Train ``student`` from the trained network (or a checkpoint's) as the teacher.

    Args:
        student: builds the student network; called with ``input_shape`` and ``num_outputs``
            (for example ``{_target_: mlx.models.MLP, _partial_: true, hidden: [64]}``).
        temperature: softmax temperature of the soft targets (classification).
        alpha: weight of the soft targets against the hard labels.
        epochs: epochs the student trains.
        feature_weight: weight of matching the penultimate features (0: off).
        teacher_ckpt: an mlx checkpoint whose network teaches instead of the run's model.
    """

    name = "distill"

    def __init__(
        self,
        student: Callable[..., nn.Module],
        temperature: Annotated[float, Gt(0)] = 4.0,
        alpha: Annotated[float, Interval(ge=0, le=1)] = 0.7,
        epochs: Annotated[int, Ge(1)] = 10,
        feature_weight: Annotated[float, Ge(0)] = 0.0,
        teacher_ckpt: str | None = None,
    ) -> None:
        self.make_student = student
        self.temperature = temperature
        self.alpha = alpha
        self.epochs = epochs
        self.feature_weight = feature_weight
        self.teacher_ckpt = teacher_ckpt
        self._details: dict[str, Any] = {}

    def teacher(self, net: nn.Module) -> nn.Module:
        if self.teacher_ckpt is None:
            return net
        from mlx.compression.pipeline import load_net

        return load_net(self.teacher_ckpt)

    def check(self, given: StageInput) -> None:
        import torch

        if "quantize" in given.before:
            raise CompressionError(
                "distill after quantize: an int8 teacher cannot be trained against and its student would be float again; list distill before quantize (compression=[distill,quantize])."
            )
        if self.teacher_ckpt is not None:
            from pathlib import Path

            if not Path(self.teacher_ckpt).is_file():
                raise CompressionError(
                    f"compression.distill.teacher_ckpt: no file {self.teacher_ckpt}."
                )
            if self.feature_weight > 0 and Path(self.teacher_ckpt).suffix == ".onnx":
                raise CompressionError(
                    f"compression.distill.teacher_ckpt {self.teacher_ckpt} is an ONNX network, whose features cannot be matched; set compression.distill.feature_weight=0 or teach with a .ckpt."
                )
        teacher = self.teacher(given.net)
        try:
            student = self.make_student(
                input_shape=tuple(given.input_shape), num_outputs=given.num_outputs
            )
        except (TypeError, ValueError) as e:
            raise CompressionError(
                f"compression.distill.student cannot be built for inputs {tuple(given.input_shape)}: {e}"
            ) from e
        x = torch.zeros(2, *given.input_shape)
        with torch.no_grad():
            was = teacher.training
            teacher.eval()
            t_out = teacher(x)
            teacher.train(was)
            s_out = student.eval()(x)
        if t_out.shape != s_out.shape:
            raise CompressionError(
                f"the teacher's output shape {tuple(t_out.shape[1:])} differs from the student's {tuple(s_out.shape[1:])}: compression.distill.student must end in {given.num_outputs} outputs like the teacher."
            )

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        import torch

        if tools.fit is None:
            raise CompressionError("distillation needs a trainer: the pipeline lends none here.")
        teacher = self.teacher(net).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student = self.make_student(
            input_shape=tuple(tools.input_shape), num_outputs=tools.num_outputs
        )
        hook = _FeatureMatch(teacher, student) if self.feature_weight > 0 else None
        if hook is not None:
            student.feature_map = hook.projection  # trained with the student, dropped after
        T, alpha, task, fw = self.temperature, self.alpha, tools.task, self.feature_weight

        def loss_fn(s_net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            with torch.no_grad():
                t_out = teacher(x)
            s_out = s_net(x)
            loss = distillation_loss(s_out, t_out, y, T, alpha, task)
            if hook is not None:
                loss = loss + fw * hook.loss()
            return loss

        tools.log(
            f"distill: student {type(student).__name__} ({sum(p.numel() for p in student.parameters()):,} params) "
            f"from teacher {type(teacher).__name__}, T={T}, alpha={alpha}, {self.epochs} epochs"
        )
        student = tools.fit(student, self.epochs, loss_fn)
        if hook is not None:
            hook.remove()
            del student.feature_map
        self._details = {
            "student": type(student).__name__,
            "teacher": self.teacher_ckpt or "the run's trained model",
            "temperature": T,
            "alpha": alpha,
            "epochs": self.epochs,
            "feature_weight": fw,
        }
        return student

    def details(self) -> dict[str, Any]:
        return dict(self._details)


class _FeatureMatch:
    """Captures the input of each network's last Linear (the penultimate features) and scores
    their mean squared distance, through a learned linear map from student to teacher width."""

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        from torch import nn

        t_head, s_head = _last_linear(teacher), _last_linear(student)
        self.feats: dict[str, Tensor] = {}
        self.handles = [
            t_head.register_forward_pre_hook(lambda m, a: self.feats.__setitem__("t", a[0])),
            s_head.register_forward_pre_hook(lambda m, a: self.feats.__setitem__("s", a[0])),
        ]
        self.projection = nn.Linear(s_head.in_features, t_head.in_features, bias=False)

    def loss(self) -> Tensor:
        import torch.nn.functional as F

        return F.mse_loss(self.projection(self.feats["s"]), self.feats["t"].detach())

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _last_linear(net: nn.Module) -> nn.Linear:
    from torch import nn

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CompressionError(
            "feature matching needs networks that end in a Linear head; set compression.distill.feature_weight=0."
        )
    return linears[-1]
