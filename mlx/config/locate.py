"""Where the config tree lives, where the user's project is, and the resolvers the YAML uses.

This is the one module that knows where configs are. A *layout* is a folder holding ``conf/``
(the config groups), ``experiments/`` (the ``experiment`` group) and ``sweeps/`` (the ``sweep``
group). mlx's own tree is a layout: the repository itself in an editable install, and
``mlx/_tree`` inside a wheel (pyproject's ``force-include`` copies the three folders there). A
user's **project** is a layout too: the nearest of the current folder and its parents that holds
an ``mlx.yaml`` marker (or ``$MLX_PROJECT``), else the current folder.

Every mlx command composes over the same search path: Hydra's own configs, mlx's ``conf/`` (the
primary config), mlx's layout, the project's layout, then any ``--config-dir`` folder. Hydra
reads a layout through the ``mlx://`` config source (:mod:`mlx.config.source`, registered by
``hydra_plugins/mlx_project``), which maps the ``experiment`` and ``sweep`` groups onto their
folders. Runs write under the project (``paths.outputs``), and experiment files that mlx writes
go to the project's ``experiments/`` (:func:`experiments_dir`).

This module imports only the standard library (Hydra inside the functions that need it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "config"
# the file that marks a folder as an mlx project (it holds no settings yet)
MARKER = "mlx.yaml"
# the project of this process and the processes it starts (set by the `mlx` command)
PROJECT_ENV = "MLX_PROJECT"
# the scheme of the Hydra config source that reads a layout
SCHEME = "mlx"
# groups whose options live in a top-level folder of a layout instead of under conf/
GROUP_FOLDERS = {"experiment": "experiments", "sweep": "sweeps"}

_PACKAGE = Path(__file__).resolve().parents[1]
# the repository that holds the package (an editable install); nothing there in a wheel
REPO_ROOT = _PACKAGE.parent


def _mlx_root() -> Path:
    for root in (_PACKAGE / "_tree", REPO_ROOT):
        if (root / "conf" / f"{CONFIG_NAME}.yaml").is_file():
            return root
    return _PACKAGE / "_tree"


# mlx's own layout, and its conf/ (the primary config's folder)
MLX_ROOT = _mlx_root()
CONFIG_DIR = MLX_ROOT / "conf"


def config_dir() -> Path:
    """The primary config folder; fails clearly when mlx is installed without its configs."""
    if not (CONFIG_DIR / f"{CONFIG_NAME}.yaml").is_file():
        raise FileNotFoundError(
            f"mlx's config tree is missing at {CONFIG_DIR}: reinstall mlx (a wheel carries it "
            "in mlx/_tree; an editable install reads conf/, experiments/ and sweeps/ beside it)"
        )
    return CONFIG_DIR


# ---- the user's project ----------------------------------------------------------------------


def project_root() -> Path:
    """The user's project folder: ``$MLX_PROJECT``, else the nearest of the current folder and
    its parents holding ``mlx.yaml``, else the current folder."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / MARKER).is_file():
            return folder
    return cwd


def use_project() -> Path:
    """Fix the project for this process and every process it starts (``$MLX_PROJECT``), and
    put it first on the import path, so that a ``_target_`` can name the project's own modules
    (also in launcher and DDP processes, which inherit ``PYTHONPATH``)."""
    root = project_root()
    os.environ[PROJECT_ENV] = str(root)
    if root != MLX_ROOT.resolve():
        folder = str(root)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if folder not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
    return root


def experiments_dir() -> Path:
    """Where mlx writes experiment files (NAS architectures, a sweep's best trials): the
    project's ``experiments/``, which is the ``experiment`` group; never mlx's own tree unless
    mlx's repository is the project being worked in."""
    return project_root() / GROUP_FOLDERS["experiment"]


def _in_project(sub: str = "") -> str:
    """``${mlx.project:outputs}``: a path in the project. Relative to the current folder when
    that is inside the project (``outputs``, ``../outputs``), so records and experiment files
    keep short paths; absolute otherwise."""
    root = project_root()
    target = root / sub if sub else root
    cwd = Path.cwd().resolve()
    if cwd == root or root in cwd.parents:
        return os.path.relpath(target, cwd)
    return str(target)


