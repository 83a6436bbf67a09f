"""Reading a User-Agent: which feed service it is and how many subscribers it reports.

The patterns live in one data file, `agents.toml` beside this module (shipped
in the wheel), so a new service is a new entry there and a new case in
tests/data/audience/agents/. This module holds the rules every User-Agent
meets first, whatever its service: what is refused outright.

A refused User-Agent is skipped and counted, never reported: longer than
`MAX_AGENT` characters, not UTF-8, holding control characters, or shaped
like an injection attempt (`HOSTILE`). Nothing refused would be harmful in
the report (every value is escaped where it is shown and bound where it is
stored), but none of it is a reader, and a report that lists
``${jndi:ldap://…}`` as a subscriber is a worse report.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from feedsvc.web.audience.model import DIRECT, Agent

#: Longest User-Agent read; real ones stay well under 500 characters.
MAX_AGENT = 1_000
#: Characters no User-Agent holds: C0 and C1 controls, DEL, and what broken decoding leaves.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufffd]")
#: Shapes of injection attempts: a markup tag (not an address in angle
#: brackets, which some bots give: ``<bot@example.org>``), template and JNDI
#: lookups (``${``, ``#{``, ``{{``), shell (backticks, ``$(``, Shellshock's
#: ``() {``), escapes (a backslash, %-encoded line breaks), path traversal and
#: SQL quoting.
HOSTILE = re.compile(
    r"<\s*/?[a-z][a-z0-9-]*[\s/>]|javascript:|[`\\]|[$#]\{|\{\{|\$\(|\(\)\s*\{|%0[ad]|\.\./"
    r"|'\s*(?:or|and|union|;|--)|\bunion\s+select\b|\bdrop\s+table\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Agents:
    """The services of the data file, and the largest count believed."""

    services: tuple[Service, ...]
    max_subscribers: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    def classify(self, agent: str) -> Agent | None:
        """What `agent` (a User-Agent as text) tells; None when it is refused (see the module)."""
        if len(agent) > MAX_AGENT or _CONTROL.search(agent) or HOSTILE.search(agent):
            return None
        for service in self.services:
            m = service.pattern.match(agent)
            if m is None:
                continue
            count = int(m["n"])
            if count > self.max_subscribers:
                return DIRECT  # an absurd figure is no figure: a client like any other
            return Agent(service.name, count, m.groupdict().get("id"))
        return DIRECT


def load(text: str | None = None) -> Agents:
    """The services of `text` (TOML), by default the shipped agents.toml; ValueError if malformed."""
    if text is None:
        text = files("feedsvc.web.audience").joinpath("agents.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    services = []
    for entry in data.get("service", []):
        pattern = re.compile(entry["pattern"])
        if "n" not in pattern.groupindex:
            raise ValueError(f"agents.toml: {entry['name']}: the pattern has no group n (the count)")
        services.append(Service(str(entry["name"]), pattern))
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ValueError("agents.toml: a service is listed twice")
    return Agents(tuple(services), int(data["max_subscribers"]))


@lru_cache(maxsize=1)
def shipped() -> Agents:
    """The shipped agents.toml, read once per process."""
    return load()


def from_wsgi(value: str) -> str | None:
    """A WSGI header value (bytes as latin-1) as the text the client sent; None if it is not UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
