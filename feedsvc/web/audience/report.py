"""The report: who reads each feed and how they poll it, from `Tally` rows.

`compute` is the only place figures are made, for the server's store and
for access logs alike. Per feed URL, within the window:

- **subscribers by service**: for each (service, feed id) the figure of its
  latest poll, then summed per service; a service that sends no feed id has
  one figure per feed URL;
- **direct pollers**: distinct clients that report no count, one subscriber
  each (a client is an address and a User-Agent);
- **polls**, the share **answered 304** and the share **conditional**
  (If-None-Match or If-Modified-Since sent; from an access log only the
  304s are known to be conditional, so there it is a lower bound);
- **clients faster than the floor**: those answered 429 by polite polling,
  or that spent more than its budget (`web.polite.capacity`, a 304 costing
  `COST_NOT_MODIFIED` and any other answer `COST_FULL`) within any
  `polite.window_seconds` made of whole minutes. Tallies are per minute, so
  a burst counted is always a real overspend; one that straddles the edges
  of the minutes may go uncounted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from feedsvc.config import PoliteConfig
from feedsvc.web.audience.model import FeedAudience, Hour, Polling, Report, ServiceFigure, Skipped, Tally
from feedsvc.web.polite import COST_FULL, COST_NOT_MODIFIED, capacity


def compute(
    rows: Iterable[Tally],
    *,
    source: str,
    end: int,
    window_seconds: int,
    polite: PoliteConfig,
    refused: Mapping[int, int] | None = None,
    dropped: Mapping[int, int] | None = None,
    malformed: int = 0,
) -> Report:
    """The report of the `rows` within the `window_seconds` up to `end` (seconds since the epoch).

    `refused` and `dropped` count, by minute, the polls left out for their
    User-Agent and those the server could not keep; `malformed` the log
    lines that could not be read.
    """
    start = end - window_seconds
    first, last = start // 60, end // 60

    def within(counts: Mapping[int, int] | None) -> int:
        return sum(n for minute, n in (counts or {}).items() if first <= minute <= last)

    feeds: dict[str, list[Tally]] = defaultdict(list)
    for row in rows:
        if first <= row.minute <= last:
            feeds[row.feed].append(row)
    budget, span = capacity(polite), max(1, polite.window_seconds // 60)
    audiences = [_feed(feed, tallies, budget, span) for feed, tallies in feeds.items()]
    audiences.sort(key=lambda a: (-a.subscribers, -a.polling.polls, a.feed))
    return Report(
        source=source,
        start=start,
        end=end,
        feeds=tuple(audiences),
        total=_total(audiences),
        hours=_hours(feeds.values(), first // 60, last // 60),
        skipped=Skipped(malformed, within(refused), within(dropped)),
        max_requests=polite.max_requests,
        window_seconds=polite.window_seconds,
    )


def _feed(feed: str, tallies: list[Tally], budget: int, span: int) -> FeedAudience:
    latest: dict[tuple[str, int], Tally] = {}  # (service, client) → its latest tally
    direct: set[int] = set()
    costs: dict[int, dict[int, int]] = defaultdict(dict)  # client → minute → cost
    limited: set[int] = set()
    polls = not_modified = conditional = too_many = 0
    for t in tallies:
        polls += t.polls
        not_modified += t.not_modified
        conditional += t.conditional
        too_many += t.limited
        if t.service is None:
            direct.add(t.client)
        else:
            seen = latest.get((t.service, t.client))
            if seen is None or (t.last, t.minute) > (seen.last, seen.minute):
                latest[t.service, t.client] = t
        if t.limited:
            limited.add(t.client)
        spent = t.not_modified * COST_NOT_MODIFIED + (t.polls - t.not_modified - t.limited) * COST_FULL
        minutes = costs[t.client]
        minutes[t.minute] = minutes.get(t.minute, 0) + spent
    figures: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (service, _client), t in latest.items():
        figures[service][0] += t.subscribers or 0
        figures[service][1] += 1
    fast = sum(1 for client, minutes in costs.items() if client in limited or _overspent(minutes, budget, span))
    return FeedAudience(feed, _figures(figures), len(direct), Polling(polls, not_modified, conditional, too_many), fast)


def _figures(figures: dict[str, list[int]]) -> tuple[ServiceFigure, ...]:
    """(service → [subscribers, feed ids]) as figures, the most subscribers first."""
    found = (ServiceFigure(service, n, ids) for service, (n, ids) in figures.items())
    return tuple(sorted(found, key=lambda f: (-f.subscribers, f.service)))


def _overspent(minutes: dict[int, int], budget: int, span: int) -> bool:
    """Whether the costs of any `span` consecutive minutes add up to more than `budget`."""
    if sum(minutes.values()) <= budget:
        return False  # the common case: not even the whole window is over
    order = sorted(minutes)
    total, low = 0, 0
    for minute in order:
        total += minutes[minute]
        while order[low] <= minute - span:
            total -= minutes[order[low]]
            low += 1
        if total > budget:
            return True
    return False


def _total(audiences: list[FeedAudience]) -> FeedAudience:
    figures: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    polling = Polling()
    for a in audiences:
        polling += a.polling
        for f in a.services:
            figures[f.service][0] += f.subscribers
            figures[f.service][1] += f.feed_ids
    return FeedAudience(
        "", _figures(figures), sum(a.direct for a in audiences), polling, sum(a.fast_clients for a in audiences)
    )


def _hours(feeds: Iterable[list[Tally]], first: int, last: int) -> tuple[Hour, ...]:
    """Every hour of the window, polled or not, with its polls and 304s."""
    polls: dict[int, list[int]] = {hour: [0, 0] for hour in range(first, last + 1)}
    for tallies in feeds:
        for t in tallies:
            counts = polls[t.minute // 60]
            counts[0] += t.polls
            counts[1] += t.not_modified
    return tuple(Hour(hour * 3600, n, nm) for hour, (n, nm) in polls.items())
