"""How a render's work is dealt to the render processes (`render._spans`).

Every feed and every run of archive pages is rendered once, the pages in one
contiguous span of dates per process, of about as many entries each: a
record's pages then go to one process, which writes its entry once.
"""

from __future__ import annotations

import random

import pytest

from feedsvc.build.archive import PageRef
from feedsvc.build.render import _spans
from feedsvc.config import Config
from feedsvc.feeds.archives import Paging
from feedsvc.formats.common import Site

SITE = Site.from_config(Config())
PAGING = Paging.from_config(Config())


def runs_of(sizes: list[int]) -> list[tuple[str, str, tuple[PageRef, ...]]]:
    return [
        (f"topic/t{i}", f"T{i}", (PageRef(f"2020{i:04d}-00000000", None, None, 0, size, (i, f"id{i}")),))
        for i, size in enumerate(sizes)
    ]


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_each_feed_and_run_once_and_the_pages_in_one_span_per_process(workers: int, seed: int) -> None:
    rnd = random.Random(seed)
    feeds = [(f"topic/f{i}", ()) for i in range(rnd.randint(0, 300))]
    runs = runs_of([rnd.randint(1, 100) for _ in range(rnd.randint(0, 400))])
    spans = _spans(feeds, runs, workers, PAGING, SITE)
    feed_spans = [span for span in spans if any(job[0] for job in span)]
    page_spans = [span for span in spans if any(job[1] for job in span)]
    assert len(feed_spans) + len(page_spans) == len(spans), "a span holds feeds or pages, not both"
    assert [f for span in feed_spans for job in span for f in job[0]] == feeds
    assert [r for span in page_spans for job in span for r in job[1]] == runs, "in order, each once"
    assert len(page_spans) <= workers and bool(page_spans) == bool(runs)
    entries = [sum(ref.hi - ref.lo for job in span for run in job[1] for ref in run[2]) for span in page_spans]
    if len(entries) == workers:
        assert max(entries) - min(entries) <= 2 * 100, entries  # within a run or two of even
