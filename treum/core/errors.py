"""Errors that name what is wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TreumError(Exception):
    """Base class of every error treum raises on purpose; the CLI prints these without a traceback."""


class ConfigError(TreumError):
    """A configuration value is unknown, of the wrong type, or inconsistent."""


class PluginError(TreumError):
    """Plugins disagree (two claim one name) or a plugin is malformed."""


class DataValidationError(TreumError):
    """A data set failed validation; the message names the file, row and column."""


class ArtifactIntegrityError(TreumError):
    """An artifact on disk does not match the hashes it was saved with."""


class UnavailableError(TreumError):
    """What a request needs is not there now (nothing deployed, the service still starting); retry later (503)."""


class RegistryError(TreumError):
    """A registry operation is not allowed in the current state."""


class NotFoundError(RegistryError):
    """The registry has no model, version, job or experiment of that name or id."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not close:  # 'garch_hybird' -> 'garch': a registered name that the typo starts with
        prefixed = sorted((c for c in choices if name.startswith(c) or c.startswith(name)), key=len, reverse=True)
        close = prefixed[:1] or difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""
