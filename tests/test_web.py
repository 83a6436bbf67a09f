"""The web app through Flask's test client: documents, HTTP caching, hardening, live reload.

Every expectation is derived from something independent of the code under
test: the static build for the same config (`site.build`), what feedparser
sees in the feeds, or the RFC rule spelled out in a table below.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from flask import Flask
from flask.testing import FlaskClient

from feedsvc.config import Config
from feedsvc.reload import LiveSite
from feedsvc.site import Build, build
from feedsvc.web import create_app

MEDIA_TYPES = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; img-src https: http:; style-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_AGE = 123
SECURED = re.compile(r'^secured:\s*"?([^"\n]+)"?\s*$', re.MULTILINE)


# -- fixtures and helpers -------------------------------------------------------


@pytest.fixture
def web_config(config: Config) -> Config:
    return dataclasses.replace(config, server=dataclasses.replace(config.server, cache_max_age=MAX_AGE))


@pytest.fixture
def app(web_config: Config) -> Iterator[Flask]:
    # No scanner thread: each test decides when a reload happens (reload_now).
    app = create_app(web_config, background=False)
    yield app
    live(app).stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def expected(web_config: Config) -> Build:
    """What `feedsvc build` produces for the same config."""
    return build(web_config)


def live(app: Flask) -> LiveSite:
    site: LiveSite = app.extensions["feedsvc"]
    return site


def record_text(n: int, *, domain: str, topic: str, title: str | None = None, secured: str = "") -> str:
    return (
        "---\n"
        f'title: "{title or f"Story number {n} about {topic}"}"\n'
        f'excerpt: "What happened in story {n}."\n'
        f"publishedDateTime: 2024-02-{n:02d}T08:30:00Z\n"
        f'webUrl: "https://{domain}/stories/{n}"\n'
        f'provider: {{name: "Desk {n}", domain: {domain}}}\n'
        f'topics: ["{topic}"]\n'
        f'secured: "{secured or f"S3CR3T-{n}-do-not-publish"}"\n'
        "---\n"
    )


def secured_values(folder: Path) -> list[str]:
    values = [m.group(1) for p in sorted(folder.rglob("*.txt")) for m in SECURED.finditer(p.read_text("utf-8"))]
    assert values, "the test records carry secured values"
    return values


def parse(body: bytes) -> Any:
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def entry_links(body: bytes) -> set[str]:
    return {e.link for e in parse(body).entries}


def etags(client: FlaskClient, paths: list[str]) -> dict[str, tuple[str, str]]:
    """Each path's (plain ETag, gzip ETag)."""
    out = {}
    for path in paths:
        plain = client.get("/" + path).headers["ETag"]
        zipped = client.get("/" + path, headers={"Accept-Encoding": "gzip"}).headers["ETag"]
        out[path] = (plain, zipped)
    return out


def feed_paths(build_: Build) -> list[str]:
    return sorted(p for p in build_.documents if p.endswith((".rss", ".atom")))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def links_in(html: bytes) -> list[str]:
    parser = _Links()
    parser.feed(html.decode("utf-8"))
    return parser.hrefs


# File opens seen on the test's own thread while `_watch` is set: the app must
# answer bad paths from memory alone.
_opened: list[str] = []
_watch = threading.Event()
_watch_thread: list[int] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watch.is_set() and event in ("open", "os.listdir", "os.scandir") and threading.get_ident() in _watch_thread:
        _opened.append(f"{event} {args[0]!r}")


sys.addaudithook(_audit)


# -- every document, as built ----------------------------------------------------


def test_every_document_is_served_as_built(client: FlaskClient, expected: Build) -> None:
    assert len(expected.documents) > 10
    for path, doc in expected.documents.items():
        r = client.get("/" + path)
        assert r.status_code == 200, path
        assert r.data == doc.body, path
        assert r.headers["Content-Type"] == MEDIA_TYPES[Path(path).suffix], path
        assert r.headers["Content-Length"] == str(len(doc.body))
        assert r.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        etag = r.headers["ETag"]
        assert re.fullmatch(r'"[^"]+"', etag), f"strong, quoted: {etag}"
        if path.endswith(".html"):
            assert r.headers["Content-Security-Policy"] == CSP
        if path.endswith((".rss", ".atom")):
            assert parse(r.data).entries, path
        if path.endswith(".json"):
            assert json.loads(r.data)["items"], path


