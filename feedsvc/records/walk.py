"""Finding record files: a walk of records_dir that always ends, takes only regular files
with a record's suffix, skips hidden ones, and names undecodable paths so they can be
reported (and stored) instead of crashing the build."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from feedsvc.errors import NOT_UTF8_PREFIX
from feedsvc.text import printable_name

#: File name endings read as records; everything else in records_dir is ignored.
SUFFIXES = (".txt", ".md")
#: Why a file whose path (its name, or a folder's) is not valid UTF-8 is rejected.
NOT_UTF8_REASON = "name is not valid UTF-8 (its bad bytes are shown as \\xNN); rename it to publish the record"


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