# ---- layouts and the tree --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A folder of config groups.

    Attributes:
        root: the folder.
        project: True for mlx's layout (``conf/``, ``experiments/``, ``sweeps/``); False for a
            plain Hydra folder with a sub-folder per group (``--config-dir``).
        provider: the name Hydra shows for it in ``--info`` and ``hydra.runtime.config_sources``.
    """

    root: Path
    project: bool = True
    provider: str = "project"

    def path(self, config_path: str) -> Path:
        """The file or folder of a Hydra config path (``""``, ``"model"``, ``"model/mlp.yaml"``,
        ``"experiment/mnist_cnn.yaml"``)."""
        config_path = config_path.strip("/")
        if not self.project:
            return self.root / config_path
        head, _, tail = config_path.partition("/")
        if head in GROUP_FOLDERS:
            folder = self.root / GROUP_FOLDERS[head]
            return folder / tail if tail else folder
        return self.root / "conf" / config_path

    def groups(self) -> list[str]:
        """The top-level config groups it has options for."""
        conf = self.path("")
        names = {p.name for p in conf.iterdir() if p.is_dir()} if conf.is_dir() else set()
        if self.project:
            names -= set(GROUP_FOLDERS)
            names |= {g for g in GROUP_FOLDERS if self.path(g).is_dir()}
        return sorted(names - {"hydra", "__pycache__"})

    def options(self, group: str) -> list[str]:
        """The options of ``group`` (``model``, ``hydra/launcher``) it has."""
        folder = self.path(group)
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []

    def exists(self) -> bool:
        folders = ["conf", *GROUP_FOLDERS.values()] if self.project else [""]
        return any((self.root / f).is_dir() for f in folders)


@dataclass(frozen=True)
class ConfigTree:
    """All the config groups an mlx command sees, in Hydra's search order: mlx's layout, the
    project's, then ``--config-dir`` folders. The first one holding an option is the one Hydra
    loads."""

    layouts: tuple[Layout, ...]

    def groups(self) -> list[str]:
        return sorted({g for layout in self.layouts for g in layout.groups()})

    def options(self, group: str) -> list[str]:
        return sorted({o for layout in self.layouts for o in layout.options(group)})

    def problems(self) -> list[str]:
        """What in the project or ``--config-dir`` folders Hydra would silently ignore: options
        hidden by an earlier folder's option of the same name, misplaced group folders, a
        marker with settings. One sentence each."""
        found: list[str] = []
        env = os.environ.get(PROJECT_ENV)
        if env and not Path(env).is_dir():
            found.append(f"${PROJECT_ENV} is '{env}', which is not a folder.")
        marker = project_root() / MARKER
        if marker.is_file() and any(
            line.strip() and not line.lstrip().startswith("#")
            for line in marker.read_text().splitlines()
        ):
            found.append(
                f"{marker} holds settings, but mlx reads none from it yet: it only marks the "
                "project folder (comments only)."
            )
        for layout in self.layouts[1:]:
            if not layout.root.is_dir():
                found.append(f"--config-dir '{layout.root}' is not a folder.")
                continue
            if layout.project:
                for group, folder in GROUP_FOLDERS.items():
                    if (layout.root / "conf" / group).is_dir():
                        found.append(
                            f"{layout.root / 'conf' / group} is not read: a project's {group} "
                            f"options live in {layout.root / folder}."
                        )
            earlier = self.layouts[: self.layouts.index(layout)]
            if layout.path(f"{CONFIG_NAME}.yaml").is_file():
                found.append(
                    f"{layout.path(f'{CONFIG_NAME}.yaml')} is hidden by mlx's primary config "
                    "of the same name: rename it (a primary config is chosen with --config-name)."
                )
            for group, option in _all_options(layout):
                hiding = [e for e in earlier if e.path(f"{group}/{option}.yaml").is_file()]
                if hiding:
                    found.append(
                        f"{layout.path(f'{group}/{option}.yaml')} is hidden by "
                        f"{hiding[0].path(f'{group}/{option}.yaml')}, which Hydra finds first "
                        f"for {group}={option}: rename it."
                    )
        return found

    def search_path(self) -> Any:
        """Hydra's ``ConfigSearchPath`` for this tree, built as ``hydra.main`` builds it for
        ``mlx``: Hydra's configs, mlx's ``conf/``, then the search-path plugin's layouts (mlx's
        and the project's, :func:`extend_search_path`), ``--config-dir`` before the schema."""
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery

        search_path = create_config_search_path(str(config_dir()))
        for layout in self.layouts:
            if not layout.project:
                search_path.prepend(
                    provider="command-line",
                    path=f"file://{layout.root}",
                    anchor=SearchPathQuery(provider="schema"),
                )
        return search_path


def _all_options(layout: Layout) -> list[tuple[str, str]]:
    """(group, option) of every config file of a layout, nested groups (``hydra/launcher``)
    included."""
    out = []
    for group in sorted({*layout.groups(), "hydra"}):
        base = layout.path(group)
        for path in sorted(base.rglob("*.yaml")) if base.is_dir() else []:
            out.append(("/".join([group, *path.relative_to(base).parent.parts]), path.stem))
    return out


def config_tree(config_dirs: Iterable[str] = ()) -> ConfigTree:
    """The tree an mlx command composes over: mlx's layout, the project's when it is another
    folder holding configs, and the ``--config-dir`` folders given."""
    layouts = [Layout(MLX_ROOT, provider="mlx")]
    project = Layout(project_root())
    if project.root != MLX_ROOT.resolve() and project.exists():
        layouts.append(project)
    layouts += [
        Layout(Path(d).absolute(), project=False, provider="command-line") for d in config_dirs
    ]
    return ConfigTree(tuple(layouts))


def extend_search_path(search_path: Any) -> None:
    """Add mlx's layout and the project's after the primary config folder, when that folder is
    mlx's ``conf/`` (any other Hydra application is left alone). Called by the search-path
    plugin, so ``hydra.main`` and the compose API both get it."""
    main = [e.path for e in search_path.get_path() if e.provider == "main"]
    if not main or Path(main[0].removeprefix("file://")).resolve() != CONFIG_DIR.resolve():
        return
    for layout in config_tree().layouts:
        search_path.append(layout.provider, f"{SCHEME}://{layout.root}")


# ---- resolvers -------------------------------------------------------------------------------


def _sweep_group() -> str | None:
    """The W&B group of a run: the multirun folder's name inside a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir).name


def register_resolvers() -> None:
    """Register mlx's OmegaConf resolvers (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("mlx.sweep_group"):
        OmegaConf.register_new_resolver("mlx.sweep_group", _sweep_group)
    if not OmegaConf.has_resolver("mlx.project"):
        OmegaConf.register_new_resolver("mlx.project", _in_project)