def test_last_modified_is_the_newest_entry(client: FlaskClient, expected: Build) -> None:
    for path in feed_paths(expected):
        r = client.get("/" + path)
        parsed = parse(r.data)
        # feedparser's view: the newest entry's updated (Atom) or lastBuildDate (RSS).
        if path.endswith(".atom"):
            newest = max(e.updated_parsed for e in parsed.entries)
        else:
            newest = parsed.feed.updated_parsed
        when = datetime(*newest[:6]).replace(tzinfo=timezone.utc)
        assert r.headers["Last-Modified"] == format_datetime(when, usegmt=True), path
    assert "Last-Modified" not in client.get("/style.css").headers


def test_root_serves_the_index(client: FlaskClient, expected: Build) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.data == expected.documents["index.html"].body
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["ETag"] == client.get("/index.html").headers["ETag"]


def test_same_records_give_the_same_validators_in_every_app(web_config: Config, expected: Build) -> None:
    apps = [create_app(web_config), create_app(web_config)]
    try:
        seen = [etags(a.test_client(), sorted(expected.documents)) for a in apps]
        assert seen[0] == seen[1]
        lm = [{p: a.test_client().get("/" + p).headers.get("Last-Modified") for p in expected.documents} for a in apps]
        assert lm[0] == lm[1]
    finally:
        for a in apps:
            live(a).stop()


# -- gzip ----------------------------------------------------------------------------

GZIP_CASES = [
    (None, False),
    ("", False),
    ("gzip", True),
    ("GZip", True),
    ("x-gzip", True),
    ("gzip, deflate, br", True),
    ("gzip;q=0", False),
    ("gzip; q=0.000", False),
    ("gzip;q=0.001", True),
    ("identity", False),
    ("deflate, br", False),
    ("*", True),
    ("*;q=0", False),
    ("*;q=0.5, gzip;q=0", False),
    ("br, gzip;q=0.8", True),
    ("gzip;q=0.5, identity;q=1", False),
    ("gzip;q=1, identity;q=0.5", True),
    ("gzip;q=0.5, identity;q=0.5", True),
    ("gzip;q=2", False),  # not a qvalue: the entry is ignored
    ("gzip;q=abc", False),
    (",,;,", False),
]


@pytest.mark.parametrize(("accept", "zipped"), GZIP_CASES)
def test_gzip_negotiation(client: FlaskClient, expected: Build, accept: str | None, zipped: bool) -> None:
    plain = expected.documents["feeds/all.atom"].body
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    r = client.get("/feeds/all.atom", headers=headers)
    assert r.status_code == 200
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["Content-Length"] == str(len(r.data))
    if zipped:
        assert r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(r.data) == plain
        assert len(r.data) < len(plain)
        assert r.headers["ETag"] != client.get("/feeds/all.atom").headers["ETag"]
    else:
        assert "Content-Encoding" not in r.headers
        assert r.data == plain


