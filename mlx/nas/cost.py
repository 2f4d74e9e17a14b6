"""What a network costs: parameters (all of them), multiply-accumulates and CPU latency for one
example.

A NAS budget compares candidates by these numbers, so each is measured the same way for every
network: one example (a batch of 1) in eval mode. This module imports torch only inside its
functions and never NNI, so cost checks stay cheap to import.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

# forward calls before timing, so that one-off work (allocations, kernel selection) is not timed
WARMUP = 3


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


def latency_ms(net: nn.Module, input_shape: tuple[int, ...], repeats: int = 20) -> float:
    """Median CPU time of one forward pass on one example, in milliseconds.

    The pass runs in eval mode under ``torch.inference_mode`` after a few warm-up calls; a
    network on another device is timed on a CPU copy, and keeps its train/eval mode.

    Args:
        net: the network.
        input_shape: shape of one example, without the batch dimension.
        repeats: timed forward passes; the median is robust to a few slow ones.

    Returns:
        The median latency in milliseconds.
    """
    import torch

    if repeats < 1:
        raise ValueError(f"latency_ms: repeats={repeats} must be at least 1.")
    on_cpu = all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
    model = net if on_cpu else copy.deepcopy(net).cpu()
    x = _example(model, input_shape)
    training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for _ in range(WARMUP):
                model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    finally:
        model.train(training)
    return statistics.median(times) * 1000.0


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


__all__ = ["latency_ms", "model_cost"]
