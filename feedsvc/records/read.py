"""Loading record files: bytes → front matter → a checked `Record`, or errors.

Every file gives a `Loaded`: a `Record` or none, plus the problems found
(`RecordError` values, warnings included). Nothing here raises for bad data and
nothing here ever puts a record's ``secured`` value into a message: messages
describe what is wrong, they never quote the value.

The file is framed by python-frontmatter's YAML delimiter rule (a ``---``
line, the YAML, the next ``---`` line), located here so that line numbers stay
the file's own; the YAML is read with PyYAML's safe loader (the C one where
PyYAML has it), hardened against hostile input; the field rules live in
`fields.py`.
docs/design.md ("Input rules") says why each rule is what it is.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from yaml.constructor import SafeConstructor

from feedsvc.config import Config
from feedsvc.errors import NOT_UTF8_PREFIX, RecordError
from feedsvc.model import Record
from feedsvc.records import yamlfast
from feedsvc.records.fields import Settings, record_from_mapping
from feedsvc.text import FILE_CONTROLS, clean_file_text, printable_name

#: File name endings read as records; everything else in records_dir is ignored.
SUFFIXES = (".txt", ".md")
#: Why a file whose path (its name, or a folder's) is not valid UTF-8 is rejected.
NOT_UTF8_REASON = "name is not valid UTF-8 (its bad bytes are shown as \\xNN); rename it to publish the record"
#: Deepest nesting of lists and mappings a record may use (a real one needs 5).
MAX_DEPTH = 64
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A record never needs YAML anchors or aliases; looking for them first keeps
# alias bombs from ever being expanded. `_maybe_alias` is a cheap pre-check
# (an "&" or "*" where YAML could start an anchor or alias), the parser's
# events the real one.
_BEFORE_ALIAS = frozenset(" \t\n\r[{,:-?\x85\u2028\u2029\ufeff")
# libyaml's composer recurses once per nesting level and overflows the C stack
# (a segfault, not an exception) some 20,000 levels down. A level opens with
# "[", "{", "?", "- " (up to two: an item holding a mapping) or a "-" ending a
# line, or one more column of indentation, so the depth is at most twice those
# openers plus the indentation plus one. Front matter with few openers and no
# deep indentation is parsed directly; only the rest has its depth measured
# first, from the parser's events (which do not recurse).
_MAX_OPENERS = 1_000
_DEEP_INDENT = "\n" + " " * 200
_OPENERS = ("[", "{", "?", "- ", "-\t", "-\n")
# A number or date longer than this is not one; it stays text (and a field
# rule reports it). It also keeps "1:2:3:…" (YAML 1.1 base 60) from costing
# quadratic time, and int() from refusing more than 4,300 digits.
_MAX_SCALAR_CHARS = 64
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


def walk_records(root: Path) -> Iterator[tuple[str, RecordEntry]]:
    """Record files under `root` as (relative POSIX path, directory entry), unsorted.

    Only regular files (or links to them) are taken: a FIFO, socket or device
    named like a record would block or never end. Hidden files and folders are
    skipped, and so are symbolic links to folders, so a walk always ends.
    Paths are joined as strings: at 100,000 files a `Path` per file costs more
    than the walk itself. A file whose path is not UTF-8 comes under a path
    that says so and can be stored (see `walk_folders`).
    """
    for prefix, entries in walk_folders(root):
        for entry in entries:
            yield prefix + entry.name, entry


class UndecodableEntry:
    """A record file whose path is not valid UTF-8, as the walk gives it.

    os.scandir spells such a name with lone surrogates (PEP 383), which
    nothing downstream can write: SQLite, the terminal and the log all need
    UTF-8, so one such file used to stop every build. The walk gives the file
    under `name`, a path that holds no surrogate and can never be a real
    record's (`errors.NOT_UTF8_PREFIX`: a hidden folder, then the path as
    reports show it). `read_record` rejects it without opening anything, and
    the stat is the file's own, so the cache sees it change like any other.
    """

    __slots__ = ("name", "path", "_entry")

    def __init__(self, rel: str, entry: os.DirEntry[str]) -> None:
        self.name = NOT_UTF8_PREFIX + printable_name(rel)
        self.path = entry.path
        self._entry = entry

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self._entry.stat(follow_symlinks=follow_symlinks)

    def inode(self) -> int:
        return self._entry.inode()

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._entry.is_file(follow_symlinks=follow_symlinks)

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return False

    def is_symlink(self) -> bool:
        return self._entry.is_symlink()

    def __fspath__(self) -> str:
        return self.path


#: What the walk gives per file: a directory entry, or a stand-in for a file whose path is not UTF-8.
RecordEntry = os.DirEntry[str] | UndecodableEntry


def walk_folders(root: Path) -> Iterator[tuple[str, list[RecordEntry]]]:
    """`walk_records` a folder at a time: (relative POSIX prefix, its record files).

    A record file whose name, or a folder's above it, is not valid UTF-8 is
    given as an `UndecodableEntry`, in a list of its own with the prefix ""
    (its `name` is its whole path), so that callers joining ``prefix +
    entry.name`` and calling ``entry.stat()`` need not know about it: its
    path can be stored and printed, and reading it gives the rejection.
    """
    stack = [("", os.fspath(root), False)]
    while stack:
        prefix, folder, undecodable = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        files: list[RecordEntry] = []
        odd: list[RecordEntry] = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            bad = undecodable or (not name.isascii() and not _is_utf8(name))
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{prefix}{name}/", entry.path, bad))
                elif name.endswith(SUFFIXES) and entry.is_file():
                    if bad:
                        odd.append(UndecodableEntry(prefix + name, entry))
                    else:
                        files.append(entry)
            except OSError:
                continue
        yield prefix, files
        if odd:
            yield "", odd


def _is_utf8(name: str) -> bool:
    """Whether a name from os.scandir was valid UTF-8 (else it holds lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_files(root: Path) -> list[str]:
    """Record files under `root`, as sorted relative POSIX paths (see `walk_records`)."""
    return sorted(rel for rel, _ in walk_records(root))


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
    except _Reject as e:
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
    except _Reject as e:
        return Loaded(rel, None, (*problems, RecordError(rel, e.field, e.reason, e.line)))
    record = record_from_mapping(rel, values, fm, settings, problems)
    return Loaded(rel, record, tuple(problems))


class _Reject(Exception):
    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        super().__init__(field, reason, line)
        self.field, self.reason, self.line = field, reason, line


def read_bytes(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refusing one over `limit` before reading it.

    The file is opened without blocking and checked to be a regular file, so
    a FIFO or device put in its place after the scan cannot stall the load.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise _Reject("-", f"cannot read file: {e.strerror or type(e).__name__}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Reject("-", "not a regular file (a pipe, socket or device)")
        if info.st_size > limit:
            raise _Reject("-", f"file is {info.st_size:,} bytes, over the limit of {limit:,} (limits.max_file_bytes)")
        data = _read_fd(fd, info.st_size, limit)
    except OSError as e:
        raise _Reject("-", f"cannot read file: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise _Reject("-", f"file is over the limit of {limit:,} bytes (limits.max_file_bytes)")
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
        raise _Reject("-", f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line) from None
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
        raise _Reject("-", "empty file")
    start = _LEADING_BLANK_LINES.match(text).end()  # type: ignore[union-attr]
    if not _HANDLER.detect(text[start:]):
        raise _Reject("-", "no front matter: the file must start with a '---' line", 1)
    opening_line = text.count("\n", 0, start) + 1
    opening_end = text.find("\n", start)
    closing = _closing_boundary(text, opening_end) if opening_end != -1 else None
    if closing is None:
        raise _Reject("-", "front matter is not closed: no second '---' line", opening_line)
    fm = text[: closing.start()]
    values = _load_yaml(fm)
    if values is None:
        raise _Reject("-", "front matter is empty", opening_line)
    if not isinstance(values, dict):
        raise _Reject("-", f"front matter must be a mapping of fields, not {_kind(values)}", _first_content_line(fm))
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


def _load_yaml(fm: str) -> Any:
    if _maybe_alias(fm) or _may_nest_deeply(fm):
        _check_events(fm)
    try:
        return yamlfast.load(fm, _reference_load)
    except _DuplicateKey as e:
        if e.inside_secured:
            raise _Reject(SECURED, f"a key inside it is given twice (first on line {e.first})", e.line) from None
        what = "given twice" if e.field != "-" else "YAML error: a key is given twice"
        raise _Reject(e.field, f"{what} (first on line {e.first})", e.line) from None
    except _InsideSecured as e:
        raise _Reject(SECURED, f"YAML error inside it: {e.problem}", e.line) from None
    except yaml.MarkedYAMLError as e:
        raise _yaml_reject(e) from None
    except yaml.YAMLError as e:
        raise _Reject("-", f"YAML error: {type(e).__name__}") from None
    except RecursionError:
        raise _Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)") from None


def _reference_load(fm: str) -> Any:
    """PyYAML's reading of `fm` (what `yaml.load` does), telling apart errors inside `secured`.

    An error PyYAML raises while building values (an unknown tag, say) quotes
    the part at fault; inside `secured` that part is the secret, so the error
    is reported without it (`_InsideSecured`).
    """
    loader = _Loader(fm)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if mark is not None and _top_level_key(loader, mark.index) == SECURED:
            raise _InsideSecured(e, mark.line + 1) from None
        raise
    finally:
        loader.dispose()


def _maybe_alias(fm: str) -> bool:
    # str.find is far faster than a regex here: most records hold a few "&"
    # (in URLs), each after a letter.
    for marker in "&*":
        i = fm.find(marker)
        while i != -1:
            if i == 0 or fm[i - 1] in _BEFORE_ALIAS:
                return True
            i = fm.find(marker, i + 1)
    return False


def _may_nest_deeply(fm: str) -> bool:
    # An upper bound on the depth, from a few fast counts (no regex, no loop per character).
    return _DEEP_INDENT in fm or nesting_openers(fm) > _MAX_OPENERS


def nesting_openers(fm: str) -> int:
    """How many places in `fm` could open a nested list or mapping (an upper bound)."""
    return sum(fm.count(opener) for opener in _OPENERS) + fm.endswith("-")


def _check_events(fm: str) -> None:
    """Reject anchors, aliases and deep nesting, reading events only (no expansion)."""
    depth = 0
    try:
        for event in yaml.parse(fm, Loader=_BASE_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _Reject("-", "YAML anchors and aliases are not allowed in records", _line(event))
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)", _line(event))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as e:
        raise _yaml_reject(e) from None
    except yaml.YAMLError as e:
        raise _Reject("-", f"YAML error: {type(e).__name__}") from None


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


def _yaml_reject(e: yaml.MarkedYAMLError) -> _Reject:
    # PyYAML's problem text names the construct, never a value (at most one
    # character, or a tag, which is safe to show).
    problem = (e.problem or e.context or "invalid YAML").strip().split("\n")[0][:200]
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else None
    if "maximum nesting depth" in problem:
        # libyaml 0.2.5+ (in PyYAML 6.0.4's wheels) has its own limit, which its
        # scanner can reach before our event count does: one message for both.
        return _Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)", line)
    context = e.context_mark
    if e.context and context is not None and mark is not None and context.line != mark.line:
        problem += f" ({e.context.strip()[:100]} on line {context.line + 1})"
    return _Reject("-", f"YAML error: {problem}", line)


def _first_content_line(fm: str) -> int:
    for number, line in enumerate(fm.split("\n"), 1):
        if line.strip() and not line.startswith(("---", "#")):
            return number
    return 1


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (str, list)):
        return "text" if isinstance(value, str) else "a list"
    return type(value).__name__


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, field: str, line: int, first: int, inside_secured: bool = False) -> None:
        super().__init__(field, line, first, inside_secured)
        self.field, self.line, self.first, self.inside_secured = field, line, first, inside_secured


