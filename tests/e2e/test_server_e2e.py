"""End to end: real `feedsvc serve` processes (gunicorn, and --dev) over real HTTP.

Each server gets its own copy of the seeds, a free 127.0.0.1 port and a short
reload interval, and is stopped by its fixture whatever happens. Expectations
come from `feedsvc build` run on the same config (the static files) and from
feedparser reading what the server sends.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import pytest
from conftest import MEDIA_TYPES, ROOT
from servers import FEEDSVC, Server, free_port, poll, request, write_config

SEEDS = ROOT / "seeds"
RELOAD_INTERVAL = 0.5
#: How long a change may take to show in every worker: a scan interval, plus slack for a loaded machine.
RELOAD_DEADLINE = 15.0
SECURED = re.compile(r'^secured:\s*"?([^"\n]+)"?\s*$', re.MULTILINE)


@dataclass
class Site:
    server: Server
    records: Path
    #: What `feedsvc build` wrote for the same config: URL path → bytes.
    static: dict[str, bytes]
    #: The .gz files it wrote beside them (for gzip_static): URL path → bytes.
    static_gzip: dict[str, bytes]


def make_records(folder: Path) -> Path:
    shutil.copytree(SEEDS, folder)
    for p in folder.iterdir():
        p.chmod(0o644)  # the seeds are read-only; tests change their copies
    return folder


def static_build(config: Path, out: Path) -> dict[str, bytes]:
    done = subprocess.run(
        [str(FEEDSVC), "--config", str(config), "build", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def split_gzip(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(documents, their .gz files keyed by the document's path)."""
    docs = {k: v for k, v in files.items() if not k.endswith(".gz")}
    packed = {k.removesuffix(".gz"): v for k, v in files.items() if k.endswith(".gz")}
    return docs, packed


def start_site(workdir: Path, *, dev: bool = False, records: Path | None = None) -> Site:
    workdir.mkdir(parents=True, exist_ok=True)
    records = records or make_records(workdir / "records")
    port = free_port()
    config = write_config(
        workdir / "config.yaml",
        records,
        port=port,
        reload_interval=RELOAD_INTERVAL,
        cache_max_age=60,
        workers=2,
        threads=2,
    )
    static, static_gzip = split_gzip(static_build(config, workdir / "static"))
    server = Server(config, port, workdir, dev=dev, workers=1 if dev else 2)
    server.start()
    return Site(server, records, static, static_gzip)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = start_site(tmp_path_factory.mktemp("e2e"))
    try:
        yield s
    finally:
        s.server.stop()


@pytest.fixture
def fresh_site(tmp_path: Path) -> Iterator[Site]:
    """A server of its own, for tests that change its records."""
    s = start_site(tmp_path / "site")
    try:
        yield s
    finally:
        s.server.stop()


def record_text(n: int, *, domain: str, topic: str) -> str:
    return (
        "---\n"
        f'title: "Story {n} about {topic}"\n'
        f'excerpt: "What happened in story {n}."\n'
        f"publishedDateTime: 2024-03-{n:02d}T09:00:00Z\n"
        f'webUrl: "https://{domain}/stories/{n}"\n'
        f'provider: {{name: "Desk {n}", domain: {domain}}}\n'
        f'topics: ["{topic}"]\n'
        f'secured: "E2E-SECRET-{n}"\n'
        "---\n"
    )


def validators(server: Server, paths: list[str]) -> dict[str, tuple[str | None, ...]]:
    out: dict[str, tuple[str | None, ...]] = {}
    for path in paths:
        plain = server.get("/" + path)
        zipped = server.get("/" + path, headers={"Accept-Encoding": "gzip"})
        assert plain.status == zipped.status == 200, path
        out[path] = (plain.header("ETag"), zipped.header("ETag"), plain.header("Last-Modified"))
    return out


def feed_paths(static: dict[str, bytes]) -> list[str]:
    return sorted(p for p in static if p.endswith((".rss", ".atom")))


# -- serving what `feedsvc build` writes -------------------------------------------------


def test_serve_prints_the_index_url(site: Site) -> None:
    url = f"http://127.0.0.1:{site.server.port}/index.html"
    assert poll(lambda: url in site.server.stdout(), timeout=5)


