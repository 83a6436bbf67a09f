"""Helpers for the audience tests: scripted feed readers, and the figures a report shows.

`run_traffic` plays tests/data/audience/traffic.yaml against a port (a
`feedsvc serve`, or nginx in front of one); `page_figures` reads the figures
out of /audience.html (the data-* attributes of its tables), `json_figures`
out of `feedsvc audience --json`, both in one shape, so `check` can hold
either to the expectations and two sources can be compared.
"""

from __future__ import annotations

import time
from typing import Any

import lxml.html
import yaml
from conftest import DATA
from servers import request

TRAFFIC: dict[str, Any] = yaml.safe_load((DATA / "audience" / "traffic.yaml").read_text(encoding="utf-8"))
FIGURES = ("subscribers", "direct", "polls", "not_modified", "conditional", "limited", "fast_clients")


def play(port: int, clients: list[dict[str, Any]]) -> None:
    """Each client polls its feed as the traffic file says; every answer is checked as it comes."""
    for client in clients:
        etag = None
        for _ in range(client["polls"]):
            headers = {"User-Agent": client["agent"]}
            if client.get("conditional") and etag:
                headers["If-None-Match"] = etag
            r = request(port, client["feed"], method="HEAD" if client.get("head") else "GET", headers=headers)
            assert r.status == (304 if "If-None-Match" in headers else 200), (client, r.status)
            etag = etag or r.header("ETag")


def run_traffic(port: int) -> None:
    play(port, TRAFFIC["phase1"])
    time.sleep(1.1)  # phase 2's figures are a second later: the latest, by any clock
    play(port, TRAFFIC["phase2"])


def page_figures(html: bytes) -> dict[str, Any]:
    """{"total": …, "feeds": {path: …}, "skipped": …} from the tables of /audience.html."""
    page = lxml.html.fromstring(html)
    feeds: dict[str, Any] = {}
    total: dict[str, Any] = {}
    for table in page.xpath("//table[@data-feed]"):
        values: dict[str, Any] = {"services": {}}
        for row in table.xpath(".//tr[@data-figure]"):
            if row.get("data-figure") == "service":
                values["services"][row.get("data-service")] = int(row.get("data-value"))
            else:
                values[row.get("data-figure")] = int(row.get("data-value"))
        if table.get("data-feed"):
            feeds[table.get("data-feed")] = values
        else:
            total = values
    (skipped,) = page.xpath("//*[@data-figure='skipped']")
    return {
        "total": total,
        "feeds": feeds,
        "skipped": {k: int(skipped.get(f"data-{k}")) for k in ("malformed", "refused", "dropped")},
    }


def json_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The same shape from `feedsvc audience --json`."""

    def one(feed: dict[str, Any]) -> dict[str, Any]:
        values = {k: feed[k] for k in FIGURES}
        values["services"] = {name: s["subscribers"] for name, s in feed["services"].items()}
        return values

    return {
        "total": one(report["total"]),
        "feeds": {f["feed"]: one(f) for f in report["feeds"]},
        "skipped": report["skipped"],
    }


def check(figures: dict[str, Any], expect: dict[str, Any]) -> None:
    """The figures hold every value `expect` names (and exactly its feeds, when it names feeds)."""
    for key, value in expect.get("skipped", {}).items():
        assert figures["skipped"][key] == value, ("skipped", key)
    for key, value in expect.get("total", {}).items():
        assert figures["total"][key] == value, ("total", key, figures["total"])
    if "feeds" in expect:
        assert set(figures["feeds"]) == set(expect["feeds"])
        for feed, want in expect["feeds"].items():
            for key, value in want.items():
                assert figures["feeds"][feed][key] == value, (feed, key, figures["feeds"][feed])
