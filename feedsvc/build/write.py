"""Writing a build to disk: atomically, only what changed, never outside the folder.

Each file is written to a temporary name in its own folder and renamed over
the old one, so a web server reading the folder sees the old file or the new
one, never half of either. A file whose bytes did not change is not touched
(its modification time stays, so rsync, CDNs and nginx's gzip_static see no
change). Feeds are written before the index and OPML that list them; files
from an earlier build that are gone now are removed last, and only files that
feedsvc itself wrote there (listed in its manifest, with the digest of what it
wrote) are ever removed: a file someone else put or changed there is left alone.

A big build's files are written by the render workers into a staging folder
beside the output folder (`stage`), and put in place from there by a rename
(`StagedBody`): the build process handles each file's digest and length, never
its bytes, and the rules above hold as for files it writes itself (`Body`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from feedsvc.config import beside_output
from feedsvc.errors import FeedsvcError
from feedsvc.formats.compress import gzipped
from feedsvc.formats.registry import LISTINGS
from feedsvc.model import Document

MANIFEST = ".feedsvc-manifest.json"
#: `tempfile.mkstemp` names: "." + target name + "." + 8 random characters + ".tmp".
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


@dataclass(frozen=True, slots=True)
class PublishResult:
    written: int
    unchanged: int
    removed: int
    #: URL paths of the documents whose files were written (new or changed bytes).
    changed: tuple[str, ...] = ()
    #: Each file of the documents given (".gz" ones included): (SHA-256, length).
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)


class Body:
    """A file's bytes, held in memory: what `publish` writes."""

    __slots__ = ("data", "digest", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = _digest(data)
        self.size = len(data)

    def held_by(self, target: Path) -> bool:
        """Whether the regular file at `target` holds exactly these bytes (False when there is none)."""
        try:
            return target.stat().st_size == self.size and target.read_bytes() == self.data
        except OSError:
            return False

    def put(self, target: Path, folders: set[Path]) -> None:
        write_atomic(target, self.data, folders)


class StagedBody:
    """A file's bytes, written by a render worker into the staging folder (`staging_path`).

    Putting it in place is a rename, on the same file system: the build
    process never holds the bytes of the documents the workers rendered.
    """

    __slots__ = ("digest", "path", "size")

    def __init__(self, path: Path, digest: str, size: int) -> None:
        self.path = path
        self.digest = digest
        self.size = size

    def held_by(self, target: Path) -> bool:
        try:
            return target.stat().st_size == self.size and _digest(target.read_bytes()) == self.digest
        except OSError:
            return False

    def put(self, target: Path, folders: set[Path]) -> None:
        _made(target.parent, folders)
        try:
            os.replace(self.path, target)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # The output folder is a file system of its own (a mount): copied, then renamed there.
            write_atomic(target, self.path.read_bytes(), folders)
            self.path.unlink()


def staging_path(out: Path) -> Path:
    """Where render workers write the files of a build before it puts them in `out`: beside it, like the cache."""
    return beside_output(out, "staging")


def empty_staging(out: Path) -> Path:
    """The staging folder of `out`, emptied (a build that died may have left files in it)."""
    staging = staging_path(out)
    if staging.is_symlink():
        staging.unlink()  # never followed: a link put there is not our folder
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def without_bytes(doc: Document) -> Document:
    """`doc` as the build process keeps it once its files are written or staged: what it is, not its bytes."""
    return replace(doc, body=b"", packed=None)


def stage(staging: Path, documents: Iterable[Document]) -> list[tuple[Document, dict[str, tuple[str, int]]]]:
    """Write `documents` (each with its .gz) into the empty `staging` folder, in a render worker.

    Returns each document without its bytes, with the (SHA-256, length) of
    each of its files by URL path: what the build process needs to put the
    files in place (`StagedBody`) and to record what is served.
    """
    out: list[tuple[Document, dict[str, tuple[str, int]]]] = []
    folders: set[Path] = set()
    checked: dict[Path, bool] = {}
    for doc in documents:
        files: dict[str, tuple[str, int]] = {}
        for rel, data in files_for({doc.path: doc}).items():
            target = safe_target(staging, rel, checked)
            _made(target.parent, folders)
            with open(target, "xb") as f:  # a fresh folder: a name taken twice is a bug
                f.write(data)
            os.chmod(target, 0o644)
            files[rel] = (_digest(data), len(data))
        out.append((without_bytes(doc), files))
    return out


class UnsafePath(FeedsvcError):
    """A document path that would leave the output folder."""


class FilesInTheWay(FeedsvcError):
    """Files feedsvc did not write stand where a build would write its own."""

    def __init__(self, out: Path, paths: Sequence[str]) -> None:
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        super().__init__(
            f"{out} holds files feedsvc did not write where it would write its own: {shown}; "
            "nothing was written. Move them away, or build with --overwrite to replace them"
        )
        self.paths = tuple(paths)


def safe_target(out: Path, rel: str, checked: dict[Path, bool] | None = None) -> Path:
    """The file for URL path `rel` inside `out`; raises `UnsafePath` otherwise.

    `checked` remembers folders already found inside `out` (a build writes
    thousands of files into a handful of folders). The file itself may be a
    symbolic link: it is replaced by a rename, never written through.
    """
    pure = PurePosixPath(rel)
    if (
        not rel
        or pure.is_absolute()
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("", ".", "..") or part.startswith(".") for part in rel.split("/"))
    ):
        raise UnsafePath(f"refusing to write {rel!r}: not a plain relative path")
    target = out.joinpath(*pure.parts)
    folder = target.parent
    inside = checked.get(folder) if checked is not None else None
    if inside is None:
        root = out.resolve()
        real = folder.resolve()
        inside = real == root or root in real.parents
        if checked is not None:
            checked[folder] = inside
    if not inside:
        raise UnsafePath(f"refusing to write {rel!r}: outside {out}")
    return target


