"""From polls to tallies: the one path both sources take.

A poll is a GET or HEAD of a feed's subscription URL (`is_feed`) answered
with the feed, a 304 or polite polling's 429 (`POLL_STATUSES`). The server
(`recorder.py`) and the access-log reader (`logs.py`) both add each poll to
a `Pending` count, keyed by minute, feed, address and User-Agent as they
arrived, and `fold` turns those counts into `Tally` rows: the User-Agent read
(`agents.py`), refused ones counted and dropped, the client named by a salted
hash. So the report cannot tell which source a figure came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from feedsvc.formats.registry import is_subscription
from feedsvc.web.audience.agents import Agents, from_wsgi
from feedsvc.web.audience.model import Tally

#: Answers that make a request a poll: the feed (or part of it), 304 Not Modified, 429 Too Many Requests.
POLL_STATUSES = frozenset((200, 206, 304, 429))
POLL_METHODS = frozenset(("GET", "HEAD"))
#: Distinct (minute, feed, address, User-Agent) keys the server holds between two writes to its store.
MAX_PENDING = 20_000

#: (minute, feed path, address, X-Forwarded-For or None, User-Agent as received)
Key = tuple[int, str, str, str | None, str]


def is_feed(path: str) -> bool:
    """Whether `path` ("/feeds/all.atom", no query) is a feed's subscription URL, in its one spelling.

    `formats.registry.is_subscription` is the one home of what a path means
    (and keeps the parse of each path it is asked about);
    archive pages are not subscriptions (a reader walks them once) and are
    not counted.
    """
    return path[:1] == "/" and path[1:2] != "/" and is_subscription(path)


class Pending:
    """Polls not yet folded: `Key` → [polls, not modified, conditional, limited, latest second].

    With a `limit`, a poll with a new key once that many are held is not
    kept but counted in `dropped` (by minute), so memory stays bounded
    whatever arrives between two writes.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.counts: dict[Key, list[int]] = {}
        self.dropped: dict[int, int] = {}
        self.limit = limit

    def __len__(self) -> int:
        return len(self.counts)

    def add(
        self, when: int, feed: str, address: str, forwarded: str | None, agent: str, status: int, conditional: bool
    ) -> None:
        """One poll at `when` (seconds since the epoch) answered `status`."""
        minute = when // 60
        key = (minute, feed, address, forwarded, agent)
        entry = self.counts.get(key)
        if entry is None:
            if self.limit is not None and len(self.counts) >= self.limit:
                self.dropped[minute] = self.dropped.get(minute, 0) + 1
                return
            entry = self.counts[key] = [0, 0, 0, 0, when]
        entry[0] += 1
        if status == 304:
            entry[1] += 1
        elif status == 429:
            entry[3] += 1
        if conditional:
            entry[2] += 1
        if when > entry[4]:
            entry[4] = when


@dataclass
class Folded:
    """Tally rows, and the polls refused for their User-Agent (by minute)."""

    rows: list[Tally] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)


def fold(
    pending: Pending,
    salt: bytes,
    agents: Agents,
    *,
    decode: Callable[[str], str | None] = from_wsgi,
    address: Callable[[str, str | None], str] = lambda remote, forwarded: remote,
) -> Folded:
    """`pending` as one `Tally` per (minute, feed, client).

    User-Agents are as a WSGI server hands them over (their bytes as latin-1
    text); `decode` makes them text (None: not UTF-8, so refused). `address`
    picks the client's address from the peer and X-Forwarded-For (polite
    polling's rule, for trusted proxies).
    """
    classify = lru_cache(maxsize=4096)(agents.classify)
    out = Folded()
    rows: dict[tuple[int, str, int], list[object]] = {}
    for (minute, feed, remote, forwarded, raw), (
        polls,
        not_modified,
        conditional,
        limited,
        last,
    ) in pending.counts.items():
        try:
            text = decode(raw)
            agent = classify(text) if text is not None else None
            if agent is not None and agent.subscribers is not None:
                client = client_key(salt, "service", agent.service or "", agent.feed_id or "")
            elif agent is not None:
                client = client_key(salt, "direct", address(remote, forwarded), text or "")
        except (TypeError, ValueError, UnicodeError):  # a value no WSGI server hands over: refused like garbage
            agent = None
        if agent is None:
            out.refused[minute] = out.refused.get(minute, 0) + polls
            continue
        row = rows.get((minute, feed, client))
        if row is None:
            service = agent.service if agent.subscribers is not None else None
            rows[minute, feed, client] = [service, agent.subscribers, last, polls, not_modified, conditional, limited]
            continue
        if last >= row[2]:  # type: ignore[operator]
            row[1], row[2] = agent.subscribers, last
        for i, n in ((3, polls), (4, not_modified), (5, conditional), (6, limited)):
            row[i] += n  # type: ignore[operator]
    out.rows = [Tally(m, feed, client, *values) for (m, feed, client), values in rows.items()]  # type: ignore[arg-type]
    return out


def client_key(salt: bytes, *parts: str) -> int:
    """A keyed BLAKE2b hash of `parts` as a positive 63-bit integer (an SQLite INTEGER).

    With a salt kept by this install alone, the hash of an address cannot be
    reversed by hashing every address, and it means nothing anywhere else.
    """
    data = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=salt).digest(), "big") >> 1
