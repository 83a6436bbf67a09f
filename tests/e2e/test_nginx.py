"""The nginx deployments in deploy/, end to end: a real nginx, real HTTP, real clients.

Static: nginx serves what `feedsvc build` wrote, with the app's headers, the
.gz files for clients that accept gzip, validators and 304s, and nothing else
(no folders, hidden files or anything outside the output folder). Proxy:
nginx caches a real `feedsvc serve`, passes its headers through, answers
conditional requests, revalidates expired entries, and passes on a changed
record within cache_max_age + reload_interval. Expectations come from the
files the build wrote, from the app answering directly, and from feedparser.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import pytest
from conftest import MEDIA_TYPES
from nginx import ROOT, Nginx, nginx_binary, start_proxy, start_static
from servers import FEEDSVC, Response, Server, free_port, poll, write_config

from feedsvc.build.served import ARCHIVE_MAX_AGE
from feedsvc.formats.registry import FORMATS as APP_FORMATS
from feedsvc.synth import write_corpus
from feedsvc.web.app import CSP

SEEDS = ROOT / "seeds"
#: An odd max-age, so a default could not pass for it.
MAX_AGE = 137
#: Proxy tests: short enough to watch entries expire.
PROXY_MAX_AGE = 2
RELOAD_INTERVAL = 0.5
#: nginx counts cache lifetimes in whole seconds.
CLOCK_STEP = 1.0
#: Allowance for a loaded machine on top of what the settings promise.
SLACK = 10.0
PASSED_THROUGH = (
    "Content-Type", "Content-Encoding", "Content-Length", "ETag", "Last-Modified", "Cache-Control", "Vary",
    "X-Content-Type-Options", "Content-Security-Policy", "Link",
)  # fmt: skip
NEW_TITLE = "Proxy caches pass this changed title on"


def make_records(folder: Path) -> Path:
    """The seeds plus a few synthetic records: several topics and providers."""
    shutil.copytree(SEEDS, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    write_corpus(folder, 30, seed=3, topics=6, providers=8)
    return folder


def feedsvc_build(config: Path, out: Path) -> None:
    done = subprocess.run(
        [str(FEEDSVC), "--config", str(config), "build", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def manifest(out: Path) -> dict[str, str]:
    """What the build wrote: path → SHA-256 (documents and their .gz files)."""
    return json.loads((out / ".feedsvc-manifest.json").read_text(encoding="utf-8"))


def documents(out: Path) -> list[str]:
    return sorted(p for p in manifest(out) if not p.endswith(".gz"))


def retitle(path: Path, title: str) -> None:
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(r"^title: .*$", f'title: "{title}"', text, count=1, flags=re.MULTILINE)
    assert n == 1
    path.write_text(new, encoding="utf-8")


def http_date(value: str | None) -> float:
    assert value is not None
    return email.utils.parsedate_to_datetime(value).timestamp()


# -- nginx must be there ---------------------------------------------------------------------


def test_nginx_is_installed() -> None:
    """Fails (never skips) without nginx, naming the command that installs it."""
    done = subprocess.run([nginx_binary(), "-V"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0
    # gzip_static is what serves the .gz files feedsvc writes.
    assert "--with-http_gzip_static_module" in done.stderr


# -- deploy/render.py ---------------------------------------------------------------------------


def run_render(*args: str) -> subprocess.CompletedProcess[str]:
    script = str(ROOT / "deploy" / "render.py")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=30)


STATIC = "static --snippet --listen 80 --max-age 1 --output-dir"
#: deploy/render.py arguments → what its one-line error must say.
RENDER_ERRORS = {
    f"{STATIC} '/srv/my site'": "--output-dir: '/srv/my site' holds whitespace",
    f"{STATIC} '/srv/x;y'": "--output-dir: '/srv/x;y' holds",
    "static --snippet --listen '80;' --output-dir /srv --max-age 1": "--listen: '80;' is not PORT",
    "static --snippet --listen 80 --output-dir /srv --max-age -1": "--max-age: -1 is not a number of seconds",
    "static --snippet --listen 80": "static: give --output-dir and --max-age (or --config)",
    "proxy --snippet --listen 80 --upstream 'x y:1' --cache-dir /c": "--upstream: 'x y:1' is not HOST:PORT",
    "proxy --listen 80 --upstream 127.0.0.1:8000": "--prefix: required",
    "static --prefix /tmp/p --listen 80 --config /nonexistent/config.yaml": "/nonexistent/config.yaml",
}


@pytest.mark.parametrize(("args", "message"), RENDER_ERRORS.items(), ids=list(RENDER_ERRORS))
def test_render_refuses_bad_values_in_one_line(args: str, message: str) -> None:
    done = run_render(*shlex.split(args))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("deploy/render.py: ") and message in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_render_takes_values_from_a_feedsvc_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "records", cache_max_age=77, port=8123)
    done = run_render("static", "--snippet", "--listen", "8080", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"root {tmp_path / 'public'};" in done.stdout
    assert '"public, max-age=77"' in done.stdout and "__" not in done.stdout
    done = run_render("proxy", "--prefix", str(tmp_path / "ng"), "--listen", "8080", "--config", str(config))
    assert done.returncode == 0, done.stderr
    conf = (tmp_path / "ng" / "nginx.conf").read_text(encoding="utf-8")
    assert "server 127.0.0.1:8123;" in conf and f"proxy_cache_path {tmp_path / 'ng' / 'cache'} " in conf
    # Every file nginx writes stays in the prefix; pid and daemon come from the command line.
    for path in re.findall(r"(?:_log|_path) (/\S+?)[;\s]", conf):
        assert path.startswith(str(tmp_path / "ng")), path
    assert "pid " not in conf and "daemon" not in conf
    assert f"pid {tmp_path / 'ng' / 'nginx.pid'};" in done.stdout
    prefix = tmp_path / "ng"
    check = [nginx_binary(), "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", f"pid {tmp_path}/t.pid;"]
    tested = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert tested.returncode == 0, tested.stderr
    assert "[warn]" not in tested.stderr and "[emerg]" not in tested.stderr


# -- static files ---------------------------------------------------------------------------------


@dataclass
class StaticSite:
    nginx: Nginx
    out: Path
    config: Path
    records: Path

    def file(self, path: str) -> bytes:
        return (self.out / path).read_bytes()

    def get(self, path: str, **headers: str) -> Response:
        return self.nginx.get("/" + path, headers=headers)


def start_static_site(base: Path) -> StaticSite:
    records = make_records(base / "records")
    # A small max_entries and page size, so the all feed has archive pages.
    archives = {"max_entries": 12, "archives": {"enabled": True, "page_size": 5}}
    config = write_config(base / "config.yaml", records, settings=archives, cache_max_age=MAX_AGE)
    out = base / "public"
    feedsvc_build(config, out)
    return StaticSite(start_static(base / "nginx", out, MAX_AGE), out, config, records)


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    site = start_static_site(tmp_path_factory.mktemp("nginx-static"))
    try:
        yield site
    finally:
        site.nginx.stop()


def one_of(site: StaticSite, ext: str) -> str:
    found = [p for p in documents(site.out) if p.endswith("." + ext)]
    assert found, ext
    return found[0]


@pytest.mark.parametrize("ext", sorted(MEDIA_TYPES))
def test_static_headers_are_the_apps(static: StaticSite, ext: str) -> None:
    assert APP_FORMATS[ext].content_type == MEDIA_TYPES[ext]  # the app has not moved on without nginx
    path = one_of(static, ext)
    r = static.get(path)
    assert r.status == 200
    assert r.body == static.file(path)
    assert r.header("Content-Type") == MEDIA_TYPES[ext]
    assert r.header("Content-Encoding") is None
    assert r.header("Cache-Control") == f"public, max-age={MAX_AGE}"
    assert r.header("Vary") == "Accept-Encoding"
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Content-Security-Policy") == (CSP if ext == "html" else None)
    etag = r.header("ETag")
    assert etag and re.fullmatch(r'"[^"]+"', etag)  # strong
    assert abs(http_date(r.header("Last-Modified")) - (static.out / path).stat().st_mtime) < 1


def test_archive_pages_are_revalidated_after_a_day(static: StaticSite) -> None:
    """RFC 5005 pages get the app's archive Cache-Control (a day, never immutable), 304s too."""
    pages = [p for p in documents(static.out) if "/archive/" in p]
    first = [p for p in pages if p.startswith("feeds/all/archive/first.")]
    assert sorted(first) == ["feeds/all/archive/first.atom", "feeds/all/archive/first.rss"]
    named = [p for p in pages if p.startswith("feeds/all/archive/") and p not in first]
    assert named and all(re.fullmatch(r"feeds/all/archive/\d{8}-[0-9a-f]{8}\.(atom|rss)", p) for p in named)
    expected = f"public, max-age={ARCHIVE_MAX_AGE}"
    assert expected == "public, max-age=86400"  # what deploy/nginx-static.conf says
    for path in (*first, named[0]):
        r = static.get(path, **{"Accept-Encoding": "gzip"})
        assert r.status == 200 and r.body == static.file(path + ".gz")
        assert r.header("Cache-Control") == expected
        assert r.header("Vary") == "Accept-Encoding"
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert r.header("Content-Type") == MEDIA_TYPES[path.rsplit(".", 1)[1]]
        again = static.get(path, **{"Accept-Encoding": "gzip", "If-None-Match": r.header("ETag") or ""})
        assert again.status == 304
        assert again.header("Cache-Control") == expected
        since = static.get(path, **{"If-Modified-Since": r.header("Last-Modified") or ""})
        assert since.status == 304 and since.header("Cache-Control") == expected
    assert static.get("feeds/all/archive/first.atom?x=1").status == 200  # a query is ignored, as by the app
    assert static.get("feeds/all/archive/999.atom").header("Cache-Control") == "no-store"
    assert static.get("feeds/all.atom").header("Cache-Control") == f"public, max-age={MAX_AGE}"


