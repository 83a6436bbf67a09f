"""The web app through Flask's test client: documents, HTTP caching, hardening, rebuilds.

The app serves what `feedsvc build` wrote (`conftest.served_app`); a change
to the records reaches it through a rebuild (`conftest.rebuild`, what the
server's builder process runs), noticed on the next request.

Every expectation is derived from something independent of the code under
test: the in-memory reference build for the same config (`site.build`), what
feedparser sees in the feeds, or the RFC rule spelled out in a table below.
"""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import pytest
from conftest import MEDIA_TYPES, rebuild, served_app
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedsvc.build import incremental, render
from feedsvc.build.served import Manifest, etag_of
from feedsvc.config import Config, load_config
from feedsvc.formats.documents import Build, build_in_memory
from feedsvc.model import Record
from feedsvc.web import builder
from feedsvc.web.app import create_app
from feedsvc.web.output import Output

CSP = (
    "default-src 'none'; img-src https: http:; style-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_AGE = 123
SECURED = re.compile(r'^secured:\s*"?([^"\n]+)"?\s*$', re.MULTILINE)
GZ = {"Accept-Encoding": "gzip"}


# -- fixtures and helpers -------------------------------------------------------


@pytest.fixture
def web_config(config: Config) -> Config:
    return dataclasses.replace(config, server=dataclasses.replace(config.server, cache_max_age=MAX_AGE))


@pytest.fixture
def app(web_config: Config) -> Flask:
    # Built once here; each test decides when a rebuild happens (`rebuild`).
    return served_app(web_config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def expected(web_config: Config) -> Build:
    """What `feedsvc build` produces for the same config, made in memory."""
    return build_in_memory(web_config)


def output(app: Flask) -> Output:
    served: Output = app.extensions["feedsvc"]
    return served


def health(client: FlaskClient) -> dict[str, Any]:
    r = client.get("/healthz")
    assert r.headers["Content-Type"] == "application/json"
    status: dict[str, Any] = json.loads(r.data)
    return status


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
        zipped = client.get("/" + path, headers=GZ).headers["ETag"]
        out[path] = (plain, zipped)
    return out


def validators_of(client: FlaskClient, paths: list[str]) -> dict[str, tuple[str, str, str | None]]:
    """Each path's (plain ETag, gzip ETag, Last-Modified)."""
    lm = {p: client.get("/" + p).headers.get("Last-Modified") for p in paths}
    return {p: (*tags, lm[p]) for p, tags in etags(client, paths).items()}


def served_bodies(client: FlaskClient, paths: list[str]) -> dict[str, bytes]:
    """Each path's plain body, asserting a 200."""
    out = {}
    for path in paths:
        r = client.get("/" + path)
        assert r.status_code == 200, path
        out[path] = r.data
    return out


def feed_paths(build_: Build) -> list[str]:
    return sorted(p for p in build_.documents if p.endswith((".rss", ".atom")))


def first_record(config: Config) -> Path:
    return sorted(Path(config.records_dir).glob("001_*.txt"))[0]


def retitle(path: Path, title: str) -> None:
    text = path.read_text("utf-8")
    line = re.search(r"^title: (.*)$", text, re.MULTILINE)
    assert line
    path.write_text(text.replace(line.group(0), f'title: "{title}"'), encoding="utf-8")


def replace_file(path: Path, data: bytes) -> None:
    """What a build does to a file: write a new one beside it and rename it over the old."""
    tmp = path.with_name(path.name + ".tmp-test")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def builder_process(config: Config) -> Iterator[int]:
    """The builder `feedsvc serve` forks: it watches records_dir and rebuilds (here it starts idle)."""
    pid = builder.start_process(config, config.output_dir, first=False)
    try:
        yield pid
    finally:
        builder.stop_process(pid)


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
# answer bad paths without opening a file.
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
    assert health(client)["documents"] == len(expected.documents)
    for path, doc in expected.documents.items():
        r = client.get("/" + path)
        assert r.status_code == 200, path
        assert r.data == doc.body, path
        assert r.headers["Content-Type"] == MEDIA_TYPES[Path(path).suffix[1:]], path
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
        when = datetime(*newest[:6]).replace(tzinfo=UTC)
        assert r.headers["Last-Modified"] == format_datetime(when, usegmt=True), path
    assert "Last-Modified" not in client.get("/style.css").headers


def test_root_serves_the_index(client: FlaskClient, expected: Build) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.data == expected.documents["index.html"].body
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["ETag"] == client.get("/index.html").headers["ETag"]


def elsewhere(config: Config, name: str) -> Config:
    """The same config writing another output folder (another machine, say), with its own cache."""
    return dataclasses.replace(config, output_dir=Path(config.output_dir).parent / name)


def test_same_records_give_the_same_validators_in_every_app(app: Flask, web_config: Config, expected: Build) -> None:
    """Validators come from the bytes alone: a restarted app and an independent build agree."""
    paths = sorted(expected.documents)
    apps = [app, create_app(web_config), served_app(elsewhere(web_config, "second-machine"))]
    seen = [validators_of(a.test_client(), paths) for a in apps]
    assert seen[0] == seen[1] == seen[2]
    assert len({tags[0] for tags in seen[0].values()}) == len(paths), "every document has its own ETag"


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
    for name in ("one", "two"):  # two independent builds
        app = served_app(elsewhere(web_config, name))
        bodies.append(app.test_client().get("/feeds/all.rss", headers=GZ).data)
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
    modified = datetime(*newest[:6]).replace(tzinfo=UTC)
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


@pytest.mark.parametrize(
    "path", ["/feeds/all.rss", "/feeds/topics/ai.atom", "/index.html", "/style.css", "/feeds.opml"]
)
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
    client.get("/feeds/all.rss")  # warm up: this thread's cache connection is open
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
    # The site's 404 page (pages.render_not_found): its links are the site's own.
    links = links_in(r.data)
    assert "http://127.0.0.1:8000/index.html" in links
    assert all(link.startswith("http://127.0.0.1:8000/") for link in links), links


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
    # Not "//…": werkzeug's test client reads that as a host, not a path (the
    # one-spelling tests send such paths over a real server).
    r = client.get("/" + quote(raw.lstrip(b"/"), safe="/.%"), headers=headers)
    assert r.status_code in (200, 304, 404)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    if r.status_code == 200:
        body = gzip.decompress(r.data) if r.headers.get("Content-Encoding") == "gzip" else r.data
        assert body in {d.body for d in expected.documents.values()}


def test_pages_ignore_query_strings_and_feeds_refuse_unknown_ones(client: FlaskClient) -> None:
    """A page takes no query; a feed's query makes a custom feed (tests/web/test_query.py), so a
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
    app = served_app(web_config)
    client = app.test_client()
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    status = json.loads(r.data)
    assert set(status) == {
        "status",
        "records_loaded",
        "records_rejected",
        "feeds",
        "documents",
        "generation",
        "pid",
        "last_build",
    }
    assert status["status"] == "ok"
    assert status["records_loaded"] == len(expected.loaded.records) == 2
    assert status["records_rejected"] == 1
    assert status["feeds"] == len(expected.feeds)
    assert status["documents"] == len(expected.documents)
    assert status["pid"] == os.getpid()
    assert status["generation"] >= 1
    last = datetime.fromisoformat(status["last_build"])
    assert abs((datetime.now(UTC) - last).total_seconds()) < 60
    assert client.head("/healthz").status_code == 200

    # A build that changes documents is the next generation, and says when it was.
    time.sleep(1.1)  # last_build has whole seconds
    (Path(web_config.records_dir) / "002_more.txt").write_text(
        record_text(9, domain="more.example", topic="More"), encoding="utf-8"
    )
    broken.unlink()
    assert rebuild(web_config).changed_paths
    after = health(client)
    assert after["generation"] == status["generation"] + 1
    assert (after["records_loaded"], after["records_rejected"]) == (3, 0)
    assert after["feeds"] == len(build_in_memory(web_config).feeds) > status["feeds"]
    assert datetime.fromisoformat(after["last_build"]) > last


def test_healthz_counts_follow_a_build_that_changed_no_document(web_config: Config) -> None:
    app = served_app(web_config)
    client = app.test_client()
    before = health(client)
    broken = Path(web_config.records_dir) / "zz_broken.txt"
    broken.write_text('---\nexcerpt: "no title, no link"\nsecured: "x"\n---\n', encoding="utf-8")
    report = rebuild(web_config)
    assert report.rejected == 1 and not report.changed_paths  # no document shows a rejected file
    after = health(client)
    assert after["generation"] == before["generation"]
    assert (after["records_loaded"], after["records_rejected"]) == (2, 1)


def test_healthz_before_any_build_is_503_and_documents_404(web_config: Config, expected: Build) -> None:
    app = create_app(web_config)  # `feedsvc serve --no-build` before the first build
    client = app.test_client()
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.headers["Cache-Control"] == "no-store"
    status = json.loads(r.data)
    assert status["status"] == "no build yet"
    assert (status["generation"], status["documents"], status["last_build"]) == (0, 0, None)
    assert client.get("/feeds/all.atom").status_code == 404
    assert client.get("/").status_code == 404

    rebuild(web_config)  # the first build: the same app notices it on its next request
    assert client.get("/healthz").status_code == 200
    assert health(client)["documents"] == len(expected.documents)
    assert client.get("/feeds/all.atom").data == expected.documents["feeds/all.atom"].body


def test_create_app_without_config_reads_feedsvc_config(
    tmp_path: Path, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (seeds_dir / "002_extra.txt").write_text(record_text(3, domain="extra.example", topic="Extra"), "utf-8")
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(f"records_dir: {seeds_dir}\ninclude_unpublished: true\n", encoding="utf-8")
    monkeypatch.setenv("FEEDSVC_CONFIG", str(cfg))
    rebuild(load_config())  # `feedsvc build`: output_dir defaults to public/ beside the config file
    assert (tmp_path / "public" / "feeds" / "all.atom").is_file()
    app = create_app()
    assert health(app.test_client())["records_loaded"] == 3
    assert app.test_client().get("/feeds/providers/extra.example.atom").status_code == 200


# -- rebuilds ------------------------------------------------------------------------------


def test_a_rebuild_serves_added_and_deleted_records(client: FlaskClient, web_config: Config) -> None:
    records = Path(web_config.records_dir)
    feed = "/feeds/providers/newsdesk.example.atom"
    assert client.get(feed).status_code == 404
    old = client.get("/feeds/all.rss")
    new = records / "sub" / "010_new.txt"
    new.parent.mkdir()
    new.write_text(record_text(10, domain="newsdesk.example", topic="Quantum Sensing"), encoding="utf-8")

    report = rebuild(web_config)
    assert (report.changes.files, report.changes.parsed) == (3, 1)
    assert feed.lstrip("/") in report.changed_paths
    r = client.get(feed)
    assert r.status_code == 200
    assert entry_links(r.data) == {"https://newsdesk.example/stories/10"}
    now = client.get("/feeds/all.rss")
    assert "https://newsdesk.example/stories/10" in entry_links(now.data)
    assert now.headers["ETag"] != old.headers["ETag"]
    # A reader holding the old version gets the new one, not a 304.
    again = client.get("/feeds/all.rss", headers={"If-None-Match": old.headers["ETag"]})
    assert again.status_code == 200 and again.data == now.data
    assert client.get("/feeds/topics/quantum-sensing.rss").status_code == 200
    for path, doc in build_in_memory(web_config).documents.items():
        assert client.get("/" + path).data == doc.body, path

    new.unlink()
    report = rebuild(web_config)
    assert (report.changes.parsed, report.changes.removed_files) == (0, 1)
    assert feed.lstrip("/") in report.changes.removed_paths
    assert client.get(feed).status_code == 404
    assert client.get(feed, headers=GZ).status_code == 404
    assert client.head(feed).status_code == 404
    assert client.get("/feeds/topics/quantum-sensing.html").status_code == 404
    back = client.get("/feeds/all.rss")
    assert "https://newsdesk.example/stories/10" not in entry_links(back.data)
    assert back.data == old.data and back.headers["ETag"] == old.headers["ETag"], "the same bytes, the same ETag"


def test_changing_one_record_changes_only_the_feeds_it_is_in(
    client: FlaskClient, web_config: Config, expected: Build
) -> None:
    paths = sorted(expected.documents)
    before = validators_of(client, paths)
    out = Path(web_config.output_dir)
    files_before = {p: os.stat(out / p) for p in paths}
    target = first_record(web_config)
    retitle(target, "A rewritten headline")

    report = rebuild(web_config)
    assert report.changes.parsed == 1

    after = validators_of(client, paths)
    changed = {p for p in paths if before[p][:2] != after[p][:2]}
    # The feeds holding the record, as feedparser sees them now, in every format.
    touched = set()
    for path in feed_paths(expected):
        titles = {e.title for e in parse(client.get("/" + path).data).entries}
        if "A rewritten headline" in titles:
            stem = path.rsplit(".", 1)[0]
            touched |= {f"{stem}.rss", f"{stem}.atom", f"{stem}.json", f"{stem}.html"}
    assert touched and touched != set(paths)
    assert changed == touched
    assert set(report.changed_paths) == touched and not report.changes.removed_paths
    assert report.changes.feeds_rendered == len(touched) // 4
    for path in touched:
        assert before[path][0] != before[path][1] and after[path][0] != after[path][1]
        # The old version no longer validates; the new one does.
        assert client.get("/" + path, headers={"If-None-Match": before[path][0]}).status_code == 200
        assert client.get("/" + path, headers={"If-None-Match": after[path][0]}).status_code == 304
    for path in set(paths) - touched:
        # Untouched documents keep ETags, Last-Modified and their very files: a reader's 304 still holds.
        assert after[path] == before[path], path
        assert client.get("/" + path, headers={"If-None-Match": before[path][0]}).status_code == 304, path
        st_ = os.stat(out / path)
        assert (st_.st_ino, st_.st_mtime_ns) == (files_before[path].st_ino, files_before[path].st_mtime_ns), path
    # What is served now is what a build from scratch makes of the changed records.
    for path, doc in build_in_memory(web_config).documents.items():
        assert client.get("/" + path).data == doc.body, path


def test_a_rebuild_without_changes_changes_nothing_served(
    app: Flask, client: FlaskClient, web_config: Config, expected: Build
) -> None:
    paths = sorted(expected.documents)
    before = validators_of(client, paths)
    generation = health(client)["generation"]
    signal = incremental.generation_path(Path(web_config.output_dir))
    stamp = os.stat(signal)
    report = rebuild(web_config)
    assert report.changes.parsed == 0 and not report.changed_paths and not report.changes.removed_paths
    assert (os.stat(signal).st_ino, os.stat(signal).st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    assert health(client)["generation"] == generation
    assert validators_of(client, paths) == before


def test_a_record_that_turns_invalid_is_logged_and_dropped(
    client: FlaskClient, web_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = secured_values(Path(web_config.records_dir))
    target = first_record(web_config)
    link = "https://www.biometricupdate.com/"
    provider_feed = "/feeds/providers/biometricupdate.com.rss"
    assert client.get(provider_feed).status_code == 200
    text = target.read_text("utf-8")
    target.write_text(re.sub(r"^title: .*\n", "", text, flags=re.MULTILINE), encoding="utf-8")

    with caplog.at_level(logging.INFO, logger="feedsvc"):
        outcome = builder.Builder(web_config, Path(web_config.output_dir), build=builder.build_once).build()
    assert outcome.ok
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(re.fullmatch(rf"{re.escape(target.name)}(:\d+)?: title: .+", m) for m in problems), problems
    assert client.get(provider_feed).status_code == 404
    remaining = parse(client.get("/feeds/all.atom").data).entries
    assert len(remaining) == 1 and not remaining[0].link.startswith(link)
    status = health(client)
    assert (status["records_loaded"], status["records_rejected"]) == (1, 1)
    for secret in secrets:
        assert secret not in caplog.text


def test_custom_feeds_follow_a_rebuild(client: FlaskClient, web_config: Config) -> None:
    url = "/feeds/all.atom?limit=10"
    first = client.get(url)
    assert entry_links(first.data) == entry_links(client.get("/feeds/all.atom").data)
    (Path(web_config.records_dir) / "002_late.txt").write_text(
        record_text(11, domain="late.example", topic="Late"), encoding="utf-8"
    )
    rebuild(web_config)
    second = client.get(url)
    assert second.status_code == 200
    assert "https://late.example/stories/11" in entry_links(second.data)
    assert entry_links(second.data) == entry_links(build_in_memory(web_config).documents["feeds/all.atom"].body)
    assert second.headers["ETag"] != first.headers["ETag"]
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 200


def test_the_builder_process_picks_up_changes(app: Flask, client: FlaskClient, web_config: Config) -> None:
    """`feedsvc serve`: a file saved into records_dir is served soon after, by a worker that built nothing."""
    late = "/feeds/providers/late.example.rss"
    assert client.get(late).status_code == 404
    with builder_process(web_config):
        time.sleep(0.5)  # the watcher is watching
        (Path(web_config.records_dir) / "020.txt").write_text(
            record_text(20, domain="late.example", topic="Late"), encoding="utf-8"
        )
        deadline = time.monotonic() + 30
        while client.get(late).status_code != 200:
            assert time.monotonic() < deadline, "the builder did not pick up the new file"
            time.sleep(0.05)
    assert entry_links(client.get(late).data) == {"https://late.example/stories/20"}
    assert "https://late.example/stories/20" in entry_links(client.get("/feeds/all.atom").data)


def test_requests_during_rebuilds_see_one_consistent_state(app: Flask, web_config: Config) -> None:
    extra = Path(web_config.records_dir) / "030.txt"
    stop = threading.Event()
    seen: dict[str, set[bytes]] = {}
    failures: list[str] = []
    answered = [0]

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            for path, accept in (("/feeds/all.atom", None), ("/feeds/all.rss", "gzip"), ("/index.html", None)):
                try:
                    r = client.get(path, headers={"Accept-Encoding": accept} if accept else {})
                except Exception as e:  # noqa: BLE001 - reported below
                    failures.append(f"{path}: {type(e).__name__}: {e}")
                    continue
                answered[0] += 1
                if r.status_code != 200:
                    failures.append(f"{path} {r.status_code}")
                    continue
                etag = r.headers["ETag"]
                if etag != etag_of(r.data):
                    failures.append(f"{path}: ETag {etag} names other bytes than those sent")
                body = gzip.decompress(r.data) if accept else r.data
                seen.setdefault(etag, set()).add(body)
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
            assert rebuild(web_config).changed_paths
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    # Every ETag always came with the same bytes: no response mixed two builds.
    assert all(len(bodies) == 1 for bodies in seen.values())
    assert len(seen) > 3 and answered[0] > 30


def _build_dies(config: Config, monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    """Run a build that fails in `target.name` (a full disk, say)."""

    def dies(*args: object, **kwargs: object) -> object:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(target, name, dies)
        with pytest.raises(OSError):
            rebuild(config)


def test_a_failed_build_keeps_serving_the_previous_build(
    client: FlaskClient, web_config: Config, expected: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = sorted(expected.documents)
    before = validators_of(client, paths)
    generation = health(client)["generation"]
    retitle(first_record(web_config), "A headline nobody saw")
    _build_dies(web_config, monkeypatch, incremental, "publish_files")  # dies before writing a file

    assert served_bodies(client, paths) == {p: expected.documents[p].body for p in paths}
    assert validators_of(client, paths) == before
    assert health(client)["generation"] == generation

    rebuild(web_config)  # the next build does what the failed one did not
    now = build_in_memory(web_config)
    assert served_bodies(client, paths) == {p: now.documents[p].body for p in paths}
    assert health(client)["generation"] == generation + 1


def _served_as_promised(client: FlaskClient, paths: list[str], old: dict[str, tuple[str, bytes]]) -> None:
    """Each path sends the bytes its ETag names; the old ETag gets a 304 only where the bytes are the old ones."""
    for path in paths:
        r = client.get("/" + path)
        assert r.status_code == 200 and r.headers["ETag"] == etag_of(r.data), path
        again = client.get("/" + path, headers={"If-None-Match": old[path][0]})
        assert again.status_code == (304 if r.data == old[path][1] else 200), path


def test_files_renamed_in_from_the_render_workers_keep_every_validator_true(
    client: FlaskClient, web_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big build's files come from its workers' staging folder by rename: an edit and a deletion, served."""
    monkeypatch.setattr(render, "PARALLEL_FEEDS", 1)  # every render in worker processes, as at scale
    paths = sorted(build_in_memory(web_config).documents)
    old = {p: (client.get("/" + p).headers["ETag"], client.get("/" + p).data) for p in paths}
    retitle(first_record(web_config), "Renamed in from the staging folder")
    assert incremental.build(web_config, workers=2).published.written > 0
    assert served_bodies(client, paths) == {p: d.body for p, d in build_in_memory(web_config).documents.items()}
    _served_as_promised(client, paths, old)
    old = {p: (client.get("/" + p).headers["ETag"], client.get("/" + p).data) for p in paths}
    first_record(web_config).unlink()
    incremental.build(web_config, workers=2)
    now = build_in_memory(web_config).documents
    gone = [p for p in paths if p not in now]
    assert all(client.get("/" + p).status_code == 404 for p in gone)
    _served_as_promised(client, [p for p in paths if p in now], old)


def test_a_build_that_dies_between_its_files_and_its_rows_never_mixes(
    client: FlaskClient, web_config: Config, expected: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files written, rows not: each response still carries the bytes its ETag names."""
    paths = sorted(expected.documents)
    before = validators_of(client, paths)
    retitle(first_record(web_config), "A headline half written")
    _build_dies(web_config, monkeypatch, Manifest, "set")
    now = build_in_memory(web_config)
    changed = {p for p in paths if now.documents[p].body != expected.documents[p].body}
    assert changed

    for path in paths:
        for headers in ({}, GZ):
            r = client.get("/" + path, headers=headers)
            assert r.status_code == 200, path
            assert r.headers["ETag"] == etag_of(r.data), path
            body = gzip.decompress(r.data) if r.headers.get("Content-Encoding") == "gzip" else r.data
            assert body == now.documents[path].body, path  # the files are the new build's
            if path not in changed:
                assert r.headers["ETag"] == before[path][1 if headers else 0], path

    rebuild(web_config)
    assert served_bodies(client, paths) == {p: now.documents[p].body for p in paths}
    after = validators_of(client, paths)
    for path in paths:
        assert (after[path] == before[path]) == (path not in changed), path
        assert after[path][2] == before[path][2], "Last-Modified is the newest entry's date, as before"


# -- a file that is not what its row says -----------------------------------------------

MID_WRITE_PATHS = ["feeds/all.atom", "feeds/topics/ai.rss", "index.html", "feeds.opml"]


def _rewrite_under_the_app(client: FlaskClient, web_config: Config, path: str, gz: bool) -> tuple[Any, bytes]:
    """Replace a document's file (or its .gz) by other bytes, as a build writing it right now does.

    Returns the response before, and the bytes now in the file.
    """
    headers = GZ if gz else {}
    before = client.get("/" + path, headers=headers)
    assert before.status_code == 200 and (before.headers.get("Content-Encoding") == "gzip") == gz
    plain = gzip.decompress(before.data) if gz else before.data
    newer = plain + b"\n<!-- a build is writing this file -->\n"
    data = gzip.compress(newer, mtime=0) if gz else newer
    replace_file(Path(web_config.output_dir) / (path + ".gz" if gz else path), data)
    return before, data


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("path", MID_WRITE_PATHS)
def test_a_file_whose_bytes_differ_from_its_row_is_sent_under_their_own_etag(
    client: FlaskClient, web_config: Config, path: str, gz: bool
) -> None:
    before, data = _rewrite_under_the_app(client, web_config, path, gz)
    headers = GZ if gz else {}
    for _ in range(2):  # and again: nothing about the stale row is remembered as if it were the file
        r = client.get("/" + path, headers=headers)
        assert r.status_code == 200
        assert r.data == data
        assert r.headers["ETag"] == etag_of(data) != before.headers["ETag"]
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Content-Type"] == before.headers["Content-Type"]
        assert (r.headers.get("Content-Encoding") == "gzip") == gz
    # The ETag it was sent under validates it.
    fresh = client.get("/" + path, headers={**headers, "If-None-Match": etag_of(data)})
    assert fresh.status_code == 304
    assert fresh.headers["ETag"] == etag_of(data)
    # The other encoding, untouched, is still sent as its row says.
    other = client.get("/" + path, headers={} if gz else GZ)
    assert other.status_code == 200 and other.headers["ETag"] == etag_of(other.data)


def test_a_same_length_rewrite_is_noticed_too(client: FlaskClient, web_config: Config) -> None:
    before = client.get("/feeds/all.atom")
    data = before.data.replace(b"<feed", b"<FEED", 1).replace(b"</feed>", b"</FEED>")
    assert len(data) == len(before.data) and data != before.data
    replace_file(Path(web_config.output_dir) / "feeds/all.atom", data)
    r = client.get("/feeds/all.atom")
    assert r.data == data
    assert r.headers["ETag"] == etag_of(data) != before.headers["ETag"]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_head_of_a_file_mid_write_has_the_headers_get_has(client: FlaskClient, web_config: Config, gz: bool) -> None:
    _before, data = _rewrite_under_the_app(client, web_config, "feeds/all.atom", gz)
    headers = GZ if gz else {}
    get = client.get("/feeds/all.atom", headers=headers)
    head = client.head("/feeds/all.atom", headers=headers)
    assert get.headers["ETag"] == etag_of(data)
    assert sorted(head.headers.items()) == sorted(get.headers.items())


def test_a_build_committing_during_a_request_never_pairs_an_old_etag_with_new_bytes(
    app: Flask, client: FlaskClient, web_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "feeds/all.atom"
    old = client.get("/" + path)
    # A title with its case swapped: the feed changes, its length does not.
    target = first_record(web_config)
    title = re.search(r'^title: "(.*)"$', target.read_text("utf-8"), re.MULTILINE)
    assert title
    retitle(target, title.group(1).swapcase())
    new = build_in_memory(web_config).documents[path].body
    assert new != old.data and len(new) == len(old.data)

    # A big build writes its files long before it commits their rows.
    real_publish = incremental.publish_files

    def slow_publish(*args: Any, **kwargs: Any) -> Any:
        result = real_publish(*args, **kwargs)
        time.sleep(0.3)
        return result

    monkeypatch.setattr(incremental, "publish_files", slow_publish)
    served = output(app)
    real_get = served.get

    def get_then_build(p: str) -> Any:
        row = real_get(p)
        if p == path:  # this request has its row; now the build runs and commits...
            monkeypatch.setattr(served, "get", real_get)
            assert path in rebuild(web_config).changed_paths
            served.check()  # ...and another thread's request notices it
        return row

    monkeypatch.setattr(served, "get", get_then_build)
    r = client.get("/" + path)
    assert r.status_code == 200
    assert r.headers["ETag"] == etag_of(r.data)


def test_a_full_build_while_serving_is_served_like_any_other(client: FlaskClient, web_config: Config) -> None:
    custom = "/feeds/all.atom?limit=10"
    assert len(parse(client.get(custom).data).entries) == 2
    (Path(web_config.records_dir) / "002_new.txt").write_text(
        record_text(12, domain="newdesk.example", topic="New"), encoding="utf-8"
    )
    report = incremental.build(web_config, full=True)
    assert "feeds/providers/newdesk.example.atom" in report.changed_paths
    assert client.get("/feeds/providers/newdesk.example.atom").status_code == 200
    assert health(client)["records_loaded"] == 3
    assert len(parse(client.get(custom).data).entries) == 3


# -- memory ------------------------------------------------------------------------------------


def test_a_worker_holds_no_records(web_config: Config) -> None:
    """A worker's memory grows with the documents asked for, never with the records."""
    app = served_app(web_config)
    client = app.test_client()
    out = Path(web_config.output_dir)
    paths = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.suffix != ".gz" and p.name[0] != "."
    )
    assert len(paths) > 10

    def records_alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, Record))

    alive = records_alive()
    for path in paths:
        assert client.get("/" + path).status_code == 200, path
        assert client.get("/" + path, headers=GZ).status_code == 200, path
    assert records_alive() <= alive


# -- access log and secrets ----------------------------------------------------------------

ACCESS = re.compile(
    r"(?P<addr>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "
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
    client: FlaskClient, web_config: Config, caplog: pytest.LogCaptureFixture
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
    # What the server's builder does: build, log the summary and each rejected file.
    assert builder.Builder(web_config, Path(web_config.output_dir), build=builder.build_once).build().ok
    bodies = []
    for path in sorted(build_in_memory(web_config).documents) + ["healthz", "nope", "feeds/all.atom?limit=5"]:
        bodies.append(client.get("/" + path).data)
        z = client.get("/" + path, headers=GZ).data
        bodies.append(gzip.decompress(z) if z[:2] == b"\x1f\x8b" else z)
    assert any(b"leaky.example" in b for b in bodies)
    assert "041.txt" in caplog.text
    for secret in secrets:
        assert all(secret.encode() not in b for b in bodies), secret
        assert secret not in caplog.text
    # Nor the files the build wrote.
    out = Path(web_config.output_dir)
    for secret in secrets:
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert secret.encode() not in (gzip.decompress(data) if f.suffix == ".gz" else data), f