def publish(
    documents: Mapping[str, Document],
    out: Path,
    *,
    complete: bool = True,
    removed: Iterable[str] = (),
    overwrite: bool = False,
) -> PublishResult:
    """Write `documents` (each with its .gz) under `out`; remove what is gone (see `publish_files`)."""
    files: dict[str, Body | StagedBody] = {rel: Body(data) for rel, data in files_for(documents).items()}
    return publish_files(files, documents.keys(), out, complete=complete, removed=removed, overwrite=overwrite)


def publish_files(
    files: Mapping[str, Body | StagedBody],
    documents: Collection[str],
    out: Path,
    *,
    complete: bool = True,
    removed: Iterable[str] = (),
    overwrite: bool = False,
) -> PublishResult:
    """Put `files` (URL path → bytes) under `out`, the files of the `documents`; remove what is gone.

    With `complete`, `documents` is the whole site and anything an earlier
    build wrote that is not in it is removed. Without, `documents` are the
    changed ones only (an incremental build) and `removed` names the documents
    that are gone. A file feedsvc did not write (not in its manifest) is never replaced:
    unless `overwrite`, finding one where a document goes raises
    `FilesInTheWay` before anything is written (a file already holding the
    very bytes is no obstacle). Raises `UnsafePath` for a path outside `out`
    (before anything is written) and `OSError` when the disk refuses.
    """
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(files, key=lambda p: (p.removesuffix(".gz") in LISTINGS, p))
    checked: dict[Path, bool] = {}
    targets = {rel: safe_target(out, rel, checked) for rel in ordered}
    previous = _read_manifest(out)
    current = {rel: files[rel].digest for rel in ordered}
    if not overwrite:
        theirs = [rel for rel in ordered if rel not in previous and _holds_other_bytes(targets[rel], files[rel])]
        if theirs:
            raise FilesInTheWay(out, theirs)
    gone = previous.keys() - current.keys() if complete else _gone(documents, files, removed, previous, current)
    # Until this build is complete, the manifest lists what it may have
    # written as well as what the last one did, so an interrupted build never
    # leaves a file behind that a later one would not know to remove.
    _write_manifest(out, {**previous, **current})
    _remove_leftover_temps(out, targets.values())
    written = _put_all(files, targets)
    unchanged = len(targets) - len(written)
    removed_count = _remove_stale(out, {rel: previous[rel] for rel in gone})
    final = current if complete else {k: v for k, v in {**previous, **current}.items() if k not in gone}
    _write_manifest(out, final)
    changed = tuple(sorted({rel.removesuffix(".gz") for rel in written} & set(documents)))
    sizes = {rel: (current[rel], files[rel].size) for rel in ordered}
    return PublishResult(len(written), unchanged, removed_count, changed, sizes)


