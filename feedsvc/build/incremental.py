"""Incremental builds: parse only changed files, render only touched feeds.

A build stats every record file and compares the stamps with the cache
(`store.py`); only new or changed files are read (`refresh.py`), in parallel
across cores when there are many. The changes give the set of feeds they
touch; only those feeds are rendered (`render.py`: by worker processes reading
the committed cache, when there are many), and only files whose bytes differ
are written (`write.py`). This module runs those steps in order, under the
build lock, and commits what servers send (`served.py`). The cache records the feeds to render as
pending in the same transaction as the changes, and clears them only after the
files are written, so a build that dies half-way is simply finished next time.

A build from an empty cache goes through the same steps, so a full build and
any sequence of incremental ones give the same bytes (tests/build/test_incremental.py).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from feedsvc import __version__
from feedsvc.build.refresh import cores, refresh
from feedsvc.build.render import Rendered, render
from feedsvc.build.rows import CacheDamaged
from feedsvc.build.served import Served, etag_of_digest
from feedsvc.build.store import Store
from feedsvc.build.write import MANIFEST, PublishResult, publish_files, staging_path, write_atomic
from feedsvc.config import Config, beside_output, check_output_dir
from feedsvc.errors import FeedsvcError, RecordError
from feedsvc.feeds.archives import Paging
from feedsvc.formats import compress
from feedsvc.formats.html import templates_digest
from feedsvc.model import ALL, Document, FeedSummary
from feedsvc.records import codec
from feedsvc.records.read import with_identity_lines


@dataclass(frozen=True, slots=True)
class Changes:
    """What a refresh found: documents to write, paths to remove, and counts."""

    #: The documents rendered, by URL path, without their bytes (those went to the files).
    documents: dict[str, Document]
    removed_paths: tuple[str, ...]
    files: int
    parsed: int
    cached: int
    removed_files: int
    feeds: int
    feeds_rendered: int


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What `build` did, for the summary line and for WebSub."""

    changes: Changes
    published: PublishResult
    problems: tuple[RecordError, ...]
    rejected: int
    seconds: float
    #: Things a user should know that are not about a record (a damaged cache set aside).
    notes: tuple[str, ...] = ()
    #: Usable records not published, by reason (`Filters.left_out`).
    left_out: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Entries of the all-articles feed: 0 means the build publishes nothing.
    published_entries: int = 0

    #: URL paths of the documents whose served bytes this build changed (see `changed_paths`).
    served_changes: tuple[str, ...] = ()

    @property
    def changed_paths(self) -> tuple[str, ...]:
        """URL paths of the documents whose bytes this build changed, as servers send them.

        Compared with what the cache said was served, not with the files: a
        build that died after writing the files but before recording them
        leaves the files right, and the build that finishes its work must
        still announce them.
        """
        return self.served_changes


