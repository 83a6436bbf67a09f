"""The web app: the documents `feedsvc build` wrote, served with HTTP caching.

The app renders nothing a build makes. A request for a document is a lookup
of its manifest row (`output.Output`: media type, ETag and length of each
encoding, Last-Modified, cache policy, from the build cache), RFC 9110 header
logic, and the file the build wrote, sent with the WSGI file wrapper where the
server has one (sendfile). Only paths the build listed are ever opened, so
``..``, encoded slashes and NUL bytes can only ever give 404.

Caching follows RFC 9110/9111: a strong ETag per encoding (a hash of the
bytes sent), Last-Modified from the feed's newest entry, If-None-Match (weak
comparison, lists, ``*``) before If-Modified-Since, ``Cache-Control: public,
max-age`` and ``Vary: Accept-Encoding``.

A feed asked for with a query string is a custom feed (`query.py`): parsed
strictly (400 for anything else), run over the build cache, rendered and
prepared once, then kept in a bounded cache, so it gets exactly the same
caching headers as a built feed. Pages and listings ignore a query.
Polite polling (`polite.py`) answers 429 to an address that fetches one URL
too often, and every response is counted for /metrics (`metrics.py`).

`create_app()` without a config is the entry point for any WSGI server
(``granian --interface wsgi --factory 'feedsvc.web.app:create_app'``): it reads the file FEEDSVC_CONFIG
names, else ./config.yaml, and serves its output_dir (build it first).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from feedsvc.build.incremental import default_cache_path, generation_path
from feedsvc.build.served import ARCHIVE, ARCHIVE_MAX_AGE, Served
from feedsvc.config import Config, base_url, load_config
from feedsvc.formats.common import Site
from feedsvc.formats.html import render_not_found
from feedsvc.formats.registry import HTML, is_subscription
from feedsvc.web.custom import CustomFeeds, QueryError, parse, queried_kind
from feedsvc.web.http import etag_matches, not_modified, wants_gzip
from feedsvc.web.log import AccessLog, configure_logging, log_path
from feedsvc.web.metrics import Instrumented, Metrics
from feedsvc.web.output import Body, Output, State
from feedsvc.web.polite import COST_FULL, COST_NOT_MODIFIED, Limiter
from feedsvc.web.spelling import OneSpelling, encoded_separator

log = logging.getLogger("feedsvc.web")

#: Longest URL path looked up; every real document path is far shorter.
MAX_PATH = 512
#: Longest query string accepted (414 beyond); feeds take no parameters.
MAX_QUERY = 2048
#: Longest value of a header the app reads (431 beyond): 8 KiB, as common servers allow.
MAX_FIELD = 8190
#: The methods every URL allows.
ALLOW = "GET, HEAD"
#: Longest a request waits for the build writing its file to commit (seconds);
#: past that the new bytes go out named by their own hash.
COMMIT_WAIT = 0.5
#: Block size handed to the server's file wrapper.
BLOCK = 65_536

CSP = (
    "default-src 'none'; img-src https: http:; style-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_CSP = ("Content-Security-Policy", CSP)
_VARY = ("Vary", "Accept-Encoding")
_NO_STORE = ("Cache-Control", "no-store")
_HTML = HTML.content_type
_TEXT = "text/plain; charset=utf-8"


class _Final(Response):
    """A response whose headers are complete as built: werkzeug adds and drops none.

    werkzeug would strip Last-Modified from a 304 and add a default
    Content-Type; RFC 9110 15.4.5 wants the validators on a 304 and no body
    metadata.
    """

    default_mimetype = None
    automatically_set_content_length = False

    def get_wsgi_headers(self, environ: Any) -> Headers:
        return self.headers


def create_app(config: Config | None = None, *, out: Path | None = None) -> Flask:
    """The Flask app serving what `feedsvc build` wrote for `config` (into `out`, else output_dir).

    Without `config`, reads the config file `load_config` finds (FEEDSVC_CONFIG,
    else ./config.yaml) and, if logging is not set up, logs to stderr: that is
    the call WSGI servers make. `app.extensions["feedsvc"]` is the `Output`.
    """
    if config is None:
        config = load_config()
        if not logging.getLogger("feedsvc").hasHandlers():
            configure_logging()
    out = out or config.output_dir
    output = Output(out, default_cache_path(out), generation_path(out))
    metrics = Metrics()
    output.listeners.append(lambda state: metrics.records(state.records_loaded, state.records_rejected))
    metrics.records(output.state.records_loaded, output.state.records_rejected)
    app = Flask(__name__, static_folder=None)
    # Never rewrite a path (werkzeug merges "//" in rules by default): unknown is 404.
    app.url_map.merge_slashes = False
    app.extensions["feedsvc"] = output
    responder = _Responder(output, config, metrics)
    app.extensions["feedsvc.metrics"] = metrics
    app.extensions["feedsvc.custom"] = responder.custom
    app.extensions["feedsvc.polite"] = responder.limiter
    methods = ["GET", "HEAD"]  # and no automatic OPTIONS: anything else is 405
    for rule, endpoint, view in (
        ("/", "index", responder.index),
        ("/healthz", "healthz", responder.healthz),
        ("/metrics", "metrics", responder.metrics_page),
        ("/<path:path>", "document", responder.document),
    ):
        app.add_url_rule(rule, endpoint, view, methods=methods, provide_automatic_options=False)
    app.register_error_handler(HTTPException, responder.http_error)
    app.register_error_handler(Exception, responder.server_error)
    inner: Callable[..., Iterable[bytes]] = OneSpelling(app.wsgi_app, responder.not_found)
    observe = None
    if config.audience.enabled:  # who polls the feeds: recorded, /audience.html, gauges (web/audience/)
        from feedsvc.web.audience.app import Audience

        inner = app.extensions["feedsvc.audience"] = Audience(inner, config, out, metrics, headers=(_NOSNIFF, _CSP))
        observe = inner.recorder.note
    app.wsgi_app = AccessLog(Instrumented(inner, metrics, observe))  # type: ignore[method-assign]
    return app


class _Responder:
    """The views, over one `Output`."""

    def __init__(self, output: Output, config: Config, metrics: Metrics) -> None:
        self.output = output
        self.config = config
        self.metrics = metrics
        self.max_entries = config.max_entries
        self.base_url = base_url(config)
        self.custom = CustomFeeds(config)
        self.limiter = Limiter(config.polite) if config.polite.enabled else None
        hubs = "".join(f'<{hub}>; rel="hub", ' for hub in config.websub.hubs)
        #: The start of a feed's WebSub Link header (its self link follows); "" without hubs.
        self.hub_links = hubs
        self._links: dict[str, str] = {}
        self.cache_control = ("Cache-Control", f"public, max-age={config.server.cache_max_age}")
        #: An archive page changes rarely, but it may: a longer max-age, then revalidation (`served.ARCHIVE`).
        self.cache_archive = ("Cache-Control", f"public, max-age={ARCHIVE_MAX_AGE}")
        #: The site's 404 page, as the build writes it to 404.html (for nginx's error_page).
        self.not_found_body = render_not_found(Site.from_config(config))

    def index(self) -> Response:
        return self.document("index.html")

    def document(self, path: str) -> Response:
        environ = request.environ
        query_string = environ.get("QUERY_STRING", "")
        if len(query_string) > MAX_QUERY:
            return _plain(414, "URI Too Long")
        if len(path) > MAX_PATH or encoded_separator(environ):
            return self.not_found()
        state = self.output.check()
        row = self.output.get(path)
        if row is None:
            return self.not_found()
        accept = environ.get("HTTP_ACCEPT_ENCODING")
        inm = environ.get("HTTP_IF_NONE_MATCH")
        ims = environ.get("HTTP_IF_MODIFIED_SINCE")
        if any(v is not None and len(v) > MAX_FIELD for v in (accept, inm, ims)):
            return _plain(431, "Request Header Fields Too Large")
        limiter = self.limiter
        client = None
        if limiter is not None:
            client = limiter.client(environ.get("REMOTE_ADDR") or "-", environ.get("HTTP_X_FORWARDED_FOR"))
        gz = accept is not None and wants_gzip(accept)
        if query_string:
            kind = queried_kind(path)
            if kind is not None:  # a feed: the query makes it a custom feed
                try:
                    query = parse(kind, query_string, self.max_entries)
                except QueryError as e:
                    return _plain(400, f"Bad Request: {e}")
                if query.canonical():
                    if client is not None and limiter is not None and (wait := limiter.retry_after(client, path)):
                        return self.too_many(wait)  # over budget already: render nothing
                    rendered, hit = self.custom.get(self.output.db(), state.published_ns, path, query)
                    self.metrics.custom_feed(hit)
                    gz = gz and rendered.gzip is not None
                    body = (
                        Body(rendered.row.gz_etag or "", len(rendered.gzip or b""), data=rendered.gzip)
                        if gz
                        else Body(rendered.row.etag, len(rendered.plain), data=rendered.plain)
                    )
                    return self.respond(rendered.row, path, gz, inm, ims, client, body, state, hub=False)
        gz = gz and row.gz_etag is not None
        return self.respond(row, path, gz, inm, ims, client, None, state, hub=True)

    def respond(
        self,
        row: Served,
        path: str,
        gz: bool,
        inm: str | None,
        ims: str | None,
        client: Any,
        body: Body | None,
        state: State,
        *,
        hub: bool,
    ) -> Response:
        """The answer for one document: 304, or 200 with its bytes (`body`, else its file).

        `state` is the build `row` was looked up under (see `Output.body`).
        """
        etag = (row.gz_etag if gz else row.etag) or ""
        fresh = not_modified(inm, ims, etag, row.last_modified)
        limiter = self.limiter
        if client is not None and limiter is not None:
            if wait := limiter.spend(client, path, COST_NOT_MODIFIED if fresh else COST_FULL):
                return self.too_many(wait)
        if body is None and not fresh:
            body = self.output.body(row, gz, state)
            if body is not None and not body.current:  # a build is writing this file right now
                newer = self._committed_row(path, row)
                state = self.output.check()
                if newer is not None:
                    _close(body)
                    gz = gz and newer.gz_etag is not None
                    return self.respond(newer, path, gz, inm, ims, client, None, state, hub=hub)
            if body is None:  # the file went away under us (a build removing it)
                return self.not_found()
        if body is not None and body.etag != etag:
            etag = body.etag  # bytes newer than any row yet: named by their own hash
            fresh = inm is not None and etag_matches(inm, etag)
        headers = self._validators(row, etag, body)
        if fresh:
            _close(body)
            return _Final(None, 304, Headers(headers))
        headers += self._entity_headers(row, path, gz, body, hub)
        return self._send(body, headers)

    def _committed_row(self, path: str, row: Served) -> Served | None:
        """The row the build writing `path` right now commits for it (within `COMMIT_WAIT`), if any.

        The file's bytes go out with their own row once the build commits
        (soon: rows are committed right after the files), so a client never
        sees them before the rest of that build and then an older file that
        build has not reached yet.
        """
        newer = self.output.reread(path)
        deadline = time.monotonic() + COMMIT_WAIT
        while (newer is None or newer == row) and time.monotonic() < deadline:
            time.sleep(0.01)
            newer = self.output.reread(path)
        return newer if newer is not None and newer != row else None

    def _validators(self, row: Served, etag: str, body: Body | None) -> list[tuple[str, str]]:
        """What a 304 and a 200 both carry: the validators, caching and the security headers."""
        headers = [("ETag", etag)]
        last_modified = row.last_modified_http
        if last_modified is not None and (body is None or body.current):
            headers.append(("Last-Modified", last_modified))
        headers += (self.cache_archive if row.policy == ARCHIVE else self.cache_control, _VARY, _NOSNIFF)
        if row.media_type == _HTML:
            headers.append(_CSP)
        return headers

    def _entity_headers(self, row: Served, path: str, gz: bool, body: Body | None, hub: bool) -> list[tuple[str, str]]:
        """What only a 200 carries: WebSub discovery, and the body's type, length and encoding."""
        headers = []
        if hub and self.hub_links and is_subscription(path):
            # Archive pages name no hub (nobody subscribes to a page), and custom
            # feeds none either (web/custom.py): only what hubs are told about.
            headers.append(("Link", self.link_header(path)))
        size = body.size if body is not None else ((row.gz_size if gz else row.size) or 0)
        headers.append(("Content-Type", row.media_type))
        headers.append(("Content-Length", str(size)))
        if gz:
            headers.append(("Content-Encoding", "gzip"))
        return headers

    def _send(self, body: Body | None, headers: list[tuple[str, str]]) -> Response:
        """A 200: no body for HEAD (or when there is none), else the bytes or the file (sendfile where it can)."""
        if request.environ.get("REQUEST_METHOD") == "HEAD" or body is None:  # the headers a GET would get
            _close(body)
            return _Final(None, 200, Headers(headers))
        if body.file is not None:
            wrapper = request.environ.get("wsgi.file_wrapper")
            if wrapper is not None:  # the server sends the file itself (sendfile)
                return _Final(wrapper(body.file, BLOCK), 200, Headers(headers), direct_passthrough=True)
            with body.file:  # type: ignore[attr-defined]
                data = body.file.read()  # type: ignore[attr-defined]
            return _Final(data, 200, Headers(headers))
        return _Final(body.data, 200, Headers(headers))

    def link_header(self, path: str) -> str:
        """WebSub discovery (RFC 8288 Link): every hub, and the feed's self URL."""
        value = self._links.get(path)
        if value is None:
            value = self._links[path] = f'{self.hub_links}<{self.base_url}{path}>; rel="self"'
        return value

    def too_many(self, wait: int) -> Response:
        polite = self.config.polite
        resp = _plain(
            429,
            f"Too Many Requests: this address fetched this URL more than {polite.max_requests} times "
            f"in {polite.window_seconds} seconds (a 304 Not Modified counts half: send If-None-Match "
            f"to poll cheaply). Retry after {wait} seconds.",
        )
        resp.headers["Retry-After"] = str(wait)
        return resp

    def metrics_page(self) -> Response:
        self.output.check()  # the record gauges of the build being served
        body, media_type = self.metrics.exposition()
        headers = [("Content-Type", media_type), ("Content-Length", str(len(body))), _NO_STORE, _NOSNIFF]
        return _Final(body, 200, Headers(headers))

    def healthz(self) -> Response:
        state: State = self.output.check()
        status = {
            "status": "ok" if state.generation else "no build yet",
            "records_loaded": state.records_loaded,
            "records_rejected": state.records_rejected,
            "feeds": state.feeds,
            "documents": state.documents,
            # The build being served: +1 for each build that changed a document.
            "generation": state.generation,
            # Every worker serves the same build; this says which one answered.
            "pid": os.getpid(),
            "last_build": _iso(state.published_ns / 1e9) if state.published_ns else None,
        }
        body = json.dumps(status, sort_keys=True).encode("utf-8") + b"\n"
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            _NO_STORE,
            _NOSNIFF,
        ]
        return _Final(body, 200 if state.generation else 503, Headers(headers))

    def not_found(self) -> Response:
        body = self.not_found_body
        headers = [("Content-Type", _HTML), ("Content-Length", str(len(body))), _NO_STORE, _NOSNIFF, _CSP]
        return _Final(body, 404, Headers(headers))

    def http_error(self, e: HTTPException) -> Response:
        code = e.code or 500
        if code == 404:
            return self.not_found()
        resp = _plain(code, e.name)
        if code == 405:
            resp.headers["Allow"] = ALLOW
        return resp

    def server_error(self, e: Exception) -> Response:
        # The type only: an exception's message could quote request or record data.
        log.error("error answering %s: %s", log_path(request.environ), type(e).__name__)
        log.debug("error detail", exc_info=True)
        return _plain(500, "Internal Server Error")


def _close(body: Body | None) -> None:
    """Close the file of a body that will not be sent."""
    if body is not None and body.file is not None:
        body.file.close()  # type: ignore[attr-defined]


def _plain(code: int, text: str) -> Response:
    body = f"{code} {text}\n".encode()
    headers = [("Content-Type", _TEXT), ("Content-Length", str(len(body))), _NO_STORE, _NOSNIFF]
    return _Final(body, code, Headers(headers))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