def _put_all(files: Mapping[str, Body | StagedBody], targets: Mapping[str, Path]) -> list[str]:
    """Put each file at its target (in `targets`' order) unless it already holds those bytes; the ones put."""
    written: list[str] = []
    folders: set[Path] = set()
    for rel, target in targets.items():
        body = files[rel]
        if not body.held_by(target):
            body.put(target, folders)
            written.append(rel)
    return written


def _gone(
    documents: Collection[str],
    files: Mapping[str, object],
    removed: Iterable[str],
    previous: Mapping[str, str],
    current: Mapping[str, str],
) -> set[str]:
    """The files an incremental build removes: those of the documents gone, and a
    document's .gz that no longer makes it smaller; only files feedsvc wrote before."""
    gone = {p for doc in removed for p in (doc, doc + ".gz")}
    gone |= {f"{doc}.gz" for doc in documents if f"{doc}.gz" not in files}
    return (gone & previous.keys()) - current.keys()


def files_for(documents: Mapping[str, Document]) -> dict[str, bytes]:
    """The files for `documents`: each one, and its gzip form beside it (for gzip_static)."""
    files: dict[str, bytes] = {}
    for rel, doc in documents.items():
        files[rel] = doc.body
        packed = gzipped(doc)
        if packed is not None:
            files[rel + ".gz"] = packed
    return files


def _holds_other_bytes(target: Path, body: Body | StagedBody) -> bool:
    """Whether something other than `body` is at `target` (a file, a link, a folder)."""
    try:
        target.lstat()
    except OSError:
        return False
    if not os.path.isfile(target) or target.is_symlink():
        return True
    return not body.held_by(target)


def write_if_changed(target: Path, body: bytes, folders: set[Path] | None = None) -> bool:
    """Write `body` to `target` unless it already holds exactly that; True if written.

    `folders` remembers the folders known to exist (see `write_atomic`).
    """
    try:
        if target.stat().st_size == len(body) and target.read_bytes() == body:
            return False
    except OSError:
        pass
    write_atomic(target, body, folders)
    return True


def write_atomic(target: Path, body: bytes, folders: set[Path] | None = None) -> None:
    """Replace `target` whole: write a temporary file beside it, then rename.

    A folder in `folders` is taken to exist (a build writes thousands of
    files into a few hundred folders: one mkdir each, not one per file).
    """
    _made(target.parent, folders)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _made(folder: Path, folders: set[Path] | None) -> None:
    """`folder` exists now (made with its parents); `folders` remembers the ones made."""
    if folders is None or folder not in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if folders is not None:
            folders.add(folder)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _read_manifest(out: Path) -> dict[str, str]:
    """The files feedsvc wrote here last time; an unreadable manifest counts as none."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_manifest(out: Path, entries: Mapping[str, str]) -> None:
    write_if_changed(out / MANIFEST, json.dumps(dict(entries), sort_keys=True, indent=0).encode("utf-8"))


def _remove_leftover_temps(out: Path, targets: Iterable[Path]) -> None:
    """Remove temporary files an interrupted build left beside the files it writes."""
    names: dict[Path, set[str]] = {}
    for target in targets:
        names.setdefault(target.parent, set()).add(target.name)
    names.setdefault(out, set()).add(MANIFEST)
    for folder, wanted in sorted(names.items()):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m = _TEMP_NAME.match(entry.name)
            if m and m.group("name") in wanted and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)


def _remove_stale(out: Path, stale: Mapping[str, str]) -> int:
    """Remove files of an earlier build, but only while they hold what feedsvc wrote."""
    removed = 0
    for rel in sorted(stale):
        try:
            target = safe_target(out, rel)
        except UnsafePath:
            continue
        try:
            if target.is_symlink() or _digest(target.read_bytes()) != stale[rel]:
                continue  # changed or replaced since: no longer feedsvc's file
            target.unlink()
            removed += 1
        except OSError:
            continue
        _prune_empty(target.parent, out)
    return removed


def _prune_empty(folder: Path, out: Path) -> None:
    root = out.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
