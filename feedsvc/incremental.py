"""Incremental builds: parse only changed files, render only touched feeds.

A build stats every record file and compares the stamps with the cache
(`store.py`); only new or changed files are read, in parallel across cores
when there are many. A file whose stamp changed but whose bytes did not (a
`touch`, a copy) is recognised by its SHA-256 and not parsed again. The changes
give the set of feeds they touch; only those feeds are rendered, and only files
whose bytes differ are written. Everything happens inside one cache
transaction that commits after the files are written, so a build that dies
half-way is simply done again next time.

A build from an empty cache goes through the same steps, so a full build and
any sequence of incremental ones give the same bytes (tests/test_incremental.py).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from . import __version__, codec
from .config import Config
from .fields import Settings
from .errors import RecordError
from .publish import MANIFEST, PublishResult, publish
from .records import Loaded, load_bytes, read_record, record_files, settings_for
from .render import Site
from .site import Document, feed_documents, site_documents
from .store import Parsed, Stamp, Store, feed_key, memberships

#: Below this many changed files, parsing stays in this process.
PARALLEL_MIN = 400
_CHUNK = 256


@dataclass(frozen=True, slots=True)
class Filters:
    include_unpublished: bool
    min_quality: float

    def selects(self, is_published: bool, quality: float) -> bool:
        return (is_published or self.include_unpublished) and quality >= self.min_quality


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

    @property
    def changed_paths(self) -> tuple[str, ...]:
        """URL paths of the documents whose bytes this build changed."""
        return self.published.changed


def build(
    config: Config,
    out: Path | None = None,
    *,
    cache: Path | None = None,
    full: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Bring `out` up to date with records_dir, doing only the work changes need.

    The cache (beside `out` unless `cache` says otherwise) is updated in the
    same transaction that covers writing the files: if anything fails, the
    cache stays as it was and the next build does the work again. `full`
    starts from an empty cache.
    """
    started = time.perf_counter()
    out = out or config.output_dir
    cache = cache or default_cache_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if full:
        _remove_cache(cache)
    store = open_store(cache, config)
    try:
        with store.transaction():
            changes = refresh(
                store, config, render_all=not (out / MANIFEST).is_file(), workers=workers, progress=progress
            )
            published = publish(changes.documents, out, complete=False, removed=changes.removed_paths)
        problems = tuple(store.problems())
        _files, rejected = store.counts()
    finally:
        store.close()
    return BuildReport(changes, published, problems, rejected, time.perf_counter() - started)


def open_store(path: Path, config: Config) -> Store:
    """The cache at `path`; a file that is not a usable cache is replaced by an empty one."""
    try:
        return Store(path, fingerprint(config))
    except sqlite3.DatabaseError:
        _remove_cache(path)
        return Store(path, fingerprint(config))


def _remove_cache(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


def fingerprint(config: Config) -> str:
    """Everything that shapes the output besides the records themselves."""
    shaping = {k: v for k, v in asdict(config).items() if k not in ("records_dir", "output_dir", "source")}
    shaping["server"] = {"cache_max_age": config.server.cache_max_age}
    text = repr((__version__, codec.VERSION, sorted(shaping.items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_path(out: Path) -> Path:
    """Beside the output folder, never in it: a web server must not publish it."""
    return out.parent / f".{out.name}.feedsvc-cache.sqlite"


def scan(root: Path) -> dict[str, Stamp]:
    """Every record file under `root` with its stamp (one stat each)."""
    stamps = {}
    for rel in record_files(root):
        try:
            st = os.stat(root / rel)
        except OSError:
            continue
        stamps[rel] = Stamp(st.st_size, st.st_mtime_ns, st.st_ino)
    return stamps


def parse_one(root: Path, rel: str, stamp: Stamp, known: str | None, settings: Settings, filters: Filters) -> Parsed | str:
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
    )  # fmt: skip


def _parse_chunk(args: tuple[Path, list[tuple[str, Stamp, str | None]], Settings, Filters]) -> list[Parsed | str]:
    root, items, settings, filters = args
    return [parse_one(root, rel, stamp, known, settings, filters) for rel, stamp, known in items]


def parse_many(
    root: Path,
    items: list[tuple[str, Stamp, str | None]],
    settings: Settings,
    filters: Filters,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Parsed | str]:
    """Parse files, across `workers` processes when there are many."""
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    if workers <= 1 or len(items) < PARALLEL_MIN:
        for chunk in chunks:
            results = _parse_chunk((root, chunk, settings, filters))
            if progress:
                progress(len(chunk))
            yield from results
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        for chunk, results in zip(chunks, pool.map(_parse_chunk, [(root, c, settings, filters) for c in chunks])):
            if progress:
                progress(len(chunk))
            yield from results


def refresh(
    store: Store,
    config: Config,
    *,
    render_all: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Changes:
    """Bring the cache up to date with records_dir; return the documents to write.

    Call inside `store.transaction()`. `render_all` renders every feed (when the
    output folder may not match the cache); otherwise only touched feeds.
    """
    root = config.records_dir
    current = scan(root)
    known = store.stamps()
    removed = sorted(known.keys() - current.keys())
    todo = [(rel, st, known[rel][1] if rel in known else None) for rel, st in current.items() if known.get(rel, (None,))[0] != st]
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(todo))

    parsed: list[Parsed] = []
    for item, result in zip(todo, parse_many(root, todo, settings_for(config), _filters(config), workers or _cores(), tick)):
        if isinstance(result, str):
            store.touch(item[0], item[1])
        else:
            parsed.append(result)
    affected = store.apply(parsed, removed)
    everything = store.feed_keys()
    if render_all or store.fresh:
        affected = set(everything) | {"all/all"}
        store.fresh = False
    documents, gone = render(store, config, affected)
    return Changes(documents, gone, len(current), len(parsed), len(current) - len(parsed), len(removed), len(everything), len(affected))


def render(store: Store, config: Config, affected: Iterable[str]) -> tuple[dict[str, Document], tuple[str, ...]]:
    """Documents of the touched feeds plus the listings; paths of feeds now gone."""
    site = Site.from_config(config)
    documents: dict[str, Document] = {}
    gone: list[str] = []
    for text in sorted(affected):
        feed = store.feed(text, config.max_entries)
        if feed is None:
            gone.extend(d for d in _feed_paths(text))
            store.forget_summary(text)
            continue
        store.save_summary(feed)
        for doc in feed_documents(feed, site):
            documents[doc.path] = doc
    if documents or gone:
        for doc in site_documents(store.summaries(), site):
            documents[doc.path] = doc
    return documents, tuple(gone)


def _feed_paths(text: str) -> list[str]:
    path = feed_key(text).path
    return [f"{path}.{ext}" for ext in ("rss", "atom", "html")]


def _filters(config: Config) -> Filters:
    return Filters(config.include_unpublished, config.min_quality)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
