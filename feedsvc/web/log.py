"""The access log: one line per request, in the combined format's order, with no
personal data beyond what the client sent, and never a query string's values."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import IO, Any
from urllib.parse import quote

access_log = logging.getLogger("feedsvc.access")
#: What stays as it is in a logged path; the rest is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"

#: Longest URL path looked up; every real document path is far shorter.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~%-]{0,300}")
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9/.:_\[\]-]{1,64}")


class AccessLog:
    """WSGI middleware: one line per request on the `feedsvc.access` logger.

    The line is Apache's common format plus the time taken and a 304 flag:
    ``addr - - [time] "METHOD /path HTTP/1.1" status bytes seconds flag``,
    where flag is ``not-modified`` for a 304 and ``-`` otherwise, and bytes is
    the body length sent. The query string and headers are never logged, and
    the path is logged %-escaped, so a line can never be split or forged.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], logger: logging.Logger = access_log) -> None:
        self.app = app
        self.logger = logger

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        seen: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [status, headers]
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        result = self.app(environ, capture)
        if seen:
            self.logger.info("%s", access_line(environ, seen[0], seen[1], time.perf_counter() - started))
        return result


def access_line(environ: dict[str, Any], status: str, headers: list[tuple[str, str]], seconds: float) -> str:
    code = int(status[:3]) if status[:3].isdigit() else 0
    method = _token(environ.get("REQUEST_METHOD", "-"))
    size = 0
    if method != "HEAD" and code >= 200 and code not in (204, 304):
        for name, value in headers:
            if name.lower() == "content-length":
                size = int(value) if value.isdigit() else 0
                break
    when = _log_time(int(time.time()))
    addr = _token(environ.get("REMOTE_ADDR") or "-")
    proto = _token(environ.get("SERVER_PROTOCOL", "-"))
    flag = "not-modified" if code == 304 else "-"
    return f'{addr} - - [{when}] "{method} {log_path(environ)} {proto}" {code} {size} {seconds:.6f} {flag}'


@lru_cache(maxsize=4)
def _log_time(epoch: int) -> str:
    t = time.gmtime(epoch)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def log_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it, without the query, %-escaped and capped."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = raw.partition("?")[0]
    else:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    escaped = path if _PLAIN_PATH.fullmatch(path) else quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE)
    return escaped if len(escaped) <= 300 else escaped[:300] + "..."


def _token(value: str) -> str:
    if _PLAIN_TOKEN.fullmatch(value):
        return value
    return quote(value[:64].encode("latin-1", "replace"), safe="/.:-_[]")


def configure_logging(stream: IO[str] | None = None) -> None:
    """Log feedsvc's messages and access lines to `stream` (stderr), once.

    Access lines go out as they are; other messages get a time, the process
    id (there is one scanner per worker) and a level.
    """
    stream = stream or sys.stderr
    base = logging.getLogger("feedsvc")
    if any(getattr(h, "_feedsvc", False) for h in base.handlers):
        return
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(message)s"))
    detailed = logging.StreamHandler(stream)
    detailed.setFormatter(
        logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S %z")
    )
    for handler in (plain, detailed):
        handler._feedsvc = True  # type: ignore[attr-defined]
    access_log.addHandler(plain)
    access_log.propagate = False
    base.addHandler(detailed)
    base.setLevel(logging.INFO)
