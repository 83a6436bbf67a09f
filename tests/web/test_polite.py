"""Polite polling (`feedsvc.web.polite`): budgets per address and URL, 429 with Retry-After.

The limiter is driven with a fake clock, so windows and Retry-After values are
exact; the web app is driven through Flask's test client with polite polling
turned on for loopback (off there by default), over an output folder
`feedsvc build` wrote (conftest's `served_app`). Sharing budgets between
gunicorn workers is tested against a real server in test_features_e2e.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import served_app
from flask import Flask
from flask.testing import FlaskClient

from feedsvc.config import Config, ConfigError, PoliteConfig, check
from feedsvc.web.polite import COST_FULL, COST_NOT_MODIFIED, AddressSet, Limiter, client_address, networks

FEED = "feeds/all.atom"
OTHER = "feeds/all.rss"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **changes: Any) -> Limiter:
    config = dataclasses.replace(PoliteConfig(exempt=()), **changes)
    return Limiter(config, clock=clock)


# -- the budget ----------------------------------------------------------------------------


def test_sixty_full_fetches_fit_and_the_sixty_first_waits_for_the_window() -> None:
    clock = Clock()
    lim = limiter(clock)
    for i in range(60):
        assert lim.spend("192.0.2.1", FEED, COST_FULL) == 0, i
        clock.now += 1.0  # one a second: the first left the window at 600 s, not before
    # The oldest fetch (at 1000.0) leaves the window at 1600.0; it is now 1060.0.
    assert lim.spend("192.0.2.1", FEED, COST_FULL) == 540
    assert lim.retry_after("192.0.2.1", FEED) == 540  # not even a 304 fits
    clock.now += 539.5
    assert lim.spend("192.0.2.1", FEED, COST_FULL) == 1  # never 0 while refused: at least 1
    clock.now += 0.5
    assert lim.spend("192.0.2.1", FEED, COST_FULL) == 0  # waited as told: served
    assert lim.spend("192.0.2.1", FEED, COST_FULL) == 1  # and the next one a second later


def test_a_refused_request_costs_nothing() -> None:
    clock = Clock()
    lim = limiter(clock, max_requests=2, window_seconds=10)
    assert lim.spend("a", FEED, COST_FULL) == 0
    assert lim.spend("a", FEED, COST_FULL) == 0
    for _ in range(50):
        assert lim.spend("a", FEED, COST_FULL) == 10
    clock.now += 10
    assert lim.spend("a", FEED, COST_FULL) == 0


def test_a_304_counts_half() -> None:
    clock = Clock()
    lim = limiter(clock)
    for i in range(120):
        assert lim.spend("192.0.2.1", FEED, COST_NOT_MODIFIED) == 0, i
    assert lim.spend("192.0.2.1", FEED, COST_NOT_MODIFIED) == 600
    mixed = limiter(clock)
    for _ in range(30):
        assert mixed.spend("192.0.2.2", FEED, COST_FULL) == 0
    for _ in range(60):
        assert mixed.spend("192.0.2.2", FEED, COST_NOT_MODIFIED) == 0
    assert mixed.spend("192.0.2.2", FEED, COST_NOT_MODIFIED) > 0


def test_retry_after_is_the_time_until_enough_requests_leave_the_window() -> None:
    clock = Clock()
    lim = limiter(clock, max_requests=3, window_seconds=100)
    for t in (0.0, 10.0, 20.0):
        clock.now = 1_000 + t
        assert lim.spend("a", FEED, COST_FULL) == 0
    clock.now = 1_030.0
    assert lim.spend("a", FEED, COST_FULL) == 70  # the fetch at +0 leaves at +100
    assert lim.spend("a", FEED, COST_NOT_MODIFIED) == 70  # a 304 needs one unit; the same fetch frees two
    clock.now = 1_100.25
    assert lim.spend("a", FEED, COST_NOT_MODIFIED) == 0
    assert lim.spend("a", FEED, COST_FULL) == math.ceil(1_010 + 100 - 1_100.25)  # 2 units needed, 1 free: wait for +10


def test_budgets_are_per_address_and_per_url() -> None:
    clock = Clock()
    lim = limiter(clock, max_requests=1)
    assert lim.spend("192.0.2.1", FEED, COST_FULL) == 0
    assert lim.spend("192.0.2.1", FEED, COST_FULL) > 0
    assert lim.spend("192.0.2.1", OTHER, COST_FULL) == 0
    assert lim.spend("192.0.2.2", FEED, COST_FULL) == 0
    assert lim.spend("2001:db8::1", FEED, COST_FULL) == 0


def test_memory_is_bounded_by_max_clients() -> None:
    clock = Clock()
    lim = limiter(clock, max_clients=50, max_requests=1)
    for i in range(5_000):
        lim.spend(f"10.0.{i // 256}.{i % 256}", FEED, COST_FULL)
        clock.now += 0.001
    assert len(lim) == 50
    # The table is the whole cost, fixed when the limiter is made.
    assert len(lim._table._map) == 50 * (8 + 8 + 8 + 8 * 2)
    # The most recent clients are still counted: their next fetch waits.
    assert lim.spend("10.0.19.135", FEED, COST_FULL) > 0  # client 4999


def test_too_large_a_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"polite\.max_clients: times max_requests is too large"):
        check(Config(polite=PoliteConfig(max_clients=1_000_000, max_requests=1_000)))


def test_budgets_are_shared_with_forked_processes() -> None:
    """gunicorn forks its workers after the app (and its limiter) is made."""
    clock = Clock()
    lim = limiter(clock, max_requests=2)
    assert lim.spend("a", FEED, COST_FULL) == 0
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns of forking with threads
        pid = os.fork()
    if pid == 0:  # the child: spend the rest of the budget, report what it saw
        try:
            os.close(read)
            os.write(write, bytes([lim.spend("a", FEED, COST_FULL), lim.spend("a", FEED, COST_FULL) > 0]))
        finally:
            os._exit(0)
    os.close(write)
    try:
        seen = os.read(read, 2)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert seen == bytes([0, 1])
    assert lim.spend("a", FEED, COST_NOT_MODIFIED) > 0  # the child's fetch counts here too


# -- who is asking -----------------------------------------------------------------------


TRUSTED = AddressSet(networks(["10.0.0.0/8", "::1/128"]))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.1.1", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
        ("10.1.1.1", "198.51.100.9, 203.0.113.7, 10.2.2.2", "203.0.113.7"),  # two proxies; left part is the client's
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3"),  # every hop trusted: the left-most
        ("10.1.1.1", "203.0.113.7, garbage", "10.1.1.1"),  # unreadable: the proxy is the client
        ("10.1.1.1", "", "10.1.1.1"),
        ("10.1.1.1", "203.0.113.7," * 400, "10.1.1.1"),  # over-long: not believed
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("::ffff:10.1.1.1", "203.0.113.7", "203.0.113.7"),  # IPv4-mapped peer
        ("203.0.113.50", "198.51.100.1", "203.0.113.50"),  # not a trusted proxy: header ignored
    ],
)
def test_client_address(peer: str, forwarded: str, client: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_exempt_addresses_are_never_limited() -> None:
    lim = Limiter(PoliteConfig(max_requests=1), clock=Clock())  # exempt: loopback, by default
    assert lim.client("127.0.0.1", None) is None
    assert lim.client("::1", None) is None
    assert lim.client("192.0.2.1", None) == "192.0.2.1"


# -- through the web app -----------------------------------------------------------------


def polite_app(config: Config, **changes: Any) -> Flask:
    polite = dataclasses.replace(PoliteConfig(exempt=()), **changes)
    return served_app(dataclasses.replace(config, polite=polite))


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    yield polite_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_429(r: Any) -> int:
    assert r.status_code == 429
    wait = r.headers["Retry-After"]
    assert wait.isdigit() and int(wait) >= 1
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    if r.request.method == "HEAD":
        assert r.data == b""
    else:
        assert r.data.decode() == (
            "429 Too Many Requests: this address fetched this URL more than 60 times in 600 seconds "
            f"(a 304 Not Modified counts half: send If-None-Match to poll cheaply). Retry after {wait} seconds.\n"
        )
    return int(wait)


def test_the_61st_unconditional_request_gets_429(client: FlaskClient) -> None:
    for i in range(60):
        assert client.get("/" + FEED).status_code == 200, i
    wait = assert_429(client.get("/" + FEED))
    assert 595 <= wait <= 600
    assert_429(client.head("/" + FEED))
    # Even a poll that would be a 304 waits: the budget is spent.
    etag = client.get("/" + OTHER).headers["ETag"]
    assert_429(client.get("/" + FEED, headers={"If-None-Match": etag}))


def test_conditional_polls_that_end_in_304_cost_half(client: FlaskClient) -> None:
    etag = client.get("/" + FEED).headers["ETag"]  # one full fetch: 2 of 120 units
    for i in range(118):
        assert client.get("/" + FEED, headers={"If-None-Match": etag}).status_code == 304, i
    assert_429(client.get("/" + FEED, headers={"If-None-Match": etag}))


def test_a_conditional_request_that_gets_the_feed_counts_full(client: FlaskClient) -> None:
    for i in range(60):
        assert client.get("/" + FEED, headers={"If-None-Match": '"stale"'}).status_code == 200, i
    assert_429(client.get("/" + FEED, headers={"If-None-Match": '"stale"'}))


def test_other_urls_and_other_addresses_are_independent(client: FlaskClient) -> None:
    for _ in range(60):
        client.get("/" + FEED)
    assert_429(client.get("/" + FEED))
    assert client.get("/" + OTHER).status_code == 200
    assert client.get("/feeds/topics/ai.atom").status_code == 200
    assert client.get("/" + FEED, environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # only documents are limited
    assert client.get("/no/such/thing").status_code == 404


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(config: Config) -> None:
    client = polite_app(config, trusted_proxies=("127.0.0.1",), max_requests=2).test_client()
    # Through the trusted proxy (the test client's peer is 127.0.0.1): each client has its own budget.
    for address in ("203.0.113.1", "203.0.113.2"):
        for _ in range(2):
            assert client.get("/" + FEED, headers={"X-Forwarded-For": address}).status_code == 200
    assert_429_any(client.get("/" + FEED, headers={"X-Forwarded-For": "203.0.113.1"}))
    assert client.get("/" + FEED, headers={"X-Forwarded-For": "203.0.113.3"}).status_code == 200
    # From a peer that is not a trusted proxy, the header changes nothing: a forged one cannot dodge the limit.
    untrusted = {"REMOTE_ADDR": "198.51.100.20"}
    for i in range(2):
        r = client.get("/" + FEED, headers={"X-Forwarded-For": f"203.0.113.{100 + i}"}, environ_base=untrusted)
        assert r.status_code == 200
    assert_429_any(client.get("/" + FEED, headers={"X-Forwarded-For": "203.0.113.200"}, environ_base=untrusted))


def assert_429_any(r: Any) -> None:
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_without_a_trusted_proxy_the_header_is_ignored(config: Config) -> None:
    client = polite_app(config, max_requests=1).test_client()
    assert client.get("/" + FEED, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert_429_any(client.get("/" + FEED, headers={"X-Forwarded-For": "203.0.113.2"}))


def test_loopback_is_exempt_by_default_and_off_means_off(config: Config) -> None:
    default = served_app(config).test_client()
    off = polite_app(config, enabled=False).test_client()
    for _ in range(130):
        assert default.get("/" + FEED).status_code == 200
        assert off.get("/" + FEED).status_code == 200
    assert off.get("/" + FEED, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    assert served_app(config).extensions["feedsvc.polite"].client("127.0.0.1", None) is None


def test_checking_the_budget_keeps_requests_fast(config: Config) -> None:
    """The limiter's share of a request: microseconds, measured in a separate, quiet process."""
    code = (
        "import time\n"
        "from feedsvc.config import PoliteConfig\n"
        "from feedsvc.web.polite import Limiter\n"
        "lim = Limiter(PoliteConfig(exempt=(), max_requests=1000, max_clients=1000))\n"
        "n = 20000\n"
        "t = time.perf_counter()\n"
        "for i in range(n):\n"
        "    lim.spend(f'10.0.0.{i % 200}', 'feeds/all.atom', 1)\n"
        "print((time.perf_counter() - t) / n)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert float(done.stdout) < 100e-6, done.stdout
