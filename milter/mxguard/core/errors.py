"""The exception tree: every error mxguard raises on purpose derives from MxguardError."""

from __future__ import annotations


class MxguardError(Exception):
    """An error raised by mxguard itself."""


class ConfigError(MxguardError):
    """The configuration file is unreadable or invalid; startup must stop."""


class ValueParseError(ValueError):
    """An option value does not have the expected form (internal to config parsing)."""


class StoreError(MxguardError):
    """The state store could not be read or written."""
