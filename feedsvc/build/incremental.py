"""Incremental builds: parse only changed files, render only touched feeds.

A build stats every record file and compares the stamps with the cache
(`store.py`); only new or changed files are read, in parallel across cores
when there are many. A file whose stamp changed but whose bytes did not (a
`touch`, a copy) is recognised by its SHA-256 and not parsed again. The changes
give the set of feeds they touch; only those feeds are rendered (by worker
processes reading the committed cache, when there are many), and only files
whose bytes differ are written. The cache records the feeds to render as
pending in the same transaction as the changes, and clears them only after the
files are written, so a build that dies half-way is simply finished next time.

A build from an empty cache goes through the same steps, so a full build and
any sequence of incremental ones give the same bytes (tests/build/test_incremental.py).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import marshal
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any

from feedsvc import __version__
from feedsvc.build.served import ARCHIVE, REVALIDATE, Served, etag_of_digest
from feedsvc.build.store import (
    CacheDamaged,
    PageRef,
    Parsed,
    Stamp,
    Store,
    archive_pages,
    memberships,
    paged_feeds,
    plan_pages,
    use_page_size,
)  # fmt: skip
from feedsvc.build.write import MANIFEST, PublishResult, publish, write_atomic
from feedsvc.config import Config, check_output_dir
from feedsvc.errors import FeedsvcError, RecordError
from feedsvc.feeds.archives import Paging
from feedsvc.feeds.rules import Filters
from feedsvc.formats import compress
from feedsvc.formats.common import Site
from feedsvc.formats.documents import Document, archive_documents, feed_documents, site_documents, with_gzip
from feedsvc.formats.html import templates_digest
from feedsvc.formats.registry import ARCHIVE_FORMATS
from feedsvc.formats.rss_atom import keep_fragments
from feedsvc.model import ALL, Feed, FeedKey, FeedSummary, archive_path
from feedsvc.records import codec
from feedsvc.records.fields import Settings
from feedsvc.records.read import Loaded, load_bytes, read_record, settings_for, walk_folders, with_identity_lines

#: Below this many changed files, parsing stays in this process.
PARALLEL_MIN = 400
_CHUNK = 256
#: Parses written to the cache at a time during a refresh.
_APPLY_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Changes:
    """What a refresh found: documents to write, paths to remove, and counts."""

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
        documents, gone = render(cache, store, config, plan, workers, out)
        published = publish(documents, out, complete=False, removed=gone, overwrite=overwrite)
        signal = generation_path(out)
        # Anything a server shows changed: documents, or the record counts /healthz gives.
        news = bool(documents or gone or plan.parsed or plan.removed_files or not signal.is_file())
        served = list(served_rows(documents, published.files))
        with store.transaction():
            # What servers send that differs from what they sent: what hubs hear of
            # (a build that died after writing the files still counts them).
            before = store.etags() if served else {}  # a no-op build reads no row
            changed = tuple(sorted(r.path for r in served if before.get(r.path) != r.etag))
            if documents or gone or not signal.is_file():  # a new generation of what is served
                store.set_documents(served, gone, time.time_ns(), after=_generation_in(signal))
            if news:
                store.record_totals()
            store.clear_pending()
        if news:
            # After the commit: a server that sees this file change finds the new rows
            # (or, after a build that changed only counts, the new counts).
            write_atomic(signal, f"{store.state()[0]}\n".encode("ascii"))
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


def served_rows(documents: Mapping[str, Document], files: Mapping[str, tuple[str, int]]) -> Iterator[Served]:
    """The manifest entry of each document written, from the digests and lengths of its files."""
    for path, doc in documents.items():
        digest, size = files[path]
        gz = files.get(path + ".gz")
        when = doc.last_modified
        yield Served(
            path, doc.media_type, int(when.timestamp()) if when else None, ARCHIVE if doc.archive else REVALIDATE,
            etag_of_digest(digest), size, etag_of_digest(gz[0]) if gz else None, gz[1] if gz else None,
        )  # fmt: skip


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
    return out.parent / f".{out.name}.feedsvc-lock"


def generation_path(out: Path) -> Path:
    """Rewritten after every build that changed what is served: what servers watch (`output.py`)."""
    return out.parent / f".{out.name}.feedsvc-generation"


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
    use_page_size(store, Paging.from_config(config).page_size)
    return store


def _remove_cache(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


#: Settings that never reach a document: changing them must not rebuild everything.
_NOT_SHAPING = ("records_dir", "output_dir", "source", "polite", "queries")


def fingerprint(config: Config) -> str:
    """Everything that shapes the output besides the records themselves.

    The settings that reach documents, feedsvc's version, the cache layout,
    the gzip level and the templates' bytes (an edited template changes every page).
    """
    shaping = {k: v for k, v in asdict(config).items() if k not in _NOT_SHAPING}
    shaping["server"] = {"cache_max_age": config.server.cache_max_age}
    text = repr((__version__, codec.VERSION, compress.LEVEL, templates_digest(), sorted(shaping.items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_path(out: Path) -> Path:
    """Beside the output folder, never in it: a web server must not publish it."""
    return out.parent / f".{out.name}.feedsvc-cache.sqlite"


def scan(root: Path) -> dict[str, Stamp]:
    """Every record file under `root` with its stamp (one stat each), in path order."""
    return {rel: Stamp(size, mtime_ns, ino) for rel, size, mtime_ns, ino in scan_rows(root)}


def scan_rows(root: Path) -> list[tuple[str, int, int, int]]:
    """Every record file under `root` as (path, size, mtime_ns, inode), in path order.

    Plain tuples, compared as they are: at 100,000 files, an object per file
    costs as much as the stat.
    """
    rows: list[tuple[str, int, int, int]] = []
    append = rows.append
    for prefix, entries in walk_folders(root):
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            append((prefix + entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    rows.sort(key=itemgetter(0))
    return rows


def _changed(
    store: Store, rows: list[tuple[str, int, int, int]], previous: list[tuple[str, int, int, int]] | None
) -> tuple[list[tuple[str, Stamp, str | None]], list[str]]:
    """The files to read (path, stamp, cached digest) and the paths gone since the `previous` scan."""
    if previous is not None:
        differ = set(rows).difference(previous)
        new = [row for row in rows if row in differ]
        removed = sorted({row[0] for row in previous}.difference(row[0] for row in rows))
        known = store.digests(row[0] for row in new)
    else:  # a cache written before scans were kept
        stamps = store.stamps()
        new = [row for row in rows if stamps.get(row[0], (None,))[0] != row[1:]]
        removed = sorted(stamps.keys() - {row[0] for row in rows})
        known = {row[0]: stamps[row[0]][1] for row in new if row[0] in stamps}
    return [(rel, Stamp(size, mtime, ino), known.get(rel)) for rel, size, mtime, ino in new], removed


def parse_one(
    root: Path, rel: str, stamp: Stamp, known: str | None, settings: Settings, filters: Filters
) -> Parsed | str:
    """Parse one file for the cache; the bare digest if its bytes are `known` already."""
    data = read_record(root, rel, settings)
    if isinstance(data, Loaded):  # rejected unread: never trust a digest for it
        digest, loaded = f"unread:{stamp.size}:{stamp.mtime_ns}", data
    else:
        digest = hashlib.sha256(data).hexdigest()
        if digest == known:
            return digest
        loaded = load_bytes(rel, data, settings)
    r = loaded.record
    if r is None:
        return Parsed(rel, stamp, digest, None, None, None, None, False, (), loaded.problems)
    return Parsed(
        rel, stamp, digest, codec.encode(r), r.id, codec.micros(r.updated), codec.micros(r.published),
        filters.selects(r.is_published, r.quality), memberships(r), loaded.problems,
        filters.left_out(r.is_published, r.quality),
    )  # fmt: skip


def _parse_chunk(args: tuple[Path, bytes, Settings, Filters]) -> bytes:
    """`parse_one` for each of the marshalled items, as one marshal blob (see `_as_row`)."""
    root, items, settings, filters = args
    return marshal.dumps([
        _as_row(parse_one(root, rel, Stamp(size, mtime_ns, ino), known, settings, filters))
        for rel, size, mtime_ns, ino, known in marshal.loads(items)
    ])  # fmt: skip


# A worker's results travel as plain tuples in one marshal blob: pickling a
# slotted dataclass runs Python code per object, in the parent too, on the
# core the other worker needs.
def _as_row(result: Parsed | str) -> str | tuple[object, ...]:
    if isinstance(result, str):
        return result
    p = result
    problems = tuple((e.path, e.field, e.reason, e.line, e.severity) for e in p.problems)
    return (
        p.rel,
        p.stamp.size,
        p.stamp.mtime_ns,
        p.stamp.ino,
        p.digest,
        p.rec,
        p.id,
        p.updated,
        p.published,
        p.selected,
        p.feeds,
        problems,
        p.left_out,
    )


def _from_row(row: str | tuple[Any, ...]) -> Parsed | str:
    if isinstance(row, str):
        return row
    rel, size, mtime_ns, ino, digest, rec, id_, updated, published, selected, feeds, problems, left_out = row
    return Parsed(
        rel, Stamp(size, mtime_ns, ino), digest, rec, id_, updated, published, selected, feeds,
        tuple(RecordError(*e) for e in problems), left_out,
    )  # fmt: skip


def parse_many(
    root: Path,
    items: list[tuple[str, Stamp, str | None]],
    settings: Settings,
    filters: Filters,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Parsed | str]:
    """Parse files, across `workers` processes when there are many; results in the order of `items`."""
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers <= 1 or len(items) < PARALLEL_MIN:
        for chunk in chunks:
            results = [parse_one(root, rel, stamp, known, settings, filters) for rel, stamp, known in chunk]
            if progress:
                progress(len(chunk))
            yield from results
        return
    jobs = [
        (root, marshal.dumps([(rel, st.size, st.mtime_ns, st.ino, known) for rel, st, known in c]), settings, filters)
        for c in chunks
    ]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        for chunk, blob in zip(chunks, pool.map(_parse_chunk, jobs), strict=True):
            if progress:
                progress(len(chunk))
            yield from map(_from_row, marshal.loads(blob))


#: From this many feeds to render, rendering is spread over worker processes.
PARALLEL_FEEDS = 64


def refresh(
    store: Store,
    config: Config,
    *,
    render_all: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Plan:
    """Bring the cache up to date with records_dir; say which feeds to render.

    Call inside `store.transaction()`. The feeds to render are the ones the
    changes touched, those an interrupted build left (`pending`), or all of
    them with `render_all` (when the output folder may not match the cache).
    They are recorded as pending until the files are written.
    """
    root = config.records_dir
    rows = scan_rows(root)
    previous = store.scan()
    unchanged = previous == rows  # the common case: no row of the files table is read
    todo, removed = ([], []) if unchanged else _changed(store, rows, previous)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(todo))

    # Parses go into the cache a batch at a time while the workers go on:
    # otherwise a core idles while this process writes them all at the end.
    affected: set[str] = set()
    parsed = 0
    batch: list[Parsed] = []
    for item, result in zip(
        todo, parse_many(root, todo, settings_for(config), filters_for(config), workers or cores(), tick), strict=True
    ):
        if isinstance(result, str):
            store.touch(item[0], item[1])
            continue
        batch.append(result)
        if len(batch) == _APPLY_BATCH:
            affected |= store.apply(batch, ())
            parsed += len(batch)
            batch = []
    affected |= store.apply(batch, removed) | store.pending()
    parsed += len(batch)
    everything = store.feed_keys()
    if render_all or store.fresh:
        affected |= set(everything) | {ALL.text}
        store.fresh = False
    live = {text for text in affected if store.summarize(text, config.max_entries)}
    store.set_pending(affected)
    if not unchanged:
        store.set_scan(rows)
    return Plan(
        feeds=tuple(sorted(live)), gone=tuple(sorted(affected - live)), files=len(rows), parsed=parsed,
        removed_files=len(removed), feeds_total=len(everything) + (ALL.text not in everything),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    """What a refresh found: the feeds to render, the feeds gone, and counts."""

    feeds: tuple[str, ...]
    gone: tuple[str, ...]
    files: int
    parsed: int
    removed_files: int
    feeds_total: int


def render(
    cache: Path, store: Store, config: Config, plan: Plan, workers: int, out: Path | None = None
) -> tuple[dict[str, Document], tuple[str, ...]]:
    """Documents of the planned feeds and their changed archive pages, plus the
    listings, and the paths of gone feeds and pages.

    Reads the committed cache; many feeds are rendered in worker processes,
    each reading the cache on its own. Of a feed's archive pages only those
    whose entries or links changed are rendered (`store.plan_pages`); every
    page when `out` has no manifest (a new or emptied output folder).
    """
    site = Site.from_config(config)
    paging = Paging.from_config(config)
    everything = out is not None and not (out / MANIFEST).is_file()
    runs, names, gone = _plan_archives(store, plan, paging, site, everything)
    documents: dict[str, Document] = {}
    feeds = [(text, names.get(text, ())) for text in plan.feeds]
    jobs: list[_Job] = [(feeds[i : i + 16], [], paging, site) for i in range(0, len(feeds), 16)]
    # Newest pages first, across feeds: the pages that share an entry (one per
    # feed the record is in) come close together, while its fragment is kept.
    runs.sort(key=lambda run: run[1][0].name.replace("first", "0"), reverse=True)
    jobs += [([], runs[i : i + 2], paging, site) for i in range(0, len(runs), 2)]
    if workers > 1 and len(plan.feeds) + len(runs) >= PARALLEL_FEEDS:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("fork"), initializer=_open_reader, initargs=(cache,)
        ) as pool:
            # A few long runs of jobs per worker, not one job at a time: each
            # worker then renders a span of dates, and most entries in one only.
            for docs in pool.map(_render_chunk, jobs, chunksize=max(1, len(jobs) // (4 * workers))):
                documents.update((d.path, d) for d in docs)
    else:
        keep_fragments(FRAGMENTS_KEPT)
        try:
            for job in jobs:
                documents.update((d.path, d) for d in _render_with(store, *job))
        finally:
            keep_fragments(0)
    gone += [d.path for text in plan.gone for d in feed_documents(_empty(text), site)]
    if documents or gone:
        for doc in site_documents(store.summaries(), site):
            documents[doc.path] = doc
    return documents, tuple(gone)


#: Entry fragments each render process keeps (`render.Fragments`): about 3 KB
#: each, enough for the pages of every feed around one date (measured in one
#: process: 20,000 records, shipped config, 1.08 entries written per entry used once).
FRAGMENTS_KEPT = 32_768

#: Most archive pages one render job reads (in one query) and renders.
PAGES_PER_RUN = 8

_Run = tuple[str, tuple[PageRef, ...]]


def _plan_archives(
    store: Store, plan: Plan, paging: Paging, site: Site, everything: bool
) -> tuple[list[_Run], dict[str, tuple[str, ...]], list[str]]:
    """The runs of archive pages to render (feed, adjacent pages), each planned
    feed's page names, and the paths of gone pages.

    Feeds the cache still knows pages of but that no longer exist (gone by a
    setting that made the cache fresh) lose their pages too.
    """
    runs: list[_Run] = []
    names: dict[str, tuple[str, ...]] = {}
    gone: list[str] = []
    salt = fingerprint_of(store)
    with store.transaction():
        planned = (*plan.feeds, *plan.gone)
        live = {f for (f,) in store.db.execute("SELECT feed FROM summaries")}
        orphans = sorted(paged_feeds(store) - live - set(planned))
        for text in (*planned, *orphans):
            pages = plan_pages(store, text, paging, salt, everything=everything)
            names[text] = pages.names
            for run in _consecutive(pages.render):
                runs += [(text, run[i : i + PAGES_PER_RUN]) for i in range(0, len(run), PAGES_PER_RUN)]
            key = FeedKey.from_text(text)
            gone += [f"{archive_path(key, n)}.{fmt.suffix}" for n in pages.gone for fmt in ARCHIVE_FORMATS]
    return runs, names, gone


def _consecutive(refs: Sequence[PageRef]) -> list[tuple[PageRef, ...]]:
    """`refs` (newest first) in runs of pages that are adjacent in the feed (read in one query)."""
    runs: list[list[PageRef]] = []
    for ref in refs:
        if runs and runs[-1][-1].hi == ref.lo:
            runs[-1].append(ref)
        else:
            runs.append([ref])
    return [tuple(run) for run in runs]


_READER: Store | None = None


def _open_reader(cache: Path) -> None:
    global _READER
    _READER = Store.reader(cache)
    keep_fragments(FRAGMENTS_KEPT)


#: A render job: feeds (each with its page names) and runs of archive pages.
_Job = tuple[list[tuple[str, tuple[str, ...]]], list[_Run], Paging, Site]


def _render_chunk(args: _Job) -> list[Document]:
    assert _READER is not None
    return _render_with(_READER, *args)


def _render_with(
    store: Store, feeds: Iterable[tuple[str, tuple[str, ...]]], runs: Iterable[_Run], paging: Paging, site: Site
) -> list[Document]:
    docs: list[Document] = []
    for text, pages in feeds:
        feed = store.feed(text, paging.max_entries, pages)
        if feed is not None:
            docs.extend(feed_documents(feed, site))
    for text, refs in runs:
        for page in archive_pages(store, text, refs):
            docs.extend(archive_documents(page, site))
    # Compressed here, in the worker that rendered it, not one by one in the main process.
    return [with_gzip(doc) for doc in docs]


def _empty(text: str) -> Feed:
    """A stand-in for a feed that is gone, to learn which paths it had."""
    return Feed(key=FeedKey.from_text(text), name="", entries=(), total=0)


def fingerprint_of(store: Store) -> str:
    """The fingerprint the cache was made with (salts the archive page digests)."""
    row = store.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
    return row[0] if row else ""


def filters_for(config: Config) -> Filters:
    return Filters.from_config(config)


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
