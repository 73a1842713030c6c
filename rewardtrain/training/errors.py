"""The errors a training run can end with, for callers to tell apart. No torch here.

Every one is a ``TrainingError``: a Celery task can catch that one type, mark the run failed and store the
message, which is written for the person who started the run.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A run that cannot go on, for a reason its message states."""


class ConfigError(TrainingError, ValueError):
    """Hyperparameters that cannot be used. ``field`` names the first offending field and ``errors`` maps
    every offending field to its message, so a form can show them all at once."""

    def __init__(self, field: str, message: str, errors: dict[str, str] | None = None):
        self.field = field
        self.message = message
        self.errors = errors if errors is not None else {field: message}
        super().__init__(f"{field}: {message}")


class DataError(TrainingError, ValueError):
    """A preference row that cannot be used; ``row`` is its index in the input (None: the rows as a whole)."""

    def __init__(self, row: int | None, message: str):
        self.row = row
        self.message = message
        super().__init__(message if row is None else f"row {row}: {message}")


class ModelLoadError(TrainingError, RuntimeError):
    """The base model cannot be loaded or used; the message says why in words a user can act on."""


class CheckpointError(TrainingError, RuntimeError):
    """A checkpoint that cannot be resumed from (missing, incomplete, or written by another configuration)."""
