"""Reading the mlx config that travels inside a Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx.engine.callbacks import CHECKPOINT_KEY


def saved_config(path: str | Path) -> dict[str, Any] | None:
    """The resolved config stored in a checkpoint by mlx, or None for a foreign checkpoint."""
    import torch

    # our own checkpoints hold plain containers next to the tensors; weights_only=False is
    # needed for Lightning's loop state as well
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    stored = ckpt.get(CHECKPOINT_KEY)
    return stored["config"] if isinstance(stored, dict) and "config" in stored else None