def test_the_root_is_the_index(static: StaticSite) -> None:
    r = static.get("")
    assert r.status == 200
    assert r.body == static.file("index.html")
    assert r.header("Content-Type") == MEDIA_TYPES["html"]
    assert r.header("Content-Security-Policy") == CSP


def test_every_document_plain_and_gzip_is_the_file(static: StaticSite) -> None:
    written = manifest(static.out)
    docs = documents(static.out)
    assert len(docs) > 40
    for path in docs:
        plain = static.get(path, **{"Accept-Encoding": "identity"})
        assert plain.status == 200 and plain.body == static.file(path), path
        assert plain.header("Content-Encoding") is None
        packed = static.get(path, **{"Accept-Encoding": "gzip"})
        assert packed.status == 200 and packed.header("Vary") == "Accept-Encoding", path
        if path + ".gz" in written:
            assert packed.header("Content-Encoding") == "gzip", path
            assert packed.body == static.file(path + ".gz"), path
            assert gzip.decompress(packed.body) == plain.body
            assert packed.header("ETag") != plain.header("ETag")
        else:
            assert packed.header("Content-Encoding") is None and packed.body == plain.body, path
        assert packed.header("Content-Type") == plain.header("Content-Type") == MEDIA_TYPES[path.rsplit(".", 1)[1]]


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        (None, False), ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False), ("identity", False), ("br", False), ("deflate", False),
    ],
)  # fmt: skip
def test_gzip_only_when_the_client_accepts_it(static: StaticSite, accept: str | None, gzipped: bool) -> None:
    r = static.get("feeds/all.rss", **({"Accept-Encoding": accept} if accept is not None else {}))
    assert r.status == 200
    assert r.body == static.file("feeds/all.rss.gz" if gzipped else "feeds/all.rss")
    assert r.header("Content-Encoding") == ("gzip" if gzipped else None)


