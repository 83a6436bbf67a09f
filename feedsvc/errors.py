"""The exceptions feedsvc raises, and the problems it reports as values.

A batch (loading thousands of records) never stops on one bad file: the loader
returns `RecordError` values beside the good records and the caller decides what
to do with them. Everything here renders as ``file: field: reason`` so a person
can act on it, and nothing here ever holds a record's ``secured`` value.
"""

from __future__ import annotations


class FeedsvcError(Exception):
    """Base class of every error feedsvc raises on purpose."""


class RecordError(FeedsvcError):
    """A record file that cannot be published, or a part of one that was dropped.

    `severity` is ``"error"`` when the whole record was rejected and ``"warning"``
    when the record is published with something left out or normalised.
    """

    def __init__(
        self,
        path: str,
        field: str,
        reason: str,
        line: int | None = None,
        severity: str = "error",
    ) -> None:
        super().__init__(path, field, reason, line, severity)
        self.path = path
        self.field = field
        self.reason = reason
        self.line = line
        self.severity = severity

    @classmethod
    def duplicate(cls, path: str, winner: str) -> RecordError:
        """The warning for a file left out because `winner` holds the same article."""
        return cls(path, "originalUrl", f"same article as {winner}, which is the current copy", severity="warning")

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        prefix = "warning: " if self.is_warning else ""
        return f"{where}: {self.field}: {prefix}{self.reason}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordError) and self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)


class ConfigError(FeedsvcError):
    """A configuration file that cannot be used, naming the key at fault."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        super().__init__(path, key, reason)
        self.path = path
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.key}: {self.reason}"
