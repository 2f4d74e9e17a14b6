"""The Hydra config source of a layout (``mlx:///path/to/folder``): ``conf/`` holds the config
groups, ``experiments/`` and ``sweeps/`` are the ``experiment`` and ``sweep`` groups.

Hydra's file source would need the two folders inside ``conf/`` (links, which a wheel cannot
carry and a user's project should not need). This source reads the same files Hydra's file
source would, through :meth:`mlx.config.locate.Layout.path`. ``hydra_plugins/mlx_project``
registers it, with the search-path plugin that puts mlx's layout and the user's project on the
search path of mlx's commands (:func:`mlx.config.locate.extend_search_path`).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

from mlx.config.locate import GROUP_FOLDERS, SCHEME, Layout


class LayoutConfigSource(ConfigSource):
    """Reads a folder in mlx's layout; see the module's docstring."""

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.layout = Layout(Path(self.path))

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _file(self, config_path: str) -> Path:
        return self.layout.path(self._normalize_file_name(config_path))

    def load_config(self, config_path: str) -> ConfigResult:
        path = self._file(config_path)
        if not path.is_file():
            raise ConfigLoadError(f"Config not found : {path}")
        with path.open(encoding="utf-8") as f:
            header = ConfigSource._get_header_dict(f.read(512))
            f.seek(0)
            cfg = OmegaConf.load(f)
        return ConfigResult(
            config=cfg, path=self.full_path(), provider=self.provider, header=header
        )

    def available(self) -> bool:
        return self.layout.exists()

    def is_group(self, config_path: str) -> bool:
        return self.layout.path(config_path).is_dir()

    def is_config(self, config_path: str) -> bool:
        return self._file(config_path).is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        folder = self.layout.path(config_path)
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        if not config_path.strip("/"):
            # the top level: conf/'s entries, with experiments/ and sweeps/ as their groups
            names = [n for n in names if n not in GROUP_FOLDERS]
            names += [g for g in GROUP_FOLDERS if self.layout.path(g).is_dir()]
        files: list[str] = []
        for name in names:
            self._list_add_result(
                files=files,
                file_path=f"{config_path}/{name}" if config_path else name,
                file_name=name,
                results_filter=results_filter,
            )
        return sorted(set(files))
