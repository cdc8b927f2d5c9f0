"""Exceptions raised by assetver.

Each class also subclasses the builtin that fits, so callers that already catch
``OSError`` or ``LookupError`` keep working. Messages are one line, name the path
involved and say how to fix the problem.
"""

from __future__ import annotations


class AssetverError(Exception):
    """Base class of every error assetver raises on purpose."""


class RootError(AssetverError, OSError):
    """The static root is missing, not a directory or unreadable."""


class ManifestError(AssetverError, ValueError):
    """A manifest file is missing, corrupt, or of an unknown schema version."""


class OutputError(AssetverError, OSError):
    """An output file (manifest, cache, compiled output) could not be written."""


class FileReadError(AssetverError, OSError):
    """A file under the root exists but cannot be read."""


class AssetNotFound(AssetverError, LookupError):
    """A logical path is not in the manifest (``assetver_strict`` mode)."""


class ConfigError(AssetverError, ValueError):
    """A setting or option has a value assetver does not understand."""


class CompileError(AssetverError, ValueError):
    """The tree cannot be compiled into an output: a reference cycle, or references that
    ``--strict`` forbids."""


class WatchError(AssetverError, RuntimeError):
    """The watcher cannot run in this process."""


class Refused(AssetverError):
    """A request the server refuses; ``code`` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or str(code))
        self.code = code


VANISHED = (FileNotFoundError, NotADirectoryError)
"""What `os` raises for a path that vanished or whose directory became a file while a
build ran: such paths are left out as vanished, never reported as errors."""
