"""What goes in which feed: filter, merge duplicates, group, sort and cap.

Nothing here knows about XML. Every ordering is total (date, then id; name,
then key) so the same records always give the same feeds, whatever order the
files were listed or loaded in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feedsvc.config import Config
from feedsvc.errors import RecordError
from feedsvc.feeds.archives import Paging, split
from feedsvc.model import ALL, ArchivePage, Feed, FeedKey, FeedKind, Record
from feedsvc.records import codec
from feedsvc.text import topic_slug

ALL_NAME = "All articles"


@dataclass(frozen=True, slots=True)
class Filters:
    """Which articles are published: the one rule `select` and the build cache both apply."""

    include_unpublished: bool
    min_quality: float

    @classmethod
    def from_config(cls, config: Config) -> Filters:
        return cls(config.include_unpublished, config.min_quality)

    def selects(self, is_published: bool, quality: float) -> bool:
        return self.left_out(is_published, quality) is None

    def left_out(self, is_published: bool, quality: float) -> str | None:
        """Why a record is not published ("unpublished", "below min_quality"), or None if it is."""
        if not (is_published or self.include_unpublished):
            return UNPUBLISHED
        if quality < self.min_quality:
            return LOW_QUALITY
        return None


#: The reasons a usable record is left out, as the summary line counts them.
UNPUBLISHED = "unpublished"
LOW_QUALITY = "below min_quality"


@dataclass(frozen=True, slots=True)
class Selection:
    """The records that will be published, and what choosing them reported."""

    records: tuple[Record, ...]
    problems: tuple[RecordError, ...]


def select(records: Iterable[Record], config: Config) -> Selection:
    """Merge duplicate articles, then drop unpublished and low-quality ones.

    Duplicates are merged first: the newest file is the article's current
    state, so when it says ``published: false`` (or falls below min_quality)
    the article is left out, and an older copy of it is never published in its
    place.
    """
    merged = dedupe(records)
    filters = Filters.from_config(config)
    kept = tuple(r for r in merged.records if filters.selects(r.is_published, r.quality))
    return Selection(kept, merged.problems)


def dedupe(records: Iterable[Record]) -> Selection:
    """One record per article (entry id); the most recently updated file wins.

    Ties go to the file whose path sorts first, so the winner never depends on
    load order. Each losing file gets a warning naming the winner.
    """
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.id].append(r)
    winners: list[Record] = []
    problems: list[RecordError] = []
    for group in groups.values():
        group.sort(key=lambda r: election_key(codec.micros(r.updated), r.path))
        winners.append(group[0])
        problems.extend(RecordError.duplicate(loser.path, group[0].path) for loser in group[1:])
    winners.sort(key=lambda r: r.path)
    problems.sort(key=lambda p: p.path)
    return Selection(tuple(winners), tuple(problems))


def election_key(updated_micros: int, path: str) -> tuple[int, str]:
    """Sorts an article's files best first: the most recently updated, ties to the path that sorts first.

    The build cache elects with it too (`Store._elect`), on the times it stores.
    """
    return -updated_micros, path


def newest_first(records: Iterable[Record]) -> list[Record]:
    """Newest published first; ties broken by entry id."""
    ordered = sorted(records, key=lambda r: r.id)
    ordered.sort(key=lambda r: r.published, reverse=True)
    return ordered


def topic_keys(record: Record) -> list[tuple[str, str]]:
    """(slug, name as written) for each of a record's topics, one per slug.

    Two spellings of one topic in a record ("AI", "ai") would otherwise put
    the record in that topic's feed twice, with a duplicate entry id.
    """
    keys: dict[str, str] = {}
    for name in record.topics:
        keys.setdefault(topic_slug(name), name)
    return list(keys.items())


def memberships(record: Record) -> list[tuple[FeedKey, str]]:
    """Each feed `record` is in, with the name it gives that feed: all articles, each
    of its topics (once per slug), its provider. The build cache stores these too."""
    feeds = [(ALL, ALL_NAME)]
    feeds += [(FeedKey(FeedKind.TOPIC, slug), name) for slug, name in topic_keys(record)]
    feeds.append((FeedKey(FeedKind.PROVIDER, record.provider.domain), record.provider.name))
    return feeds


def build_feeds(records: Sequence[Record], config: Config) -> list[Feed]:
    """Every feed: all records, one per topic and one per provider, sorted by key."""
    return build_feeds_and_archives(records, config)[0]


def build_feeds_and_archives(records: Sequence[Record], config: Config) -> tuple[list[Feed], list[ArchivePage]]:
    """Every feed (as `build_feeds`) and every feed's archive pages, in feed then page order.

    A feed holds its newest max_entries entries; the older ones are on the
    pages `archives.split` lays out (the same function the build cache uses).
    """
    paging = Paging.from_config(config)
    by_key: dict[FeedKey, list[Record]] = defaultdict(list)
    names: dict[FeedKey, Counter[str]] = defaultdict(Counter)
    by_key[ALL] = []
    for r in records:
        for key, name in memberships(r):
            by_key[key].append(r)
            names[key][name] += 1
    feeds = []
    pages: list[ArchivePage] = []
    for key in sorted(by_key):
        members = by_key[key]
        name = ALL_NAME if key.kind is FeedKind.ALL else display_name(names[key])
        ordered = newest_first(members)
        current, spans = split([(r.id, codec.micros(r.published)) for r in ordered], paging)
        page_names = tuple(s.name for s in spans)
        feeds.append(Feed(key, name, tuple(ordered[:current]), len(members), len(page_names), page_names))
        # Span offsets count the archived entries oldest first; `ordered` is newest first,
        # and so is each page.
        total = len(ordered)
        pages += (
            ArchivePage(key, name, s.name, tuple(ordered[total - s.stop : total - s.start]), s.prev, s.next)
            for s in spans
        )
    return feeds, pages


def display_name(counts: Counter[str]) -> str:
    """The most common spelling; among equals, the one that sorts first."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