def build(
    config: Config,
    out: Path | None = None,
    *,
    cache: Path | None = None,
    full: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> BuildReport:
    """Bring `out` up to date with records_dir, doing only the work changes need.

    The cache (beside `out` unless `cache` says otherwise) is updated first,
    marking the feeds to render as pending; they are cleared only once the
    files are written, so a build that dies renders them again next time.
    Then the cache's ``documents`` table is told what was written (what
    `feedsvc serve` serves). `full` starts from an empty cache. One build at
    a time per output folder: a second one waits (`on_wait` is told, once).
    With `overwrite`, files feedsvc did not write may be replaced (see `publish`).
    """
    started = time.perf_counter()
    out = out or config.output_dir
    check_output_dir(out, config.records_dir)
    cache = cache or default_cache_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(out, on_wait):
        try:
            return _build(config, out, cache, full, workers or cores(), progress, overwrite, started)
        except Exception as e:
            if full or not _damage(e):
                raise
            aside = _set_aside(cache)
            note = (
                f"the build cache {cache} cannot be trusted ({_what(e)}); "
                f"set it aside as {aside.name} and built everything again"
            )
            report = _build(config, out, cache, True, workers or cores(), progress, overwrite, started)
            return dataclasses.replace(report, notes=(*report.notes, note))


def _damage(error: Exception) -> bool:
    """Whether `error` may come from a damaged cache: anything but our own refusals and the disk's.

    Damage shows as our checks (`CacheDamaged`), SQLite's errors, or whatever
    a garbled value makes later code raise; a full build from an empty cache
    either succeeds or raises the real error again.
    """
    if isinstance(error, CacheDamaged):
        return True
    return not isinstance(error, (FeedsvcError, OSError)) or isinstance(error, sqlite3.Error)


def _what(error: BaseException) -> str:
    # SQLite's and our own messages say what is wrong without quoting data; others only their kind.
    if isinstance(error, (CacheDamaged, sqlite3.DatabaseError)):
        return str(error)
    return type(error).__name__


def _set_aside(cache: Path) -> Path:
    """Move a damaged cache out of the way (kept for a look, replacing any earlier one)."""
    aside = cache.with_name(cache.name + ".damaged")
    try:
        os.replace(cache, aside)
    except OSError:
        pass
    _remove_cache(cache)
    return aside


def _build(
    config: Config,
    out: Path,
    cache: Path,
    full: bool,
    workers: int,
    progress: Callable[[int, int], None] | None,
    overwrite: bool,
    started: float,
) -> BuildReport:
    if full:
        _remove_cache(cache)
    store = open_store(cache, config)
    try:
        with store.transaction():
            plan = refresh(store, config, render_all=not (out / MANIFEST).is_file(), workers=workers, progress=progress)
        rendered = render(cache, store, config, plan, workers, out)
        documents, gone = rendered.documents, rendered.gone
        published = _put_in_place(rendered, out, overwrite)
        signal = generation_path(out)
        # Anything a server shows changed: documents, or the record counts /healthz gives.
        news = bool(documents or gone or plan.parsed or plan.removed_files or not signal.is_file())
        changed = _commit_served(store, rendered, published, signal, news)
        if news:
            # After the commit: a server that sees this file change finds the new rows
            # (or, after a build that changed only counts, the new counts).
            write_atomic(signal, f"{store.served.state()[0]}\n".encode("ascii"))
        problems = with_identity_lines(config.records_dir, store.problems())
        _files, rejected = store.counts()
        left_out = store.left_out()
        entries = store.total(ALL.text)
    finally:
        store.close()
    changes = Changes(
        documents, gone, plan.files, plan.parsed, plan.files - plan.parsed, plan.removed_files,
        plan.feeds_total, len(plan.feeds) + len(plan.gone),
    )  # fmt: skip
    return BuildReport(
        changes, published, problems, rejected, time.perf_counter() - started,
        left_out=left_out, published_entries=entries, served_changes=changed,
    )  # fmt: skip


def _commit_served(
    store: Store, rendered: Rendered, published: PublishResult, signal: Path, news: bool
) -> tuple[str, ...]:
    """Tell the cache what is served now (its rows, a new generation, the totals) and clear the pending mark.

    Returns the paths whose served bytes changed: what hubs hear of (a build
    that died after writing the files still counts them).
    """
    served = list(served_rows(rendered.documents, published.files))
    with store.transaction():
        before = store.served.etags() if served else {}  # a no-op build reads no row
        changed = tuple(sorted(r.path for r in served if before.get(r.path) != r.etag))
        if rendered.documents or rendered.gone or not signal.is_file():  # a new generation of what is served
            store.served.set(served, rendered.gone, time.time_ns(), after=_generation_in(signal))
        if news:
            store.record_totals()
        store.clear_pending()
    return changed


def _put_in_place(rendered: Rendered, out: Path, overwrite: bool) -> PublishResult:
    """Write (or move from the staging folder) what a render made; the staging folder goes, whatever happens."""
    try:
        return publish_files(
            rendered.files, rendered.documents, out, complete=False, removed=rendered.gone, overwrite=overwrite
        )
    finally:
        shutil.rmtree(staging_path(out), ignore_errors=True)


def served_rows(documents: Mapping[str, Document], files: Mapping[str, tuple[str, int]]) -> Iterator[Served]:
    """The manifest entry of each document written, from the digests and lengths of its files."""
    for path, doc in documents.items():
        digest, size = files[path]
        gz = files.get(path + ".gz")
        yield Served.of(doc, etag_of_digest(digest), size, (etag_of_digest(gz[0]), gz[1]) if gz else None)


def summaries(config: Config, out: Path | None = None) -> list[tuple[FeedSummary, int]]:
    """Every feed the build publishes, with the entries its subscription document holds, by key.

    Builds first, so the list is the output folder's.
    """
    out = out or config.output_dir
    build(config, out)
    paging = Paging.from_config(config)
    store = Store.reader(default_cache_path(out))
    try:
        return [(s, paging.current(s.total)) for s in store.summaries()]
    finally:
        store.close()


def _generation_in(signal: Path) -> int:
    """The generation the file beside the output names (0 if none): a cache rebuilt from scratch continues it."""
    try:
        return int(signal.read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError):
        return 0


def lock_path(out: Path) -> Path:
    """Beside the output folder, like the cache."""
    return beside_output(out, "lock")


def generation_path(out: Path) -> Path:
    """Rewritten after every build that changed what is served: what servers watch (`output.py`)."""
    return beside_output(out, "generation")


@contextmanager
def build_lock(out: Path, on_wait: Callable[[Path], None] | None = None) -> Iterator[None]:
    """Hold the output folder's build lock: one build at a time writes it and its cache.

    An `flock` on a file beside the folder: the kernel drops it when the
    holder dies, so a killed build never leaves the folder locked. A build
    that finds it held waits for it (`on_wait` is called first, once).
    """
    path = lock_path(out)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(out)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def open_store(path: Path, config: Config) -> Store:
    """The cache at `path`; `CacheDamaged` if the file is there but is not a usable cache."""
    try:
        store = Store(path, fingerprint(config))
    except sqlite3.DatabaseError as e:
        raise CacheDamaged(f"not a usable SQLite file: {e}") from None
    with store.transaction():
        store.archives.use_page_size(Paging.from_config(config).page_size)
    return store


def _remove_cache(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


#: Settings that never reach a document: changing them must not rebuild everything.
_NOT_SHAPING = ("records_dir", "output_dir", "source", "polite", "queries", "audience")


def fingerprint(config: Config) -> str:
    """Everything that shapes the output besides the records themselves.

    The settings that reach documents, feedsvc's version, the cache layout,
    the gzip levels and the templates' bytes (an edited template changes every page).
    """
    shaping = {k: v for k, v in asdict(config).items() if k not in _NOT_SHAPING}
    shaping["server"] = {"cache_max_age": config.server.cache_max_age}
    levels = (compress.LEVEL, compress.ARCHIVE_LEVEL)
    text = repr((__version__, codec.VERSION, levels, templates_digest(), sorted(shaping.items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_path(out: Path) -> Path:
    """Beside the output folder, never in it: a web server must not publish it."""
    return beside_output(out, "cache.sqlite")
