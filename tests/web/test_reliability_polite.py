"""Issue 11.12: a client cannot clear its own polite-polling budget by crowding the table.

The budgets live in a fixed table of `max_clients` slots (real shared memory,
as `feedsvc serve` uses it; only the clock is a fake one, so windows are
exact). When a new budget needs a slot, the one evicted is the one with the
least spent in the window (an empty or expired log first, then the least
recently used among equals), so fetching other documents, which spends little
on each, never pushes out a budget the client has spent.
"""

from __future__ import annotations

from test_polite import Clock, limiter

from feedsvc.web.polite import COST_FULL, COST_NOT_MODIFIED, PROBES, Limiter

FEED = "feeds/all.atom"


def exhaust(lim: Limiter, client: str, path: str = FEED) -> int:
    """Spend `client`'s whole budget on `path`; the wait it is then told."""
    while (wait := lim.spend(client, path, COST_FULL)) == 0:
        pass
    return wait


def test_fetching_max_clients_other_documents_does_not_reset_a_spent_budget() -> None:
    """The attack of issue 11.12, at the default budget: spend, then fetch many other documents."""
    clock = Clock()
    lim = limiter(clock, max_clients=50)
    wait = exhaust(lim, "192.0.2.1")
    assert wait == 600
    for i in range(3 * 50):  # every other topic feed there is, and then some
        clock.now += 0.01
        assert lim.spend("192.0.2.1", f"feeds/topics/t{i}.atom", COST_FULL) == 0
    assert len(lim) == 50  # the table is full: entries were evicted, just not this one
    assert lim.spend("192.0.2.1", FEED, COST_FULL) > 0
    assert lim.retry_after("192.0.2.1", FEED) > 0


def test_many_other_clients_do_not_reset_a_spent_budget_either() -> None:
    clock = Clock()
    lim = limiter(clock, max_clients=40, max_requests=5)
    exhaust(lim, "192.0.2.1")
    for i in range(2_000):  # a crowd of addresses each fetching once, or polling cheaply
        clock.now += 0.01
        lim.spend(f"10.0.{i // 256}.{i % 256}", FEED, COST_FULL if i % 2 else COST_NOT_MODIFIED)
    assert lim.spend("192.0.2.1", FEED, COST_NOT_MODIFIED) > 0


def test_the_evicted_budget_is_the_one_least_spent() -> None:
    clock = Clock()
    lim = limiter(clock, max_clients=PROBES, max_requests=PROBES // 2)  # every slot is a candidate for every key
    spent = {f"client-{n}": n for n in range(1, PROBES + 1)}  # client-n has spent n units of PROBES
    for client, units in spent.items():
        for _ in range(units):
            assert lim.spend(client, FEED, COST_NOT_MODIFIED) == 0
    clock.now += 1
    assert lim.spend("newcomer", FEED, COST_FULL) == 0
    # client-1 (one unit spent) made room; every other budget is as it was.
    assert lim.retry_after("client-1", FEED, PROBES) == 0
    for client, units in spent.items():
        if client != "client-1":
            assert lim.retry_after(client, FEED, PROBES - units + 1) > 0, client


def test_an_expired_budget_is_evicted_before_a_live_one() -> None:
    clock = Clock()
    lim = limiter(clock, max_clients=PROBES, max_requests=2, window_seconds=100)
    exhaust(lim, "old")  # spent at 1000, out of the window at 1100
    clock.now += 50
    for n in range(PROBES - 1):
        assert lim.spend(f"recent-{n}", FEED, COST_NOT_MODIFIED) == 0
    clock.now += 60  # "old" has expired: it holds nothing any more, the others hold one unit each
    assert lim.spend("newcomer", FEED, COST_NOT_MODIFIED) == 0
    for n in range(PROBES - 1):
        assert lim.retry_after(f"recent-{n}", FEED, 4) > 0  # still counted: 1 unit + 4 > 4


def test_a_full_table_still_serves_and_limits_newcomers() -> None:
    """Eviction never refuses a new client: the table is full of spent budgets; a newcomer is served, then limited."""
    clock = Clock()
    lim = limiter(clock, max_clients=PROBES, max_requests=1)
    for n in range(PROBES):
        exhaust(lim, f"c{n}")
    assert lim.spend("newcomer", FEED, COST_FULL) == 0
    assert lim.spend("newcomer", FEED, COST_FULL) > 0
