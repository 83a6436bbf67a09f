"""The exceptions feedsvc raises, and the problems it reports as values.

A batch (loading thousands of records) never stops on one bad file: the loader
returns `RecordError` values beside the good records and the caller decides what
to do with them. Everything here renders as ``file: field: reason`` so a person
can act on it, and nothing here ever holds a record's ``secured`` value.

A problem is always one line of printable text: the path, field and reason are
shown with `text.printable_name`, so a file name holding a newline, an ANSI
escape or bytes that are not UTF-8 can neither forge a report line nor act on
the terminal or log it is written to (docs/design.md, "Input rules").
"""

from __future__ import annotations

from feedsvc.text import printable_name

#: Where the records walk puts a file whose path is not valid UTF-8: a hidden
#: folder, so the path can never be a real record's (the walk skips hidden
#: names), followed by the path as `printable_name` shows it. Such a path can
#: be stored (SQLite and the terminal need UTF-8) and is never opened.
NOT_UTF8_PREFIX = ".not-utf-8/"


def shown_path(path: str) -> str:
    r"""A record path as reports show it: escaped, and a path that is not UTF-8 as its bytes.

    ``bad\xff.txt`` is the file whose name holds the byte 0xFF; a real
    backslash shows doubled, so the two never look alike.
    """
    if path.startswith(NOT_UTF8_PREFIX):
        return printable_name(path[len(NOT_UTF8_PREFIX) :], backslashes=False)  # escaped already
    return printable_name(path)


#: How a duplicate's warning starts (`RecordError.duplicate`).
DUPLICATE = "same article as"


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
        """The warning for a file left out because `winner` holds the same article.

        Field and line are filled in later (`records.with_identity_lines`):
        finding the line needs the file, which the rules choosing the winner
        never read.
        """
        return cls(
            path, "originalUrl", f"{DUPLICATE} {shown_path(winner)}, which is the current copy", severity="warning"
        )

    @property
    def is_duplicate(self) -> bool:
        return self.is_warning and self.reason.startswith(DUPLICATE)

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        # One printable line whatever the path holds (see the module's notes);
        # the field and reason are made by feedsvc but may quote a YAML key or
        # a winner's path, so they get their controls escaped too.
        path = shown_path(self.path)
        where = f"{path}:{self.line}" if self.line else path
        prefix = "warning: " if self.is_warning else ""
        field = printable_name(self.field, backslashes=False)
        return f"{where}: {field}: {prefix}{printable_name(self.reason, backslashes=False)}"

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
