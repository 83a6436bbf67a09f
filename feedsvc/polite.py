"""Polite polling: a client that fetches one URL too often is asked to slow down.

A client is one address; a budget is per (address, URL path). Within any
``window_seconds`` an address may spend ``max_requests`` on one path: a
request answered 304 Not Modified costs 1 and any other answer (a full
fetch) costs 2, so a reader that polls with If-None-Match or
If-Modified-Since gets twice the polls of one that downloads the feed every
time. A request that would overspend is answered 429 Too Many Requests with
Retry-After, the seconds until enough earlier requests leave the window, and
costs nothing, so a client that waits as told is served again.

The window is exact (a sliding log of request times), and memory is bounded:
a log holds at most ``max_requests`` times and at most ``max_clients`` logs are
kept, the least recently used dropped first. The state is per process: with N
gunicorn workers a client can get up to N times the budget, because each
worker counts only the requests it answered.

The client address is the connection's peer. Behind a reverse proxy listed in
``trusted_proxies``, it is the right-most address in X-Forwarded-For that is
not itself a trusted proxy (the left-most ones are whatever the client chose
to send). Addresses in ``exempt`` are never limited.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from functools import lru_cache

from .config import PoliteConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longest X-Forwarded-For value read; a longer one is not believed.
MAX_FORWARDED = 2048


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks from the configuration, as networks."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


class AddressSet:
    """Membership of address strings in a set of networks, cached per address."""

    def __init__(self, nets: Iterable[Network]) -> None:
        self.networks = tuple(nets)
        self.contains: Callable[[str], bool] = lru_cache(maxsize=4096)(self._contains)

    def _contains(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        return any(ip in net for net in self.networks if net.version == ip.version)


def client_address(remote_addr: str, forwarded_for: str | None, trusted: AddressSet) -> str:
    """Who is asking: the peer, or behind trusted proxies the last untrusted hop.

    Hops are read right to left from X-Forwarded-For, skipping trusted
    proxies; the first one that is not trusted is the client. If every hop is
    trusted, the left-most is. Anything unreadable stops the walk at the last
    trusted hop, which is then taken as the client (fail closed: the proxy
    gets limited, not a forged address).
    """
    if not forwarded_for or not trusted.contains(remote_addr) or len(forwarded_for) > MAX_FORWARDED:
        return remote_addr
    current = remote_addr
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop or not _is_address(hop):
            return current
        current = hop
        if not trusted.contains(hop):
            return hop
    return current


@lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


class Limiter:
    """The per-process budgets: (address, path) → times of recent requests."""

    def __init__(self, config: PoliteConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_requests = config.max_requests
        self.window = float(config.window_seconds)
        self.max_clients = config.max_clients
        self.clock = clock
        self.exempt = AddressSet(networks(config.exempt))
        self.trusted = AddressSet(networks(config.trusted_proxies))
        self._logs: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, remote_addr: str, forwarded_for: str | None) -> str | None:
        """The client to count a request against, or None when it is exempt."""
        addr = client_address(remote_addr, forwarded_for, self.trusted) if self.trusted.networks else remote_addr
        return None if self.exempt.contains(addr) else addr

    def retry_after(self, client: str, path: str, cost: int) -> int:
        """Seconds to wait before a request of `cost` fits; 0 when it fits now (nothing is spent)."""
        now = self.clock()
        cost = min(cost, self.max_requests)
        with self._lock:
            log = self._logs.get((client, path))
            if log is None:
                return 0
            return self._wait(log, now, cost)

    def spend(self, client: str, path: str, cost: int) -> int:
        """Spend `cost` if it fits and return 0; else spend nothing and return the seconds to wait."""
        now = self.clock()
        cost = min(cost, self.max_requests)  # a budget of 1 still allows a full fetch
        key = (client, path)
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                log = deque()
                self._logs[key] = log
                while len(self._logs) > self.max_clients:
                    self._logs.popitem(last=False)
            else:
                self._logs.move_to_end(key)
            wait = self._wait(log, now, cost)
            if wait:
                return wait
            log.extend([now] * cost)
            return 0

    def _wait(self, log: deque[float], now: float, cost: int) -> int:
        horizon = now - self.window
        while log and log[0] <= horizon:
            log.popleft()
        over = len(log) + cost - self.max_requests
        if over <= 0:
            return 0
        if over > len(log):  # costs more than a whole window holds
            return math.ceil(self.window)
        # The request fits once the `over` oldest entries have left the window.
        return max(1, math.ceil(log[over - 1] + self.window - now))

    def __len__(self) -> int:
        return len(self._logs)
