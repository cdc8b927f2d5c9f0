"""Findings of a build worth telling its user, one line each (``file:line:col``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about one file (a reference, its name), printed as one line."""

    logical_path: str
    line: int
    column: int
    kind: str
    message: str
    severity: str = "warning"

    def __str__(self) -> str:
        where = f"{self.logical_path}:{self.line}:{self.column}"
        return f"{where}: {self.severity}: {self.message} [{self.kind}]"

    def fields(self) -> tuple[str, int, int, str, str, str]:
        """The fields, for a state file."""
        return (self.logical_path, self.line, self.column, self.kind, self.message, self.severity)