def test_gzip_bytes_are_deterministic(web_config: Config) -> None:
    bodies = []
    for _ in range(2):
        app = create_app(web_config)
        bodies.append(app.test_client().get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"}).data)
        live(app).stop()
    assert bodies[0] == bodies[1]
    assert bodies[0][4:8] == b"\0\0\0\0", "gzip header MTIME is zero"


# -- conditional requests ----------------------------------------------------------


@dataclasses.dataclass
class Validators:
    etag: str
    gzip_etag: str
    modified: datetime


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


CONDITIONAL_CASES: list[tuple[str, Any, int]] = [
    ("inm-exact", lambda v: {"If-None-Match": v.etag}, 304),
    ("inm-list", lambda v: {"If-None-Match": f'"nope", {v.etag} , W/"other"'}, 304),
    ("inm-star", lambda v: {"If-None-Match": "*"}, 304),
    ("inm-weak", lambda v: {"If-None-Match": f"W/{v.etag}"}, 304),
    ("inm-weak-in-list", lambda v: {"If-None-Match": f'"a", W/{v.etag}'}, 304),
    ("inm-other", lambda v: {"If-None-Match": '"0123456789"'}, 200),
    ("inm-unquoted", lambda v: {"If-None-Match": v.etag.strip('"')}, 200),
    ("inm-lowercase-weak", lambda v: {"If-None-Match": f"w/{v.etag}"}, 200),
    ("inm-empty", lambda v: {"If-None-Match": ""}, 200),
    ("inm-other-encoding", lambda v: {"If-None-Match": v.gzip_etag}, 200),
    ("ims-equal", lambda v: {"If-Modified-Since": http_date(v.modified)}, 304),
    ("ims-older", lambda v: {"If-Modified-Since": http_date(v.modified - timedelta(seconds=1))}, 200),
    ("ims-newer", lambda v: {"If-Modified-Since": http_date(v.modified + timedelta(days=1))}, 304),
    ("ims-rfc850", lambda v: {"If-Modified-Since": v.modified.strftime("%A, %d-%b-%y %H:%M:%S GMT")}, 304),
    ("ims-asctime", lambda v: {"If-Modified-Since": v.modified.strftime("%a %b %d %H:%M:%S %Y")}, 304),
    ("ims-malformed", lambda v: {"If-Modified-Since": "yesterday, at noon"}, 200),
    ("ims-iso", lambda v: {"If-Modified-Since": v.modified.isoformat()}, 200),
    ("ims-list", lambda v: {"If-Modified-Since": f"{http_date(v.modified)}, {http_date(v.modified)}"}, 200),
    (
        "inm-wins-over-ims",
        lambda v: {"If-None-Match": '"nope"', "If-Modified-Since": http_date(v.modified + timedelta(days=1))},
        200,
    ),
    (
        "inm-match-with-old-ims",
        lambda v: {"If-None-Match": v.etag, "If-Modified-Since": http_date(v.modified - timedelta(days=1))},
        304,
    ),
]


@pytest.fixture
def validators(client: FlaskClient) -> Validators:
    r = client.get("/feeds/all.atom")
    newest = max(e.updated_parsed for e in parse(r.data).entries)
    zipped = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    modified = datetime(*newest[:6]).replace(tzinfo=timezone.utc)
    return Validators(r.headers["ETag"], zipped.headers["ETag"], modified)


@pytest.mark.parametrize(("name", "make_headers", "status"), CONDITIONAL_CASES, ids=[c[0] for c in CONDITIONAL_CASES])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_requests(
    client: FlaskClient, validators: Validators, name: str, make_headers: Any, status: int, method: str
) -> None:
    full = client.get("/feeds/all.atom")
    r = client.open("/feeds/all.atom", method=method, headers=make_headers(validators))
    assert r.status_code == status
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["ETag"] == validators.etag
    assert r.headers["Last-Modified"] == http_date(validators.modified)
    assert r.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"
    assert r.headers["Vary"] == "Accept-Encoding"
    if status == 304:
        assert r.data == b""
        assert "Content-Type" not in r.headers
        assert "Content-Encoding" not in r.headers
    else:
        assert r.data == (full.data if method == "GET" else b"")
        assert r.headers["Content-Length"] == str(len(full.data))


def test_conditional_on_the_gzip_variant(client: FlaskClient, validators: Validators) -> None:
    gz = {"Accept-Encoding": "gzip"}
    r = client.get("/feeds/all.atom", headers={**gz, "If-None-Match": validators.gzip_etag})
    assert r.status_code == 304
    assert r.headers["ETag"] == validators.gzip_etag
    # The plain variant's tag does not validate the gzip body.
    assert client.get("/feeds/all.atom", headers={**gz, "If-None-Match": validators.etag}).status_code == 200


def test_if_modified_since_without_a_date_to_compare(client: FlaskClient) -> None:
    r = client.get("/style.css", headers={"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"})
    assert r.status_code == 200
    assert client.get("/style.css", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304


# -- methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/feeds/all.rss", "/feeds/topics/ai.atom", "/index.html", "/style.css", "/feeds.opml"])
@pytest.mark.parametrize("accept", [None, "gzip"])
def test_head_has_gets_headers_and_no_body(client: FlaskClient, path: str, accept: str | None) -> None:
    headers = {"Accept-Encoding": accept} if accept else {}
    get = client.get(path, headers=headers)
    head = client.head(path, headers=headers)
    assert get.status_code == head.status_code == 200
    assert head.data == b""
    assert head.headers["Content-Length"] == str(len(get.data)) != "0"
    assert sorted(head.headers.items()) == sorted(get.headers.items())


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/feeds/all.atom", "/", "/healthz", "/no/such/feed.rss"])
def test_other_methods_are_405_with_allow(client: FlaskClient, method: str, path: str) -> None:
    r = client.open(path, method=method, data=b"x=1")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "HEAD"}
    assert r.headers["X-Content-Type-Options"] == "nosniff"


# -- bad paths and absurd requests ------------------------------------------------------

BAD_PATHS = [
    "/../config.yaml",
    "/feeds/%2e%2e/x",
    "/feeds/%2e%2e/feeds/all.rss",
    "/feeds/../feeds/all.rss",
    "/feeds%2Fall.rss",
    "/feeds%2fall.rss",
    "/feeds%5Call.rss",
    "/%00",
    "/feeds/all.rss%00",
    "/" + "a" * 5000,
    "/feeds/all.rss/" + "x" * 5000,
    "/feeds/",
    "/feeds",
    "/feeds/topics/",
    "//feeds/all.rss",
    "/feeds//all.rss",
    "/feeds/all.rss/",
    "/FEEDS/ALL.RSS",
    "/.feedsvc-manifest.json",
    "/config.yaml",
    "/feeds/all",
    "/healthz/",
    "/%ff%fe",
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda p: p[:40])
def test_bad_paths_are_404_and_read_no_file(client: FlaskClient, path: str) -> None:
    client.get("/feeds/all.rss")  # warm up: nothing left to load lazily
    _opened.clear()
    _watch_thread[:] = [threading.get_ident()]
    _watch.set()
    try:
        r = client.get(path)
    finally:
        _watch.clear()
    assert r.status_code == 404
    assert _opened == []
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == CSP
    assert links_in(r.data) == ["http://127.0.0.1:8000/index.html"]


def test_absurd_query_string_is_414(client: FlaskClient) -> None:
    r = client.get("/feeds/all.rss?q=" + "x" * 10_000)
    assert r.status_code == 414
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("header", ["If-None-Match", "Accept-Encoding", "If-Modified-Since"])
def test_absurd_header_is_431(client: FlaskClient, header: str) -> None:
    r = client.get("/feeds/all.rss", headers={header: '"' + "x" * 100_000 + '"'})
    assert r.status_code == 431
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("host", ["", "a" * 5000, "bad host", "[::1", "xn--" + "é" * 10, "127.0.0.1:99999"])
def test_odd_host_headers_never_give_500(client: FlaskClient, host: str) -> None:
    r = client.get("/feeds/all.rss", headers={"Host": host})
    assert r.status_code < 500


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.one_of(st.binary(max_size=200), st.sampled_from([b"feeds/all.rss", b"index.html", b"feeds/topics/ai.atom"])),
    accept=_PRINTABLE,
    inm=_PRINTABLE,
    ims=_PRINTABLE,
)
def test_fuzzed_requests_never_fail(
    client: FlaskClient, expected: Build, raw: bytes, accept: str, inm: str, ims: str
) -> None:
    headers = {"Accept-Encoding": accept, "If-None-Match": inm, "If-Modified-Since": ims}
    r = client.get("/" + quote(raw, safe="/.%"), headers=headers)
    assert r.status_code in (200, 304, 404)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    if r.status_code == 200:
        body = gzip.decompress(r.data) if r.headers.get("Content-Encoding") == "gzip" else r.data
        assert body in {d.body for d in expected.documents.values()}


