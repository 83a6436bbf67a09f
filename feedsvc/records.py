"""Loading record files: bytes → front matter → a checked `Record`, or errors.

Every file gives a `Loaded`: a `Record` or none, plus the problems found
(`RecordError` values, warnings included). Nothing here raises for bad data and
nothing here ever puts a record's ``secured`` value into a message: messages
describe what is wrong, they never quote the value.

python-frontmatter frames the file and parses the YAML with PyYAML's safe
loader (the C one where PyYAML has it); the field rules live in `fields.py`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from .config import Config
from .errors import RecordError
from .fields import Settings, record_from_mapping
from .model import Record
from .text import FORBIDDEN_CHARS

#: File name endings read as records; everything else in records_dir is ignored.
SUFFIXES = (".txt", ".md")
_HANDLER = frontmatter.YAMLHandler()
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A record never needs YAML anchors or aliases; looking for them first keeps
# alias bombs from ever being expanded. The regex is a cheap pre-check, the
# parser's events the real one.
_MAYBE_ALIAS = re.compile(r"(?:^|[\s\[\{,:-])[&*][^\s\[\]{},]")


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
    def errors(self) -> tuple[RecordError, ...]:
        return tuple(p for p in self.problems if not p.is_warning)

    @property
    def warnings(self) -> tuple[RecordError, ...]:
        return tuple(p for p in self.problems if p.is_warning)


def settings_for(config: Config) -> Settings:
    limits = config.limits
    return Settings(
        repair_mojibake=config.repair_mojibake,
        max_title_chars=limits.max_title_chars,
        max_excerpt_chars=limits.max_excerpt_chars,
        max_topics=limits.max_topics,
        max_images=limits.max_images,
        max_related=limits.max_related,
        max_file_bytes=limits.max_file_bytes,
    )


def record_files(root: Path) -> list[str]:
    """Record files under `root`, as sorted relative POSIX paths.

    Hidden files and folders are skipped, and so are symbolic links to
    folders, so a scan always ends and stays inside `root`.
    """
    found: list[str] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.endswith(SUFFIXES) and entry.is_file():
                found.append(Path(entry.path).relative_to(root).as_posix())
    return sorted(found)


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


def load_file(root: Path, rel: str, settings: Settings) -> Loaded:
    """Load one record file, relative path `rel` under `root`."""
    try:
        data = read_bytes(root / rel, settings.max_file_bytes)
    except _Reject as e:
        return Loaded(rel, None, (RecordError(rel, e.field, e.reason, e.line),))
    return parse_bytes(rel, data, settings)


def parse_bytes(rel: str, data: bytes, settings: Settings) -> Loaded:
    """Parse a record file's bytes (also the entry point for tests and fuzzing)."""
    problems: list[RecordError] = []
    try:
        mapping = front_matter(data, rel, problems)
    except _Reject as e:
        return Loaded(rel, None, (*problems, RecordError(rel, e.field, e.reason, e.line)))
    record = record_from_mapping(rel, mapping.values, mapping.text, settings, problems)
    return Loaded(rel, record, tuple(problems))


@dataclass(frozen=True, slots=True)
class _Mapping:
    values: dict[str, Any]
    #: The front matter's text, for line numbers of field errors.
    text: str


class _Reject(Exception):
    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        super().__init__(field, reason, line)
        self.field, self.reason, self.line = field, reason, line


def read_bytes(path: Path, limit: int) -> bytes:
    """A file's bytes, refusing one over `limit` before reading it."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise _Reject("-", f"file is {size:,} bytes, over the limit of {limit:,} (limits.max_file_bytes)")
            data = f.read(limit + 1)
    except OSError as e:
        raise _Reject("-", f"cannot read file: {e.strerror or type(e).__name__}") from e
    if len(data) > limit:  # grew while we read it
        raise _Reject("-", f"file is over the limit of {limit:,} bytes (limits.max_file_bytes)")
    return data


def decode(data: bytes, rel: str, problems: list[RecordError]) -> str:
    """UTF-8 text with the byte-order mark dropped, LF line ends, no forbidden characters."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _Reject("-", f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line) from e
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if FORBIDDEN_CHARS.search(text):
        line = text[: FORBIDDEN_CHARS.search(text).start()].count("\n") + 1  # type: ignore[union-attr]
        problems.append(
            RecordError(rel, "-", "control characters removed", line, severity="warning")
        )
        text = FORBIDDEN_CHARS.sub("", text)
    return text


def front_matter(data: bytes, rel: str, problems: list[RecordError]) -> _Mapping:
    text = decode(data, rel, problems).lstrip("\n")
    if not text.strip():
        raise _Reject("-", "empty file")
    if not _HANDLER.detect(text):
        raise _Reject("-", "no front matter: the file must start with a '---' line", 1)
    try:
        fm, _body = _HANDLER.split(text)
    except ValueError:
        raise _Reject("-", "front matter is not closed: no second '---' line", 1) from None
    if _MAYBE_ALIAS.search(fm):
        _refuse_aliases(fm)
    try:
        values = yaml.load(fm, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise _Reject("-", f"YAML error: {_yaml_problem(e)}", line) from None
    except yaml.YAMLError as e:
        raise _Reject("-", f"YAML error: {type(e).__name__}") from None
    except RecursionError:
        raise _Reject("-", "YAML nested too deeply") from None
    if values is None:
        raise _Reject("-", "front matter is empty", 1)
    if not isinstance(values, dict):
        raise _Reject("-", f"front matter must be a mapping of fields, not {_kind(values)}", 2)
    return _Mapping(values, fm)


def _refuse_aliases(fm: str) -> None:
    """Reject YAML that uses anchors or aliases, reading events only (no expansion)."""
    try:
        for event in _events(fm):
            anchor = getattr(event, "anchor", None)
            if isinstance(event, yaml.AliasEvent) or anchor:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise _Reject("-", "YAML anchors and aliases are not allowed in records", line)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise _Reject("-", f"YAML error: {_yaml_problem(e)}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise _Reject("-", f"YAML error: {type(e).__name__}") from None


def _events(fm: str) -> Iterator[yaml.Event]:
    return yaml.parse(fm, Loader=_SAFE_LOADER)


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    # PyYAML's problem text names the construct, never a value; the tag of a
    # refused Python object is safe to show.
    problem = (e.problem or e.context or "invalid YAML").strip()
    return problem.split("\n")[0][:200]


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__
    )
