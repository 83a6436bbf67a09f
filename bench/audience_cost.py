"""What the audience report costs the server: 304s per second with `audience.enabled` off and on, in one run.

For each setup, two `feedsvc serve --no-build` over its output folder (built
already by the serving figures, else built here), the same but for
`audience.enabled`, run side by side; wrk asks each for the feed under load
with its ETag, in pairs of short runs (off then on, then on then off, …;
``--duration`` cut in three, three pairs per ``--runs``), so both see the
same machine and its drift. The figure is the median of the
pairs' ratios, on / off (issue 16: at least 0.98). On a machine others use,
throughput moves by more than that from one run to the next; the CPU every
server process used per request answered (utime+stime, wrk's not included)
moves far less, and its ratio (off / on) says the same from the other side.
Then the same 304 through the app in this process, off and on in turn
(best of several rounds): what counting a poll adds, in µs, and that as a
share of the server CPU a 304 takes (target: at most 2 %). Two kinds of
load for wrk:

- one client: every request the same Feedly User-Agent (one tally per
  minute per worker, as a real poller's requests are);
- a new User-Agent on every request (a wrk script): each is a new key, so
  every worker reaches its bound of keys within a second and every write
  folds thousands of User-Agents, the worst a client can make it.

The audience-on server keeps its store beside the output folder, as a user's
would; both use the setup's other settings as they are.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from builds import Workspace, log
from report import Results
from serving import (
    WRK_HINT,
    Setup,
    cpu_seconds,
    etag_of,
    expect,
    feedsvc_serve,
    free_port,
    make_setup,
    pick_feed,
    prepare,
    wrk,
)  # fmt: skip

from feedsvc.config import load_config
from feedsvc.web.app import create_app
from feedsvc.web.audience.store import store_path

FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 462 subscribers; )"
#: wrk runs of each `runs` (its `duration` cut in as many), off and on alternately.
PAIRS_PER_RUN = 3
#: Requests of each in-process round: twice what a worker holds between writes (`MAX_PENDING`).
REQUESTS = 20_000
#: A wrk script giving every request a User-Agent of its own.
NEW_AGENT_EACH_REQUEST = """
request = function()
  wrk.headers["User-Agent"] = "Reader/" .. math.random(1, 1000000000) .. " (+https://reader.example/bench)"
  return wrk.format(nil)
end
"""


def audience_costs(ws: Workspace, setups: list[str], runs: int, duration: float, results: Results) -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_HINT)
    for name in setups:
        root = ws.root / f"serve-{name}"
        out = ws.out if name == "defaults" else root / "public"  # as serving.serve_setup has them
        main = make_setup(name, ws, root, ws.records, out, results)
        if not (out / "index.html").is_file():  # --only audience: nothing built yet
            prepare(main, runs, one_record=False)
        measure(main, root / "audience", runs, duration)


def measure(main: Setup, root: Path, runs: int, duration: float) -> None:
    """wrk 304s against audience off and on in pairs, then in process; rows ``audience_…`` of `main`'s setup."""
    path, body = pick_feed(main.out)
    script = root / "new-agent.lua"
    root.mkdir(parents=True, exist_ok=True)
    script.write_text(NEW_AGENT_EACH_REQUEST, encoding="utf-8")
    off, on = (_variant(main, root / kind, enabled) for kind, enabled in (("off", False), ("on", True)))
    with (
        feedsvc_serve(off, "--no-build") as (off_port, off_proc, _),
        feedsvc_serve(on, "--no-build") as (on_port, on_proc, _),
    ):
        etag = etag_of(off_port, path)
        assert etag == etag_of(on_port, path), "both servers serve the same files"
        for port in (off_port, on_port):
            expect(port, path, etag, body)
        servers = {"off": (off_port, off_proc.pid), "on": (on_port, on_proc.pid)}
        for kind, extra in (("", ("-H", f"User-Agent: {FEEDLY}")), ("agents_", ("-s", str(script)))):
            wrk_pairs(main, servers, path, etag, kind, extra, runs, duration)
        in_process_rows(main, off.config, on.config, path, etag)
        time.sleep(1.5 * _flush_seconds(on))  # every worker has written what it counted
    stored = _stored(on)
    main.results.note(main.id("audience_304_ratio"), f"{path}; the median of {PAIRS_PER_RUN * runs} pairs of runs, off "
                      f"and on in turn first; the store beside the output folder: {stored}")  # fmt: skip


