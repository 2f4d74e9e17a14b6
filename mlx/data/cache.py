"""The disk cache of the deterministic input work: loading, splitting and encoding a data set.

An entry is one file, ``<cache_dir>/<key>.pt``, holding what :meth:`ArrayDataModule.setup`
computes (the encoded tensors of each split, the split's row numbers, the fitted encoder). The
key hashes everything the result depends on: the source's class and arguments (and, for a
source that reads a file, that file's size and modification time), the split fractions and
seed, the standardize flag, and the code that computes it (this package's data modules). A
change to any of them gives another key, so a stale entry is never read; old entries stay until
the folder is deleted.

An entry is written to a temporary file in the same folder and renamed into place, so a reader
sees a whole entry or none, and two runs that write the same entry at once both succeed (the
last rename wins; both wrote the same content). Random augmentations are not cached: they are
drawn per batch from the cached tensors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# the modules whose code computes an entry: a change to any of them invalidates every entry
_CODE = ("sources.py", "datamodule.py", "cache.py")


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


def load(folder: str, key: str) -> dict[str, Any] | None:
    """The entry ``key`` from ``folder``, or None (a miss), logging which."""
    path = Path(folder) / f"{key}.pt"
    if not path.is_file():
        log.info("input cache miss: %s", path)
        return None
    with path.open("rb") as f:
        entry = pickle.load(f)  # our own entry, written by save() below
    log.info("input cache hit: %s", path)
    return entry


def save(folder: str, key: str, entry: dict[str, Any]) -> Path:
    """Write the entry atomically (temporary file, then rename) and return its path."""
    path = Path(folder) / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("input cache written: %s", path)
    return path