def test_pages_ignore_query_strings_and_feeds_refuse_unknown_ones(client: FlaskClient) -> None:
    """A page takes no query; a feed's query makes a custom feed (tests/test_query.py), so a
    parameter it does not know is refused rather than silently giving the plain feed."""
    for path in ("/index.html", "/feeds/all.html", "/feeds.opml", "/style.css"):
        plain = client.get(path)
        tagged = client.get(path + "?utm_source=reader&x=%2F..%2F")
        assert tagged.status_code == 200
        assert tagged.data == plain.data
        assert tagged.headers["ETag"] == plain.headers["ETag"]
    tagged = client.get("/feeds/all.rss?utm_source=reader&x=%2F..%2F")
    assert tagged.status_code == 400
    assert tagged.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert tagged.data.decode() == (
        "400 Bad Request: unknown parameter 'utm_source'; this feed takes limit, min_quality, topic\n"
    )


# -- /healthz --------------------------------------------------------------------------


def test_healthz(web_config: Config, expected: Build) -> None:
    broken = Path(web_config.records_dir) / "zz_broken.txt"
    broken.write_text('---\nexcerpt: "no title, no link"\nsecured: "x"\n---\n', encoding="utf-8")
    app = create_app(web_config, background=False)
    try:
        client = app.test_client()
        r = client.get("/healthz")
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        health = json.loads(r.data)
        assert health["status"] == "ok"
        assert health["records_loaded"] == len(expected.loaded.records) == 2
        assert health["records_rejected"] == 1
        assert health["feeds"] == len(expected.feeds)
        last = datetime.fromisoformat(health["last_reload"])
        assert abs((datetime.now(timezone.utc) - last).total_seconds()) < 60
        assert client.head("/healthz").status_code == 200
        broken.unlink()
        live(app).reload_now()
        after = json.loads(client.get("/healthz").data)
        assert after["records_rejected"] == 0
        assert after["generation"] == health["generation"] + 1
    finally:
        live(app).stop()


