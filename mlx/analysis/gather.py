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
    return DataInfo(
        task=dm.task,
        columns=list(raw) if raw is not None else None,
        categorical=list(data.categorical or []),
        feature_names=list(dm.feature_names) if dm.feature_names else None,
        class_names=list(dm.class_names) if dm.class_names else None,
        input_shape=list(dm.input_shape),
        gradients=has_gradients(net),
    )


def raw_columns(dm: Any) -> Any:
    """The raw feature columns of the whole data set (a DataFrame), or None for images. A data
    module restored from the disk cache keeps only the encoding: the source is read again."""
    import pandas as pd

    features = dm._data().features
    if features is None:  # restored from input.cache=disk
        features = dm.source().features
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


def gather(net: Any, dm: Any, split: str = "test", seed: int = 0) -> Evidence:
    """``net``'s evidence on ``split`` of the data module ``dm`` (set up)."""
    x, y = (t.numpy() for t in dm.datasets[split].tensors)
    train_x, train_y = (t.numpy() for t in dm.datasets["train"].tensors)
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
    )
