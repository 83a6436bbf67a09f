"""Access logs as polls: what `feedsvc audience ACCESS_LOG…` reads, for static deployments.

The format is nginx's (and Apache's) "combined", which is what nginx writes
with the configs in deploy/ (they set no log_format)::

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"

Fields after the User-Agent (formats that append $request_time or
"$http_x_forwarded_for") are ignored. nginx writes ``"``, ``\\`` and bytes
outside printable ASCII as ``\\xHH``, Apache as ``\\"``, ``\\\\`` and
``\\xHH``; both are undone before the User-Agent is read, so a log holds the
bytes the client sent and they meet the server's rules (`agents.py`).

A line that is not in this format, or holds an impossible date, address or
status, is counted as malformed and skipped; so is a line longer than
`MAX_LINE` bytes, without reading all of it. Nothing in a log can stop the
report. A log records no request headers, so only a 304 is known to answer
a conditional request.
"""

from __future__ import annotations

import gzip
import io
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from feedsvc.config import Config
from feedsvc.web.audience import agents
from feedsvc.web.audience.model import Report
from feedsvc.web.audience.report import compute
from feedsvc.web.audience.tally import POLL_METHODS, POLL_STATUSES, Pending, fold, is_feed

#: Longest line read; nginx caps a request line at 8 KiB and a User-Agent is far shorter.
MAX_LINE = 64 * 1024
_QUOTED = rb'"((?:[^"\\]|\\.){0,16384})"'
_LINE = re.compile(
    rb"([0-9A-Fa-f:.]{2,45}|unix:) [^ ]{1,200} [^ ]{1,200} \[([^\]]{1,40})\] " + _QUOTED
    + rb" ([0-9]{3}) (?:[0-9]{1,20}|-) " + _QUOTED + rb" " + _QUOTED + rb"(?: [^\n]*)?\r?\n?"
)  # fmt: skip
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)


@dataclass
class LogStats:
    """What reading the logs found besides polls."""

    lines: int = 0
    malformed: int = 0
    #: Seconds since the epoch of the newest line read: where the report's window ends.
    latest: int = 0


def read(paths: Iterable[Path], pending: Pending) -> LogStats:
    """Add every poll in the logs at `paths` (plain or .gz) to `pending`; OSError if one cannot be read."""
    stats = LogStats()
    for path in paths:
        try:
            with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
                for line in _lines(f):
                    stats.lines += 1
                    if not read_line(line, pending, stats):
                        stats.malformed += 1
        except (OSError, EOFError) as e:  # EOFError: a .gz cut short
            raise OSError(getattr(e, "errno", None), getattr(e, "strerror", None) or str(e), str(path)) from e
    return stats


def read_line(line: bytes, pending: Pending, stats: LogStats) -> bool:
    """Add the poll in one line, if it is one; False when the line is malformed."""
    m = _LINE.fullmatch(line)
    if m is None:
        return False
    address, when, request, status, _referer, agent = m.groups()
    seconds = _time(when)
    code = int(status)
    if seconds is None or not 100 <= code <= 599:
        return False
    stats.latest = max(stats.latest, seconds)
    if code not in POLL_STATUSES:
        return True
    method, _, rest = _unescape(request).partition(b" ")
    target = (
        rest.rpartition(b" ")[0] if rest.endswith((b" HTTP/1.0", b" HTTP/1.1", b" HTTP/2.0", b" HTTP/3.0")) else rest
    )
    if method.decode("ascii", "replace") not in POLL_METHODS:
        return True
    path = unquote(target.partition(b"?")[0].decode("utf-8", "replace"))
    if not is_feed(path):
        return True
    # The User-Agent's bytes as latin-1 text, as a WSGI server hands them over: folded alike.
    pending.add(seconds, path, address.decode("ascii"), None, _unescape(agent).decode("latin-1"), code, code == 304)
    return True


def _lines(f: gzip.GzipFile | io.BufferedReader) -> Iterator[bytes]:
    """The lines of `f`; a line over MAX_LINE bytes comes out as its first MAX_LINE + 1 bytes (malformed)."""
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := f.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass  # the rest of the overlong line, never held whole
        yield line


def _unescape(value: bytes) -> bytes:
    if b"\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: bytes([int(m[1][1:], 16)]) if len(m[1]) == 3 else m[1], value)


@lru_cache(maxsize=4096)
def _time(value: bytes) -> int | None:
    """$time_local ("10/Oct/2000:13:55:36 -0700") as seconds since the epoch; None if it is not one."""
    try:
        return int(datetime.strptime(value.decode("ascii"), "%d/%b/%Y:%H:%M:%S %z").timestamp())
    except (ValueError, UnicodeDecodeError):
        return None


def report(paths: Iterable[Path], config: Config, *, window_hours: float | None = None) -> Report:
    """The audience report of the access logs at `paths`, over the window ending at their newest line.

    Addresses are hashed with a salt made for this run and forgotten: a log
    report keeps nothing. OSError if a log cannot be read.
    """
    pending = Pending()
    stats = read(paths, pending)
    folded = fold(pending, secrets.token_bytes(16), agents.shipped())
    window = int((window_hours or config.audience.window_hours) * 3600)
    return compute(
        folded.rows, source="access log", end=stats.latest, window_seconds=window, polite=config.polite,
        refused=folded.refused, malformed=stats.malformed,
    )  # fmt: skip
