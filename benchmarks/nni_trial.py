"""One trial of NNI's own HPO (see benchmarks/nni_hpo.py): a tiny MLP on scikit-learn's digits,
trained with the ``lr`` and ``hidden`` NNI proposes, its validation accuracy reported to NNI.

The training itself takes well under 0.2 s; a trial's time is NNI's process start-up.
"""

from __future__ import annotations

import nni
import torch
from sklearn.datasets import load_digits
from torch import nn

STEPS = 60  # full-batch Adam steps
VAL = 297  # the last 297 of 1797 digits, after a fixed shuffle


def main() -> None:
    params = nni.get_next_parameter() or {}  # {} when run outside an experiment
    lr = float(params.get("lr", 0.01))
    hidden = int(params.get("hidden", 64))
    torch.set_num_threads(1)
    torch.manual_seed(0)

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)  # (N, 64), pixels in [0, 1]
    y = torch.tensor(y)  # (N,)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:-VAL], order[-VAL:]

    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(STEPS):
        loss = nn.functional.cross_entropy(model(x[train]), y[train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val_acc = (model(x[val]).argmax(dim=1) == y[val]).float().mean().item()
    nni.report_final_result(val_acc)


if __name__ == "__main__":
    main()
