"""Bringing the cache up to date: stat every record file, parse the new and changed ones
(across cores when there are many), and say which feeds the changes touched.

A file whose stamp changed but whose bytes did not (a `touch`, a copy) is
recognised by its SHA-256 and not parsed again. Parses go into the cache a
batch at a time while the workers go on.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any

from feedsvc.build.rows import Parsed, ScanRow, Stamp
from feedsvc.build.store import Store, memberships
from feedsvc.config import Config
from feedsvc.errors import RecordError
from feedsvc.feeds.rules import Filters
from feedsvc.model import ALL
from feedsvc.records import codec
from feedsvc.records.fields import Settings
from feedsvc.records.read import Loaded, load_bytes, read_record, settings_for
from feedsvc.records.walk import walk_folders

#: Below this many changed files, parsing stays in this process.
PARALLEL_MIN = 400
_CHUNK = 256
#: Parses written to the cache at a time during a refresh.
_APPLY_BATCH = 4096


def scan(root: Path) -> dict[str, Stamp]:
    """Every record file under `root` with its stamp (one stat each), in path order."""
    return {row[0]: Stamp.of_row(row) for row in scan_rows(root)}


def scan_rows(root: Path) -> list[ScanRow]:
    """Every record file under `root` as a `ScanRow` (path, size, mtime_ns, inode), in path order."""
    rows: list[ScanRow] = []
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
    store: Store, rows: list[ScanRow], previous: list[ScanRow] | None
) -> tuple[list[tuple[str, Stamp, str | None]], list[str]]:
    """The files to read (path, stamp, cached digest) and the paths gone since the `previous` scan."""
    if previous is not None:
        differ = set(rows).difference(previous)
        new = [row for row in rows if row in differ]
        removed = sorted({row[0] for row in previous}.difference(row[0] for row in rows))
        known = store.digests(row[0] for row in new)
    else:  # a cache written before scans were kept
        stamps = store.stamps()
        new = [row for row in rows if row[0] not in stamps or stamps[row[0]][0] != Stamp.of_row(row)]
        removed = sorted(stamps.keys() - {row[0] for row in rows})
        known = {row[0]: stamps[row[0]][1] for row in new if row[0] in stamps}
    return [(row[0], Stamp.of_row(row), known.get(row[0])) for row in new], removed


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
    affected, parsed = _parse_into(store, config, todo, removed, workers or cores(), progress)
    affected |= store.pending()
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


def _parse_into(
    store: Store,
    config: Config,
    todo: list[tuple[str, Stamp, str | None]],
    removed: list[str],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[set[str], int]:
    """Parse `todo` into the cache and drop `removed`: the feeds touched, and how many were parsed.

    Parses go into the cache a batch at a time while the workers go on:
    otherwise a core idles while this process writes them all at the end.
    """
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(todo))

    affected: set[str] = set()
    parsed = 0
    batch: list[Parsed] = []
    results = parse_many(config.records_dir, todo, settings_for(config), Filters.from_config(config), workers, tick)
    for item, result in zip(todo, results, strict=True):
        if isinstance(result, str):
            store.touch(item[0], item[1])
            continue
        batch.append(result)
        if len(batch) == _APPLY_BATCH:
            affected |= store.apply(batch, ())
            parsed += len(batch)
            batch = []
    affected |= store.apply(batch, removed)
    return affected, parsed + len(batch)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a refresh found: the feeds to render, the feeds gone, and counts."""

    feeds: tuple[str, ...]
    gone: tuple[str, ...]
    files: int
    parsed: int
    removed_files: int
    feeds_total: int


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