@pytest.mark.parametrize("path", ["feeds/all.rss", "feeds/all.atom", "feeds/all.json", "index.html", "feeds.opml"])
def test_conditional_requests_are_304(static: StaticSite, path: str) -> None:
    for encoding in ("identity", "gzip"):
        first = static.get(path, **{"Accept-Encoding": encoding})
        etag, modified = first.header("ETag"), first.header("Last-Modified")
        assert first.status == 200 and etag and modified
        listed = f'"other", {etag}'
        for headers in ({"If-None-Match": etag}, {"If-None-Match": listed}, {"If-Modified-Since": modified}):
            r = static.get(path, **{"Accept-Encoding": encoding}, **headers)
            assert r.status == 304, headers
            assert r.body == b""
            assert r.header("ETag") == etag
            assert r.header("Cache-Control") == f"public, max-age={MAX_AGE}"
            assert r.header("Vary") == "Accept-Encoding"
        earlier = email.utils.formatdate(http_date(modified) - 3600, usegmt=True)
        for headers in ({"If-None-Match": '"other"'}, {"If-Modified-Since": earlier}):
            r = static.get(path, **{"Accept-Encoding": encoding}, **headers)
            assert r.status == 200 and r.body == first.body, headers


def test_feedparser_gets_the_feed_then_304(static: StaticSite) -> None:
    for path in ("feeds/all.rss", "feeds/all.atom", one_of(static, "rss"), one_of(static, "atom")):
        url = f"{static.nginx.base}/{path}"
        first = feedparser.parse(url)
        assert first.status == 200, path
        assert not first.bozo, first.get("bozo_exception")
        expected = feedparser.parse(static.file(path))
        assert [e.id for e in first.entries] == [e.id for e in expected.entries] and first.entries
        assert first.version == expected.version
        assert first.etag and first.modified
        assert feedparser.parse(url, etag=first.etag).status == 304
        assert feedparser.parse(url, modified=first.modified).status == 304
        assert feedparser.parse(url, etag='"stale"').status == 200


