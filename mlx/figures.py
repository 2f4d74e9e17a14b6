"""The house look of every figure mlx draws (reports and analyses): matplotlib with the Agg
backend, SVG text kept as text, no date or random ids inside, so a figure drawn again differs
only where its numbers do. matplotlib is imported when a figure is drawn, not before."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend with mlx's style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "mlx-report",
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 9,
        }
    )
    return plt


def save_svg(fig: Any, path: Path) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` as SVG and close it."""
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
    return path
