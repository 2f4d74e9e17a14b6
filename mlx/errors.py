"""The one user-error type and the one place that prints it.

Every area's error (``ConfigError``, ``CompressionError``, ``NasError``, ``SweepError``,
``ReportError``...) derives from :class:`MlxError`: bad input the user can fix, whose message is
one paragraph meant for them. The command line turns any of them into ``mlx: error: ...`` and
exit status 2 through :func:`report`; nothing else prints errors, and no area re-raises another
area's error as text. This module imports nothing of mlx and nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


class MlxError(ValueError):
    """Bad input, found before (or instead of) work: the message is one paragraph for the user.
    ``exit_code`` is the command's exit status: 2 for every refused input."""

    exit_code = 2


class UsageError(MlxError):
    """A command line that names no command, a wrong number of arguments..."""


class ConfigError(MlxError):
    """A composed config that cannot run (unknown option or key, bad value, missing file...)."""


def report(error: BaseException | str) -> int:
    """Print ``mlx: error: <message>`` on stderr (the traceback too under ``--debug``) and return
    the exit status: the error's ``exit_code`` (2 for bad input)."""
    from rich.console import Console
    from rich.markup import escape

    if os.environ.get("HYDRA_FULL_ERROR") == "1" and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    message = str(error)
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]mlx: error:[/bold red] {escape(message)}", markup=True
    )
    return getattr(error, "exit_code", MlxError.exit_code)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``options``, or an empty string."""
    import difflib

    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def paragraph(errors: list[str]) -> str:
    """Several problems as one paragraph: ``3 problems in the config: (1) ... (2) ...``."""
    if len(errors) == 1:
        return errors[0]
    return f"{len(errors)} problems in the config: " + " ".join(
        f"({i}) {e}" for i, e in enumerate(errors, 1)
    )
