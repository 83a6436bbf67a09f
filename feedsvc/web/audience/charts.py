"""The report's charts as shapes: drawn by the page as inline SVG, on the server side.

Pure geometry, no markup: the template (templates/audience.html) writes the
shapes with autoescaping, so no value from a request can become markup. No
script and no style attribute (the pages' CSP allows neither): colours are
SVG presentation attributes. Every chart is 360 units wide, a phone's width
in CSS pixels, and scales with the page (style.css); each bar carries a
``<title>`` with its exact figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from feedsvc.web.audience.model import Report

WIDTH = 360
FULL = "#3b62a0"  # polls answered with the feed
NOT_MODIFIED = "#2e7d32"  # polls answered 304
INK, FAINT = "#222222", "#666666"
_LABELS = 118  # room for the service names of the bar chart
#: Most columns a time chart draws; a longer window gets columns of several hours.
MAX_COLUMNS = 72


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"
    fill: str = INK


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    #: What the chart shows, in words (its SVG <desc>, for screen readers).
    description: str
    height: int
    rects: tuple[Rect, ...]
    texts: tuple[Text, ...]
    width: int = WIDTH


@dataclass(frozen=True, slots=True)
class Column:
    """The polls of one or more consecutive hours."""

    start: int  # seconds since the epoch
    polls: int
    not_modified: int


def charts(report: Report) -> tuple[Chart, ...]:
    """The charts of a report: subscribers per service, polls per hour, the 304 share per hour."""
    return subscribers(report), polls_per_hour(report), not_modified_share(report)


def columns(report: Report) -> tuple[str, list[Column]]:
    """The window's hours as at most `MAX_COLUMNS` columns, and what one column is ("hour", "6 hours")."""
    hours = report.hours
    size = max(1, -(-len(hours) // MAX_COLUMNS))
    grouped = [
        Column(
            hours[i].start, sum(h.polls for h in hours[i : i + size]), sum(h.not_modified for h in hours[i : i + size])
        )
        for i in range(0, len(hours), size)
    ]
    return ("hour" if size == 1 else "day" if size == 24 else f"{size} hours"), grouped


def subscribers(report: Report) -> Chart:
    """One bar per service, and one for the direct pollers, as long as its subscribers."""
    rows = [(f.service, f.subscribers) for f in report.total.services] + [("Direct", report.total.direct)]
    top = max((n for _, n in rows), default=0) or 1
    room = WIDTH - _LABELS - 56
    rects, texts = [], []
    for i, (name, n) in enumerate(rows):
        y = 6 + 24 * i
        length = round(room * n / top, 1)
        rects.append(Rect(_LABELS, y, max(length, 1 if n else 0), 16, FULL, f"{name}: {n:,} subscribers"))
        texts.append(Text(_LABELS - 6, y + 12.5, name, "end"))
        texts.append(Text(_LABELS + length + 5, y + 12.5, f"{n:,}"))
    described = ", ".join(f"{name} {n:,}" for name, n in rows)
    return Chart("chart-subscribers", "Subscribers per service", f"Subscribers, all feeds: {described}.",
                 12 + 24 * len(rows), tuple(rects), tuple(texts))  # fmt: skip


def polls_per_hour(report: Report) -> Chart:
    """A column per hour (or per few hours): the polls answered 304 at its foot, the others above them."""
    unit, hours = columns(report)
    top = max((h.polls for h in hours), default=0) or 1
    left, bottom, height = 40, 128, 110
    step = (WIDTH - left - 4) / max(1, len(hours))
    rects = []
    for i, h in enumerate(hours):
        x = round(left + i * step, 2)
        w = round(max(step - 1, 0.5), 2)
        nm = round(height * h.not_modified / top, 2)
        full = round(height * (h.polls - h.not_modified) / top, 2)
        when = _hour(h.start)
        if h.not_modified:
            rects.append(Rect(x, bottom - nm, w, nm, NOT_MODIFIED, f"{when}: {h.not_modified:,} answered 304"))
        if h.polls - h.not_modified:
            rects.append(
                Rect(x, bottom - nm - full, w, full, FULL, f"{when}: {h.polls - h.not_modified:,} answered in full")
            )
    texts = [
        Text(left - 4, bottom - height + 4, f"{top:,}", "end", FAINT),
        Text(left - 4, bottom, "0", "end", FAINT),
        *_time_axis(report, left, bottom + 16),
        Text(left, 12, "answered 304", fill=NOT_MODIFIED),
        Text(WIDTH - 4, 12, "in full", "end", FULL),
    ]
    total = sum(h.polls for h in hours)
    busiest = max(hours, key=lambda h: h.polls, default=None)
    described = f"{total:,} polls in {len(report.hours)} hours" + (
        f"; the busiest {unit}, from {_hour(busiest.start)}, had {busiest.polls:,}" if busiest and busiest.polls else ""
    )
    return Chart("chart-polls", f"Polls per {unit} (UTC)", described + ".", bottom + 22, tuple(rects), tuple(texts))


def not_modified_share(report: Report) -> Chart:
    """A column per hour (or few) as tall as the share of its polls answered 304 (none where nothing was polled)."""
    unit, hours = columns(report)
    left, bottom, height = 40, 96, 84
    step = (WIDTH - left - 4) / max(1, len(hours))
    rects = []
    for i, h in enumerate(hours):
        if not h.polls:
            continue
        share = h.not_modified / h.polls
        tall = round(height * share, 2)
        rects.append(Rect(round(left + i * step, 2), bottom - tall, round(max(step - 1, 0.5), 2), tall, NOT_MODIFIED,
                          f"{_hour(h.start)}: {share:.0%} of {h.polls:,} polls answered 304"))  # fmt: skip
    texts = [Text(left - 4, bottom - height + 4, "100%", "end", FAINT), Text(left - 4, bottom, "0%", "end", FAINT),
             *_time_axis(report, left, bottom + 16)]  # fmt: skip
    share = report.total.polling.not_modified_share
    described = f"{share:.0%} of all polls were answered 304 Not Modified."
    title = f"Share of polls answered 304, per {unit} (UTC)"
    return Chart("chart-not-modified", title, described, bottom + 22, tuple(rects), tuple(texts))


def _time_axis(report: Report, left: int, y: int) -> list[Text]:
    return [Text(left, y, _hour(report.start), fill=FAINT), Text(WIDTH - 4, y, _hour(report.end), "end", FAINT)]


def _hour(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %b %H:%M")
