"""The error a stage raises when the user can act on it (bottom layer: imports nothing of ours).

``vlmcot.stage.main`` prints a :class:`StageError` (like ``ConfigError`` and ``DataError``) as one
line, without a traceback, and exits 1. It lives here, not in the runner, so every layer can raise it
with a top-level import.
"""

from __future__ import annotations


class StageError(RuntimeError):
    """A failure the user can act on (too many bad records, missing input); printed without traceback."""
