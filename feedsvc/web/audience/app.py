"""The audience in the server: WSGI middleware around the app when `audience.enabled` is set.

It answers /audience.html itself and sets the audience gauges just before
/metrics is answered; everything else passes straight through. Its
`recorder` counts every answer to a request for a feed: `web.app.create_app`
hands `Recorder.note` to `metrics.Instrumented`, which knows the status of
every response already, so a poll costs no middleware of its own. Without
the setting none of this exists: no recording, and /audience.html is the
app's 404.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from feedsvc.config import Config
from feedsvc.formats.common import Site
from feedsvc.web.audience import agents
from feedsvc.web.audience.model import Report
from feedsvc.web.audience.page import render_html
from feedsvc.web.audience.recorder import Recorder
from feedsvc.web.metrics import Metrics

PAGE = "/audience.html"

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Audience:
    """WSGI middleware: records polls, serves the report page, feeds the gauges."""

    def __init__(
        self, app: App, config: Config, out: Path, metrics: Metrics, *, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.app = app
        self.recorder = Recorder(config, out)
        self.metrics = metrics
        self.site = Site.from_config(config)
        #: Sent with the page besides its own: the app's nosniff and CSP.
        self.headers = list(headers)
        #: A report is made at most once per write interval (every worker writes that often).
        self.ttl = config.audience.flush_seconds
        self._cache: tuple[float, Report, str | None] | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == PAGE and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self.page(environ, start_response)
        if path == "/metrics":
            self.gauges()
        return self.app(environ, start_response)

    def report(self) -> tuple[Report, str | None]:
        """The current report (cached for `ttl` seconds), and why it is empty if the store cannot be read."""
        with self._lock:
            cached = self._cache
            if cached is None or time.monotonic() - cached[0] >= self.ttl:
                report, problem = self.recorder.report()
                cached = self._cache = (time.monotonic(), report, problem)
        return cached[1], cached[2]

    def page(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        report, problem = self.report()
        notice = f"The server's audience records cannot be read now ({problem}); nothing is shown." if problem else None
        body = render_html(report, self.site, notice=notice)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            # About the readers, and current: never kept by a cache.
            ("Cache-Control", "no-store"),
            *self.headers,
        ]
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def gauges(self) -> None:
        """The report's totals on /metrics; a store that cannot be read leaves the last values."""
        try:
            report, problem = self.report()
            if problem is None:
                total = report.total
                figures = dict.fromkeys(agents.shipped().names, 0) | {f.service: f.subscribers for f in total.services}
                self.metrics.audience(
                    services=figures,
                    direct=total.direct,
                    polls=total.polling.polls,
                    not_modified_share=total.polling.not_modified_share,
                    conditional_share=total.polling.conditional_share,
                    fast_clients=total.fast_clients,
                    skipped={"refused": report.skipped.refused, "dropped": report.skipped.dropped},
                )
        except Exception:  # noqa: BLE001 - the metrics page is answered whatever the store does
            pass
