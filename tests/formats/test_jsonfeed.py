"""jsonfeed.py: JSON Feed 1.1, checked against the spec's field rules and against Atom.

Every JSON feed the seeds and the synthetic corpus give must match
tests/schema/jsonfeed-1.1.schema.json (written from
https://www.jsonfeed.org/version/1.1/; tests/data/jsonfeed/bad.yaml shows it
refusing each rule broken), and say the same as the Atom feed at the same
path: feedparser reads the Atom feed (it does not read JSON Feed), json.loads
the JSON one, and ids, links, titles, dates, authors, tags, images and related
links must agree item by item.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import jsonschema
import pytest
import yaml
from conftest import DATA, ROOT, Corpus
from lxml import etree
from test_validity import _hostile_record, _html

from feedsvc.config import Config
from feedsvc.formats.common import Site
from feedsvc.formats.documents import Build
from feedsvc.formats.jsonfeed import render_json
from feedsvc.model import ALL, Feed, FeedKey, FeedKind

SCHEMA_PATH = ROOT / "tests" / "schema" / "jsonfeed-1.1.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
BAD = yaml.safe_load((DATA / "jsonfeed" / "bad.yaml").read_text(encoding="utf-8"))
ATOM = "{http://www.w3.org/2005/Atom}"


def schema_errors(doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def json_paths(out: Path) -> list[Path]:
    """Every JSON feed under `out` (the build's manifest is JSON too, but no feed)."""
    return sorted((out / "feeds").rglob("*.json"))


# -- the schema itself ------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.fixture
def good(seed_site: Build) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(seed_site.documents["feeds/all.json"].body)
    doc["hubs"] = [{"type": "WebSub", "url": "https://hub.example/"}]
    assert schema_errors(doc) == []
    assert doc["items"][0]["attachments"] and doc["items"][0]["_feedsvc"]["related"]
    return doc


@pytest.mark.parametrize("case", BAD, ids=[c["why"] for c in BAD])
def test_the_schema_refuses_each_bad_document(good: dict[str, Any], case: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    *parents, last = case["at"]
    node: Any = doc
    for key in parents:
        node = node[key]
    if case.get("delete"):
        del node[last]
    else:
        node[last] = case["set"]
    assert schema_errors(doc), f"the schema accepted a feed where {case['why']} is broken"


# -- our feeds ----------------------------------------------------------------------------


def test_every_seed_feed_has_a_json_feed_that_matches_the_schema(seed_site: Build, config: Config) -> None:
    paths = json_paths(config.output_dir)
    assert len(paths) == 5 == len(seed_site.feeds)
    for path in paths:
        assert schema_errors(json.loads(path.read_bytes())) == [], path


def test_every_corpus_json_feed_matches_the_schema(corpus: Corpus) -> None:
    paths = json_paths(corpus.out)
    assert len(paths) > 200
    failures = {str(p): errs for p in paths if (errs := schema_errors(json.loads(p.read_bytes())))}
    assert not failures, dict(list(failures.items())[:3])


def _atom_content(atom: bytes) -> list[tuple[str | None, str | None]]:
    """(summary, content) text of each Atom entry, exactly as written."""
    root = etree.fromstring(atom)
    return [(e.findtext(f"{ATOM}summary"), e.findtext(f"{ATOM}content")) for e in root.iter(f"{ATOM}entry")]


def assert_same_as_atom(atom: bytes, feed_json: bytes, where: str) -> None:
    parsed = feedparser.parse(atom)
    assert not parsed.bozo, parsed.get("bozo_exception")
    doc = json.loads(feed_json)
    links = {link.rel: link.href for link in parsed.feed.links}
    assert doc["title"] == parsed.feed.title, where
    assert doc["feed_url"] == links["self"].removesuffix(".atom") + ".json", where
    assert doc["home_page_url"] == links["alternate"], where
    assert doc["language"] == parsed.feed.language, where
    assert [item["id"] for item in doc["items"]] == [e.id for e in parsed.entries], where
    for item, entry, (summary, content) in zip(doc["items"], parsed.entries, _atom_content(atom), strict=True):
        at = f"{where} {entry.id}"
        assert item["url"] == entry.link, at
        assert item["title"] == entry.title, at
        assert item["date_published"] == entry.published, at
        assert item["date_modified"] == entry.updated, at
        assert item["authors"] == [{"name": entry.author_detail.name, "url": entry.author_detail.href}], at
        assert item.get("tags", []) == [t.label for t in entry.get("tags", [])], at
        assert item.get("summary") == summary, at
        assert item["content_html"] == content, at
        enclosures = [link.href for link in entry.links if link.rel == "enclosure"]
        thumbnails = [t["url"] for t in entry.get("media_thumbnail", [])]
        assert ([item["image"]] if "image" in item else []) == thumbnails, at
        if enclosures:  # only images whose media type the URL names get one
            assert [a["url"] for a in item["attachments"]][:1] == enclosures, at
        related = [{"title": link.title, "url": link.href} for link in entry.links if link.rel == "related"]
        got = [{"title": r["title"], "url": r["url"]} for r in item.get("_feedsvc", {}).get("related", [])]
        assert got == related, at


def test_seed_json_feeds_say_what_the_atom_feeds_say(seed_site: Build) -> None:
    for feed in seed_site.feeds:
        path = feed.key.path
        assert_same_as_atom(seed_site.documents[f"{path}.atom"].body, seed_site.documents[f"{path}.json"].body, path)


def test_corpus_json_feeds_say_what_the_atom_feeds_say(corpus: Corpus) -> None:
    atoms = sorted(corpus.out.rglob("*.atom"))
    assert len(atoms) > 200
    # Archive pages are RSS and Atom only: JSON Feed has no archive mechanism.
    assert not list(corpus.out.rglob("archive/*.json"))
    for atom in (a for a in atoms if a.parent.name != "archive"):
        assert_same_as_atom(atom.read_bytes(), atom.with_suffix(".json").read_bytes(), str(atom))


def test_json_feeds_are_served_and_listed(seed_site: Build) -> None:
    doc = seed_site.documents["feeds/all.json"]
    assert doc.media_type == "application/feed+json; charset=utf-8"
    assert doc.last_modified == seed_site.documents["feeds/all.atom"].last_modified


# -- bytes -----------------------------------------------------------------------------------


def _site() -> Site:
    return Site.from_config(Config())


def _hostile_feed() -> Feed:
    when = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    records = tuple(_hostile_record(n, when + timedelta(seconds=n // 3)) for n in range(6))
    return Feed(FeedKey(FeedKind.TOPIC, "c-rust"), "C++ & <Rust> &copy", records, len(records))


def test_hostile_records_give_a_valid_json_feed_with_safe_html() -> None:
    body = render_json(_hostile_feed(), _site())
    doc = json.loads(body)
    assert schema_errors(doc) == []
    for item in doc["items"]:
        # The same rules as RSS and Atom HTML: strict html5lib, safe elements only.
        assert _html(item["content_html"]) == ()
        for text in (item["title"], item.get("summary", ""), *item.get("tags", [])):
            assert not any(0x80 <= ord(c) <= 0x9F or c == "\ufffd" for c in text), text
    assert b"<script" not in body


def test_bytes_are_deterministic_utf8_with_a_final_newline(seed_site: Build) -> None:
    feed = next(f for f in seed_site.feeds if f.key.kind is FeedKind.ALL)
    site = _site()
    first = render_json(feed, site)
    assert first == render_json(feed, site)
    assert first.endswith(b"}\n") and not first.endswith(b"\n\n")
    text = first.decode("utf-8")
    assert "\\u2019" not in text and "\u2019" in text  # non-ASCII written as is (ensure_ascii off)
    assert list(json.loads(first))[:2] == ["version", "title"]  # version first, as the spec asks


def test_an_empty_feed() -> None:
    doc = json.loads(render_json(Feed(ALL, "All articles", (), 0), _site()))
    assert doc["items"] == [] and schema_errors(doc) == []
    assert "hubs" not in doc


def test_banner_image_only_for_a_landscape_lead_image(seed_site: Build) -> None:
    items: Iterator[dict[str, Any]] = (
        item for f in seed_site.feeds for item in json.loads(seed_site.documents[f"{f.key.path}.json"].body)["items"]
    )
    seen = 0
    for item, record in ((i, _record(seed_site, i["id"])) for i in items):
        if not record.images:
            assert "image" not in item and "banner_image" not in item
            continue
        lead = record.images[0]
        wide = bool(lead.width and lead.height and lead.width > lead.height)
        assert ("banner_image" in item) == wide
        seen += 1
    assert seen


def _record(site: Build, entry_id: str) -> Any:
    return next(r for r in site.loaded.records if r.id == entry_id)
