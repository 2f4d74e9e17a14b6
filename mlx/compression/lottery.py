"""Lottery tickets: iterative magnitude pruning with weight rewinding (Frankle & Carbin 2019;
Frankle et al. 2019 for rewinding to an early epoch instead of initialisation).

Each round trains the network, removes the smallest-magnitude share of the weights that are
left (one global ranking over every Linear and Conv weight), and rewinds the survivors to their
early values. The masks are unstructured: the network keeps its shape and gains zeros, which
makes it compressible on disk, not faster on dense kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Interval

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    import torch
    from torch import nn


class LotteryTicket:
    """Find a sparse subnetwork that trains as well as the dense one from the same start.

    Round ``k`` trains the current ticket for ``epochs_per_round``, records its metrics at its
    sparsity, prunes ``rate`` of the remaining weights and rewinds the survivors (weights,
    biases, batch-norm statistics) to the chosen state. The last ticket trains once more, its
    metrics are recorded, and its masks become permanent, so after ``rounds`` rounds a share
    ``1 - (1 - rate) ** rounds`` of the Linear and Conv weights is zero.

    Args:
        rounds: pruning rounds.
        rate: share of the remaining weights each round removes.
        epochs_per_round: training epochs of each ticket (and of the final one).
        rewind: ``init`` rewinds to the weights before training, ``early`` to those after the
            first epoch (late rewinding, more stable for deeper networks).
    """

    name = "lottery"

    def __init__(
        self,
        rounds: Annotated[int, Ge(1)] = 3,
        rate: Annotated[float, Interval(gt=0, lt=1)] = 0.2,
        epochs_per_round: Annotated[int, Ge(1)] = 2,
        rewind: Literal["init", "early"] = "init",
    ) -> None:
        self.rounds = rounds
        self.rate = rate
        self.epochs_per_round = epochs_per_round
        self.rewind = rewind
        self._details: dict[str, Any] = {}

    def check(self, given: StageInput) -> None:
        self._check_settings()
        if "quantize" in given.before:
            raise CompressionError(
                "lottery before quantize: lottery trains and rewinds float weights, which quantize has replaced; list lottery first (compression=[lottery,quantize])."
            )
        if "prune" in given.before:
            # pruning reshapes the layers, so the saved initial weights no longer fit them
            raise CompressionError(
                "lottery must come before prune: lottery rewinds to the network's weights at initialisation, and prune has changed the layers' shapes since; list lottery first (compression=[lottery,prune])."
            )
        if not _prunable(given.net):
            raise CompressionError(
                f"lottery prunes the weights of Linear and Conv layers, and the {type(given.net).__name__} has none."
            )

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        from torch.nn.utils import prune

        self._check_settings()
        state = self._rewind_state(net, tools)
        layers = _prunable(net)
        records: list[dict[str, Any]] = []
        for k in range(self.rounds):
            net = tools.fine_tune(net, self.epochs_per_round)
            records.append(self._record(k, net, layers, tools))
            prune.global_unstructured(
                [(m, "weight") for m in layers],
                pruning_method=prune.L1Unstructured,
                amount=self.rate,
            )
            _load_rewound(net, state)
        net = tools.fine_tune(net, self.epochs_per_round)
        records.append(self._record(self.rounds, net, layers, tools))
        for m in layers:
            prune.remove(m, "weight")
        self._details = {
            "rate": self.rate,
            "rewind": self.rewind,
            "epochs_per_round": self.epochs_per_round,
            "sparsity": _sparsity(layers),
            "rounds": records,
        }
        return net

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _check_settings(self) -> None:
        """What can be wrong without looking at a network."""
        if not 0 < self.rate < 1:
            raise CompressionError(
                f"compression.lottery.rate={self.rate} must be in (0, 1): the share of the remaining weights each round removes."
            )
        if self.rounds < 1:
            raise CompressionError(f"compression.lottery.rounds={self.rounds} must be at least 1.")
        if self.epochs_per_round < 1:
            raise CompressionError(
                f"compression.lottery.epochs_per_round={self.epochs_per_round} must be at least 1: a ticket is judged after training."
            )
        if self.rewind not in ("init", "early"):
            raise CompressionError(
                f"compression.lottery.rewind={self.rewind!r} must be init or early."
            )

    def _rewind_state(self, net: nn.Module, tools: Tools) -> dict[str, torch.Tensor]:
        """The state to rewind to, checked against ``net`` before any training."""
        state = tools.initial_state if self.rewind == "init" else tools.early_state
        if state is None:
            raise CompressionError(
                "early rewinding needs the weights after the first epoch, which this run did not keep; use compression.lottery.rewind=init."
                if self.rewind == "early"
                else "rewinding needs the network's weights at initialisation, which this run did not keep."
            )
        own = net.state_dict()
        missing = sorted(set(own) - set(state))
        unknown = sorted(set(state) - set(own))
        reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unknown or reshaped:
            found = "; ".join(
                f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for what, keys in (
                    ("not saved", missing),
                    ("not in the network", unknown),
                    ("of another shape", reshaped),
                )
                if keys
            )
            raise CompressionError(
                f"lottery rewinds to the {self.rewind} weights of the trained network, which do not fit this one ({found}); a stage before lottery changed the network: lottery must come before prune, distill and pca."
            )
        return state

    def _record(
        self, k: int, net: nn.Module, layers: list[nn.Module], tools: Tools
    ) -> dict[str, Any]:
        """The trained ticket's metrics after ``k`` pruning rounds."""
        metrics = tools.evaluate(net)
        sparsity = _sparsity(layers)
        tools.log(
            f"lottery round {k}/{self.rounds}: sparsity {sparsity:.3f}, "
            + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        )
        return {"round": k, "sparsity": sparsity, **metrics}


def _prunable(net: nn.Module) -> list[nn.Module]:
    """The Linear and Conv layers whose weights the global ranking covers."""
    from torch import nn

    return [m for m in net.modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)]


def _load_rewound(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``net``, the weights of masked layers into their ``weight_orig``,
    so the masks stay and the survivors take their rewound values."""
    import torch

    own = net.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            target = own.get(key)
            if target is None:  # a masked weight: ``weight`` is now ``weight_orig * weight_mask``
                target = own[key + "_orig"]
            target.copy_(value)
    # the forward pre-hook recomputes ``weight`` from the rewound ``weight_orig`` on the next
    # call; recompute it now too, so the network reads rewound before its first forward
    for module in net.modules():
        mask = getattr(module, "weight_mask", None)
        if mask is not None:
            module.weight = module.weight_orig * mask


def _sparsity(layers: list[nn.Module]) -> float:
    """Share of zero weights over ``layers`` (masked ones, while the masks are on)."""
    zeros = sum(int((getattr(m, "weight_mask", m.weight) == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return zeros / total


__all__ = ["LotteryTicket"]
