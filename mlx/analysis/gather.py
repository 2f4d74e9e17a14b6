"""The evidence the analyses read, gathered from a network and the run's data module."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlx.analysis.evidence import DataInfo, Evidence

BATCH = 512  # examples per forward pass when the analyses query the model


def has_gradients(net: Any) -> bool:
    """Whether gradients flow through ``net``: a torch network with parameters (an ONNX graph
    run by ONNX Runtime has none)."""
    return any(True for _ in net.parameters())


def data_info(dm: Any, net: Any) -> DataInfo:
    """What the analyses' checks need, from a set-up data module and the network."""
    data = dm._data()
    raw = raw_columns(dm)
    train_x = dm.datasets["train"].tensors[0]
    return DataInfo(
        task=dm.task,
        columns=list(raw) if raw is not None else None,
        categorical=list(data.categorical or []),
        feature_names=list(dm.feature_names) if dm.feature_names else None,
        class_names=list(dm.class_names) if dm.class_names else None,
        input_shape=list(dm.input_shape),
        gradients=has_gradients(net),
        value_range=(float(train_x.min()), float(train_x.max())),
        split_sizes={split: len(rows) for split, rows in dm.indices.items()},
        numeric=numeric_columns(dm),
    )


def numeric_columns(dm: Any) -> list[bool] | None:
    """Which encoded columns are numeric (tabular data: False for one-hot columns), or None
    for images."""
    if dm.preprocessor is None:
        return None
    return [name.startswith("numeric__") for name in dm.preprocessor.get_feature_names_out()]


def refitter(model: Any, dm: Any, build: Any, epochs: int, seed: int) -> Any:
    """``fit(x, y, epochs=None) -> net``: a fresh network from ``build(input_shape=...,
    num_outputs=...)`` (the run's model config) trained on the encoded rows ``(x, y)`` with the
    run's LitModel's optimizer, learning rate and scheduler, ``epochs`` epochs unless told
    otherwise, seeded by ``seed``; returned in eval mode."""

    def fit(x: np.ndarray, y: np.ndarray, epochs: int | None = None) -> Any:
        import torch
        import torch.nn.functional as F
        from torch.utils.data import DataLoader, TensorDataset

        from mlx.compression.pipeline import train_net

        torch.manual_seed(seed)
        net = build(input_shape=tuple(dm.input_shape), num_outputs=int(dm.num_outputs))
        target = torch.as_tensor(np.asarray(y))
        rows = TensorDataset(torch.as_tensor(np.asarray(x, dtype=np.float32)), target)
        loader = DataLoader(
            rows,
            batch_size=dm.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )

        def loss(n: Any, xb: Any, yb: Any) -> Any:
            if dm.task == "classification":
                return F.cross_entropy(n(xb), yb)
            return F.mse_loss(n(xb).squeeze(-1), yb)

        train_net(net, model, loader, fit_epochs if epochs is None else epochs, loss)
        return net.eval()

    fit_epochs = int(epochs)
    return fit


def raw_columns(dm: Any) -> Any:
    """The raw feature columns of the whole data set (a DataFrame), or None for images. A data
    module restored from the disk cache keeps only the encoding: the source is read again."""
    import pandas as pd

    features = dm.raw_features()
    return features if isinstance(features, pd.DataFrame) else None


def predictor(net: Any, task: str) -> Any:
    """``x -> outputs`` for ``net``: class probabilities (N, K) or predictions (N,), in batches,
    without gradients. Floating inputs reach the network as float32 (what it takes); inputs of
    other dtypes reach it as they are (the random attacks see what the network does then)."""
    import torch

    def predict(x: np.ndarray) -> np.ndarray:
        net.eval()
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                batch = torch.as_tensor(np.asarray(x[start : start + BATCH]))
                if batch.is_floating_point():
                    batch = batch.float()
                out = net(batch)
                if task == "classification":
                    out = torch.softmax(out.float(), dim=1)  # (B, K)
                else:
                    out = out.float().reshape(len(batch), -1)[:, 0]  # (B,)
                parts.append(out.numpy())
        if not parts:
            return np.zeros((0,), dtype=np.float32)
        return np.concatenate(parts)

    return predict


def gather(
    net: Any, dm: Any, split: str = "test", seed: int = 0, fit: Any = None, build: Any = None
) -> Evidence:
    """``net``'s evidence on ``split`` of the data module ``dm`` (set up); ``fit`` trains fresh
    networks for the analyses that need them (see :func:`refitter`) and ``build`` makes an
    untrained one."""
    x, y = (t.numpy() for t in dm.datasets[split].tensors)
    train_x, train_y = (t.numpy() for t in dm.datasets["train"].tensors)
    val_x, val_y = (t.numpy() for t in dm.datasets["val"].tensors)
    predict = predictor(net, dm.task)
    raw = raw_columns(dm)
    rows = dm.indices
    return Evidence(
        task=dm.task,
        x=x,
        y=y,
        outputs=predict(x),
        predict=predict,
        raw=raw.iloc[rows[split]].reset_index(drop=True) if raw is not None else None,
        feature_names=list(dm.feature_names) if dm.feature_names else None,
        class_names=list(dm.class_names) if dm.class_names else None,
        net=net if has_gradients(net) else None,
        seed=seed,
        train=(train_x, train_y),
        train_raw=raw.iloc[rows["train"]].reset_index(drop=True) if raw is not None else None,
        val=(val_x, val_y),
        fit=fit,
        build=build,
        numeric=numeric_columns(dm),
    )