def test_every_file_is_byte_identical_to_the_static_build(site: Site) -> None:
    assert len(site.static) > 10
    for path, body in site.static.items():
        plain = site.server.get("/" + path)
        assert plain.status == 200, path
        assert plain.body == body, path
        assert plain.header("Content-Type") == MEDIA_TYPES[Path(path).suffix[1:]]
        assert plain.header("Cache-Control") == "public, max-age=60"
        assert plain.header("Vary") == "Accept-Encoding"
        assert plain.header("X-Content-Type-Options") == "nosniff"
        zipped = site.server.get("/" + path, headers={"Accept-Encoding": "gzip"})
        if path not in site.static_gzip:  # gzip would not make it smaller (the favicon): plain for everyone
            assert zipped.header("Content-Encoding") is None and zipped.body == body, path
            continue
        assert zipped.header("Content-Encoding") == "gzip"
        assert gzip.decompress(zipped.body) == body
        assert zipped.header("ETag") != plain.header("ETag")
        # The .gz beside the static file is the very body the app sends.
        assert zipped.body == site.static_gzip[path], path


def test_every_feed_parses_with_feedparser_over_http(site: Site) -> None:
    for path in feed_paths(site.static):
        parsed = feedparser.parse(f"{site.server.base}/{path}")
        assert parsed.status == 200, path
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.entries, path
        assert parsed.etag and parsed.modified
        assert {e.link for e in parsed.entries} == {e.link for e in feedparser.parse(site.static[path]).entries}


def test_feedparser_conditional_get_is_304(site: Site) -> None:
    for path in feed_paths(site.static):
        url = f"{site.server.base}/{path}"
        first = feedparser.parse(url)
        assert first.status == 200
        assert feedparser.parse(url, etag=first.etag).status == 304, path
        assert feedparser.parse(url, modified=first.modified).status == 304, path
        assert feedparser.parse(url, etag='"stale"').status == 200


def test_head_and_methods(site: Site) -> None:
    get = site.server.get("/feeds/all.atom")
    head = site.server.get("/feeds/all.atom", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(get.body))
    assert head.header("ETag") == get.header("ETag")
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = site.server.get("/feeds/all.atom", method=method)
        assert r.status == 405
        assert {m.strip() for m in (r.header("Allow") or "").split(",")} == {"GET", "HEAD"}
        assert r.header("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(
    "target",
    ["/../config.yaml", "/feeds/%2e%2e/x", "/feeds/all.rss%00", "/%00", "/" + "a" * 3000, "/feeds/", "/%2f/healthz"],
    ids=lambda t: t[:30],
)
def test_bad_paths_are_404(site: Site, target: str) -> None:
    r = site.server.get(target)
    assert r.status == 404
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Content-Security-Policy") is not None


def test_an_escaped_slash_names_the_document_it_spells(site: Site) -> None:
    """granian decodes %2F before the app sees the path (it passes no raw target), so
    /feeds%2Fall.rss is /feeds/all.rss: the same bytes, never another file. The
    development server passes the raw target, and there it is 404 (below)."""
    escaped, plain = site.server.get("/feeds%2Fall.rss"), site.server.get("/feeds/all.rss")
    assert (escaped.status, escaped.body, escaped.header("ETag")) == (200, plain.body, plain.header("ETag"))
    assert site.server.get("/feeds%2F..%2F..%2Fconfig.yaml").status == 404


def test_absurd_query_and_headers_are_refused(site: Site) -> None:
    long_query = site.server.get("/feeds/all.rss?q=" + "x" * 10_240)
    assert 400 <= long_query.status < 500
    huge_header = site.server.get("/feeds/all.rss", headers={"X-Filler": "y" * 102_400})
    assert 400 <= huge_header.status < 500
    many = site.server.get("/feeds/all.rss", headers={f"X-H{i}": "v" for i in range(200)})
    assert 400 <= many.status < 500
    assert site.server.get("/feeds/all.rss").status == 200  # and the server is still fine


def test_healthz(site: Site) -> None:
    r = site.server.get("/healthz")
    assert r.status == 200
    assert r.header("Cache-Control") == "no-store"
    health = site.server.health()
    assert health["status"] == "ok"
    assert health["records_loaded"] == 2 and health["records_rejected"] == 0
    assert health["feeds"] == len(feed_paths(site.static)) // 2


def test_two_servers_give_the_same_validators(site: Site, tmp_path: Path) -> None:
    other = start_site(tmp_path / "other", records=site.records)
    try:
        paths = sorted(site.static)
        assert validators(site.server, paths) == validators(other.server, paths)
    finally:
        other.server.stop()