def wrk_pairs(
    main: Setup, servers: dict[str, tuple[int, int]], path: str, etag: str, kind: str, extra: tuple[str, ...],
    runs: int, duration: float,
) -> None:  # fmt: skip
    """Pairs of short wrk runs, off and on in turn first: drift on a shared machine hits both alike.

    `runs` runs of `duration` seconds each way, cut into `PAIRS_PER_RUN` pairs:
    the shorter the runs, the closer the two of a pair are in time.
    """
    pairs, seconds = PAIRS_PER_RUN * runs, max(1.0, duration / PAIRS_PER_RUN)
    for run in range(pairs):
        rps = {}
        for label in ("off", "on") if run % 2 == 0 else ("on", "off"):
            port, group = servers[label]
            before = cpu_seconds(group)
            load = wrk(port, path, seconds, etag, *extra)
            cpu_us = 1e6 * (cpu_seconds(group) - before) / max(1, load.requests)
            rps[label] = load.rps
            main.add(f"audience_{kind}{label}_304_rps", load.rps, load.note())
            main.add(f"audience_{kind}{label}_304_cpu", cpu_us, "CPU of every server process (utime+stime) "
                     "per request answered, wrk's own not included")  # fmt: skip
            what = f"audience {label}{', a new User-Agent each' if kind else ''} {run + 1}/{pairs}"
            log(f"{main.name}: wrk 304s, {what}: {load.rps:,.0f} req/s, p99 {load.p99_ms:.2f} ms, "
                f"{cpu_us:.1f} µs CPU a request")  # fmt: skip
        main.add(f"audience_{kind}304_ratio", rps["on"] / rps["off"])
    main.results.ratio(main.id(f"audience_{kind}cpu_ratio"), main.id(f"audience_{kind}off_304_cpu"),
                       main.id(f"audience_{kind}on_304_cpu"))  # fmt: skip


def in_process_rows(main: Setup, off_config: Path, on_config: Path, path: str, etag: str) -> None:
    """What counting a poll adds to a 304 in the app, in µs and as a share of the server CPU a 304 takes."""
    for kind, fresh in (("", False), ("agents_", True)):
        base, added = in_process(off_config, on_config, path, etag, fresh_agents=fresh)
        main.add(f"audience_{kind}app_off_us", base, f"best of rounds of {REQUESTS:,} 304s through the app in process")
        how = "; a new User-Agent each request, the worker's write of them timed too" if fresh else ""
        main.add(f"audience_{kind}app_added_us", added, f"the same with audience on, less the above{how}")
        cpu = main.results.median(main.id(f"audience_{kind}off_304_cpu"))
        if cpu:
            share = f"{added:.2f} µs of the {cpu:.0f} µs of server CPU a 304 takes"
            main.add(f"audience_{kind}app_share", 100 * added / cpu, share)


def in_process(
    off_config: Path, on_config: Path, path: str, etag: str, *, fresh_agents: bool = False, rounds: int = 7
) -> tuple[float, float]:
    """µs a 304 takes through the app with the audience off, and what it adds on: best of `rounds`, in turn.

    The app as the server makes it (`create_app`), called as a WSGI server
    calls it, in this process: what a poll costs the worker, free of the
    noise a shared machine puts into requests per second. With
    `fresh_agents`, every request has a User-Agent of its own and the
    recorder's write of what it counted is timed with the requests.
    """
    apps = {kind: create_app(load_config(config)) for kind, config in (("off", off_config), ("on", on_config))}
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_IF_NONE_MATCH": etag,
        "HTTP_USER_AGENT": FEEDLY, "HTTP_ACCEPT_ENCODING": "identity", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.version": (1, 0),
    }  # fmt: skip
    agents = [f"Reader/{i}.{r} (+https://reader.example/bench)" for r in range(rounds) for i in range(REQUESTS)]
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        statuses.append(status)

    best = {"off": float("inf"), "on": float("inf")}
    for round_ in range(rounds):
        for kind in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            app, fresh = apps[kind].wsgi_app, agents[round_ * REQUESTS : (round_ + 1) * REQUESTS]
            started = time.perf_counter()
            for i in range(REQUESTS):
                request = dict(environ)
                if fresh_agents:
                    request["HTTP_USER_AGENT"] = fresh[i]
                for _chunk in app(request, start_response):
                    pass
            if fresh_agents and kind == "on":
                apps[kind].extensions["feedsvc.audience"].recorder.flush()
            best[kind] = min(best[kind], 1e6 * (time.perf_counter() - started) / REQUESTS)
    apps["on"].extensions["feedsvc.audience"].recorder.close()
    assert set(statuses) == {"304 NOT MODIFIED"}, set(statuses)
    return best["off"], best["on"] - best["off"]


def _variant(main: Setup, root: Path, enabled: bool) -> Setup:
    data = json.loads(json.dumps(main.data))
    audience = dict(data.get("audience") or {})
    audience["enabled"] = enabled
    data["audience"] = audience
    return dataclasses.replace(main, root=root, data=data, port=free_port(), pids=set(), leader=0, log_offset=0)


def _flush_seconds(setup: Setup) -> float:
    return float(setup.data.get("audience", {}).get("flush_seconds", 10.0))  # type: ignore[union-attr]


def _stored(setup: Setup) -> str:
    """How big the store grew, and what it holds."""
    path = store_path(setup.out)
    if not path.is_file():
        return "none written"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows, polls = db.execute("SELECT count(*), coalesce(sum(polls), 0) FROM tallies").fetchone()
        (dropped,) = db.execute("SELECT coalesce(sum(polls), 0) FROM skipped WHERE kind = 'dropped'").fetchone()
    finally:
        db.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file()) / 1e6
    return f"{rows:,} rows, {polls:,} polls kept, {dropped:,} dropped (a worker's bound of keys), {size:.1f} MB"
