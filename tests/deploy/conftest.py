"""Model repositories exported once per session by real short runs (digits CNN, a numeric table,
a table with categorical columns), for the deploy tests to serve, predict from and inspect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHORT, TINY, compose_cfg

# data and model of each exported model, by its repository name
EXPORTS = {
    "digits_cnn": ["data=digits", "model=cnn"],
    "breast_cancer_mlp": ["data=breast_cancer", "model=mlp"],
    "german_credit_mlp": ["data=german_credit", "model=mlp"],
}


@dataclass
class Exported:
    """A model repository and the runs that filled it."""

    repo: Path
    runs: dict[str, Path]  # model name -> its run folder

    def version(self, name: str, version: int = 1) -> Path:
        return self.repo / name / str(version)


def export(tmp: Path, name: str, extra: list[str] | None = None) -> Path:
    """Train ``EXPORTS[name]`` for a short epoch and deploy it into ``tmp/models``; returns the
    run folder."""
    from mlx.run import run

    out = tmp / "runs" / name
    cfg = compose_cfg(
        [
            *TINY,
            *SHORT,
            *EXPORTS[name],
            "deployment=datacenter",
            "deployment.cluster=null",
            f"deployment.repository={tmp / 'models'}",
            f"deployment.name={name}",
            *(extra or []),
        ],
        out,
    )
    run(cfg)
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    tmp = tmp_path_factory.mktemp("deployed")
    runs = {name: export(tmp, name) for name in EXPORTS}
    return Exported(tmp / "models", runs)