def test_access_log_goes_to_stderr_without_query_strings(site: Site) -> None:
    # A custom feed (200) and a refused query (400): neither query reaches the log.
    assert site.server.get("/feeds/topics/ai.rss?provider=QUERYSECRET-1.example").status == 200
    assert site.server.get("/feeds/topics/ai.rss?session=QUERYSECRET-2").status == 400
    for status in (200, 400):
        line = re.compile(rf'.*"GET /feeds/topics/ai\.rss HTTP/1\.1" {status} \d+ \d+\.\d+ -$', re.MULTILINE)
        assert poll(lambda line=line: line.search(site.server.stderr()), timeout=5)
    assert "QUERYSECRET" not in site.server.stderr()


def test_secured_never_in_responses_or_logs(site: Site) -> None:
    secrets = [m.group(1) for p in site.records.iterdir() for m in SECURED.finditer(p.read_text("utf-8"))]
    assert len(secrets) == 2
    bodies = [site.server.get("/" + p).body for p in site.static] + [site.server.get("/healthz").body]
    logs = site.server.stdout() + site.server.stderr()
    for secret in secrets:
        assert all(secret.encode() not in b for b in bodies)
        assert secret not in logs


# -- live reload ------------------------------------------------------------------------------


def test_added_and_deleted_records_show_up_without_a_restart(fresh_site: Site) -> None:
    server, records = fresh_site.server, fresh_site.records
    before = validators(server, sorted(fresh_site.static))
    feed = "/feeds/providers/fresh.example.atom"
    link = "https://fresh.example/stories/7"
    assert server.get(feed).status == 404
    new = records / "050_fresh.txt"
    new.write_text(record_text(7, domain="fresh.example", topic="Fresh Topic"), encoding="utf-8")

    def everywhere(check: object) -> bool:
        # Several requests in a row, so every worker has had its say.
        return all(check() for _ in range(8))  # type: ignore[operator]

    started = time.monotonic()
    assert poll(lambda: everywhere(lambda: server.get(feed).status == 200), timeout=RELOAD_DEADLINE)
    appeared = time.monotonic() - started
    parsed = feedparser.parse(server.get(feed).body)
    assert [e.link for e in parsed.entries] == [link]
    assert link in {e.link for e in feedparser.parse(server.get("/feeds/all.atom").body).entries}

    after = validators(server, sorted(fresh_site.static))
    touched = {"index.html", "feeds.opml", "feeds/all.rss", "feeds/all.atom", "feeds/all.json", "feeds/all.html"}
    # Feeds the new record is not in keep their validators exactly.
    for path in set(fresh_site.static) - touched:
        assert after[path] == before[path], path
    assert after["feeds/all.atom"] != before["feeds/all.atom"]
    health = server.health()
    assert health["records_loaded"] == 3

    new.unlink()
    assert poll(lambda: everywhere(lambda: server.get(feed).status == 404), timeout=RELOAD_DEADLINE)
    assert link not in {e.link for e in feedparser.parse(server.get("/feeds/all.atom").body).entries}
    # Back to the original records: back to the original bytes and validators.
    assert poll(lambda: validators(server, sorted(fresh_site.static)) == before, timeout=RELOAD_DEADLINE)
    assert appeared < RELOAD_DEADLINE


def test_stops_cleanly_on_sigterm(fresh_site: Site) -> None:
    assert fresh_site.server.stop() == 0
    with pytest.raises(OSError):
        request(fresh_site.server.port, "/healthz", timeout=2)


# -- --dev ------------------------------------------------------------------------------------


def test_dev_server_serves_the_same_bytes(tmp_path: Path) -> None:
    dev = start_site(tmp_path / "dev", dev=True)
    try:
        assert f"http://127.0.0.1:{dev.server.port}/index.html" in dev.server.stdout()
        for path, body in dev.static.items():
            r = dev.server.get("/" + path)
            assert r.status == 200 and r.body == body, path
        r = dev.server.get("/feeds/all.atom")
        assert dev.server.get("/feeds/all.atom", headers={"If-None-Match": r.header("ETag") or ""}).status == 304
        assert dev.server.get("/feeds%2Fall.atom").status == 404
        assert dev.server.get("/feeds/all.rss?q=" + "x" * 10_240).status == 414
        parsed = feedparser.parse(f"{dev.server.base}/feeds/all.rss")
        assert parsed.status == 200 and not parsed.bozo and parsed.entries
        assert '"GET /feeds/all.atom HTTP/1.1" 304 0' in dev.server.stderr()
        assert "q=xxx" not in dev.server.stderr()
    finally:
        dev.server.stop()
