"""Reading User-Agents (feedsvc/web/audience/agents.py, agents.toml), one case per file in tests/data/audience/agents/.

Each case is a User-Agent (`agent`, text sent as UTF-8, or `agent_bytes`,
raw bytes; `repeat` makes a long one from a short one) and what it must be
read as: a service with its count (and feed id), ``direct`` (a client like
any other) or ``refused``. Every case is read the two ways a User-Agent
arrives: from a WSGI server (its bytes as latin-1 text) and from an nginx
access-log line (with nginx's escaping), through the same fold into tallies,
so both sources must agree on each one. Every service of agents.toml must
have a case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DATA

from feedsvc.web.audience import agents
from feedsvc.web.audience.logs import LogStats, read_line
from feedsvc.web.audience.model import DIRECT, Agent
from feedsvc.web.audience.tally import Pending, fold

CASES = sorted((DATA / "audience" / "agents").glob("*.yaml"))
SALT = b"0123456789abcdef"


def load_case(path: Path) -> tuple[bytes, Any]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    wire = case["agent_bytes"] if "agent_bytes" in case else case["agent"].encode("utf-8")
    return wire * case.get("repeat", 1), case["expect"]


def expected(expect: Any) -> Agent | None:
    if expect == "refused":
        return None
    if expect == "direct":
        return DIRECT
    return Agent(expect["service"], expect["subscribers"], expect.get("feed_id"))


def nginx_escaped(value: bytes) -> bytes:
    """A value as nginx writes it into the log: '"', '\\' and bytes outside printable ASCII as \\xHH."""
    return b"".join(
        b if 0x20 <= b[0] < 0x7F and b not in (b'"', b"\\") else b"\\x%02X" % b[0]
        for b in (value[i : i + 1] for i in range(len(value)))
    )


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_a_user_agent_from_the_server(path: Path) -> None:
    wire, expect = load_case(path)
    text = agents.from_wsgi(wire.decode("latin-1"))
    got = agents.shipped().classify(text) if text is not None else None
    assert got == expected(expect)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_the_same_user_agent_from_an_access_log(path: Path) -> None:
    """The log line is read, folded and counted as the server would count the request."""
    wire, expect = load_case(path)
    line = (
        b'203.0.113.9 - - [01/Dec/2026:10:00:00 +0000] "GET /feeds/all.atom HTTP/1.1" 200 512 "-" "'
        + nginx_escaped(wire)
        + b'"\n'
    )
    pending, stats = Pending(), LogStats()
    assert read_line(line, pending, stats), "a well-formed line"
    folded = fold(pending, SALT, agents.shipped())
    want = expected(expect)
    if want is None:
        assert folded.rows == [] and sum(folded.refused.values()) == 1
        return
    assert folded.refused == {}
    (row,) = folded.rows
    assert (row.service, row.subscribers) == (
        (want.service, want.subscribers) if want.subscribers is not None else (None, None)
    )
    assert row.polls == 1 and row.feed == "/feeds/all.atom"


def test_every_service_has_a_case() -> None:
    covered = {yaml.safe_load(p.read_text(encoding="utf-8"))["expect"].get("service") for p in CASES
               if isinstance(yaml.safe_load(p.read_text(encoding="utf-8"))["expect"], dict)}  # fmt: skip
    assert set(agents.shipped().names) <= covered
    assert {"Feedly", "Inoreader", "NewsBlur", "Feedbin", "The Old Reader", "BazQux"} <= set(agents.shipped().names)


def test_the_cases_cover_each_kind() -> None:
    kinds = [load_case(p)[1] if isinstance(load_case(p)[1], str) else "service" for p in CASES]
    assert kinds.count("refused") >= 10 and kinds.count("direct") >= 8 and kinds.count("service") >= 10


def test_distinct_feed_ids_of_a_service_are_distinct_clients() -> None:
    """Feedbin feed ids 1 and 2 on one URL are two figures; one id seen twice is one (the latest)."""
    pending = Pending()
    for when, agent in ((60, "Feedbin feed-id:1 - 5 subscribers"), (61, "Feedbin feed-id:2 - 7 subscribers"),
                        (62, "Feedbin feed-id:1 - 6 subscribers")):  # fmt: skip
        pending.add(when, "/feeds/all.atom", "198.51.100.1", None, agent, 200, False)
    rows = fold(pending, SALT, agents.shipped()).rows
    assert sorted(r.subscribers for r in rows) == [6, 7]


def test_the_hash_of_a_client_depends_on_the_salt() -> None:
    pending = Pending()
    pending.add(60, "/feeds/all.atom", "198.51.100.1", None, "Miniflux/2.1", 200, False)
    one, two = (fold(pending, salt, agents.shipped()).rows[0].client for salt in (SALT, b"another salt 16b"))
    assert one != two and 0 < one < 2**63 and 0 < two < 2**63


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("max_subscribers = 5\n[[service]]\nname = 'X'\npattern = 'X/(?P<count>[0-9]+)'\n", "no group n"),
        ("max_subscribers = 5\n[[service]]\nname = 'X'\npattern = 'X (?P<n>[0-9]+)'\n"
         "[[service]]\nname = 'X'\npattern = 'Y (?P<n>[0-9]+)'\n", "listed twice"),
    ],
)  # fmt: skip
def test_a_bad_data_file_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        agents.load(text)


def test_the_count_limit_comes_from_the_data_file() -> None:
    strict = agents.load("max_subscribers = 10\n[[service]]\nname = 'X'\npattern = 'X (?P<n>[0-9]+)'\n")
    assert strict.classify("X 10") == Agent("X", 10, None)
    assert strict.classify("X 11") == DIRECT
