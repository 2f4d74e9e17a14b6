"""What a compressed network costs: size in parameters, MACs and bytes, and CPU latency.

Latency is timed with the thread count fixed (``threads``), after ``warmup`` untimed calls, over
``repeats`` timed calls at each batch size; p50 and p95 are reported in milliseconds.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Annotated

from annotated_types import Ge, MinLen

if TYPE_CHECKING:
    from torch import Tensor, nn


def count_params(net: nn.Module) -> int:
    """Weights and biases of a network: its parameters, or the weights inside the graph of a
    network that keeps them as a buffer (an int8 ``OnnxRuntimeNet`` has ``num_weights``)."""
    inner = getattr(net, "net", net)  # a LightningModule wraps the network as .net
    if callable(getattr(inner, "num_weights", None)):
        return int(inner.num_weights())
    return sum(p.numel() for p in net.parameters())


def serialized_bytes(net: nn.Module) -> int:
    """Bytes of ``torch.save(net)``: what the model costs on disk."""
    import torch

    buf = io.BytesIO()
    torch.save(net, buf)
    return buf.getbuffer().nbytes


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """MACs of one forward pass on one example; None when the ops cannot be counted (the
    counter sees only float matmuls and convolutions, not int8 kernels)."""
    try:
        from mlx.nas.cost import model_cost

        macs = model_cost(net, tuple(input_shape))["macs"]
    except Exception:  # noqa: BLE001 (an int8 or foreign module the counter cannot run)
        return None
    return macs or None


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