@pytest.mark.parametrize(
    "target",
    [
        "/.feedsvc-manifest.json", "/feeds/", "/feeds", "/feeds/topics/", "/feeds/providers", "/feeds/all.rss.gz",
        "/index.html.gz", "/feeds/.all.rss.Ab3dE6gH.tmp", "/.hidden/feeds.opml", "/nothing-here.rss",
    ],
)  # fmt: skip
def test_hidden_files_folders_and_gz_urls_are_404(static: StaticSite, target: str) -> None:
    (static.out / "feeds" / ".all.rss.Ab3dE6gH.tmp").write_bytes(b"half a feed")
    (static.out / ".hidden").mkdir(exist_ok=True)
    shutil.copy(static.out / "feeds.opml", static.out / ".hidden" / "feeds.opml")
    r = static.nginx.get(target)
    assert r.status == 404
    assert r.header("Cache-Control") == "no-store"
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert b"Index of" not in r.body and b"all.rss" not in r.body and b"half a feed" not in r.body


def test_nothing_outside_the_output_folder_is_served(static: StaticSite, tmp_path: Path) -> None:
    secret = tmp_path / "secret.rss"
    secret.write_bytes(b"<rss>SECRET-OUTSIDE</rss>")
    link = static.out / "feeds" / "leak.rss"
    link.symlink_to(secret)
    try:
        leaked = static.nginx.get("/feeds/leak.rss")
        assert leaked.status in (403, 404) and b"SECRET-OUTSIDE" not in leaked.body
    finally:
        link.unlink()
    # The build cache lies beside the output folder, the config above it.
    cache = f"/../.{static.out.name}.feedsvc-cache.sqlite"
    assert (static.out.parent / cache[4:]).is_file()
    for target in (cache, "/%2e%2e/config.yaml", "/feeds/../../config.yaml", "/..%2Fconfig.yaml"):
        r = static.nginx.get(target)
        assert r.status in (400, 404), target
        assert b"SQLite" not in r.body and b"records_dir" not in r.body


