"""Reports and comparisons of run records: ``mlx report`` and ``mlx compare``."""

from mlx.report.collect import Collection, ReportError, Run, Sweep, collect

__all__ = ["Collection", "ReportError", "Run", "Sweep", "collect"]
