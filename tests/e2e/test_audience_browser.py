"""The audience report in headless Chromium: the page a server serves, and the file `feedsvc audience --html` writes.

tests/test_browser.py's browser and checks (its driver, `check_page`,
`open_page`): at 1280 and 390 px each page must show no horizontal
overflow, log no console error and break no Content-Security-Policy rule
(the served page keeps the app's strict CSP: the charts are inline SVG
drawn on the server, without a script or a style attribute), and every link
on it must answer. The charts must be drawn: three SVGs, none wider than
the screen, with bars.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audience import TRAFFIC, page_figures, play, run_traffic
from conftest import DATA, copy_seeds
from servers import FEEDSVC, Server, free_port, poll, write_config
from test_browser import PHONE, WIDTHS, Site, bounded, browser, check_page, open_page  # noqa: F401 - fixtures

LONG_FEED = "/feeds/providers/biometricupdate.com.atom"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("audience-browser")
    records = copy_seeds(work / "records")
    port = free_port()
    settings = {"site": {"title": "feedsvc audience test", "base_url": f"http://127.0.0.1:{port}/"},
                "audience": {"enabled": True, "flush_seconds": 0.3}}  # fmt: skip
    config = write_config(work / "config.yaml", records, settings=settings, workers=1)
    server = Server(config, port, work, workers=1).start()
    try:
        run_traffic(port)
        play(
            port,
            [{"agent": "Miniflux/2.1.0 (+https://miniflux.app)", "feed": LONG_FEED, "polls": 2, "conditional": True}],
        )
        want = TRAFFIC["expect"]["total"]["polls"] + 2
        assert poll(lambda: page_figures(server.get("/audience.html").body)["total"]["polls"] == want, timeout=20)
        yield Site(server)
    finally:
        server.stop()


def charts_drawn(driver: Any) -> list[tuple[float, float, int]]:
    """(width, height, bars) of every SVG on the page, as laid out."""
    return driver.execute_script(
        "return [...document.querySelectorAll('svg')].map(s => {const r = s.getBoundingClientRect();"
        " return [r.width, r.height, s.querySelectorAll('rect').length]})"
    )


def test_the_served_report_works_at_desktop_and_phone_widths(browser: Any, site: Site) -> None:  # noqa: F811
    visits = check_page(browser, site, "audience.html")
    assert [v.width for v in visits] == list(WIDTHS)
    for width in WIDTHS:
        open_page(browser, site.base + "audience.html", width)
        charts = charts_drawn(browser)
        assert len(charts) == 3
        for w, h, bars in charts:
            assert 0 < w <= width and h > 0 and bars > 0, charts
        if width == PHONE:
            # Text stays readable: no SVG label drawn below 7 CSS px high.
            smallest = browser.execute_script(
                "return Math.min(...[...document.querySelectorAll('svg text')]"
                ".map(t => t.getBoundingClientRect().height))"
            )
            assert smallest >= 7, smallest
            feeds = browser.execute_script("return [...document.querySelectorAll('h3 a')].map(a => a.textContent)")
            assert LONG_FEED in feeds


def test_the_report_file_reads_on_its_own(browser: Any, site: Site, tmp_path: Path) -> None:  # noqa: F811
    """`feedsvc audience --html` on an access log: a file with its stylesheet inside, opened from disk."""
    out = tmp_path / "report.html"
    done = subprocess.run(
        [str(FEEDSVC), "--config", str(site.server.config), "audience", "--html", str(out),
         str(DATA / "audience" / "logs" / "combined.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for width in WIDTHS:
        visit = open_page(browser, out.as_uri(), width)
        assert max(visit.scroll_width, visit.inner_width) <= width, (width, visit.scroll_width)
        assert visit.console_errors == [], visit.console_errors
        styled = browser.execute_script("return getComputedStyle(document.body).maxWidth")
        assert styled != "none"  # the site's stylesheet, from inside the file
        assert len(charts_drawn(browser)) == 3
