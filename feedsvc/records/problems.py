"""How the field rules report: each problem names its field and the line it is on.

Every rule (`scalars.py`, `structured.py`, `fields.py`) is handed one
`Problems` per record and reports through it, so a message always carries the
file, the dotted field and the line of its top-level key, and every message says
what a wrong value is in the same words (`kind_of_value`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from feedsvc.errors import RecordError


class Problems:
    """Collects problems for one record, with line numbers from the front matter."""

    def __init__(self, rel: str, text: str, problems: list[RecordError]) -> None:
        self.rel, self.text, self.problems = rel, text, problems
        self.rejected = False
        self._lines: dict[str, int | None] = {}

    def line(self, field: str) -> int | None:
        """The file line of the field's top-level key (the text starts at line 1)."""
        top = field.split(".")[0].split("[")[0]
        if top not in self._lines:
            m = re.search(rf"^{re.escape(top)}[ \t]*:", self.text, re.MULTILINE)
            self._lines[top] = self.text.count("\n", 0, m.start()) + 1 if m else None
        return self._lines[top]

    def source(self, field: str, value: int | float) -> str:
        """How a top-level number was written ("3.10", "007"), else its value as text.

        YAML reads an unquoted title like 3.10 as a number; the file still
        says what was meant. Only read for the rare text field that YAML read
        as a number, so ordinary records pay nothing for it.
        """
        m = re.search(rf"^{re.escape(field)}[ \t]*:[ \t]*([^\s#'\"][^#\n]*?)[ \t]*(?:#.*)?$", self.text, re.MULTILINE)
        if m and _same_number(m.group(1), value):
            return m.group(1)
        return str(value)

    def error(self, field: str, reason: str) -> None:
        self.rejected = True
        self.problems.append(RecordError(self.rel, field, reason, self.line(field)))

    def warn(self, field: str, reason: str) -> None:
        self.problems.append(RecordError(self.rel, field, reason, self.line(field), "warning"))


def _same_number(text: str, value: int | float) -> bool:
    """Whether `text` is a spelling of `value` (YAML 1.1 reads "007" as 7, "3.10" as 3.1)."""
    if len(text) > 64:
        return False
    if ":" in text or text.lower().lstrip("+-") in (".inf", ".nan"):
        return True  # base 60 ("12:30" is 750), or infinity
    cleaned = text.replace("_", "")
    readings = (
        (lambda: int(cleaned, 0), lambda: int(cleaned, 8), lambda: int(cleaned))
        if isinstance(value, int)
        else (lambda: float(cleaned),)
    )
    for read in readings:
        try:
            if read() == value:
                return True
        except ValueError:
            continue
    return False


def kind_of_value(value: Any) -> str:
    """What a YAML value is, in a message's words ("not a list"): every rejection says it so."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (date, datetime)):
        return "a date"
    return type(value).__name__