def test_create_app_without_config_reads_feedsvc_config(
    tmp_path: Path, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (seeds_dir / "002_extra.txt").write_text(record_text(3, domain="extra.example", topic="Extra"), "utf-8")
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(f"records_dir: {seeds_dir}\ninclude_unpublished: true\n", encoding="utf-8")
    monkeypatch.setenv("FEEDSVC_CONFIG", str(cfg))
    app = create_app()
    try:
        assert json.loads(app.test_client().get("/healthz").data)["records_loaded"] == 3
        assert app.test_client().get("/feeds/providers/extra.example.atom").status_code == 200
    finally:
        live(app).stop()


# -- live reload -------------------------------------------------------------------------


def test_reload_picks_up_added_and_deleted_files(app: Flask, client: FlaskClient, web_config: Config) -> None:
    records = Path(web_config.records_dir)
    feed = "/feeds/providers/newsdesk.example.atom"
    assert client.get(feed).status_code == 404
    new = records / "sub" / "010_new.txt"
    new.parent.mkdir()
    new.write_text(record_text(10, domain="newsdesk.example", topic="Quantum Sensing"), encoding="utf-8")

    report = live(app).reload_now()
    assert report.added == ("sub/010_new.txt",)
    assert report.parsed == 1
    r = client.get(feed)
    assert r.status_code == 200
    assert entry_links(r.data) == {"https://newsdesk.example/stories/10"}
    assert "https://newsdesk.example/stories/10" in entry_links(client.get("/feeds/all.rss").data)
    assert client.get("/feeds/topics/quantum-sensing.rss").status_code == 200

    new.unlink()
    report = live(app).reload_now()
    assert report.removed == ("sub/010_new.txt",)
    assert report.parsed == 0
    assert client.get(feed).status_code == 404
    assert client.get("/feeds/topics/quantum-sensing.html").status_code == 404
    assert "https://newsdesk.example/stories/10" not in entry_links(client.get("/feeds/all.rss").data)


def test_changing_one_record_changes_only_the_feeds_it_is_in(
    app: Flask, client: FlaskClient, web_config: Config, expected: Build
) -> None:
    paths = sorted(expected.documents)
    before = etags(client, paths)
    prepared_before = dict(live(app).snapshot.documents)
    target = sorted(Path(web_config.records_dir).glob("001_*.txt"))[0]
    text = target.read_text("utf-8")
    title = re.search(r"^title: (.*)$", text, re.MULTILINE)
    assert title
    target.write_text(text.replace(title.group(0), 'title: "A rewritten headline"'), encoding="utf-8")

    report = live(app).reload_now()
    assert report.changed == (target.name,) and report.parsed == 1

    after = etags(client, paths)
    changed = {p for p in paths if before[p] != after[p]}
    # The feeds holding the record, as feedparser sees them now, in every format.
    touched = set()
    for path in feed_paths(expected):
        titles = {e.title for e in parse(client.get("/" + path).data).entries}
        if "A rewritten headline" in titles:
            stem = path.rsplit(".", 1)[0]
            touched |= {f"{stem}.rss", f"{stem}.atom", f"{stem}.json", f"{stem}.html"}
    assert touched and touched != set(paths)
    assert changed == touched
    assert set(report.changed_documents) == touched and not report.removed_documents
    assert report.rendered == len(touched) // 4
    for path in set(paths) - touched:
        # Untouched documents keep their precomputed bodies, not just equal tags.
        assert live(app).snapshot.documents[path] is prepared_before[path], path
    for path in touched:
        assert before[path][0] != before[path][1] and after[path][0] != after[path][1]


def test_reload_without_changes_keeps_the_snapshot(app: Flask) -> None:
    snapshot = live(app).snapshot
    report = live(app).reload_now()
    assert not report.swapped and report.parsed == 0 and not report.any_change
    assert live(app).snapshot is snapshot


def test_a_record_that_turns_invalid_is_logged_and_dropped(
    app: Flask, client: FlaskClient, web_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = secured_values(Path(web_config.records_dir))
    target = sorted(Path(web_config.records_dir).glob("001_*.txt"))[0]
    link = "https://www.biometricupdate.com/"
    provider_feed = "/feeds/providers/biometricupdate.com.rss"
    assert client.get(provider_feed).status_code == 200
    text = target.read_text("utf-8")
    target.write_text(re.sub(r"^title: .*\n", "", text, flags=re.MULTILINE), encoding="utf-8")

    with caplog.at_level(logging.INFO, logger="feedsvc"):
        live(app).reload_now()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(re.fullmatch(rf"{re.escape(target.name)}(:\d+)?: title: .+", m) for m in problems), problems
    assert client.get(provider_feed).status_code == 404
    remaining = parse(client.get("/feeds/all.atom").data).entries
    assert len(remaining) == 1 and not remaining[0].link.startswith(link)
    health = json.loads(client.get("/healthz").data)
    assert (health["records_loaded"], health["records_rejected"]) == (1, 1)
    for secret in secrets:
        assert secret not in caplog.text


def test_background_scanner_picks_up_changes(web_config: Config) -> None:
    config = dataclasses.replace(web_config, server=dataclasses.replace(web_config.server, reload_interval=0.2))
    app = create_app(config)
    site = live(app)
    try:
        client = app.test_client()
        assert not site.running
        client.get("/healthz")  # the first request starts the scanner
        assert site.running
        (Path(config.records_dir) / "020.txt").write_text(
            record_text(20, domain="late.example", topic="Late"), encoding="utf-8"
        )
        deadline = time.monotonic() + 10
        while client.get("/feeds/providers/late.example.rss").status_code != 200:
            assert time.monotonic() < deadline, "the scanner did not pick up the new file"
            time.sleep(0.05)
    finally:
        site.stop()
    assert not site.running


def test_requests_during_reloads_see_one_consistent_state(app: Flask, web_config: Config) -> None:
    extra = Path(web_config.records_dir) / "030.txt"
    stop = threading.Event()
    seen: dict[str, set[bytes]] = {}
    failures: list[str] = []

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            for path, accept in (("/feeds/all.atom", None), ("/feeds/all.rss", "gzip"), ("/index.html", None)):
                r = client.get(path, headers={"Accept-Encoding": accept} if accept else {})
                if r.status_code != 200:
                    failures.append(f"{path} {r.status_code}")
                    continue
                body = gzip.decompress(r.data) if accept else r.data
                seen.setdefault(r.headers["ETag"], set()).add(hashlib.sha256(body).digest())
                if path != "/index.html" and len(parse(body).entries) not in (2, 3):
                    failures.append(f"{path}: {len(parse(body).entries)} entries")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            if i % 2 == 0:
                extra.write_text(record_text(i + 1, domain="flip.example", topic="Flip"), encoding="utf-8")
            else:
                extra.unlink()
            live(app).reload_now()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    # Every ETag always came with the same bytes: no response mixed two states.
    assert all(len(bodies) == 1 for bodies in seen.values())
    assert len(seen) > 3


# -- access log and secrets ----------------------------------------------------------------

ACCESS = re.compile(
    r'(?P<addr>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<bytes>\d+) (?P<secs>\d+\.\d{6}) (?P<flag>\S+)'
)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "feedsvc.access"]
    matches = [ACCESS.fullmatch(line) for line in lines]
    assert all(matches), lines
    return matches  # type: ignore[return-value]


def test_access_log_one_line_per_request(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="feedsvc.access")
    refused = client.get("/feeds/all.atom?token=QUERY-SECRET", headers={"X-Api-Key": "HEADER-SECRET"})
    assert refused.status_code == 400
    full = client.get("/feeds/all.atom", headers={"X-Api-Key": "HEADER-SECRET"})
    etag = full.headers["ETag"]
    client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    client.head("/feeds/all.rss")
    client.get("/no/such%0Apath")
    client.post("/feeds/all.atom")
    lines = access_lines(caplog)
    assert [(m["method"], m["path"], m["status"], m["flag"]) for m in lines] == [
        ("GET", "/feeds/all.atom", "400", "-"),
        ("GET", "/feeds/all.atom", "200", "-"),
        ("GET", "/feeds/all.atom", "304", "not-modified"),
        ("HEAD", "/feeds/all.rss", "200", "-"),
        ("GET", "/no/such%0Apath", "404", "-"),
        ("POST", "/feeds/all.atom", "405", "-"),
    ]
    assert [int(m["bytes"]) for m in lines[:4]] == [len(refused.data), len(full.data), 0, 0]
    assert "SECRET" not in caplog.text


def test_secured_never_reaches_a_response_or_the_log(
    app: Flask, client: FlaskClient, web_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    records = Path(web_config.records_dir)
    (records / "040.txt").write_text(
        record_text(4, domain="leaky.example", topic="Leaks", secured="TOPSECRET-aa11bb22"), encoding="utf-8"
    )
    (records / "041.txt").write_text(
        record_text(5, domain="leaky.example", topic="Leaks", secured="TOPSECRET-cc33").replace("title:", "titel:"),
        encoding="utf-8",
    )
    secrets = secured_values(records)
    caplog.set_level(logging.DEBUG, logger="feedsvc")
    live(app).reload_now()
    bodies = []
    for path in sorted(live(app).snapshot.documents) + ["healthz", "nope"]:
        bodies.append(client.get("/" + path).data)
        bodies.append(gzip.decompress(z) if (z := client.get("/" + path, headers={"Accept-Encoding": "gzip"}).data)[:2] == b"\x1f\x8b" else z)
    assert any(b"leaky.example" in b for b in bodies)
    assert "041.txt" in caplog.text
    for secret in secrets:
        assert all(secret.encode() not in b for b in bodies), secret
        assert secret not in caplog.text


def test_a_snapshot_is_out_of_the_cyclic_collectors_walk(web_config: Config) -> None:
    # A full collection walks every tracked object: with 100,000 records that
    # stalled requests for seconds. The snapshot's objects are frozen instead.
    import gc

    gc.unfreeze()
    try:
        live = LiveSite(web_config, background=False)
        record = live.snapshot.build.loaded.records[0]
        assert gc.get_freeze_count() > 0
        assert not any(o is record for o in gc.get_objects())  # not in generations 0-2
    finally:
        gc.unfreeze()
