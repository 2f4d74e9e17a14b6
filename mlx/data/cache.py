"""The disk cache of the deterministic input work: loading, splitting and encoding a data set.

An entry is one file, ``<cache_dir>/<key>.pt``, holding what :meth:`ArrayDataModule.setup`
computes: the encoded tensors of each split, each split's row numbers, and plain metadata (the
task, class and feature names, the image channel statistics). The key hashes everything the
result depends on: the source's class and arguments (and, for a source that reads a file, that
file's size and modification time), the split fractions and seed, the standardize flag, and the
code that computes it (this package's data modules). A change to any of them gives another key,
so a stale entry is never read; old entries stay until the folder is deleted.

**Safe to read.** An entry holds only tensors, strings, numbers, lists and dicts, written with
``torch.save`` and read with ``torch.load(weights_only=True)``, whose unpickler builds those
types and nothing else: a file planted in the cache folder cannot run code. The fitted
scikit-learn encoder of a table is a Python object that only a full pickle could store, so it is
not cached (``ArrayDataModule.preprocessor`` is None after a hit), nor is the raw, unencoded
data. A file that cannot be read or does not hold a whole entry is a miss: it is logged,
recomputed and replaced.

An entry is written to a temporary file in the same folder and renamed into place, so a reader
sees a whole entry or none, and two runs that write the same entry at once both succeed (the
last rename wins; both wrote the same content). Random augmentations are not cached: they are
drawn per batch from the cached tensors.

This module imports torch; ``mlx.data.datamodule`` imports it on first use of the disk cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mlx.data.sources import Loaded

if TYPE_CHECKING:
    from mlx.data.datamodule import ArrayDataModule

log = logging.getLogger(__name__)

# the modules whose code computes an entry: a change to any of them invalidates every entry
_CODE = ("sources.py", "datamodule.py", "cache.py")
FORMAT = 2  # 1 was a pickle, which mlx no longer reads
SPLITS = ("train", "val", "test")


def code_version() -> str:
    """A hash of the code that computes a cache entry."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _describe(value: Any) -> Any:
    if isinstance(value, Path):
        stat = value.stat() if value.exists() else None
        return (str(value), stat and stat.st_size, stat and stat.st_mtime_ns)
    return repr(value)


def cache_key(source: Any, settings: dict[str, Any]) -> str:
    """The key of the entry for ``source`` under the data module's ``settings``."""
    parts = {
        "source": type(source).__module__ + "." + type(source).__qualname__,
        "args": {k: _describe(v) for k, v in sorted(vars(source).items())},
        "settings": {k: repr(v) for k, v in sorted(settings.items())},
        "code": code_version(),
    }
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _problem(entry: Any) -> str | None:
    """What keeps ``entry`` from being a whole entry of this format, or None."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return f"not an entry of format {FORMAT}"
    for split in SPLITS:
        pair = entry.get("tensors", {}).get(split)
        rows = entry.get("indices", {}).get(split)
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(t, torch.Tensor) for t in pair)
            and len(pair[0]) == len(pair[1])
            and isinstance(rows, torch.Tensor)
            and len(rows) == len(pair[1])
        ):
            return f"no whole {split} split"
    if entry.get("task") not in ("classification", "regression"):
        return "no task"
    return None


def load(folder: str, key: str) -> dict[str, Any] | None:
    """The entry ``key`` from ``folder``, or None (a miss, to recompute), logging which.

    The file is read with ``torch.load(weights_only=True)``: it can hold tensors and plain
    Python values only, so reading it never runs code from it.
    """
    path = Path(folder) / f"{key}.pt"
    if not path.is_file():
        log.info("input cache miss: %s", path)
        return None
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle: logged below
            warnings.simplefilter("ignore")
            entry = torch.load(path, map_location="cpu", weights_only=True)
        problem = _problem(entry)
    except Exception as e:  # unreadable, truncated or not an entry: recompute and replace it
        problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if problem is not None:
        log.warning("input cache entry %s cannot be used (%s): recomputing it", path, problem)
        return None
    log.info("input cache hit: %s", path)
    return entry


def save(folder: str, key: str, entry: dict[str, Any]) -> Path:
    """Write the entry atomically (temporary file, then rename) and return its path.

    ``entry`` must hold only what :func:`load` accepts: tensors, strings, numbers, None, and
    lists and dicts of them, with ``format``, ``task`` and the ``tensors`` and ``indices`` of
    every split.
    """
    entry = {**entry, "format": FORMAT}
    if (problem := _problem(entry)) is not None:
        raise ValueError(f"not a cache entry: {problem}")
    path = Path(folder) / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("input cache written: %s", path)
    return path


def setup(dm: ArrayDataModule) -> None:
    """Set up ``dm``'s splits from its disk cache entry, or compute them and write the entry.

    After a hit the fitted ``preprocessor`` and the raw features (``Loaded.features``) are None:
    the entry holds the encoded splits and plain metadata only.
    """
    folder = str(dm.loader.cache_dir)
    settings = {
        "val_fraction": dm.val_fraction,
        "test_fraction": dm.test_fraction,
        "split_seed": dm.split_seed,
        "standardize": dm.standardize,
    }
    key = cache_key(dm.source, settings)
    entry = load(folder, key)
    if entry is None:
        dm._compute()
        data = dm._data()
        entry = {
            "tensors": {k: list(d.tensors) for k, d in dm.datasets.items()},
            "indices": {k: torch.from_numpy(v) for k, v in dm.indices.items()},
            "feature_names": dm.feature_names,
            "channel_stats": dm.channel_stats,
            "task": data.task,
            "class_names": data.class_names,
            "categorical": data.categorical,
        }
        save(folder, key, entry)
        return
    dm.datasets = {k: TensorDataset(*t) for k, t in entry["tensors"].items()}
    dm.indices = {k: v.numpy() for k, v in entry["indices"].items()}
    dm.feature_names = entry.get("feature_names")
    dm.channel_stats = entry.get("channel_stats")
    # the splits partition the rows: the whole target is put back together from them
    y = {k: d.tensors[1].numpy() for k, d in dm.datasets.items()}
    target = np.empty(sum(map(len, y.values())), dtype=y["train"].dtype)
    for split, rows in dm.indices.items():
        target[rows] = y[split]
    dm._loaded = Loaded(
        None,  # type: ignore[arg-type]  # the raw features are not cached, their encoding is
        target,
        entry["task"],
        entry.get("class_names"),
        entry.get("categorical") or [],
    )
