"""Rendering a refresh's plan: the touched feeds, their changed archive pages and the
listings, in worker processes that read the committed cache on their own.

Each render process writes an entry once (feedgen, `rss_atom.Fragments`) and
reuses it in every feed and archive page that holds it; pages are rendered
newest first across feeds so those come close together. Each document is
gzipped where it was rendered, and written there into the staging folder
(`write.stage`), so only its digest and length come back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from feedsvc.build.archive import PageRef
from feedsvc.build.refresh import Plan
from feedsvc.build.store import Store
from feedsvc.build.write import MANIFEST, Body, StagedBody, empty_staging, files_for, stage, without_bytes
from feedsvc.config import Config
from feedsvc.feeds.archives import Paging, page_order
from feedsvc.formats.common import Site
from feedsvc.formats.compress import with_gzip
from feedsvc.formats.documents import archive_documents, feed_documents, site_documents
from feedsvc.formats.registry import ARCHIVE_FORMATS
from feedsvc.formats.rss_atom import keep_fragments
from feedsvc.model import Document, Feed, FeedKey, archive_path

#: From this many feeds to render, rendering is spread over worker processes.
PARALLEL_FEEDS = 64


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a render made: the files to put in place, the documents they are (without their bytes), what is gone."""

    #: URL path → bytes, each document's and its .gz (`write.publish_files`).
    files: dict[str, Body | StagedBody]
    #: URL path → the document, without its bytes (`files` has them).
    documents: dict[str, Document]
    #: URL paths of the documents gone.
    gone: tuple[str, ...]


def render(cache: Path, store: Store, config: Config, plan: Plan, workers: int, out: Path) -> Rendered:
    """Documents of the planned feeds and their changed archive pages, plus the
    listings, and the paths of gone feeds and pages.

    Reads the committed cache; many feeds are rendered in worker processes,
    each reading the cache on its own and writing what it renders into the
    staging folder beside `out` (`write.stage`), so the bytes never pass
    through this process. Of a feed's archive pages only those whose entries
    or links changed are rendered (`build.archive.Archives.plan`); every page
    when `out` has no manifest (a new or emptied output folder).
    """
    site = Site.from_config(config)
    paging = Paging.from_config(config)
    everything = not (out / MANIFEST).is_file()
    runs, names, gone = _plan_archives(store, plan, paging, site, everything)
    files: dict[str, Body | StagedBody] = {}
    documents: dict[str, Document] = {}
    feeds = [(text, names.get(text, ())) for text in plan.feeds]
    # Newest pages first, across feeds: the pages that share an entry (one per
    # feed the record is in) come close together, while its fragment is kept.
    runs.sort(key=lambda run: page_order(run[2][0].name), reverse=True)
    if workers > 1 and len(plan.feeds) + len(runs) >= PARALLEL_FEEDS:
        staging = empty_staging(out)
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("fork"), initializer=_open_reader, initargs=(cache, staging)
        ) as pool:
            for staged in pool.map(_render_span, _spans(feeds, runs, workers, paging, site)):
                for doc, written in staged:
                    documents[doc.path] = doc
                    files.update((rel, StagedBody(staging / rel, *known)) for rel, known in written.items())
    else:
        keep_fragments(FRAGMENTS_KEPT)
        try:
            for job in _jobs(feeds, runs, paging, site):
                _keep(_render_with(store, *job), files, documents)
        finally:
            keep_fragments(0)
    gone += [d.path for text in plan.gone for d in feed_documents(_empty(text), site)]
    if documents or gone:
        _keep(site_documents(store.summaries(), site), files, documents)
    return Rendered(files, documents, tuple(gone))


def _keep(docs: Iterable[Document], files: dict[str, Body | StagedBody], documents: dict[str, Document]) -> None:
    """Documents rendered in this process: their files are kept in memory, as bytes to write."""
    kept = {doc.path: doc for doc in docs}
    files.update((rel, Body(data)) for rel, data in files_for(kept).items())
    documents.update((path, without_bytes(doc)) for path, doc in kept.items())


#: Entry fragments each render process keeps (`rss_atom.Fragments`): about 3 KB
#: each, enough for the pages of every feed around one date. Measured at 100,000
#: records with config.yaml: the two processes write 141,907 entries (in both
#: formats) for the 100,000 records; 65,536 kept would make it 129,278, for
#: some 100 MB more in each process (docs/benchmarks.md).
FRAGMENTS_KEPT = 32_768

