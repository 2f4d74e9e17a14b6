"""The one way mlx reads a model file it is given: a Lightning checkpoint written by ``mlx run``
or an ONNX network written by the compress stage.

Loading is safe by default. A checkpoint is read with ``torch.load(weights_only=True)``: tensors
and plain containers only, so a file cannot run code while it loads (mlx stores nothing else in
its checkpoints). A file that needs arbitrary unpickling is refused with a message; the user may
allow it for a file they trust with ``trust_checkpoint=true`` (``--trust-checkpoint``). An ONNX
file is a protobuf and carries the mlx config that rebuilds its data in its metadata.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx.errors import MlxError, first_line

if TYPE_CHECKING:
    from torch import nn

CHECKPOINT_KEY = "mlx"  # the run's resolved config, inside every checkpoint mlx writes
ONNX_CONFIG_KEY = "mlx.config"  # ... and inside every ONNX network (metadata_props)
ONNX_INFO_KEY = "mlx.network"  # input shape, outputs and the stages that made the network


class CheckpointError(MlxError):
    """A model file that cannot be read safely, or is no model file at all."""


@dataclass
class Loaded:
    """A model file's contents.

    Attributes:
        path: the file.
        config: the mlx config stored with it (None for a foreign Lightning checkpoint).
        state_dict: the LightningModule's weights (a checkpoint), else None.
        network: the network itself (an ONNX file, run by ONNX Runtime), else None.
        info: for an ONNX file: ``input_shape``, ``num_outputs`` and ``stages``.
        epoch: the epoch a checkpoint was saved in (None for an ONNX file).
    """

    path: Path
    config: dict[str, Any] | None
    state_dict: dict[str, Any] | None = None
    network: nn.Module | None = None
    info: dict[str, Any] | None = None
    epoch: int | None = None


def load(path: str | Path, *, trust: bool = False) -> Loaded:
    """Read a checkpoint (``.ckpt``) or a compressed network (``.onnx``); raise
    :class:`CheckpointError` for a file that is missing, corrupt, foreign or unsafe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file ({path.resolve()}).")
    # the command line's check, the command and the train stage each ask for the same file in
    # one process: it is read once (again if it changes on disk)
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size, trust)


@functools.lru_cache(maxsize=1)
def _read(path: Path, mtime_ns: int, size: int, trust: bool) -> Loaded:
    if path.suffix == ".onnx":
        return _load_onnx(path)
    return _load_checkpoint(path, trust)


def _load_checkpoint(path: Path, trust: bool) -> Loaded:
    import pickle

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found is None:  # a damaged pickle rather than a refused object
            raise CheckpointError(_unreadable(path, e)) from None
        raise CheckpointError(
            f"{path} holds Python objects ({found.group(1)}) that only arbitrary unpickling can "
            "rebuild, and unpickling can run any code a file carries, so mlx refuses it: mlx's "
            "own checkpoints hold only tensors and plain data. If you trust this file and where "
            "it came from, allow it with --trust-checkpoint (or trust_checkpoint=true)."
        ) from None
    except Exception as e:  # not a zip or pickle at all, truncated, another format
        raise CheckpointError(_unreadable(path, e)) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no state_dict in it); give a .ckpt written "
            "by mlx run."
        )
    stored = ckpt.get(CHECKPOINT_KEY)
    config = stored.get("config") if isinstance(stored, dict) else None
    epoch = ckpt.get("epoch")
    return Loaded(
        path,
        config if isinstance(config, dict) else None,
        state_dict=ckpt["state_dict"],
        epoch=epoch if isinstance(epoch, int) else None,
    )


def _load_onnx(path: Path) -> Loaded:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable ONNX model ({first_line(e)}).") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_CONFIG_KEY not in meta or ONNX_INFO_KEY not in meta:
        raise CheckpointError(
            f"{path} is an ONNX model but not one written by mlx (it carries no mlx config)."
        )
    from mlx.compression.quantize import OnnxRuntimeNet

    info = json.loads(meta[ONNX_INFO_KEY])
    net = OnnxRuntimeNet(model.SerializeToString(), tuple(info["input_shape"]), info["num_outputs"])
    return Loaded(path, json.loads(meta[ONNX_CONFIG_KEY]), network=net, info=info)


def _unreadable(path: Path, e: BaseException) -> str:
    return (
        f"{path} is not a PyTorch checkpoint: torch cannot read it (damaged, cut short or in "
        f"another format; {type(e).__name__}). Give a .ckpt written by mlx run or a "
        "compressed/*.onnx written by the compress stage."
    )


def onnx_with_metadata(model_bytes: bytes, config: dict[str, Any], info: dict[str, Any]) -> bytes:
    """An ONNX model with the mlx config and network info that :func:`load` reads back."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    keep = [p for p in model.metadata_props if p.key not in (ONNX_CONFIG_KEY, ONNX_INFO_KEY)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in ((ONNX_CONFIG_KEY, config), (ONNX_INFO_KEY, info)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, default=str)
    return model.SerializeToString()


def restore(model: Any, loaded: Loaded, data: str = "the data") -> None:
    """Put a loaded file's network into the run's LightningModule: the checkpoint's weights, or
    the ONNX network in place of ``model.net``. ``data`` says what the network was built for,
    for the message when the weights do not fit it."""
    if loaded.network is not None:
        model.net = loaded.network
        return
    assert loaded.state_dict is not None
    own = model.state_dict()
    for key, tensor in loaded.state_dict.items():
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{loaded.path} holds a network for other data: its weight {key} has shape "
                f"{tuple(tensor.shape)}, but {data} need(s) {tuple(own[key].shape)}. Evaluate it "
                "on the data it was trained on (leave data unset) or on data of the same shape "
                "and classes."
            )
    try:
        model.load_state_dict(loaded.state_dict)
    except RuntimeError as e:
        raise CheckpointError(
            f"{loaded.path} holds weights of another network than the one built here "
            f"({first_line(e)})."
        ) from None


def network_of(loaded: Loaded) -> nn.Module:
    """The network of a loaded file, rebuilt from the config it carries when it is a checkpoint."""
    if loaded.network is not None:
        return loaded.network
    if loaded.config is None:
        raise CheckpointError(f"{loaded.path} is not an mlx checkpoint (it holds no mlx config).")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(loaded.config)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model)(
        input_shape=dm.input_shape, num_outputs=dm.num_outputs, task=dm.task
    )
    restore(model, loaded)
    return model.net
