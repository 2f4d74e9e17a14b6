"""Lightning's log silencing: the one place that decides which of its advice an mlx run hides."""

from __future__ import annotations

import logging
import warnings


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """Silence Lightning's advice that does not apply to mlx runs (idempotent)."""
    # in-memory batches need no loader workers
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())
