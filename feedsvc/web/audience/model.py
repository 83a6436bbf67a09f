"""The audience's types: what a User-Agent says, a minute of polls, the report.

Both sources (the server's store, nginx's access log) come down to `Tally`
rows, and `report.compute` makes a `Report` of them, so the two can only
differ in what they saw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Agent:
    """What a User-Agent tells: a feed service and its subscriber count, or nothing (a direct client)."""

    #: The service's name ("Feedly"), or None for every other client.
    service: str | None = None
    subscribers: int | None = None
    #: The service's id of the feed it polls, where it sends one.
    feed_id: str | None = None


#: The one Agent of every client that reports no subscriber count.
DIRECT = Agent()


@dataclass(frozen=True, slots=True)
class Tally:
    """The polls of one feed by one client within one minute (UTC)."""

    minute: int  # seconds since the epoch // 60
    feed: str  # the URL path, "/feeds/all.atom"
    #: A salted 63-bit hash: of (address, User-Agent) for a direct client,
    #: of (service, feed id) for a service that reports subscribers.
    client: int
    service: str | None
    #: The service's figure at its latest poll in this minute (None for a direct client).
    subscribers: int | None
    #: Seconds since the epoch of the latest poll in this minute.
    last: int
    polls: int
    not_modified: int
    conditional: int
    #: Polls answered 429 Too Many Requests (polite polling).
    limited: int


@dataclass(frozen=True, slots=True)
class Polling:
    """How a set of polls went."""

    polls: int = 0
    not_modified: int = 0
    conditional: int = 0
    limited: int = 0

    @property
    def not_modified_share(self) -> float:
        return self.not_modified / self.polls if self.polls else 0.0

    @property
    def conditional_share(self) -> float:
        return self.conditional / self.polls if self.polls else 0.0

    def __add__(self, other: Polling) -> Polling:
        return Polling(
            self.polls + other.polls,
            self.not_modified + other.not_modified,
            self.conditional + other.conditional,
            self.limited + other.limited,
        )


@dataclass(frozen=True, slots=True)
class ServiceFigure:
    """One service's subscribers of a feed: the sum of its latest figure per feed id."""

    service: str
    subscribers: int
    #: Distinct feed ids (or 1 where the service sends none) the figure adds up.
    feed_ids: int


@dataclass(frozen=True, slots=True)
class FeedAudience:
    """Who reads one feed URL, and how they poll it."""

    feed: str
    services: tuple[ServiceFigure, ...]
    #: Distinct (address, User-Agent) pairs without a subscriber count: one subscriber each.
    direct: int
    polling: Polling
    #: Clients (direct or a service's feed id) that spent more than polite
    #: polling's budget within its window at least once, or were answered 429.
    fast_clients: int

    @property
    def subscribers(self) -> int:
        return sum(s.subscribers for s in self.services) + self.direct


@dataclass(frozen=True, slots=True)
class Hour:
    """The polls of every feed within one hour (UTC)."""

    start: int  # seconds since the epoch
    polls: int
    not_modified: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """What a report left out, and why."""

    #: Log lines that are not in the access log format (or hold an impossible date or status).
    malformed: int = 0
    #: Polls whose User-Agent was refused: too long, binary, or an injection attempt.
    refused: int = 0
    #: Polls the server could not keep: its store was full, broken or unwritable.
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """The audience of every feed polled within a window, and their sum."""

    #: "server" (what `feedsvc serve` recorded) or "access log".
    source: str
    start: int  # seconds since the epoch
    end: int
    feeds: tuple[FeedAudience, ...]
    #: The whole site: every feed's figures added up (a reader of two feeds counts twice).
    total: FeedAudience
    hours: tuple[Hour, ...]
    skipped: Skipped
    #: The polite-polling floor clients are judged by: fetches of one URL per window.
    max_requests: int
    window_seconds: int

    @property
    def window_hours(self) -> float:
        return (self.end - self.start) / 3600
