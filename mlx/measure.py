"""What a network costs: parameters, multiply-accumulates (MACs), bytes on disk and CPU latency.

One meter of each for all of mlx: the run record's ``model/params`` and ``model/macs``, a NAS
budget's candidates, and the compress stage's table are measured by these functions. Parameters
are all of a network's parameters, trainable or not. MACs and a NAS candidate's latency are for
one example (a batch of 1) in eval mode; :class:`LatencyMeter` times fixed batch sizes with a
fixed thread count, after ``warmup`` untimed calls, over ``repeats`` timed calls (p50 and p95 in
milliseconds). torch is imported inside the functions only.
"""

from __future__ import annotations

import copy
import io
import time
from typing import TYPE_CHECKING, Annotated

from annotated_types import Ge, MinLen

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# forward calls before timing one example, so that one-off work (allocations, kernel selection)
# is not timed
WARMUP = 3


def count_params(net: nn.Module) -> int:
    """Weights and biases of a network: its parameters, or the weights inside the graph of a
    network that keeps them as a buffer (an int8 ``OnnxRuntimeNet`` has ``num_weights``)."""
    inner = getattr(net, "net", net)  # a LightningModule wraps the network as .net
    if callable(getattr(inner, "num_weights", None)):
        return int(inner.num_weights())
    return sum(p.numel() for p in net.parameters())


def model_cost(net: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Parameters (all of them, trainable or not, as in every mlx record) and multiply-accumulates (MACs) of one forward pass on one example.

    MACs are counted by torch's ``FlopCounterMode`` (matrix products and convolutions; one MAC
    is two FLOPs) on a batch of 1 in eval mode; the network keeps its train/eval mode.

    Args:
        net: the network.
        input_shape: shape of one example, without the batch dimension.

    Returns:
        ``{"params": ..., "macs": ...}``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in net.parameters())
    x = _example(net, input_shape)
    training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(training)
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2)}


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """MACs of one forward pass on one example; None when the ops cannot be counted (the
    counter sees only float matmuls and convolutions, not int8 kernels)."""
    try:
        macs = model_cost(net, tuple(input_shape))["macs"]
    except Exception:  # noqa: BLE001 (an int8 or foreign module the counter cannot run)
        return None
    return macs or None


def serialized_bytes(net: nn.Module) -> int:
    """Bytes of ``torch.save(net)``: what the model costs on disk."""
    import torch

    buf = io.BytesIO()
    torch.save(net, buf)
    return buf.getbuffer().nbytes


def latency_ms(net: nn.Module, input_shape: tuple[int, ...], repeats: int = 20) -> float:
    """Median CPU time of one forward pass on one example, in milliseconds, timed by
    :class:`LatencyMeter` at batch size 1 with torch's current thread count.

    A network on another device is timed on a CPU copy; the network keeps its train/eval mode.

    Args:
        net: the network.
        input_shape: shape of one example, without the batch dimension.
        repeats: timed forward passes; the median is robust to a few slow ones.
    """
    import torch

    if repeats < 1:
        raise ValueError(f"latency_ms: repeats={repeats} must be at least 1.")
    on_cpu = all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
    model = net if on_cpu else copy.deepcopy(net).cpu()
    meter = LatencyMeter(
        threads=torch.get_num_threads(), warmup=WARMUP, repeats=repeats, batch_sizes=[1]
    )
    return meter(model, _example(model, input_shape))["latency_b1_p50_ms"]


class LatencyMeter:
    """CPU latency of a network at fixed batch sizes.

    Args:
        threads: torch intra-op threads while timing (restored afterwards).
        warmup: untimed calls before timing.
        repeats: timed calls per batch size.
        batch_sizes: the batch sizes to time.
    """

    def __init__(
        self,
        threads: Annotated[int, Ge(1)] = 1,
        warmup: Annotated[int, Ge(0)] = 5,
        repeats: Annotated[int, Ge(3)] = 30,
        batch_sizes: Annotated[list[Annotated[int, Ge(1)]], MinLen(1)] = (1, 64),
    ) -> None:
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.batch_sizes = [int(b) for b in batch_sizes]

    def __call__(self, net: nn.Module, example: Tensor) -> dict[str, float]:
        """``latency_b<N>_p50_ms`` and ``_p95_ms`` per batch size; ``example`` is a batch of
        real inputs, repeated to reach each size."""
        import torch

        was_training = net.training
        net.eval()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        out: dict[str, float] = {}
        try:
            with torch.inference_mode():
                for b in self.batch_sizes:
                    reps = -(-b // example.shape[0])
                    x = example.repeat(reps, *[1] * (example.dim() - 1))[:b].contiguous()
                    for _ in range(self.warmup):
                        net(x)
                    times = []
                    for _ in range(self.repeats):
                        t0 = time.perf_counter()
                        net(x)
                        times.append((time.perf_counter() - t0) * 1000)
                    times.sort()
                    out[f"latency_b{b}_p50_ms"] = times[len(times) // 2]
                    out[f"latency_b{b}_p95_ms"] = times[
                        min(len(times) - 1, round(0.95 * (len(times) - 1)))
                    ]
        finally:
            torch.set_num_threads(before)
            net.train(was_training)
        return out


def _example(net: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of one zero example on the network's device, in its floating-point type."""
    import torch

    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(
            f"input_shape={shape} must be the positive sizes of one example, e.g. (1, 8, 8)."
        )
    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, *shape, device=device, dtype=dtype)
