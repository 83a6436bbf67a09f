"""Custom feeds by query (`feedsvc.web.custom` through the web app): results, caching, refusals.

The app serves what `feedsvc build` wrote (conftest.served_app builds first)
and runs a custom feed over that build's cache. The cases live in tests/data/queries: `good.yaml` names feeds and query
strings with the records each must hold, and `bad.yaml` query strings that are
refused with their exact message. Expected entries are worked out here from
the record files themselves (read with PyYAML, filtered and sorted by this
file), never by feedsvc's own query code, and what the app sends is read with
feedparser (RSS, Atom) or json (JSON Feed).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
import yaml
from conftest import ATOM_SCHEMA, DATA, rebuild, served_app
from flask import Flask
from flask.testing import FlaskClient
from test_jsonfeed import schema_errors
from test_validity import check_feed

from feedsvc.build import incremental
from feedsvc.config import Config, PoliteConfig, QueriesConfig, SiteConfig
from feedsvc.formats.documents import build_in_memory
from feedsvc.model import FeedKind
from feedsvc.web.app import create_app
from feedsvc.web.custom import MAX_PARAMS, Query, QueryError, parse

QUERIES = DATA / "queries"
GOOD = yaml.safe_load((QUERIES / "good.yaml").read_text(encoding="utf-8"))
BAD = yaml.safe_load((QUERIES / "bad.yaml").read_text(encoding="utf-8"))
BASE_URL = "https://news.example.org/site/"
MAX_ENTRIES = 10
MIN_QUALITY = 10


# -- the oracle: what the record files say, without feedsvc's query code ----------------


@dataclass(frozen=True)
class Story:
    link: str
    published: datetime
    quality: float
    provider: str
    topics: frozenset[str]
    is_published: bool
    secured: str


def stories(folder: Path) -> list[Story]:
    out = []
    for path in sorted(folder.glob("*.txt")):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])
        domain = front["provider"]["domain"].lower()
        out.append(
            Story(
                link=front["webUrl"],
                published=datetime.fromisoformat(front["publishedDateTime"].replace("Z", "+00:00")),
                quality=front["quality"],
                provider=domain.removeprefix("www."),
                topics=frozenset(GOOD["slugs"][t] for t in front["topics"]),
                is_published=front["published"],
                secured=front["secured"],
            )
        )
    assert len(out) >= 12
    return out


def expected_links(path: str, where: dict[str, Any], folder: Path) -> list[str]:
    """The links a custom feed must list, newest first, from the record files alone."""
    stem = path.rsplit(".", 1)[0]
    chosen = [s for s in stories(folder) if s.is_published and s.quality >= MIN_QUALITY]
    if stem.startswith("/feeds/topics/"):
        chosen = [s for s in chosen if stem.rsplit("/", 1)[1] in s.topics]
    elif stem.startswith("/feeds/providers/"):
        chosen = [s for s in chosen if s.provider == stem.rsplit("/", 1)[1]]
    if where.get("topics"):
        chosen = [s for s in chosen if s.topics & set(where["topics"])]
    if "provider" in where:
        chosen = [s for s in chosen if s.provider == where["provider"]]
    if "min_quality" in where:
        chosen = [s for s in chosen if s.quality >= where["min_quality"]]
    chosen.sort(key=lambda s: s.published, reverse=True)
    return [s.link for s in chosen[: where.get("limit", MAX_ENTRIES)]]


# -- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def records(tmp_path: Path) -> Path:
    target = tmp_path / "records"
    shutil.copytree(QUERIES / "records", target)
    return target


def make_config(records: Path, **changes: Any) -> Config:
    return dataclasses.replace(
        Config(
            site=SiteConfig(title="Query test", base_url=BASE_URL),
            records_dir=records,
            output_dir=records.parent / "public",
            max_entries=MAX_ENTRIES,
            min_quality=MIN_QUALITY,
        ),
        **changes,
    )


@pytest.fixture
def qconfig(records: Path) -> Config:
    return make_config(records)


@pytest.fixture
def app(qconfig: Config) -> Flask:
    return served_app(qconfig)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def read_feed(path: str, body: bytes) -> tuple[list[str], str, str]:
    """(entry links in order, self link, title) of a feed, as a client reads it."""
    if path.endswith(".json"):
        doc = json.loads(body)
        assert not schema_errors(doc), schema_errors(doc)
        return [item["url"] for item in doc["items"]], doc["feed_url"], doc["title"]
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    selfs = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert len(selfs) == 1, parsed.feed.links
    return [e.link for e in parsed.entries], selfs[0], parsed.feed.title


def bad_query(case: dict[str, str]) -> str:
    return case["query"].replace("{x25}", "&".join(["topic=a"] * (MAX_PARAMS + 1))).replace("{a201}", "a" * 201)


def custom(app: Flask) -> Any:
    return app.extensions["feedsvc.custom"]


# -- results ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", GOOD["cases"], ids=lambda c: f"{c['path']}?{c['query']}")
def test_a_custom_feed_holds_what_was_asked_for(client: FlaskClient, records: Path, case: dict[str, Any]) -> None:
    r = client.get(f"{case['path']}?{case['query']}")
    assert r.status_code == 200, r.data
    links, self_link, _title = read_feed(case["path"], r.data)
    assert links == expected_links(case["path"], case["where"], records)
    # The self link is the canonical spelling of what was asked (base_url, path, query).
    assert self_link == f"{BASE_URL}{case['path'].lstrip('/')}?{case['canonical']}"
    if not case["path"].endswith(".json"):
        assert not check_feed(r.data), check_feed(r.data)


def built_entries(body: bytes) -> list[tuple[str, str]]:
    """(id, link) of every entry of a built feed document, in order, as a client reads them."""
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [(e.id, e.link) for e in parsed.entries]


def assert_custom_feeds_match_built_feeds(config: Config) -> int:
    """A query that narrows nothing (min_quality=0) gives every built feed's entries, in its order.

    The built feeds come from the in-memory reference build (`site.build`), not
    the cache custom feeds are run over; ties in time are where orders differ.
    """
    reference = build_in_memory(config)
    client = served_app(config).test_client()
    checked = 0
    for feed in reference.feeds:
        for fmt in ("atom", "rss"):
            path = f"{feed.key.path}.{fmt}"
            r = client.get(f"/{path}?min_quality=0")
            assert r.status_code == 200, path
            assert built_entries(r.data) == built_entries(reference.documents[path].body), path
            checked += 1
    return checked


def test_a_custom_feed_that_narrows_nothing_is_the_built_feed(qconfig: Config) -> None:
    assert assert_custom_feeds_match_built_feeds(qconfig) >= 2 * 8


def test_entries_at_the_same_time_keep_the_built_feeds_order(
    write_records: Callable[[dict[str, dict[str, Any]]], Path],
) -> None:
    same_time = "2024-05-01T08:00:00Z"
    folder = write_records(
        {
            f"tie-{i:02d}.txt": {
                "title": f"Tie {i}",
                "webUrl": f"https://{'ab'[i % 2]}.example/tie/{(i * 7) % 13}",
                "publishedDateTime": same_time if i % 3 else "2024-05-02T08:00:00Z",
                "provider": {"name": f"Provider {'ab'[i % 2]}", "domain": f"{'ab'[i % 2]}.example"},
                "topics": ["AI", "Robotics"] if i % 4 else ["AI"],
                "quality": 50,
                "published": True,
            }
            for i in range(13)
        }
    )
    config = make_config(folder)
    assert assert_custom_feeds_match_built_feeds(config) == 2 * 5  # all, two topics, two providers
    # Two topics asked at once: their union, each entry once, in the all feed's order.
    client = served_app(config).test_client()
    union = built_entries(client.get("/feeds/all.atom?topic=ai&topic=robotics").data)
    assert union == built_entries(build_in_memory(config).documents["feeds/all.atom"].body)


def test_the_cases_cover_every_parameter_and_feed_kind() -> None:
    """A guard on the data file: every parameter, on every kind of feed and format, and combined."""
    cases = GOOD["cases"]
    used = {name.split("=")[0] for c in cases for name in c["canonical"].split("&")}
    assert used == {"limit", "min_quality", "provider", "topic"}
    assert {c["path"].rsplit(".", 1)[1] for c in cases} == {"rss", "atom", "json"}
    assert {c["path"].split("/")[2].split(".")[0] for c in cases} == {"all", "topics", "providers"}
    assert any(len(c["where"]) >= 3 for c in cases)


def test_a_query_only_narrows_a_feed(client: FlaskClient, records: Path) -> None:
    """Unpublished and below-min_quality records stay out, whatever the query asks."""
    hidden = {s.link for s in stories(records) if not s.is_published or s.quality < MIN_QUALITY}
    assert len(hidden) == 2
    for target in (
        "/feeds/all.atom?min_quality=0",
        "/feeds/topics/ai.atom?provider=alpha.example",
        "/feeds/all.rss?topic=ai",
    ):
        links, _, _ = read_feed(target.split("?")[0], client.get(target).data)
        assert links and not hidden & set(links), target


def test_titles_say_what_a_custom_feed_is(client: FlaskClient) -> None:
    _, _, title = read_feed("/feeds/all.atom", client.get("/feeds/all.atom?topic=robotics&topic=AI").data)
    assert title == "Query test: AI + Robotics"
    _, _, title = read_feed(
        "/feeds/topics/ai.rss", client.get("/feeds/topics/ai.rss?provider=beta.example&min_quality=40").data
    )
    assert title == "Query test: AI from Beta (quality 40 and up)"


def test_custom_atom_feeds_match_the_atom_schema(client: FlaskClient, tmp_path: Path) -> None:
    assert shutil.which("jing"), "jing is not installed: run scripts/setup --system"
    paths = []
    for i, case in enumerate(c for c in GOOD["cases"] if c["path"].endswith(".atom")):
        path = tmp_path / f"custom-{i}.atom"
        path.write_bytes(client.get(f"{case['path']}?{case['query']}").data)
        paths.append(str(path))
    done = subprocess.run(["jing", "-c", str(ATOM_SCHEMA), *paths], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_same_query_same_bytes_in_every_app(qconfig: Config, tmp_path: Path) -> None:
    """Two workers over one build, and a second machine with its own build: one answer."""
    incremental.build(qconfig)
    elsewhere = dataclasses.replace(qconfig, output_dir=tmp_path / "elsewhere" / "public")
    bodies = []
    for app in (create_app(qconfig), create_app(qconfig), served_app(elsewhere)):
        r = app.test_client().get("/feeds/all.atom?topic=ai&min_quality=20", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        bodies.append((r.data, r.headers["ETag"], r.headers["Last-Modified"]))
    assert bodies[0] == bodies[1] == bodies[2]


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD, ids=lambda c: f"{c['path']}?{c['query'][:40]}")
def test_a_bad_query_is_400_with_a_clear_message(client: FlaskClient, app: Flask, case: dict[str, str]) -> None:
    r = client.get(f"{case['path']}?{bad_query(case)}")
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.data.decode("utf-8") == f"400 Bad Request: {case['message']}\n"
    assert len(custom(app).cache) == 0  # nothing was rendered or kept


@pytest.mark.parametrize(
    ("kind", "query_string", "expected"),
    [
        (FeedKind.ALL, "", Query()),
        (FeedKind.ALL, "&&", Query()),
        (FeedKind.ALL, "topic=B&topic=a&limit=05", Query(topics=("a", "b"), limit=5)),
        (FeedKind.TOPIC, "provider=WWW.Example.COM.&min_quality=000", Query(provider="example.com", min_quality=0)),
        # Raw UTF-8 bytes, as a WSGI server hands them over (Latin-1 text), read as UTF-8.
        (FeedKind.ALL, "topic=Künstliche".encode().decode("latin-1"), Query(topics=("kunstliche",))),
        (FeedKind.ALL, "topic=Robotics+%26+AI", Query(topics=("robotics-ai",))),
    ],
)
def test_parse_gives_the_canonical_query(kind: FeedKind, query_string: str, expected: Query) -> None:
    assert parse(kind, query_string, MAX_ENTRIES) == expected


def test_raw_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(QueryError, match="not UTF-8"):
        parse(FeedKind.ALL, b"topic=\xff".decode("latin-1"), MAX_ENTRIES)


def test_pages_take_no_query(client: FlaskClient) -> None:
    for path in ("/feeds/all.html", "/index.html", "/feeds.opml"):
        assert client.get(path + "?limit=3").data == client.get(path).data


# -- HTTP caching -----------------------------------------------------------------------


def test_equal_queries_share_one_cache_entry(client: FlaskClient, app: Flask) -> None:
    spellings = [
        "topic=robotics&topic=ai&min_quality=40",
        "min_quality=40&topic=AI&topic=Robotics",
        "topic=Robotics&min_quality=040&topic=ai&topic=ai",
        "&topic=%20AI&min_quality=40&topic=robotics&",
    ]
    answers = [client.get(f"/feeds/all.atom?{q}") for q in spellings]
    assert {r.status_code for r in answers} == {200}
    assert len({r.headers["ETag"] for r in answers}) == 1
    assert len({r.data for r in answers}) == 1
    assert len(custom(app).cache) == 1
    _, self_link, _ = read_feed("/feeds/all.atom", answers[0].data)
    assert self_link == f"{BASE_URL}feeds/all.atom?min_quality=40&topic=ai&topic=robotics"
    families = app.test_client().get("/metrics").data.decode()
    assert 'feedsvc_custom_feeds_total{result="miss"} 1.0' in families.splitlines()
    assert f'feedsvc_custom_feeds_total{{result="hit"}} {len(spellings) - 1}.0' in families.splitlines()


def test_a_custom_feed_has_the_caching_headers_of_every_feed(client: FlaskClient, records: Path) -> None:
    target = "/feeds/topics/ai.rss?provider=alpha.example"
    plain = client.get(target)
    zipped = client.get(target, headers={"Accept-Encoding": "gzip"})
    assert plain.headers["Vary"] == zipped.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["Cache-Control"] == "public, max-age=300"
    assert plain.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert plain.headers["ETag"] != zipped.headers["ETag"]
    links = read_feed("/feeds/topics/ai.rss", plain.data)[0]
    newest = max(s.published for s in stories(records) if s.link in links)
    assert plain.headers["Last-Modified"] == format_datetime(newest, usegmt=True)
    for r, accept in ((plain, None), (zipped, "gzip")):
        headers = {"If-None-Match": r.headers["ETag"]} | ({"Accept-Encoding": accept} if accept else {})
        again = client.get(target, headers=headers)
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == r.headers["ETag"]
        assert again.headers["Vary"] == "Accept-Encoding"
    # The same tag with another spelling of the query: one resource, one validator.
    assert (
        client.get(
            "/feeds/topics/ai.rss?provider=www.alpha.example", headers={"If-None-Match": plain.headers["ETag"]}
        ).status_code
        == 304
    )
    assert client.get(target, headers={"If-Modified-Since": plain.headers["Last-Modified"]}).status_code == 304
    assert client.get(target, headers={"If-None-Match": '"other"'}).status_code == 200
    head = client.head(target)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(plain.data))
    assert head.headers["ETag"] == plain.headers["ETag"]


def test_the_cache_is_bounded_and_every_query_still_works(records: Path) -> None:
    config = make_config(records, queries=QueriesConfig(cache_entries=4, cache_bytes=64 * 1024))
    app = served_app(config)
    client = app.test_client()
    cache = custom(app).cache
    queries = [(q, lim) for q in range(0, 100, 5) for lim in (1, 2, 3)]  # 60 distinct custom feeds
    expected = {q: expected_links("/feeds/all.atom", {"min_quality": q[0], "limit": q[1]}, records) for q in queries}
    tracemalloc.start()
    try:
        for quality, limit in queries:
            target = f"/feeds/all.atom?min_quality={quality}&limit={limit}"
            r = client.get(target)
            assert r.status_code == 200
            links, _, _ = read_feed("/feeds/all.atom", r.data)
            assert links == expected[quality, limit]
            assert len(cache) <= 4 and cache.bytes <= 64 * 1024
            if quality == 50:
                tracemalloc.reset_peak()
                held = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - held
    finally:
        tracemalloc.stop()
    assert len(cache) == 4
    # Thirty more custom feeds rendered and served leave no lasting memory beyond the cache's
    # bound (about 40 KB of request machinery here; keeping them all would add some 150 KB).
    assert grown < 100 * 1024, grown


def test_a_feed_larger_than_the_cache_is_served_but_not_kept(records: Path) -> None:
    app = served_app(make_config(records, queries=QueriesConfig(cache_entries=4, cache_bytes=1024)))
    r = app.test_client().get("/feeds/all.atom?limit=9")
    assert r.status_code == 200 and len(read_feed("/feeds/all.atom", r.data)[0]) == 9
    assert len(custom(app).cache) == 0


def test_a_rebuild_drops_custom_feeds_made_from_old_records(
    client: FlaskClient, app: Flask, qconfig: Config, records: Path
) -> None:
    target = "/feeds/topics/robotics.atom?provider=gamma.example"
    before = client.get(target)
    assert client.get(target).headers["ETag"] == before.headers["ETag"]  # kept while the build is the same
    assert len(custom(app).cache) == 1
    story = records / "story-03.txt"
    story.write_text(story.read_text(encoding="utf-8").replace("- Robotics", "- Gardening"), encoding="utf-8")
    report = rebuild(qconfig)  # the builder's work; the app notices it on its next request
    assert "feeds/topics/robotics.atom" in report.changed_paths
    after = client.get(target)
    assert after.headers["ETag"] != before.headers["ETag"]
    assert read_feed("/feeds/topics/robotics.atom", after.data)[0] == expected_links(
        "/feeds/topics/robotics.atom", {"provider": "gamma.example"}, records
    )
    assert "https://gamma.example/stories/3" not in read_feed("/feeds/topics/robotics.atom", after.data)[0]
    assert client.get(target, headers={"If-None-Match": before.headers["ETag"]}).status_code == 200


def test_a_rebuild_that_changes_only_what_a_query_reads_updates_custom_feeds(
    client: FlaskClient, app: Flask, qconfig: Config, records: Path
) -> None:
    """Quality is in no built feed's bytes, yet min_quality reads it: the custom feed must follow."""
    target = "/feeds/all.atom?min_quality=70"
    before = client.get(target)
    assert "https://alpha.example/stories/4" not in read_feed("/feeds/all.atom", before.data)[0]
    story = records / "story-04.txt"
    text = story.read_text(encoding="utf-8")
    assert "\nquality: 20\n" in text
    story.write_text(text.replace("\nquality: 20\n", "\nquality: 75\n"), encoding="utf-8")
    report = rebuild(qconfig)
    assert not [p for p in report.changed_paths if p.startswith("feeds/all.")]  # the built feed's bytes stay
    after = client.get(target)
    links = read_feed("/feeds/all.atom", after.data)[0]
    assert links == expected_links("/feeds/all.atom", {"min_quality": 70}, records)
    assert "https://alpha.example/stories/4" in links
    assert client.get(target, headers={"If-None-Match": before.headers["ETag"]}).status_code == 200


def test_polite_polling_counts_custom_feeds_against_their_path(records: Path) -> None:
    polite = PoliteConfig(max_requests=3, exempt=())
    app = served_app(make_config(records, polite=polite))
    client = app.test_client()
    for quality in range(3):  # three different custom feeds, one path
        assert client.get(f"/feeds/all.rss?min_quality={quality}").status_code == 200
    refused = client.get("/feeds/all.rss?min_quality=99")
    assert refused.status_code == 429
    assert len(custom(app).cache) == 3  # refused before anything was rendered


def test_no_secured_value_in_custom_feeds_or_refusals(client: FlaskClient, records: Path) -> None:
    secrets = [s.secured for s in stories(records)]
    bodies = [client.get(f"{c['path']}?{c['query']}").data for c in GOOD["cases"]]
    bodies += [client.get(f"{c['path']}?{bad_query(c)}").data for c in BAD]
    for secret in secrets:
        assert not any(secret.encode() in body for body in bodies)
