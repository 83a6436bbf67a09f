"""The pages in a real browser: headless Chromium over a real `feedsvc serve` (issue 13).

Debian's chromium and chromium-driver (scripts/setup --system installs them),
driven by Selenium pointed at /usr/bin/chromium: nothing is downloaded at run
time. Every page is opened at 1280 px and at 390 px (a phone, with the
viewport tag honoured) and must show no horizontal overflow, log no console
error, break no Content-Security-Policy rule, and every link on it must
answer 200 when fetched from the server with http.client.

Chromium resolves no host name but 127.0.0.1 (--host-resolver-rules), so the
only requests that leave it go to the server under test. Article images and
links name other hosts: those images fail to load, which is how a broken or
slow image is checked (its box and its alt text), and their one console line
each ("net::ERR_NAME_NOT_RESOLVED" for a URL of another host) is the only
console error tolerated.

Two sites: the seeds with the shipped config.yaml (only its paths and port
changed), and a small synthetic corpus with archive pages on.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import ROOT
from servers import Server, free_port, write_config

from feedsvc.synth import write_corpus

SEEDS = ROOT / "seeds"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Desktop, then a phone (an iPhone 12-15 is 390 CSS px wide).
WIDTHS = (1280, 390)
PHONE = 390
#: Most seconds any one test here may take, browser start included.
TEST_SECONDS = 180
PAGE_SECONDS = 30
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # No name but the server's resolves: nothing else is ever contacted.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
#: Collects CSP violations from the first byte of every page on (a script
#: given through DevTools is no page script: the CSP does not apply to it).
CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""
#: A console line about a resource of another host that could not be resolved.
_UNREACHABLE = re.compile(r"^(https?://[^\s]+) - Failed to load resource: net::ERR_NAME_NOT_RESOLVED$")
FEED_LINK_NAMES = {"RSS", "Atom", "JSON", "JSON Feed"}


# -- time bound -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    """Fail a test that runs past TEST_SECONDS (a hung browser or server), never hang the suite."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"browser test ran past {TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the browser ------------------------------------------------------------------------------


def test_chromium_and_its_driver_are_installed() -> None:
    """Fails (never skips) without them, naming what installs them."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        assert binary.is_file(), f"{binary} is missing: apt-get install {package} (scripts/setup --system)"
    done = subprocess.run([str(CHROMEDRIVER), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "ChromeDriver" in done.stdout


@dataclass
class Browser:
    driver: Any
    profile: Path

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="feedsvc-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager never runs, nothing is downloaded.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    session = Browser(webdriver.Chrome(options=options, service=service), profile)
    try:
        driver = session.driver
        driver.set_page_load_timeout(PAGE_SECONDS)
        driver.set_script_timeout(PAGE_SECONDS)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
        yield driver
    finally:
        session.quit()


# -- the sites --------------------------------------------------------------------------------


@dataclass
class Site:
    server: Server
    #: Status of each URL fetched so far (each is fetched once per site).
    checked: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base + "/"

    def fetch(self, url: str) -> tuple[int, str, bytes]:
        """(status, Content-Type, body) of a URL of this server, by http.client."""
        url = url.partition("#")[0]
        if url not in self.checked:
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) == ("127.0.0.1", self.server.port), url
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            try:
                conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
                resp = conn.getresponse()
                self.checked[url] = (resp.status, resp.getheader("Content-Type") or "", resp.read())
            finally:
                conn.close()
        return self.checked[url]


def _serve(config: Path, port: int, workdir: Path, workers: int) -> Iterator[Site]:
    server = Server(config, port, workdir, workers=workers)
    server.start()
    try:
        yield Site(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The seeds served with the shipped config.yaml (paths and port aside; links follow the port)."""
    work = tmp_path_factory.mktemp("browser-seeds")
    records = work / "records"
    shutil.copytree(SEEDS, records)
    port = free_port()
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["records_dir"] = str(records)
    data["output_dir"] = str(work / "public")
    data["server"]["port"] = port
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    yield from _serve(config, port, work, int(data["server"]["workers"]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A small synthetic corpus with archive pages on: several pages per big feed."""
    work = tmp_path_factory.mktemp("browser-corpus")
    records = work / "records"
    write_corpus(records, 90, seed=13, topics=8, providers=6)
    port = free_port()
    settings = {
        "site": {"title": "feedsvc browser test", "base_url": f"http://127.0.0.1:{port}/"},
        "max_entries": 12,
        "archives": {"enabled": True, "page_size": 5},
    }
    config = write_config(work / "config.yaml", records, settings=settings, workers=1)
    yield from _serve(config, port, work, 1)


# -- opening a page ---------------------------------------------------------------------------


@dataclass
class Visit:
    url: str
    width: int
    #: document.documentElement.scrollWidth and window.innerWidth.
    scroll_width: int
    inner_width: int
    console_errors: list[str]
    csp_violations: list[str]
    #: Every href and src on the page, resolved.
    links: list[str]


def open_page(driver: Any, url: str, width: int, *, expect_404: bool = False) -> Visit:
    """`url` at `width` CSS px: what a person would see go wrong."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width <= PHONE},
    )
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    # The favicon is asked for after the load event: wait until it is settled.
    driver.execute_async_script("const done = arguments[arguments.length - 1]; setTimeout(done, 300);")
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    csp = driver.execute_script("return window.__csp || ['listener missing']")
    links = driver.execute_script(
        "return [...document.querySelectorAll('a[href], link[href]')].map(e => e.href)"
        ".concat([...document.querySelectorAll('img[src]')].map(e => e.src))"
    )
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if expect_404 and entry["message"].startswith(
            f"{url} - Failed to load resource: the server responded with a status of 404"
        ):
            continue  # the page itself, when it is the 404 page
        unreachable = _UNREACHABLE.match(entry["message"])
        if unreachable and urlsplit(unreachable[1]).hostname != "127.0.0.1":
            continue  # an article's image on another host: never contacted here
        errors.append(entry["message"])
    return Visit(url, width, scroll_width, inner_width, errors, csp, links)


def check_page(driver: Any, site: Site, path: str, *, status: int = 200) -> list[Visit]:
    """Open `path` at every width: no overflow, no console error, no CSP violation, every link 200."""
    url = site.base + path
    assert site.fetch(url)[0] == status, url
    visits = []
    for width in WIDTHS:
        visit = open_page(driver, url, width, expect_404=status == 404)
        # On a phone a page wider than the screen is zoomed out to fit: innerWidth grows.
        wide = max(visit.scroll_width, visit.inner_width)
        assert wide <= width, f"{url} overflows at {width} px: {wide} px wide"
        assert visit.console_errors == [], (url, width, visit.console_errors)
        assert visit.csp_violations == [], (url, width, visit.csp_violations)
        visits.append(visit)
    for link in visits[0].links:
        parts = urlsplit(link)
        assert parts.scheme in ("http", "https"), (url, link)
        if (parts.hostname, parts.port) != ("127.0.0.1", site.server.port):
            continue  # an article on its publisher's site: not ours to fetch
        answer, _, body = site.fetch(link)
        assert answer == 200, f"{url} links {link}, which answers {answer}"
        if parts.fragment:
            assert f'id="{parts.fragment}"'.encode() in body, f"{url} links {link}: no such id there"
    return visits


def feed_pages(site: Site) -> list[str]:
    """Every feed page the index links, as paths."""
    _, _, body = site.fetch(site.base + "index.html")
    found = re.findall(rb'href="' + re.escape(site.base.encode()) + rb'(feeds/[^"#]+\.html)[#"]', body)
    return sorted({p.decode() for p in found})


# -- every page, both sites -------------------------------------------------------------------


def test_seed_pages_work_at_desktop_and_phone_widths(browser: Any, seeds: Site) -> None:
    pages = feed_pages(seeds)
    assert len(pages) == 5
    for path in ["index.html", *pages]:
        check_page(browser, seeds, path)


def test_corpus_pages_with_archives_work_at_desktop_and_phone_widths(browser: Any, corpus: Site) -> None:
    pages = feed_pages(corpus)
    assert len(pages) > 10
    for path in ["index.html", *pages]:
        check_page(browser, corpus, path)


# -- 11: the index leads to the feed pages ----------------------------------------------------


def test_the_index_feed_links_lead_to_the_feed_page(browser: Any, corpus: Site) -> None:
    """RSS/Atom/JSON on the index open the feed's page (readable), whose raw links are one click on."""
    check_page(browser, corpus, "index.html")
    anchors = browser.execute_script(
        "return [...document.querySelectorAll('main a')].map(a => [a.textContent.trim(), a.href])"
    )
    format_links = [(text, href) for text, href in anchors if text in FEED_LINK_NAMES]
    assert len(format_links) >= 3 * len(feed_pages(corpus))
    for text, href in format_links:
        status, media_type, _ = corpus.fetch(href)
        assert status == 200 and media_type.startswith("text/html"), (text, href, media_type)
    # The feed page: readable in the browser, the raw addresses one click away
    # and in its autodiscovery links.
    check_page(browser, corpus, "feeds/all.html")
    raw = {corpus.base + f"feeds/all.{ext}" for ext in ("rss", "atom", "json")}
    alternates = browser.execute_script("return [...document.querySelectorAll('link[rel=alternate]')].map(l => l.href)")
    assert set(alternates) == raw
    hrefs = set(browser.execute_script("return [...document.querySelectorAll('main a')].map(a => a.href)"))
    assert raw <= hrefs
    for url in raw:
        assert not corpus.fetch(url)[1].startswith("text/html")
    # The index still announces the all-articles feed to feed readers.
    browser.get(corpus.base + "index.html")
    alternates = browser.execute_script("return [...document.querySelectorAll('link[rel=alternate]')].map(l => l.href)")
    assert set(alternates) == raw


# -- 12: phone layout -------------------------------------------------------------------------


def test_the_index_reflows_on_a_phone(browser: Any, seeds: Site) -> None:
    phone = check_page(browser, seeds, "index.html")[1]
    assert phone.width == PHONE and phone.scroll_width <= PHONE
    # Dates stay on one line, not broken over four.
    heights = browser.execute_script(
        "return [...document.querySelectorAll('main time')].map(t => [t.getClientRects().length, "
        "t.getBoundingClientRect().height, parseFloat(getComputedStyle(t).lineHeight)])"
    )
    assert heights
    for rects, height, line in heights:
        assert rects == 1 and height <= line * 1.5, heights


# -- 13: the 404 page -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["no-such-page", "feeds/topics/no-such-topic.html"])
def test_the_404_page_has_the_sites_look(browser: Any, seeds: Site, path: str) -> None:
    check_page(browser, seeds, path, status=404)
    for width in WIDTHS:
        open_page(browser, seeds.base + path, width, expect_404=True)
        looks = browser.execute_script(
            "const v = document.querySelector('meta[name=viewport]');"
            "return [v && v.content, document.styleSheets.length,"
            " [...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0),"
            " getComputedStyle(document.body).maxWidth, parseFloat(getComputedStyle(document.body).fontSize)]"
        )
        viewport, sheets, rules, max_width, font_size = looks
        assert viewport and "width=device-width" in viewport
        assert sheets == 1 and rules > 0
        assert max_width != "none"  # the site's column, not the browser's default
        assert font_size >= 16


# -- 14: a favicon ----------------------------------------------------------------------------


def test_no_page_load_asks_for_a_missing_favicon(browser: Any, seeds: Site) -> None:
    status, media_type, body = seeds.fetch(seeds.base + "favicon.ico")
    assert status == 200 and media_type == "image/x-icon"
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    before = seeds.server.stderr().count("/favicon.ico")
    for path, status in (("index.html", 200), ("feeds/all.html", 200), ("feeds/all.rss", 200), ("nothing", 404)):
        for width in WIDTHS:
            visit = open_page(browser, seeds.base + path, width, expect_404=status == 404)
            assert visit.console_errors == [], (path, visit.console_errors)
    icons = browser.execute_script("return [...document.querySelectorAll('link[rel=icon]')].map(l => l.href)")
    assert icons == [seeds.base + "favicon.ico"]
    log = seeds.server.stderr()
    asked = [line for line in log.splitlines() if "/favicon.ico" in line]
    assert asked[before:] == [] or all('" 200 ' in line or '" 304 ' in line for line in asked[before:]), asked


# -- 15: pages that say enough ----------------------------------------------------------------


def test_feed_pages_name_their_feed(browser: Any, seeds: Site) -> None:
    titles = set()
    for path in feed_pages(seeds):
        open_page(browser, seeds.base + path, PHONE)
        title, h1 = browser.execute_script("return [document.title, document.querySelector('h1').textContent]")
        assert h1 in title and h1 != "feedsvc demo", (path, title, h1)
        titles.add(title)
    assert len(titles) == 5


def test_feed_links_have_names_saying_which_feed(browser: Any, corpus: Site) -> None:
    for path in ["index.html", "feeds/all.html", feed_pages(corpus)[-1]]:
        open_page(browser, corpus.base + path, PHONE)
        from selenium.webdriver.common.by import By

        links = [a for a in browser.find_elements(By.CSS_SELECTOR, "a") if a.text.strip() in FEED_LINK_NAMES]
        if path == "index.html":
            assert links
        names = set()
        for a in links:
            name = a.accessible_name
            assert a.text.strip() in name and name != a.text.strip(), (path, name)
            names.add(name)
        assert len(names) == len(links), path  # no two alike


def test_images_reserve_their_space_and_say_what_they_show(browser: Any, corpus: Site) -> None:
    """Images here never load (their hosts do not resolve), as a broken one: its alt text shows instead."""
    seen = 0
    for path in feed_pages(corpus)[:6]:
        for width in WIDTHS:
            open_page(browser, corpus.base + path, width)
            images = browser.execute_script(
                "return [...document.querySelectorAll('article img')].map(i => {"
                " const r = i.getBoundingClientRect();"
                " return [i.alt, i.closest('article').querySelector('h2').textContent,"
                "  i.getAttribute('width'), i.getAttribute('height'), r.width, r.height, i.naturalWidth];})"
            )
            for alt, headline, w, h, box_w, box_h, natural in images:
                assert alt == headline, (path, alt, headline)
                # Known sizes are given, so the box is laid out before the image arrives.
                assert w and h and int(w) > 0 and int(h) > 0, (path, alt)
                assert natural == 0  # broken, as nothing but the server resolves
                # The alt text shows in a box of its own, beside the text, not over it.
                assert box_w >= 40 and box_h >= 16, (path, alt, box_w, box_h)
                assert box_w <= width * 0.45, (path, width, box_w)
                seen += 1
    assert seen > 3


def test_feed_pages_link_their_archive_pages(browser: Any, corpus: Site) -> None:
    check_page(browser, corpus, "feeds/all.html")
    hrefs = browser.execute_script("return [...document.querySelectorAll('main a')].map(a => a.href)")
    archives = [h for h in hrefs if "/archive/" in h]
    assert archives, "feeds/all.html links no archive page"
    _, _, rss = corpus.fetch(corpus.base + "feeds/all.rss")
    newest = re.search(rb'rel="prev-archive"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*rel="prev-archive"', rss)
    assert newest, "the feed has archive pages"
    assert (newest[1] or newest[2]).decode() in archives
    for href in archives:
        status, media_type, _ = corpus.fetch(href)
        assert status == 200 and ("rss" in media_type or "atom" in media_type), (href, media_type)
