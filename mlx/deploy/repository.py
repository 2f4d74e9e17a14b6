"""The model repository: ``<repo>/<name>/<version>/`` folders, each one exported model version.

Versions are positive integers; a new export takes the next one. A version folder appears whole
or not at all: it is written under a hidden temporary name and renamed into place. This module
imports nothing heavy.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from mlx.deploy.signature import NAME, ModelLoadError


def versions(repo: Path, name: str) -> list[int]:
    """The versions of model ``name`` in ``repo``, ascending."""
    folder = Path(repo) / name
    if not folder.is_dir():
        return []
    return sorted(
        int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0
    )


def models(repo: Path) -> dict[str, list[int]]:
    """Every model in ``repo`` with its versions (models without a version are left out)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ModelLoadError(
            f"{repo} is not a folder: give a model repository (<repo>/<name>/<version>/)."
        )
    found = {}
    for p in sorted(repo.iterdir()):
        if p.is_dir() and NAME.match(p.name) and (vs := versions(repo, p.name)):
            found[p.name] = vs
    return found


def publish(repo: Path, name: str, write: Callable[[Path, int], None]) -> tuple[Path, int]:
    """Write a new version of ``name``: ``write(folder, version)`` fills a temporary folder,
    which is then renamed to ``<repo>/<name>/<version>`` (the next free version). When
    ``write`` raises, nothing is left behind."""
    parent = Path(repo) / name
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".export-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for _ in range(100):
            version = (versions(repo, name) or [0])[-1] + 1
            write(tmp, version)
            target = parent / str(version)
            try:
                os.rename(tmp, target)  # fails when another export took this version meanwhile
            except OSError:
                if not target.exists():
                    raise
                for child in tmp.iterdir():
                    child.unlink() if child.is_file() else shutil.rmtree(child)
                continue
            return target, version
        raise RuntimeError(f"could not claim a version folder under {parent}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve(spec: str) -> tuple[Path, str, int | None]:
    """``REPO/NAME`` or ``REPO/NAME:VERSION`` (or ``REPO/NAME/VERSION``) -> (repo, name,
    version or None for the latest)."""
    has_colon = ":" in Path(spec).name
    path, _, pinned = spec.rpartition(":") if has_colon else (spec, "", "")
    if has_colon and not pinned:
        raise ModelLoadError(f"{spec}: give a version after ':' (NAME:VERSION), or drop the ':'.")
    p = Path(path)
    if p.name.isdigit() and not pinned:
        pinned, p = p.name, p.parent
    version = None
    if pinned:
        if not pinned.isdigit() or int(pinned) < 1:
            raise ModelLoadError(f"{spec}: the version after ':' must be a positive integer.")
        version = int(pinned)
    return p.parent, p.name, version
