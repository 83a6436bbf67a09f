"""Loading record files: bytes → front matter → a checked `Record`, or errors.

Every file gives a `Loaded`: a `Record` or none, plus the problems found
(`RecordError` values, warnings included). Nothing here raises for bad data and
nothing here ever puts a record's ``secured`` value into a message: messages
describe what is wrong, they never quote the value.

The file is framed by python-frontmatter's YAML delimiter rule (a ``---``
line, the YAML, the next ``---`` line), located here so that line numbers stay
the file's own; the YAML is read with PyYAML's safe loader (the C one where
PyYAML has it), hardened against hostile input; the field rules live in
`fields.py` (the record as a whole), `scalars.py` and `structured.py` (each field).
docs/design.md ("Input rules") says why each rule is what it is.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frontmatter

from feedsvc.config import Config
from feedsvc.errors import NOT_UTF8_PREFIX, RecordError
from feedsvc.model import Record
from feedsvc.records.fields import Settings, record_from_mapping
from feedsvc.records.frontyaml import Reject, first_content_line, load_yaml
from feedsvc.records.problems import kind_of_value
from feedsvc.records.walk import NOT_UTF8_REASON, record_files
from feedsvc.text import FILE_CONTROLS, clean_file_text

_HANDLER = frontmatter.YAMLHandler()
#: python-frontmatter's delimiter line ("---", or more dashes), as it matches it.
_BOUNDARY: re.Pattern[str] = _HANDLER.FM_BOUNDARY
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\n)*")
_NOT_CONTROL_BYTES = bytes(sorted(set(range(256)) - {*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xEF}))
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one file gave: a record (None if rejected) and its problems."""

    path: str
    record: Record | None
    problems: tuple[RecordError, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A folder's records in path order, and every problem found on the way."""

    records: tuple[Record, ...]
    problems: tuple[RecordError, ...]
    files: int

    @property
    def rejected(self) -> int:
        """How many files gave no record (one file can have several errors)."""
        return self.files - len(self.records)

    @property
    def errors(self) -> tuple[RecordError, ...]:
        return tuple(p for p in self.problems if not p.is_warning)

    @property
    def warnings(self) -> tuple[RecordError, ...]:
        return tuple(p for p in self.problems if p.is_warning)


def settings_for(config: Config) -> Settings:
    return Settings.from_config(config)


def load_records(
    root: Path, config: Config, progress: Callable[[Sequence[str]], Iterable[str]] | None = None
) -> LoadResult:
    """Load every record file under `root`; never raises for bad data.

    `progress`, if given, wraps the list of files (a progress bar, say).
    """
    settings = settings_for(config)
    files = record_files(root)
    outcomes = [load_file(root, rel, settings) for rel in (progress(files) if progress else files)]
    return collect(outcomes)


def collect(outcomes: Iterable[Loaded]) -> LoadResult:
    records: list[Record] = []
    problems: list[RecordError] = []
    count = 0
    for outcome in outcomes:
        count += 1
        if outcome.record is not None:
            records.append(outcome.record)
        problems.extend(outcome.problems)
    return LoadResult(tuple(records), tuple(problems), count)


#: The keys that name an article (`Record.canonical_url`: originalUrl, else webUrl).
IDENTITY_KEYS = ("originalUrl", "webUrl")


def identity_line(root: Path, rel: str) -> tuple[str, int | None]:
    """The key that names the article in file `rel` and its line, for a duplicate's warning.

    Read only for the few files that lose to a duplicate: ``originalUrl`` if
    the front matter has it at the top level, else ``webUrl``; the line is
    None when the file cannot be read again (it changed since).
    """
    found: dict[str, int] = {}
    try:
        with open(os.path.join(root, rel), "rb") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.decode("utf-8", "replace")
                if number > 1 and line.rstrip() == "---":
                    break
                for key in IDENTITY_KEYS:
                    if key not in found and (line.startswith(f"{key}:") or line.startswith(f'"{key}":')):
                        found[key] = number
    except OSError:
        pass
    for key in IDENTITY_KEYS:
        if key in found:
            return key, found[key]
    return IDENTITY_KEYS[0], None


def with_identity_lines(root: Path, problems: Iterable[RecordError]) -> tuple[RecordError, ...]:
    """`problems`, with each duplicate warning given the field and line of its file's link."""
    out = []
    for p in problems:
        if p.is_duplicate and p.line is None:
            key, line = identity_line(root, p.path)
            p = RecordError(p.path, key, p.reason, line, p.severity)
        out.append(p)
    return tuple(out)


def load_file(root: Path, rel: str, settings: Settings) -> Loaded:
    """Load one record file, relative path `rel` under `root`; never raises."""
    data = read_record(root, rel, settings)
    return data if isinstance(data, Loaded) else load_bytes(rel, data, settings)


def read_record(root: Path, rel: str, settings: Settings) -> bytes | Loaded:
    """A record file's bytes, or the `Loaded` that rejects it unread (too big, not a file, not a UTF-8 name)."""
    if rel.startswith(NOT_UTF8_PREFIX):  # see UndecodableEntry: never opened
        return Loaded(rel, None, (RecordError(rel, "-", NOT_UTF8_REASON),))
    try:
        return read_bytes(root / rel, settings.max_file_bytes)
    except Reject as e:
        return Loaded(rel, None, (RecordError(rel, e.field, e.reason, e.line),))


def load_bytes(rel: str, data: bytes, settings: Settings) -> Loaded:
    """`parse_bytes`, with a bug in feedsvc reported for the file instead of raised."""
    try:
        return parse_bytes(rel, data, settings)
    except Exception as e:  # noqa: BLE001 - one file must never stop the batch
        # A bug, not bad data; the exception's text could quote the file, so
        # only its type is reported.
        reason = f"could not be read ({type(e).__name__}); please report this file"
        return Loaded(rel, None, (RecordError(rel, "-", reason),))


def parse_bytes(rel: str, data: bytes, settings: Settings) -> Loaded:
    """Parse a record file's bytes (also the entry point for tests and fuzzing)."""
    problems: list[RecordError] = []
    try:
        values, fm = front_matter(data, rel, problems)
    except Reject as e:
        return Loaded(rel, None, (*problems, RecordError(rel, e.field, e.reason, e.line)))
    record = record_from_mapping(rel, values, fm, settings, problems)
    return Loaded(rel, record, tuple(problems))


def read_bytes(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refusing one over `limit` before reading it.

    The file is opened without blocking and checked to be a regular file, so
    a FIFO or device put in its place after the scan cannot stall the load.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise Reject("-", f"cannot read file: {e.strerror or type(e).__name__}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Reject("-", "not a regular file (a pipe, socket or device)")
        if info.st_size > limit:
            raise Reject("-", f"file is {info.st_size:,} bytes, over the limit of {limit:,} (limits.max_file_bytes)")
        data = _read_fd(fd, info.st_size, limit)
    except OSError as e:
        raise Reject("-", f"cannot read file: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise Reject("-", f"file is over the limit of {limit:,} bytes (limits.max_file_bytes)")
    return data


def _read_fd(fd: int, size: int, limit: int) -> bytes:
    """The bytes of `fd` up to `limit` + 1, the file's stat having said `size`.

    The first read asks for the size plus one byte (a file that grew shows
    it); asking for `limit` bytes at once would allocate that much per file.
    """
    data = os.read(fd, size + 1)
    while data and len(data) <= limit:
        more = os.read(fd, min(limit + 1 - len(data), 1 << 16))
        if not more:
            break
        data += more
    return data


def decode(data: bytes, rel: str, problems: list[RecordError]) -> str:
    """UTF-8 text with the byte-order mark dropped, LF line ends, no forbidden characters.

    C1 controls stay, as stand-ins YAML accepts (see `text.clean_file_text`).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise Reject("-", f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Deleting every byte that cannot start one of FILE_CONTROLS' characters in
    # UTF-8 (C0 controls and DEL; 0xC2 leads U+0080 to U+009F, 0xEF U+FFFE and
    # U+FFFF) is a fast C pass; only a file with some left is searched.
    if data.translate(None, _NOT_CONTROL_BYTES) and FILE_CONTROLS.search(text):
        text, where = clean_file_text(text)
        if where is not None:
            problems.append(RecordError(rel, "-", "control characters removed", where, severity="warning"))
    return text


def front_matter(data: bytes, rel: str, problems: list[RecordError]) -> tuple[dict[Any, Any], str]:
    """The front matter as a mapping, and its text (from the file's first line).

    The text keeps the opening ``---`` line (YAML reads it as the start of a
    document), so a line number in it is the line number in the file.
    """
    text = decode(data, rel, problems)
    if not text.strip():
        raise Reject("-", "empty file")
    start = _LEADING_BLANK_LINES.match(text).end()  # type: ignore[union-attr]
    if not _HANDLER.detect(text[start:]):
        raise Reject("-", "no front matter: the file must start with a '---' line", 1)
    opening_line = text.count("\n", 0, start) + 1
    opening_end = text.find("\n", start)
    closing = _closing_boundary(text, opening_end) if opening_end != -1 else None
    if closing is None:
        raise Reject("-", "front matter is not closed: no second '---' line", opening_line)
    fm = text[: closing.start()]
    values = load_yaml(fm)
    if values is None:
        raise Reject("-", "front matter is empty", opening_line)
    if not isinstance(values, dict):
        raise Reject(
            "-", f"front matter must be a mapping of fields, not {kind_of_value(values)}", first_content_line(fm)
        )
    return values, fm


def _closing_boundary(text: str, start: int) -> re.Match[str] | None:
    """`_BOUNDARY.search(text, start)` where text[start] ends a line, without trying every position.

    A boundary starts a line, so only the places after a "\\n---" are tried.
    """
    i = text.find("\n---", start)
    while i != -1:
        m = _BOUNDARY.match(text, i + 1)
        if m:
            return m
        i = text.find("\n---", i + 1)
    return None
