"""Statistics in the Prometheus text format, served at /metrics.

What is counted, all with prometheus-client:

- ``feedsvc_http_requests_total{kind,status}``: every response, by what was
  asked for (``all``, ``topics``, ``providers`` feeds, ``pages``, ``other``)
  and status code (``200``, ``304``, ``404``, ``429``…; the app answers with
  a dozen codes at most, so the series stay few);
- ``feedsvc_http_not_modified_total{kind}``: the 304s among them, so the share
  of polls a conditional request saved is a division away;
- ``feedsvc_http_response_bytes_total{kind}``: body bytes sent;
- ``feedsvc_http_rate_limited_total{kind}``: 429s from polite polling;
- ``feedsvc_custom_feeds_total{result}``: custom feeds served from the cache
  (``hit``) or rendered (``miss``);
- ``feedsvc_reloads_total{outcome}`` and ``feedsvc_reload_duration_seconds``:
  record scans that swapped in new feeds (``changed``), found nothing
  (``unchanged``) or failed;
- ``feedsvc_records_loaded`` and ``feedsvc_records_rejected``: the records of
  the feeds being served;
- ``feedsvc_websub_notifications_total{outcome}``: hub notifications ``sent``
  or given up (``failed``);
- with ``audience.enabled``, the audience report's totals over its window
  (`web/audience/`): ``feedsvc_audience_subscribers{service}`` (``direct`` for
  clients that report no count), ``feedsvc_audience_polls``,
  ``feedsvc_audience_not_modified_ratio``, ``feedsvc_audience_conditional_ratio``,
  ``feedsvc_audience_fast_clients`` and ``feedsvc_audience_skipped{reason}``.

Each HTTP worker (and the builder) is its own process, so `feedsvc serve` runs
prometheus-client in multiprocess mode: it points PROMETHEUS_MULTIPROC_DIR at
a private temporary folder before the app (and so this module's metrics)
exists, each process writes its values to files there, and a scrape of
/metrics in any worker adds up every worker's files. Without that variable
(the development server, tests) values live in the process.

Recording costs a dictionary lookup and a counter increment (no labels are
resolved per request): a few microseconds, in line with the rest of a request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from feedsvc.formats.registry import feed_path

#: Request kinds, by URL path.
KINDS = ("all", "topics", "providers", "pages", "other")
#: Status codes given a series from the start, so a rate or ratio over them is
#: never missing a term; others get one when first sent.
COMMON_STATUSES = (200, 304, 400, 404, 429)
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
RELOAD_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The counters with one label: the `Metrics` attribute holding their children,
#: name, help, label, and the label's values (every child exists from the start).
_COUNTERS = (
    ("_not_modified", "feedsvc_http_not_modified", "304 Not Modified responses by kind of URL.", "kind", KINDS),
    ("_sent", "feedsvc_http_response_bytes", "Response body bytes sent, by kind of URL.", "kind", KINDS),
    ("_limited", "feedsvc_http_rate_limited", "429 Too Many Requests responses (polite polling).", "kind", KINDS),
    ("_custom", "feedsvc_custom_feeds", "Custom feed requests, from the cache or rendered.", "result", ("hit", "miss")),
    ("_reloads", "feedsvc_reloads", "Scans of records_dir, by outcome.", "outcome", ("changed", "unchanged", "failed")),
    ("_websub", "feedsvc_websub_notifications", "WebSub hub notifications, by outcome.", "outcome", ("sent", "failed")),
)


def request_kind(path: str) -> str:
    """What a request path asks for: a kind of feed (its archive pages too), a page, or something else."""
    if path.endswith(".html") or path == "/":
        return "pages"
    named = feed_path(path)
    return named.key.kind.value if named is not None else "other"


class Metrics:
    """The counters of one app, in this process or (multiprocess) in shared files."""

    # The children of each counter in `_COUNTERS`, by label value.
    _not_modified: dict[str, Any]
    _sent: dict[str, Any]
    _limited: dict[str, Any]
    _custom: dict[str, Any]
    _reloads: dict[str, Any]
    _websub: dict[str, Any]

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        # Imported here, not at the top: prometheus-client picks its value
        # store (in memory, or files for multiprocess mode) when first
        # imported, and `feedsvc serve` sets PROMETHEUS_MULTIPROC_DIR first.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, values

        # The *_created series say when a process started counting: noise
        # next to totals summed over workers.
        disable_created_metrics()
        self.multiprocess_dir = multiprocess_dir if multiprocess_dir is not None else os.environ.get(ENV_VAR)
        if self.multiprocess_dir and values.ValueClass is values.MutexValue and os.environ.get(ENV_VAR):
            # prometheus-client chose its value store when first imported; if
            # that was before the variable was set, choose again (once).
            values.ValueClass = values.get_value_class()
        # In multiprocess mode metrics are collected from the files, so they
        # are registered nowhere; otherwise in this app's own registry.
        self.registry = None if self.multiprocess_dir else CollectorRegistry()
        reg: dict[str, Any] = {"registry": self.registry}
        self._requests_family = Counter(
            "feedsvc_http_requests", "HTTP responses by kind of URL and status class.", ["kind", "status"], **reg
        )
        for attribute, name, documentation, label, label_values in _COUNTERS:
            family = Counter(name, documentation, [label], **reg)
            setattr(self, attribute, {value: family.labels(value) for value in label_values})
        self.reload_seconds = Histogram(
            "feedsvc_reload_duration_seconds", "Seconds a scan of records_dir took.", buckets=RELOAD_BUCKETS, **reg
        )
        self.records_loaded = Gauge(
            "feedsvc_records_loaded",
            "Usable records in the feeds being served.",
            multiprocess_mode="livemostrecent",
            **reg,
        )
        self.records_rejected = Gauge(
            "feedsvc_records_rejected", "Record files rejected.", multiprocess_mode="livemostrecent", **reg
        )
        # Label children resolved once: a request only increments.
        self._requests = {(k, c): self._requests_family.labels(k, str(c)) for k in KINDS for c in COMMON_STATUSES}
        self._audience: dict[str, Any] | None = None

    def response(self, kind: str, status: int, body_bytes: int) -> None:
        """Count one response."""
        if not 100 <= status < 600:
            status = 500
        child = self._requests.get((kind, status))
        if child is None:
            child = self._requests[kind, status] = self._requests_family.labels(kind, str(status))
        child.inc()
        if status == 304:
            self._not_modified[kind].inc()
        elif status == 429:
            self._limited[kind].inc()
        if body_bytes:
            self._sent[kind].inc(body_bytes)

    def custom_feed(self, hit: bool) -> None:
        self._custom["hit" if hit else "miss"].inc()

    def reload(self, outcome: str, seconds: float) -> None:
        self._reloads[outcome].inc()
        self.reload_seconds.observe(seconds)

    def records(self, loaded: int, rejected: int) -> None:
        self.records_loaded.set(loaded)
        self.records_rejected.set(rejected)

    def websub(self, outcome: str, count: int = 1) -> None:
        self._websub[outcome].inc(count)

    def audience(
        self,
        *,
        services: Mapping[str, int],
        direct: int,
        polls: int,
        not_modified_share: float,
        conditional_share: float,
        fast_clients: int,
        skipped: Mapping[str, int],
    ) -> None:
        """Set the audience report's totals; the gauges exist from the first call (audience on) only."""
        from prometheus_client import Gauge

        gauges = self._audience
        if gauges is None:
            reg: dict[str, Any] = {"registry": self.registry, "multiprocess_mode": "livemostrecent"}
            gauges = self._audience = {
                "subscribers": Gauge("feedsvc_audience_subscribers", "Subscribers of every feed (summed), by feed "
                                     "service; direct: clients that report no count.", ["service"], **reg),
                "polls": Gauge("feedsvc_audience_polls", "Polls of the feeds within the audience window.", **reg),
                "not_modified": Gauge("feedsvc_audience_not_modified_ratio", "Share of the polls answered 304.", **reg),
                "conditional": Gauge("feedsvc_audience_conditional_ratio", "Share of the polls that were conditional.",
                                     **reg),
                "fast": Gauge("feedsvc_audience_fast_clients", "Clients that polled a feed faster than polite "
                              "polling allows.", **reg),
                "skipped": Gauge("feedsvc_audience_skipped", "Polls left out of the report, by reason.", ["reason"],
                                 **reg),
            }  # fmt: skip
        for service, n in {**services, "direct": direct}.items():
            gauges["subscribers"].labels(service).set(n)
        gauges["polls"].set(polls)
        gauges["not_modified"].set(not_modified_share)
        gauges["conditional"].set(conditional_share)
        gauges["fast"].set(fast_clients)
        for reason, n in skipped.items():
            gauges["skipped"].labels(reason).set(n)

    def exposition(self) -> tuple[bytes, str]:
        """The current values as Prometheus text, and its media type."""
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


#: The kinds that are feeds (`request_kind`): the only responses a `FeedObserver` is shown.
FEED_KINDS = frozenset(("all", "topics", "providers"))
#: Told of every response to a request for a feed, with its status code; must never raise.
FeedObserver = Callable[[dict[str, Any], int], None]


class Instrumented:
    """WSGI middleware counting every response in `metrics` (kind, status, body bytes).

    `observe`, if given, is also told of each response to a feed, here where
    its status is known anyway: the audience recorder (`web/audience/`) costs a
    request no middleware of its own.
    """

    def __init__(
        self, app: Callable[..., Iterable[bytes]], metrics: Metrics, observe: FeedObserver | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.observe = observe

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        metrics, observe = self.metrics, self.observe

        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = int(status[:3]) if status[:3].isdigit() else 500
            size = 0
            if environ.get("REQUEST_METHOD") != "HEAD":
                for name, value in headers:
                    if name == "Content-Length" or name.lower() == "content-length":
                        size = int(value) if value.isdigit() else 0
                        break
            kind = request_kind(environ.get("PATH_INFO", ""))
            metrics.response(kind, code, size)
            if observe is not None and kind in FEED_KINDS:
                observe(environ, code)
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return self.app(environ, counted)