class _InsideSecured(Exception):
    """A YAML error inside the `secured` field, with its problem text less anything it quotes."""

    def __init__(self, error: yaml.MarkedYAMLError, line: int) -> None:
        problem = (error.problem or error.context or "invalid YAML").strip().split("\n")[0]
        self.problem = _QUOTED.sub("", problem).strip()[:200] or "invalid YAML"
        self.line = line
        super().__init__(self.problem, line)


#: The field whose value no message may quote, keys and tags included.
SECURED = "secured"
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,40}")
# What PyYAML's problem texts quote (a tag, a character): left out inside `secured`.
_QUOTED = re.compile(r"""\s*(?:'[^']*'|"[^"]*")""")


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader, hardened for untrusted records.

    Duplicate keys are an error (YAML says so; PyYAML keeps the last one
    silently), and a number, date or true/false that cannot be converted
    stays text (a field rule then reports it) instead of raising ValueError
    out of the parser. The document's root node is kept (`_root`), so an
    error can tell whether it is inside `secured`.
    """

    _root: yaml.Node | None = None

    def construct_document(self, node: yaml.Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        keys = [key.value for key, _value in node.value]
        try:
            repeated = len(set(keys)) != len(keys) and "<<" not in keys
        except TypeError:  # a complex key: constructing it reports the error
            repeated = False
        if repeated:
            _raise_duplicate(self, node)
        return super().construct_mapping(node, deep=deep)


def _raise_duplicate(loader: _Loader, node: yaml.MappingNode) -> None:
    """Raise `_DuplicateKey` for the first key of `node` given twice.

    The key is named when it is a plain field-like name, except inside
    `secured`: there the keys are part of the secret (``token: …`` twice
    must not print ``token``), so only the field is named.
    """
    seen: dict[tuple[str, str], int] = {}
    for key_node, _value in node.value:
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            if node is not loader._root and _top_level_key(loader, node.start_mark.index) == SECURED:
                raise _DuplicateKey(SECURED, line, seen[key], inside_secured=True)
            name = key_node.value if _SIMPLE_KEY.fullmatch(key_node.value) else "-"
            raise _DuplicateKey(name, line, seen[key])
        seen[key] = line


def _top_level_key(loader: _Loader, index: int) -> str | None:
    """The top-level field whose value holds the character at `index` of the text, if known.

    Known once the document's nodes are composed (errors while building
    values); None before that, at the top level itself, or between fields.
    """
    root = loader._root
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if value_node.start_mark.index <= index < max(value_node.end_mark.index, value_node.start_mark.index + 1):
            return key_node.value if isinstance(key_node, yaml.ScalarNode) else None
    return None


def _scalar(base: Callable[[Any, yaml.Node], Any]) -> Callable[[Any, yaml.Node], Any]:
    def construct(loader: Any, node: yaml.Node) -> Any:
        text = node.value  # a scalar's text; for any other node, base() raises
        if isinstance(text, str) and len(text) > _MAX_SCALAR_CHARS:
            return text
        try:
            return base(loader, node)
        except (ValueError, OverflowError, TypeError, AttributeError, KeyError):
            return text

    return construct


_TAG = "tag:yaml.org,2002:"
for _name in ("int", "float", "bool", "timestamp"):
    _Loader.add_constructor(_TAG + _name, _scalar(SafeConstructor.yaml_constructors[_TAG + _name]))