def test_custom_feed_queries_are_refused_not_ignored(static: StaticSite) -> None:
    """A custom feed (?topic=…) needs feedsvc serve; the whole feed in its place would mislead."""
    provider = "/" + one_of(static, "rss") + "?provider=a.example"
    for target in ("/feeds/all.rss?topic=ai", "/feeds/all.atom?limit=5", "/feeds/all.json?x", provider):
        r = static.nginx.get(target)
        assert r.status == 400, target
        assert r.header("Cache-Control") == "no-store"
    # Pages take no queries: one is ignored, as the app does.
    r = static.nginx.get("/index.html?utm_source=x")
    assert r.status == 200 and r.body == static.file("index.html")


def test_only_get_and_head(static: StaticSite) -> None:
    get = static.get("feeds/all.atom")
    head = static.nginx.get("/feeds/all.atom", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("ETag") == get.header("ETag")
    assert head.header("Content-Length") == str(len(get.body))
    for method in ("POST", "PUT", "DELETE"):
        r = static.nginx.get("/feeds/all.atom", method=method)
        assert r.status == 405 and get.body not in r.body


def test_a_rebuild_keeps_validators_unless_the_bytes_change(tmp_path: Path) -> None:
    site = start_static_site(tmp_path)
    try:
        docs = documents(site.out)

        def validators() -> dict[str, tuple[str | None, str | None]]:
            gz = {"Accept-Encoding": "gzip"}
            return {p: (site.get(p).header("ETag"), site.get(p, **gz).header("ETag")) for p in docs}

        def stats() -> dict[str, tuple[int, int]]:
            out = {}
            for rel in manifest(site.out):
                st = (site.out / rel).stat()
                out[rel] = (st.st_mtime_ns, st.st_size)
            return out

        before, on_disk = validators(), stats()
        time.sleep(CLOCK_STEP)  # a rewritten file would get another mtime, so another ETag
        feedsvc_build(site.config, site.out)
        assert stats() == on_disk
        assert validators() == before
        retitle(sorted(site.records.glob("0*_*.txt"))[0], NEW_TITLE)
        feedsvc_build(site.config, site.out)
        after, rewritten = validators(), {rel for rel, st in stats().items() if on_disk.get(rel) != st}
        assert NEW_TITLE in {e.title for e in feedparser.parse(site.get("feeds/all.atom").body).entries}
        # Exactly the files the build rewrote have new validators; the rest keep theirs.
        assert {p for p in docs if after[p][0] != before[p][0]} == {p for p in docs if p in rewritten}
        assert {p for p in docs if after[p][1] != before[p][1]} == {p for p in docs if p + ".gz" in rewritten}
        assert "feeds/all.atom" in rewritten and len(rewritten) < len(docs)
    finally:
        site.nginx.stop()


def test_a_corrected_archive_page_is_fetched_again(tmp_path: Path) -> None:
    """A page's bytes can change (a correction): revalidating its copy gets the new bytes."""
    site = start_static_site(tmp_path)
    try:
        path = "feeds/all/archive/first.atom"
        old = site.get(path)
        title = feedparser.parse(old.body).entries[0].title
        record = next(
            p for p in sorted(site.records.glob("*.txt")) if f'title: "{title}"' in p.read_text(encoding="utf-8")
        )
        time.sleep(CLOCK_STEP)
        retitle(record, NEW_TITLE)
        feedsvc_build(site.config, site.out)
        again = site.get(path, **{"If-None-Match": old.header("ETag") or ""})
        assert again.status == 200 and again.header("ETag") != old.header("ETag")
        assert NEW_TITLE in {e.title for e in feedparser.parse(again.body).entries}
        assert again.header("Cache-Control") == f"public, max-age={ARCHIVE_MAX_AGE}"
        since = site.get(path, **{"If-Modified-Since": old.header("Last-Modified") or ""})
        assert since.status == 200  # the file is newer than the copy
    finally:
        site.nginx.stop()


# -- caching proxy in front of feedsvc serve ----------------------------------------------------------


@dataclass
class ProxySite:
    server: Server
    nginx: Nginx
    records: Path

    def via_proxy(self, path: str, **headers: str) -> Response:
        return self.nginx.get(path, headers=headers)

    def direct(self, path: str, **headers: str) -> Response:
        return self.server.get(path, headers=headers)

    def upstream_requests(self, path: str, status: int | None = None) -> int:
        """How many requests for `path` reached feedsvc (its access log)."""
        code = str(status) if status else r"\d{3}"
        return len(re.findall(rf'"GET {re.escape(path)} HTTP/1\.[01]" {code} ', self.server.stderr()))


def start_proxy_site(base: Path) -> ProxySite:
    base.mkdir(parents=True, exist_ok=True)
    records = make_records(base / "records")
    port = free_port()
    config = write_config(
        base / "config.yaml",
        records,
        port=port,
        cache_max_age=PROXY_MAX_AGE,
        reload_interval=RELOAD_INTERVAL,
        workers=2,
        threads=2,
    )
    server = Server(config, port, base, workers=2).start()
    try:
        nginx = start_proxy(base / "nginx", port)
    except BaseException:
        server.stop()
        raise
    return ProxySite(server, nginx, records)


def stop_proxy_site(site: ProxySite) -> None:
    try:
        site.nginx.stop()
    finally:
        site.server.stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxySite]:
    site = start_proxy_site(tmp_path_factory.mktemp("nginx-proxy"))
    try:
        yield site
    finally:
        stop_proxy_site(site)


