"""How mlx writes a number for people: one rule for the run summary, sweep tables, reports and
messages. Imports nothing.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"  # a value a run does not have (never shown as 0)


def fmt(value: Any, *, sign: bool = False) -> str:
    """4 significant digits for measurements, thousands separators for counts and for large
    values, ``—`` for a missing or non-finite value, ``true``/``false`` for flags; with
    ``sign``, a difference: ``+`` before a value that is not negative."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        plus = "+" if sign and value >= 0 else ""
        if isinstance(value, int):
            return f"{plus}{value:,}"
        if value.is_integer() and abs(value) >= 1000:
            return f"{plus}{int(value):,}"
        return plus + (f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}")
    return str(value)
