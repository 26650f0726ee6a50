"""Exceptions the loaders raise; the CLI turns each into one line and an exit code.

Exit codes (documented in docs/operations.md "Exit codes"):
  0  success
  1  dbt build or checks failed (dbt's own exit code 1)
  2  configuration error: bad settings, missing profile, database unreachable, bad usage
  3  invalid input: a file or record that cannot be loaded
  4  another run holds the lock
  5  upstream TES API failure
  6  build failure inside `refinery sync`
"""

from __future__ import annotations


class RefineryError(Exception):
    """Base class: a failure with a clear one-line message."""

    exit_code = 1


class ConfigurationError(RefineryError):
    """Settings, profile or database connection are wrong."""

    exit_code = 2


class InvalidInputError(RefineryError):
    """A file or a record in it cannot be loaded."""

    exit_code = 3


class LockBusyError(RefineryError):
    """Another loader or sync run holds the database lock."""

    exit_code = 4


class UpstreamError(RefineryError):
    """The TES API failed for good (after retries)."""

    exit_code = 5


class BuildFailedError(RefineryError):
    """dbt build failed inside a scheduled sync."""

    exit_code = 6
