"""feeds.py: which records go in which feed, in what order, under what name.

The cases are data (tests/data/feeds/*.yaml, described in the README there):
record front matter in, feeds out, through the real loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc.config import ArchivesConfig, Config
from feedsvc.feeds.archives import Paging
from feedsvc.feeds.rules import (
    ALL_NAME,
    build_feeds,
    build_feeds_and_archives,
    dedupe,
    display_name,
    newest_first,
    select,
    topic_keys,
)
from feedsvc.model import FeedKind, Provider, Record
from feedsvc.records.read import load_records

CASES = sorted((DATA / "feeds").glob("*.yaml"))
UTC = UTC


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_feed_selection(case: Path, write_records: Callable[[dict[str, Any]], Path]) -> None:
    spec = yaml.safe_load(case.read_text(encoding="utf-8"))
    settings = dict(spec.get("config", {}))
    archives = ArchivesConfig(**settings.pop("archives", {}))
    config = dataclasses.replace(Config(), archives=archives, **settings)
    loaded = load_records(write_records(spec["records"]), config)
    assert loaded.errors == (), [str(e) for e in loaded.errors]
    selection = select(loaded.records, config)
    feeds, pages = build_feeds_and_archives(selection.records, config)
    assert feeds == build_feeds(selection.records, config)
    got: dict[str, dict[str, Any]] = {
        f.key.path.removeprefix("feeds/"): {
            "name": f.name,
            "total": f.total,
            "entries": [r.path for r in f.entries],
        }
        for f in feeds
    }
    for f in feeds:
        if f.archives:
            got[f.key.path.removeprefix("feeds/")]["archives"] = [
                [r.path for r in p.entries] for p in pages if p.key == f.key
            ]
    assert got == spec["expect"]["feeds"]
    assert [str(p) for p in selection.problems] == spec["expect"]["problems"]


def test_every_case_is_run() -> None:
    assert len(CASES) >= 9


# --- Unit rules ------------------------------------------------------------


def _record(n: int, *, hours: float = 0, topics: tuple[str, ...] = (), **changes: Any) -> Record:
    url = f"https://news.example.com/{n}"
    when = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(hours=hours)
    record = Record(
        path=f"{n:03}.txt",
        id=f"urn:uuid:{n:08d}-0000-5000-8000-000000000000",
        canonical_url=url,
        title=f"Story {n}",
        link=url,
        published=when,
        updated=when,
        excerpt="",
        provider=Provider("News", "news.example.com"),
        topics=topics,
    )
    return dataclasses.replace(record, **changes)


def test_two_spellings_in_one_record_give_one_entry() -> None:
    # The loader already merges them; feeds.py must not rely on it.
    record = _record(1, topics=("AI", "ai", "Ai!"))
    assert topic_keys(record) == [("ai", "AI")]
    feeds = {f.key.slug: f for f in build_feeds([record], Config()) if f.key.kind is FeedKind.TOPIC}
    assert list(feeds) == ["ai"]
    assert [r.id for r in feeds["ai"].entries] == [record.id]


def test_display_name_prefers_the_most_common_then_the_first_sorted() -> None:
    from collections import Counter

    assert display_name(Counter({"ai": 3, "AI": 2})) == "ai"
    assert display_name(Counter({"ai": 2, "AI": 2, "Ai": 2})) == "AI"


def test_newest_first_is_a_total_order() -> None:
    records = [_record(n, hours=n % 2) for n in range(6)]
    ordered = newest_first(records)
    assert [r.id for r in ordered] == [records[n].id for n in (1, 3, 5, 0, 2, 4)]


def test_the_all_feed_exists_without_records() -> None:
    feeds = build_feeds([], Config())
    assert [(f.key.kind, f.name, f.entries, f.total) for f in feeds] == [(FeedKind.ALL, ALL_NAME, (), 0)]


def test_a_duplicate_loser_is_reported_and_never_published() -> None:
    old = _record(1, path="b.txt")
    new = dataclasses.replace(old, path="a.txt", updated=old.updated + timedelta(days=1), title="New")
    chosen = dedupe([old, new])
    assert chosen.records == (new,)
    assert [(p.path, p.is_warning) for p in chosen.problems] == [("b.txt", True)]
    assert "a.txt" in str(chosen.problems[0])


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(8)), st.integers(min_value=1, max_value=5))
def test_feeds_do_not_depend_on_load_order(order: list[int], cap: int) -> None:
    topics = [("AI",), ("ai", "Robots"), ("Robots",), (), ("AI",), ("robots!",), ("AI",), ("Robots",)]
    records = [_record(n, hours=n // 3, topics=topics[n]) for n in range(8)]
    records.append(dataclasses.replace(records[0], path="zzz.txt"))  # a duplicate of record 0
    config = dataclasses.replace(Config(), max_entries=cap)
    reference = build_feeds(select(records, config).records, config)
    shuffled = [records[i] for i in order] + [records[8]]
    assert build_feeds(select(shuffled, config).records, config) == reference
    assert build_feeds(select(list(reversed(shuffled)), config).records, config) == reference
    for feed in reference:
        assert len(feed.entries) == Paging.from_config(config).current(feed.total) <= cap