#: Most archive pages one render job reads (in one query) and renders.
PAGES_PER_RUN = 8

#: A feed's key text and display name, and adjacent pages of it to render.
_Run = tuple[str, str, tuple[PageRef, ...]]


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
    salt = store.fingerprint()
    with store.transaction():
        planned = (*plan.feeds, *plan.gone)
        live = set(store.summarized_feeds())
        orphans = sorted(store.archives.feeds() - live - set(planned))
        for text in (*planned, *orphans):
            key = FeedKey.from_text(text)
            pages = store.archives.plan(text, partial(store.name_of, key, text), paging, salt, everything=everything)
            names[text] = pages.names
            for run in _consecutive(pages.render):
                runs += [(text, pages.name, run[i : i + PAGES_PER_RUN]) for i in range(0, len(run), PAGES_PER_RUN)]
            gone += [f"{archive_path(key, n)}.{fmt.suffix}" for n in pages.gone for fmt in ARCHIVE_FORMATS]
    return runs, names, gone


def _spans(
    feeds: list[tuple[str, tuple[str, ...]]], runs: list[_Run], workers: int, paging: Paging, site: Site
) -> list[list[_Job]]:
    """The work for the render processes, in spans of jobs each rendered in one of them.

    Render processes keep their own entries, so a record rendered in both is
    written twice. The feeds go first, in a few spans the processes take as
    they come (they hold the newest entries, and only those of each feed).
    Then the archive pages, newest first, in one span of dates per process,
    of about as many entries each: dealt out in turn instead, as the feeds
    are, they put two fifths of the records in both processes (at 100,000
    records with config.yaml, 40,816 written in both; 22,629 this way).
    """
    feed_jobs = _jobs(feeds, [], paging, site)
    step = max(1, len(feed_jobs) // (4 * workers))
    spans = [feed_jobs[i : i + step] for i in range(0, len(feed_jobs), step)]
    sizes = [sum(ref.hi - ref.lo for ref in run[2]) for run in runs]
    total = sum(sizes) or 1
    pages: list[list[_Run]] = [[] for _ in range(workers)]
    done = 0
    for run, size in zip(runs, sizes, strict=True):
        pages[min(workers - 1, done * workers // total)].append(run)
        done += size
    return spans + [_jobs([], span, paging, site) for span in pages if span]


def _jobs(feeds: list[tuple[str, tuple[str, ...]]], runs: list[_Run], paging: Paging, site: Site) -> list[_Job]:
    """Render jobs of a few feeds or a few runs of pages each (the worker's results go back per job)."""
    jobs: list[_Job] = [(feeds[i : i + 16], [], paging, site) for i in range(0, len(feeds), 16)]
    return jobs + [([], runs[i : i + 2], paging, site) for i in range(0, len(runs), 2)]


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
_STAGING: Path | None = None


def _open_reader(cache: Path, staging: Path) -> None:
    global _READER, _STAGING
    _READER = Store.reader(cache)
    _STAGING = staging
    keep_fragments(FRAGMENTS_KEPT)


#: A render job: feeds (each with its page names) and runs of archive pages.
_Job = tuple[list[tuple[str, tuple[str, ...]]], list[_Run], Paging, Site]


def _render_span(jobs: list[_Job]) -> list[tuple[Document, dict[str, tuple[str, int]]]]:
    """Render `jobs` in order in this worker, staging each job's files as it is done."""
    assert _READER is not None and _STAGING is not None
    return [staged for job in jobs for staged in stage(_STAGING, _render_with(_READER, *job))]


def _render_with(
    store: Store, feeds: Iterable[tuple[str, tuple[str, ...]]], runs: Iterable[_Run], paging: Paging, site: Site
) -> list[Document]:
    docs: list[Document] = []
    for text, pages in feeds:
        feed = store.feed(text, paging.max_entries, pages)
        if feed is not None:
            docs.extend(feed_documents(feed, site))
    for text, name, refs in runs:
        for page in store.archives.pages(text, name, refs):
            docs.extend(archive_documents(page, site))
    # Compressed here, in the worker that rendered it, not one by one in the main process.
    return [with_gzip(doc) for doc in docs]


def _empty(text: str) -> Feed:
    """A stand-in for a feed that is gone, to learn which paths it had."""
    return Feed(key=FeedKey.from_text(text), name="", entries=(), total=0)
