"""Per-process model-state bytes, against sizes known by hand."""

from __future__ import annotations

import torch

from mlx.engine.memory import grads_bytes, optimizer_bytes, params_bytes


def _stepped(optimizer_cls: type[torch.optim.Optimizer]) -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3))  # 283 parameters
    opt = optimizer_cls(net.parameters(), lr=0.1)
    net(torch.randn(4, 10)).sum().backward()
    opt.step()
    return net, opt


def test_plain_module_with_adam() -> None:
    net, opt = _stepped(torch.optim.Adam)
    assert params_bytes(net) == 283 * 4
    assert grads_bytes(net) == 283 * 4
    # two moments per parameter, and a 4-byte float step per parameter tensor (4 tensors)
    assert optimizer_bytes(net, opt) == 2 * 283 * 4 + 4 * 4


def test_sgd_without_momentum_holds_no_state() -> None:
    net, opt = _stepped(torch.optim.SGD)
    assert optimizer_bytes(net, opt) == 0
    net.zero_grad(set_to_none=True)
    assert grads_bytes(net) == 0


def test_views_of_one_buffer_are_counted_once() -> None:
    # ZeRO 1/2 keep the module's parameters as views into one flat buffer
    flat = torch.zeros(100)
    net = torch.nn.Module()
    net.a = torch.nn.Parameter(flat[:60].view(6, 10))
    net.b = torch.nn.Parameter(flat[60:])
    assert params_bytes(net) == 400
    net.c = net.a  # a shared (tied) parameter
    assert params_bytes(net) == 400
