"""Polite polling: a client that fetches one URL too often is asked to slow down.

A client is one address; a budget is per (address, URL path), so a reader
polling fifty feeds is fifty budgets. Within any ``window_seconds`` an address
may fetch one path ``max_requests`` times; a request answered 304 Not Modified
counts half, so a reader that polls with If-None-Match or If-Modified-Since
gets twice the polls of one that downloads the feed every time. (Internally a
full fetch costs 2 and a 304 costs 1 of a budget of ``2 × max_requests``.) A
request that would overspend is answered 429 Too Many Requests with
Retry-After, the whole seconds until enough earlier requests leave the window,
and costs nothing, so a client that waits as told is served again.

The window is exact: a sliding log of request times per budget. The logs live
in one table of ``max_clients`` slots in shared memory, made before the HTTP
workers are forked, so every worker counts against the same budgets (a client
gets the configured budget, not one per worker) and memory is fixed when the
server starts: ``max_clients × (2 × max_requests + 3) × 8`` bytes. A budget
is found by a 64-bit hash of (address, path) and a short linear probe; when
the slots it may use are all taken, the budget forgotten to make room is the
one with the least spent in the window (a free slot, or one whose requests
have all left the window, first; the least recently used among equals).
Forgetting the least recently used one instead let a client clear its own
spent budget by fetching enough other documents (issue 11.12). Now a budget
is forgotten only when every other one whose slot the new budget could take
has spent at least as much: pushing out a spent budget costs as many fetches
again on each of those. Processes take turns on the table with a POSIX
record lock, which the kernel releases if a worker dies holding it.

The client address is the connection's peer. Behind a reverse proxy listed in
``trusted_proxies``, it is the right-most address in X-Forwarded-For that is
not itself a trusted proxy (the left-most ones are whatever the client chose
to send). Addresses in ``exempt`` are never limited.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import math
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache

from feedsvc.config import PoliteConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longest X-Forwarded-For value read; a longer one is not believed.
MAX_FORWARDED = 2048
#: What a request costs: a 304 Not Modified, and any other answer.
COST_NOT_MODIFIED = 1
COST_FULL = 2
#: Slots a budget may live in, from the one its hash names.
PROBES = 16


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


def capacity(config: PoliteConfig) -> int:
    """The budget of one (address, path) per window, in cost units: a 304 costs
    `COST_NOT_MODIFIED`, any other answer `COST_FULL` (the audience report judges
    clients by the same floor, `web.audience.report`)."""
    return COST_FULL * config.max_requests


class Limiter:
    """The budgets: (address, path) → times of recent requests, shared by forked processes."""

    def __init__(self, config: PoliteConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_requests = config.max_requests
        #: Budget of one (address, path) per window, in cost units.
        self.capacity = capacity(config)
        self.window = float(config.window_seconds)
        self.max_clients = config.max_clients
        self.clock = clock
        self.exempt = AddressSet(networks(config.exempt))
        self.trusted = AddressSet(networks(config.trusted_proxies))
        self._table = _Table(config.max_clients, self.capacity)
        self._lock = threading.Lock()

    def client(self, remote_addr: str, forwarded_for: str | None) -> str | None:
        """The client to count a request against, or None when it is exempt."""
        addr = client_address(remote_addr, forwarded_for, self.trusted) if self.trusted.networks else remote_addr
        return None if self.exempt.contains(addr) else addr

    def retry_after(self, client: str, path: str, cost: int = COST_NOT_MODIFIED) -> int:
        """Seconds to wait before a request of `cost` fits; 0 when it fits now (nothing is spent)."""
        return self._use(client, path, cost, spend=False)

    def spend(self, client: str, path: str, cost: int) -> int:
        """Spend `cost` if it fits and return 0; else spend nothing and return the seconds to wait."""
        return self._use(client, path, cost, spend=True)

    def _use(self, client: str, path: str, cost: int, *, spend: bool) -> int:
        key = _key(client, path)
        cost = min(cost, self.capacity)
        with self._lock, self._table.locked():
            now = self.clock()
            slot = self._table.find(key, now, self.window, create=spend)
            if slot < 0:
                return 0
            wait = self._table.wait(slot, now, self.window, cost, self.capacity)
            if not wait and spend:
                self._table.append(slot, now, cost, self.capacity)
            return wait

    def __bool__(self) -> bool:
        return True  # not "empty" when no budget is tracked yet (__len__ is 0)

    def __len__(self) -> int:
        """Budgets tracked now (for tests and /healthz-style checks)."""
        with self._lock, self._table.locked():
            return self._table.used_slots()


def _key(client: str, path: str) -> int:
    digest = hashlib.blake2b(f"{client}\x00{path}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot


class _Table:
    """Fixed-size open-addressing table of sliding logs in a shared mapping.

    Per slot: the key (uint64, 0 when free), the last use (float64), the ring
    start and length (uint32 each), and ``capacity`` request times (float64),
    one per cost unit. Callers hold `locked()` around every use.
    """

    def __init__(self, slots: int, capacity: int) -> None:
        self.slots = slots
        self.capacity = capacity
        size = slots * (8 + 8 + 8 + 8 * capacity)
        # MAP_SHARED anonymous memory: forked workers see one table.
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        view = memoryview(self._map)
        a, b, c = slots * 8, slots * 16, slots * 24
        self.keys = view[:a].cast("Q")
        self.used = view[a:b].cast("d")
        self.ring = view[b:c].cast("I")  # start, length pairs
        self.times = view[c:].cast("d")
        self._lockfile = _LockFile()

    def locked(self) -> _LockFile:
        return self._lockfile

    def find(self, key: int, now: float, window: float, *, create: bool) -> int:
        """The slot holding `key`; with `create`, one made for it (see `_victim`); else -1."""
        keys, slots = self.keys, self.slots
        start = key % slots
        probes = min(PROBES, slots)
        for i in range(probes):
            slot = (start + i) % slots
            if keys[slot] == key:
                self.used[slot] = now
                return slot
        if not create:
            return -1
        victim = self._victim(start, probes, now - window)
        keys[victim] = key
        self.used[victim] = now
        self.ring[2 * victim] = 0
        self.ring[2 * victim + 1] = 0
        return victim

    def _victim(self, start: int, probes: int, horizon: float) -> int:
        """Of the slots a new key may use, the one whose budget is cheapest to forget.

        A free slot, or one whose log is empty once the requests before
        `horizon` are dropped, costs nothing. Otherwise the least spent
        budget goes, the least recently used of equals: forgetting a budget
        hands its client back what it spent, so the most spent ones (a client
        told to wait) are kept longest, and no one can push a budget out by
        fetching many other documents, each of which spends less.
        """
        keys, used, slots = self.keys, self.used, self.slots
        victim, victim_rank = start, (math.inf, math.inf)
        for i in range(probes):
            slot = (start + i) % slots
            if keys[slot] == 0:
                return slot
            live = self._drop_expired(slot, horizon)
            if live == 0:
                return slot
            rank = (live, used[slot])
            if rank < victim_rank:
                victim, victim_rank = slot, rank
        return victim

    def _drop_expired(self, slot: int, horizon: float) -> int:
        """Drop the slot's request times at or before `horizon`; how many are left.

        The log is in time order, so this stops at the first time kept: each
        time is dropped once, whoever looks.
        """
        ring, times, capacity = self.ring, self.times, self.capacity
        base = slot * capacity
        start, length = ring[2 * slot], ring[2 * slot + 1]
        while length and times[base + start] <= horizon:
            start = (start + 1) % capacity
            length -= 1
        ring[2 * slot], ring[2 * slot + 1] = start, length
        return length

    def wait(self, slot: int, now: float, window: float, cost: int, capacity: int) -> int:
        """Seconds until `cost` more fits in the slot's window (0: now); drops expired times."""
        length = self._drop_expired(slot, now - window)
        over = length + cost - capacity
        if over <= 0:
            return 0
        # It fits once the `over` oldest entries have left the window.
        start = self.ring[2 * slot]
        oldest_needed = self.times[slot * capacity + (start + over - 1) % capacity]
        return max(1, math.ceil(oldest_needed + window - now))

    def append(self, slot: int, now: float, cost: int, capacity: int) -> None:
        ring, times, base = self.ring, self.times, slot * capacity
        start, length = ring[2 * slot], ring[2 * slot + 1]
        for _ in range(cost):
            times[base + (start + length) % capacity] = now
            length += 1
        ring[2 * slot + 1] = length

    def used_slots(self) -> int:
        return sum(1 for k in self.keys if k)


class _LockFile:
    """An exclusive fcntl record lock: one process at a time, released by the kernel if it dies.

    The file has no name in any folder (a memfd, else an unlinked temporary
    file). Record locks belong to a process, not a descriptor, so forked
    workers sharing this descriptor still exclude each other; threads of one
    process must serialise among themselves first (the Limiter's lock does).
    """

    def __init__(self) -> None:
        try:
            self.fd = os.memfd_create("feedsvc-polite", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            with tempfile.TemporaryFile() as handle:  # unlinked at once
                self.fd = os.dup(handle.fileno())

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def __del__(self) -> None:
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)
