"""One spelling per document: any other spelling of a path is 404, before routing.

``//metrics``, ``////feeds/all.html`` or ``/%2f/healthz`` would otherwise
reach a view (or werkzeug's redirect to the merged path), so one document
would answer at many URLs and caches would hold each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: A WSGI application: (environ, start_response) → body.
WSGIApp = Callable[..., Iterable[bytes]]


class OneSpelling:
    """WSGI middleware: the 404 from `not_found` for any path but a document's one spelling."""

    def __init__(self, app: WSGIApp, not_found: Callable[[], WSGIApp]) -> None:
        self.app = app
        self.not_found = not_found

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").partition("?")[0]
        # The raw target too: werkzeug's server reads "//metrics" as a host and a path "/".
        if "//" in environ.get("PATH_INFO", "") or "//" in raw or encoded_separator(environ):
            return self.not_found()(environ, start_response)
        return self.app(environ, start_response)


def encoded_separator(environ: dict[str, Any]) -> bool:
    """Whether the path as sent hid a slash, backslash or NUL in a %-escape.

    WSGI servers decode PATH_INFO, so "/feeds%2Fall.rss" would arrive as
    "/feeds/all.rss"; the raw request target where the server passes it (RAW_URI, werkzeug's
    REQUEST_URI) still shows the escape.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    target = raw.partition("?")[0]
    if "%" not in target:
        return False
    target = target.lower()
    return "%2f" in target or "%5c" in target or "%00" in target
