"""The hooks Hydra discovers for mlx's config tree: the ``mlx://`` config source (a folder in
mlx's layout) and the search-path plugin that adds mlx's layout and the user's project to the
search path of mlx's commands. The logic is in ``mlx.config.locate`` and ``mlx.config.source``."""

from typing import Any

from hydra.plugins.search_path_plugin import SearchPathPlugin

from mlx.config import locate, source


class MlxConfigSource(source.LayoutConfigSource):
    """Hydra registers config sources found in the hydra_plugins package: this is that handle
    on :class:`mlx.config.source.LayoutConfigSource`."""


class MlxSearchPathPlugin(SearchPathPlugin):
    """Adds mlx's layout and the project's when the primary config folder is mlx's."""

    def manipulate_search_path(self, search_path: Any) -> None:
        locate.extend_search_path(search_path)


__all__ = ["MlxConfigSource", "MlxSearchPathPlugin"]
