"""The report written out: an HTML page with SVG charts, JSON for machines, text for a terminal.

The page is templates/audience.html, on the site's base.html, rendered like
every page of the site (`formats.html.render_template`): served at
/audience.html it links the site's stylesheet like every page (and keeps the
strict CSP: no script, no style attribute); written by `feedsvc audience
--html` it carries the stylesheet inline, so the file reads on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from feedsvc.formats.common import Site
from feedsvc.formats.html import render_template, stylesheet
from feedsvc.web.audience.charts import charts
from feedsvc.web.audience.model import FeedAudience, Report


def render_html(report: Report, site: Site, *, notice: str | None = None, standalone: bool = False) -> bytes:
    """The report page; `standalone` puts the stylesheet in the page (for a file opened anywhere)."""
    context: dict[str, Any] = {
        "site": site,
        "page_title": f"Who reads the feeds · {site.title}",
        "autodiscovery": [],
        "report": report,
        "charts": charts(report),
        "notice": notice,
        "lower_bound": report.source != "server",
        "start_iso": _iso(report.start),
        "end_iso": _iso(report.end),
        "start_text": _text(report.start),
        "end_text": _text(report.end),
        "hours": f"{report.window_hours:g}",
    }
    if standalone:
        context["inline_css"] = stylesheet().decode("utf-8")
    return render_template("audience.html", **context)


def as_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready values: times in ISO 8601 (UTC), shares as fractions."""
    return {
        "source": report.source,
        "start": _iso(report.start),
        "end": _iso(report.end),
        "floor": {"max_requests": report.max_requests, "window_seconds": report.window_seconds},
        "total": _feed(report.total),
        "feeds": [{"feed": a.feed, **_feed(a)} for a in report.feeds],
        "hours": [{"start": _iso(h.start), "polls": h.polls, "not_modified": h.not_modified} for h in report.hours],
        "skipped": {
            "malformed": report.skipped.malformed,
            "refused": report.skipped.refused,
            "dropped": report.skipped.dropped,
        },
    }


def to_json(report: Report) -> str:
    return json.dumps(as_json(report), indent=2, ensure_ascii=False) + "\n"


def _feed(a: FeedAudience) -> dict[str, Any]:
    p = a.polling
    return {
        "subscribers": a.subscribers,
        "services": {f.service: {"subscribers": f.subscribers, "feed_ids": f.feed_ids} for f in a.services},
        "direct": a.direct,
        "polls": p.polls,
        "not_modified": p.not_modified,
        "not_modified_share": round(p.not_modified_share, 4),
        "conditional": p.conditional,
        "conditional_share": round(p.conditional_share, 4),
        "limited": p.limited,
        "fast_clients": a.fast_clients,
    }


def to_text(report: Report) -> str:
    """A few lines per feed, for a terminal."""
    lines = [
        f"Audience from {_text(report.start)} to {_text(report.end)} ({report.window_hours:g} hours, {report.source})"
    ]
    for a in (report.total, *report.feeds):
        p = a.polling
        services = ", ".join(
            f"{f.service} {f.subscribers:,}" + (f" ({f.feed_ids} feed ids)" if f.feed_ids > 1 else "")
            for f in a.services
        )
        lines += [
            "",
            a.feed or "all feeds",
            f"  subscribers {a.subscribers:,}"
            + (f" ({services}, direct {a.direct:,})" if services else f" (direct {a.direct:,})"),
            f"  polls {p.polls:,}: {p.not_modified_share:.0%} answered 304, "
            f"{'at least ' if report.source != 'server' else ''}{p.conditional_share:.0%} conditional, "
            f"{p.limited:,} answered 429; {a.fast_clients:,} clients polling too fast",
        ]
    s = report.skipped
    lines += [
        "",
        f"left out: {s.malformed:,} malformed lines, {s.refused:,} polls with a refused User-Agent, "
        f"{s.dropped:,} polls the server could not keep",
    ]
    return "\n".join(lines) + "\n"


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
