"""Errors the studio shows to people.

Every failure a user can cause (a bad file, an unknown model, an out-of-range setting) is raised as
a `StudioError` carrying a sentence a newcomer can act on, plus an optional hint and location. The
UI turns these into readable messages; the CLI prints them without a traceback. Anything that is
*not* a StudioError is a bug in the studio, and is reported as such.
"""

from __future__ import annotations


class StudioError(Exception):
    """A problem the user can fix. `where` names the file/row/column/field, `hint` the fix."""

    def __init__(self, message: str, *, hint: str = "", where: str = "") -> None:
        self.message = message
        self.hint = hint
        self.where = where
        super().__init__(self.user_message)

    @property
    def user_message(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} {self.hint}".strip() if self.hint else text


class DataError(StudioError):
    """The uploaded data cannot be read or used as it is."""


class ModelError(StudioError):
    """The base model cannot be found, is unsafe to load, or does not fit."""


class ConfigError(StudioError):
    """A setting is missing, of the wrong type, or out of range."""


class JobError(StudioError):
    """A training job cannot be started, stopped, or resumed as asked."""
