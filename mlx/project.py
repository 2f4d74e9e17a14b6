"""``mlx init DIR``: a project of the user's own, outside mlx's repository.

The skeleton is the folder ``mlx/project_template`` copied as it is: the ``mlx.yaml`` marker, an
example network module (``mynet.py``) with its ``conf/model/mynet.yaml``, an experiment and a
sweep that use it, and a README. How mlx finds the project and joins its configs to its own
groups is :mod:`mlx.config.locate`'s business.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlx.errors import MlxError

TEMPLATE = Path(__file__).resolve().parent / "project_template"
# template files whose names would mean something to git or hatch inside mlx's own repository
RENAMES = {"gitignore": ".gitignore"}


class ProjectError(MlxError):
    """A folder that cannot become a project; the message is one sentence for the user."""


def init_project(folder: str | Path) -> list[Path]:
    """Write the project skeleton into ``folder`` (created when missing; it must be empty).

    Returns:
        The files written, in order.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ProjectError(f"{folder} is a file; mlx init needs a new or empty folder.")
    if folder.is_dir() and any(folder.iterdir()):
        raise ProjectError(
            f"{folder} is not empty; mlx init writes a project only into a new or empty folder "
            "(to use an existing one, add an empty mlx.yaml to it and conf/, experiments/ and "
            "sweeps/ as needed)."
        )
    written = []
    for source in sorted(TEMPLATE.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(TEMPLATE)
        target = folder / relative.parent / RENAMES.get(relative.name, relative.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    print(f"mlx project in {folder.resolve()}:")
    for path in written:
        print(f"  {path.relative_to(folder)}")
    print(f"next: cd {folder} && mlx run experiment=mynet_digits")
    return written
