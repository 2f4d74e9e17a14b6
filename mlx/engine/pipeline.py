"""Pipeline (model) parallelism: the network cut into contiguous stages, one per process, and
trained micro-batch by micro-batch with ``torch.distributed.pipelining`` (GPipe or 1F1B).

The thinnest fit into Lightning: a DDP strategy (same spawned processes, same process group)
that does not wrap the model in DistributedDataParallel. Every process builds the whole
LightningModule, as in any other mode, but runs and trains only its stage's layers: the
library's schedule does forward and backward of a step, so Lightning's backward is a no-op,
and the optimizer (built over all parameters) steps only those with gradients, the stage's.
The last stage's outputs are broadcast so that every process scores the same batch and logs
the same metrics. Saving a checkpoint first broadcasts each stage's weights from its owner, so
``best.ckpt`` and ``last.ckpt`` hold the full network like a single-process checkpoint, and the
per-stage optimizer states are merged into one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.distributed as dist
from annotated_types import Ge
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor, nn

from mlx.errors import ConfigError

SCHEDULES = ("GPipe", "1F1B")


def network_layers(net: nn.Module) -> list[nn.Module]:
    """The network as a flat sequence of layers; ConfigError for one that cannot be cut."""
    layers = getattr(net, "layers", None)
    if not callable(layers):
        raise ConfigError(
            f"parallelism=pipeline cuts a network into a sequence of layers, which "
            f"{type(net).__name__} does not offer (a NAS supernet or architecture, an ONNX "
            "network); use model=mlp, cnn or resnet, or parallelism=single or ddp."
        )
    return list(layers())


def split_layers(layers: list[nn.Module], stages: int) -> list[list[nn.Module]]:
    """Contiguous stages balanced by cost (parameters, plus one per layer), each non-empty."""
    if stages > len(layers):
        raise ConfigError(
            f"parallelism=pipeline asks for {stages} stages (trainer.devices) but the network "
            f"has only {len(layers)} layers; use trainer.devices={len(layers)} or fewer."
        )
    cost = [1 + sum(p.numel() for p in layer.parameters()) for layer in layers]
    total = sum(cost)
    cuts, acc = [], 0
    for i, c in enumerate(cost):
        acc += c
        k = len(cuts) + 1  # the cut that ends stage k-1
        # cut when the cost reaches the stage's share; never leave fewer layers than stages
        if k < stages and (acc >= total * k / stages or len(layers) - (i + 1) == stages - k):
            cuts.append(i + 1)
    bounds = [0, *cuts, len(layers)]
    return [layers[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def describe_split(parts: list[list[nn.Module]]) -> str:
    lines = []
    start = 0
    for s, part in enumerate(parts):
        params = sum(p.numel() for layer in part for p in layer.parameters())
        names = ", ".join(type(layer).__name__ for layer in part)
        lines.append(
            f"  stage {s}: layers {start}-{start + len(part) - 1} ({params:,} params): {names}"
        )
        start += len(part)
    return "\n".join(lines)


class Stage(nn.Sequential):
    """A stage's layers; its output is made contiguous, since gloo sends and receives only
    contiguous tensors (a max-pool's output, for one, is not)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).contiguous()


class PipelineStrategy(DDPStrategy):
    """Runs each training, validation and test step through a pipeline of stages, one per
    process (``trainer.devices`` of them).

    Args:
        schedule: ``GPipe`` (all forwards, then all backwards) or ``1F1B`` (one forward, one
            backward, less activation memory; needs ``micro_batches`` >= stages).
        micro_batches: each batch is split into this many micro-batches (a batch whose size
            they do not divide, the last of an epoch, uses the largest divisor below).
        process_group_backend: ``gloo`` (CPU) or ``nccl`` (GPUs).
        start_method: how Lightning starts the processes.
    """

    data_shards = (
        1  # every stage reads the whole batch (the first the inputs, the last the targets)
    )

    def __init__(
        self,
        schedule: Literal["GPipe", "1F1B"] = "GPipe",
        micro_batches: Annotated[int, Ge(1)] = 4,
        process_group_backend: Literal["gloo", "nccl"] = "gloo",
        start_method: Literal["spawn", "fork", "forkserver", "popen"] = "spawn",
    ) -> None:
        super().__init__(process_group_backend=process_group_backend, start_method=start_method)
        self.schedule = schedule
        self.micro_batches = micro_batches
        self._stage_module: nn.Module | None = None
        self._owners: list[nn.Module] = []  # each stage's layers, in order
        self._schedules: dict[int, Any] = {}
        self._grads: list[Tensor | None] = []  # the stage's gradients, from step to backward

    # -- no DistributedDataParallel: each process trains its own parameters -----------------

    def setup(self, trainer: Any) -> None:
        super().setup(trainer)
        if self._stage_module is None:  # not fitting: configure_ddp was not called
            self.configure_ddp()

    def configure_ddp(self) -> None:
        net = self.lightning_module.net
        parts = split_layers(network_layers(net), self.world_size)
        self._owners = [Stage(*part) for part in parts]
        self._stage_module = self._owners[self.global_rank]
        self._schedules = {}

    def backward(self, closure_loss: Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> Tensor:
        # the schedule ran the backward pass inside the training step; its gradients are added
        # now, as autograd would (Lightning may have zeroed the gradients in between, at the
        # first batch of an accumulation), scaled like Lightning scales an accumulated loss
        assert self._stage_module is not None
        scale = 1.0 / self.lightning_module.trainer.accumulate_grad_batches
        for param, grad in zip(self._stage_module.parameters(), self._grads, strict=True):
            if grad is not None:
                grad = grad * scale
                param.grad = grad if param.grad is None else param.grad + grad
        self._grads = []
        return closure_loss

    # -- steps -----------------------------------------------------------------------------

    def _pipeline(self, x: Tensor) -> Any:
        """The schedule for batches of ``x``'s size (built on first use)."""
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        batch_size = x.shape[0]
        n = max(d for d in range(1, self.micro_batches + 1) if batch_size % d == 0)
        if batch_size not in self._schedules:
            # the stages' input and output shapes, from one micro-batch through the network in
            # eval mode: the library's own shape inference runs a training-mode forward on
            # uninitialised tensors, which fills BatchNorm statistics with NaN
            net = self.lightning_module.net
            training = net.training
            net.eval()
            with torch.no_grad():
                acts = [x[: batch_size // n]]
                for owner in self._owners:
                    # a later stage's input needs a gradient, which goes back to the stage before
                    acts.append(owner(acts[-1]).requires_grad_(True))
            net.train(training)
            rank = self.global_rank
            assert self._stage_module is not None
            stage = PipelineStage(
                self._stage_module,
                rank,
                self.world_size,
                self.root_device,
                input_args=acts[rank],
                output_args=acts[rank + 1],
            )
            one_f_one_b = self.schedule == "1F1B" and n >= self.world_size
            kind = Schedule1F1B if one_f_one_b else ScheduleGPipe
            self._schedules[batch_size] = kind(stage, n, loss_fn=self.lightning_module.loss)
        return self._schedules[batch_size]

    def _train(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch  # (B, *input_shape), (B,)
        # the first stage's batch is the step's: its targets go to every process (each
        # process shuffles with its own seed)
        y = y.contiguous()
        dist.broadcast(y, src=0)
        schedule = self._pipeline(x)
        first, last = self.global_rank == 0, self.global_rank == self.world_size - 1
        args = (x,) if first else ()
        # the schedule's backward accumulates into .grad, which still holds the previous
        # step's gradients (Lightning zeroes them just before its backward, not after the step):
        # the schedule starts from none, and what was there is put back for Lightning
        assert self._stage_module is not None
        params = list(self._stage_module.parameters())
        before = [p.grad for p in params]
        for p in params:
            p.grad = None
        out = schedule.step(*args, target=y if last else None, losses=[] if last else None)
        self._grads = [p.grad for p in params]
        for p, grad in zip(params, before, strict=True):
            p.grad = grad
        model = self.lightning_module
        shape = (y.shape[0], model.net.layers()[-1].out_features)
        out = out.detach().float() if last else torch.empty(shape, device=self.root_device)
        dist.broadcast(out, src=self.world_size - 1)  # (B, num_outputs) on every process
        with torch.no_grad():
            return model.score(out, y, "train")

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, split: str) -> None:
        # Forward only, on the whole network in every process: the weights are gathered once
        # per evaluation (as for a checkpoint), so every process scores the same outputs.
        # (torch 2.13's forward-only eval schedule returned uninitialised outputs here.)
        if batch_idx == 0:
            self.gather_weights()
        x, y = batch
        model = self.lightning_module
        model.score(model.net(x), y, split)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.precision_plugin.train_step_context():
            return self._train(args[0])

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.precision_plugin.val_step_context():
            self._evaluate(args[0], args[1], "val")

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.precision_plugin.test_step_context():
            self._evaluate(args[0], args[1], "test")

    # -- checkpoints: one file with the full network --------------------------------------

    def gather_weights(self) -> None:
        """Every stage's weights and buffers (BatchNorm statistics), from the process that
        trains them, into every process's copy of the network."""
        with torch.no_grad():
            for rank, owner in enumerate(self._owners):
                for tensor in owner.state_dict().values():
                    dist.broadcast(tensor, src=rank)

    def on_train_end(self) -> None:
        # Lightning hands rank 0's weights back to the main process after fit (the network
        # the later stages of the run use): rank 0 must hold every stage's, not only its own
        super().on_train_end()
        self.gather_weights()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        self.gather_weights()
        return super().lightning_module_state_dict()

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        state = super().optimizer_state(optimizer)
        # each process holds the state of its own stage's parameters (same indices everywhere)
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, state["state"])
        merged: dict[Any, Any] = {}
        for part in parts:
            merged.update(part)
        return {**state, "state": merged}