def provider_feed(site: ProxySite, n: int) -> str:
    """The URL path (without extension) of the `n`th provider feed the OPML lists.

    Each test takes its own, so no other test has put it in nginx's cache.
    """
    opml = site.direct("/feeds.opml")
    assert opml.status == 200
    urls = re.findall(rb'xmlUrl="[^"]*?(/feeds/providers/[^"]+)"', opml.body)
    stems = sorted({u.decode().rsplit(".", 1)[0] for u in urls})
    assert len(stems) > n
    return stems[n]


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_proxy_passes_the_apps_headers_and_bytes_through(proxy: ProxySite, encoding: str) -> None:
    stem = provider_feed(proxy, 0)
    feeds = [f"{stem}.{ext}" for ext in ("rss", "atom", "json", "html")]
    for path in ["/index.html", "/feeds.opml", "/style.css", *feeds]:
        app = proxy.direct(path, **{"Accept-Encoding": encoding})
        for _ in range(2):  # a miss, then a hit from the cache
            r = proxy.via_proxy(path, **{"Accept-Encoding": encoding})
            assert r.status == app.status == 200, path
            assert r.body == app.body, path
            for name in PASSED_THROUGH:
                assert r.header(name) == app.header(name), (path, name)
        assert r.header("Content-Type") == MEDIA_TYPES[path.rsplit(".", 1)[1]]
        assert r.header("Content-Encoding") == ("gzip" if encoding == "gzip" else None)


