"""The sweep's ledger: an Optuna study in an SQLite file in the sweep folder.

Every trial's parameters, state, values, intermediate values and error live there, written by
Optuna as they happen, so a sweep killed at any point resumes from it. A fingerprint of the
question (search space, strategy, estimation, objectives, fixed overrides) is stored with the
study; resuming with another question is refused, saying what changed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from mlx.errors import MlxError

LEDGER_FILE = "sweep.db"


class LedgerError(MlxError):
    """A ledger that cannot be resumed; nothing was written."""


def ledger_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def rdb_storage(url: str) -> Any:
    """Optuna's RDB storage on ``url``, patient with SQLite's lock (parallel trials write too)."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def inspect_ledger(path: Path, study: str) -> bool:
    """Whether ``path`` holds a resumable ledger of ``study``; ``False`` if there is no file.

    Reads the file read-only first, so that a corrupt file or another sweep's ledger is refused
    before Optuna (which would create or migrate tables) touches it.

    Raises:
        LedgerError: the file is not an Optuna ledger, or holds other studies only.
    """
    if not path.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in con.execute("select name from sqlite_master where type='table'")
            }
            if not {"studies", "trials", "version_info"} <= tables:
                raise LedgerError(
                    f"{path} is not an mlx sweep ledger (no Optuna tables); refusing to resume. Move it away or choose another hydra.sweep.dir."
                )
            names = [r[0] for r in con.execute("select study_name from studies")]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise LedgerError(
            f"{path} is corrupt ({e}); refusing to resume. Move it away or choose another hydra.sweep.dir."
        ) from e
    if study not in names:
        raise LedgerError(
            f"{path} is the ledger of another sweep ({', '.join(names) or 'no study'}), not '{study}'; refusing to resume. Choose another hydra.sweep.dir."
        )
    return True


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, as readable phrases."""
    changes = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    if key not in a:
                        changes.append(f"{section}: '{key}' added")
                    elif key not in b:
                        changes.append(f"{section}: '{key}' removed")
                    else:
                        changes.append(
                            f"{section}: '{key}' was {json.dumps(a[key])}, now {json.dumps(b[key])}"
                        )
        else:
            changes.append(f"{section} was {json.dumps(a)}, now {json.dumps(b)}")
    return changes


def open_study(
    path: Path,
    name: str,
    directions: list[str],
    sampler: Any,
    pruner: Any,
    fingerprint: dict[str, Any],
) -> tuple[Any, bool]:
    """Create the study, or reopen it after checking that the question is the same.

    Returns:
        the study, and whether it was resumed.
    """
    import optuna

    resumed = inspect_ledger(path, name)
    if not resumed:
        path.parent.mkdir(parents=True, exist_ok=True)
    storage = rdb_storage(ledger_url(path))
    if resumed:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        old = study.user_attrs.get("fingerprint")
        if old is None:
            raise LedgerError(f"{path} has no mlx fingerprint; refusing to resume.")
        changes = fingerprint_diff(old, fingerprint)
        if changes:
            raise LedgerError(
                f"{path.parent} holds a sweep of another question, so it cannot be resumed: "
                + "; ".join(changes)
                + ". Restore those settings to resume, or start a new sweep with hydra.sweep.dir=NEW_DIR."
            )
        return study, True
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=directions,
    )
    study.set_user_attr("fingerprint", fingerprint)
    return study, False