def test_second_request_is_a_cache_hit(proxy: ProxySite) -> None:
    path = provider_feed(proxy, 1) + ".rss"
    first = proxy.via_proxy(path, **{"Accept-Encoding": "gzip, deflate, br"})
    second = proxy.via_proxy(path, **{"Accept-Encoding": "gzip"})  # another spelling, the same cached copy
    assert first.header("X-Cache-Status") == "MISS"
    assert second.header("X-Cache-Status") == "HIT"
    assert second.body == first.body and second.header("ETag") == first.header("ETag")
    assert poll(lambda: proxy.upstream_requests(path) == 1, timeout=5)
    time.sleep(0.3)
    assert proxy.upstream_requests(path) == 1  # the hit never reached feedsvc


def test_errors_and_health_are_never_cached(proxy: ProxySite) -> None:
    for path in ("/no-such-feed.rss", "/healthz"):
        statuses = [proxy.via_proxy(path).header("X-Cache-Status") for _ in range(2)]
        assert statuses == ["MISS", "MISS"], path
    r = proxy.via_proxy("/no-such-feed.rss")
    assert r.status == 404 and r.header("Cache-Control") == "no-store"


def test_client_conditional_requests_get_304(proxy: ProxySite) -> None:
    path = provider_feed(proxy, 2) + ".atom"
    for encoding in ("identity", "gzip"):
        first = proxy.via_proxy(path, **{"Accept-Encoding": encoding})
        etag, modified = first.header("ETag"), first.header("Last-Modified")
        assert first.status == 200 and etag and modified
        for headers in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
            r = proxy.via_proxy(path, **{"Accept-Encoding": encoding}, **headers)
            assert r.status == 304 and r.body == b"", headers
            assert r.header("ETag") == etag
            assert r.header("Cache-Control") == f"public, max-age={PROXY_MAX_AGE}"
        assert proxy.via_proxy(path, **{"Accept-Encoding": encoding, "If-None-Match": '"stale"'}).status == 200
    url = f"{proxy.nginx.base}{path}"
    parsed = feedparser.parse(url)
    assert parsed.status == 200 and parsed.entries and not parsed.bozo
    assert feedparser.parse(url, etag=parsed.etag).status == 304


def test_expired_entries_are_revalidated(proxy: ProxySite) -> None:
    path = provider_feed(proxy, 3) + ".html"
    first = proxy.via_proxy(path)
    assert first.header("X-Cache-Status") == "MISS"
    time.sleep(PROXY_MAX_AGE + CLOCK_STEP + 0.2)
    again = proxy.via_proxy(path)
    assert again.header("X-Cache-Status") == "REVALIDATED"
    assert again.status == 200 and again.body == first.body and again.header("ETag") == first.header("ETag")
    # feedsvc answered nginx's conditional request with a 304, no body.
    assert poll(lambda: proxy.upstream_requests(path, 304) == 1, timeout=5)
    assert proxy.via_proxy(path).header("X-Cache-Status") == "HIT"


def test_a_changed_record_reaches_clients_through_the_proxy(tmp_path: Path) -> None:
    site = start_proxy_site(tmp_path)
    try:
        path = "/feeds/all.atom"
        before = feedparser.parse(site.via_proxy(path).body)
        assert site.via_proxy(path).header("X-Cache-Status") == "HIT"
        assert NEW_TITLE not in {e.title for e in before.entries}
        seed = sorted(site.records.glob("0*_*.txt"))[0]
        retitle(seed, NEW_TITLE)
        started = time.monotonic()
        promised = PROXY_MAX_AGE + RELOAD_INTERVAL + CLOCK_STEP

        def titles() -> set[str]:
            return {e.title for e in feedparser.parse(site.via_proxy(path).body).entries}

        assert poll(lambda: NEW_TITLE in titles(), timeout=promised + SLACK, interval=0.1)
        took = time.monotonic() - started
        assert took <= promised + SLACK
        # Every later request sees it too (both workers reloaded; nginx holds the new copy).
        assert all(NEW_TITLE in titles() for _ in range(5))
        after = site.via_proxy(path)
        assert after.header("ETag") == site.direct(path).header("ETag") != None  # noqa: E711
    finally:
        stop_proxy_site(site)
