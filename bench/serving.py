"""Serving benchmarks: issue 10's targets for `feedsvc serve`, beside nginx on the same files.

Each *setup* is one configuration: ``shipped`` is the repository's config.yaml
(archives on) and ``defaults`` every setting at its default (archives off, as
the build figures); only records_dir, output_dir and the address differ. For
each setup, in this order:

1. `feedsvc build` (timed), then a one-record change and `feedsvc build`
   again, ``runs`` times (the one-record build the change latency is judged
   against), so the output folder and its cache are current;
2. nginx alone on that output folder (deploy/nginx-static.conf through
   deploy/render.py): wrk 200s and 304s on the feed under load;
3. `feedsvc serve` launched; *ready* is launch → /healthz answering 200
   from every worker (distinct pids); its start-up build must parse nothing;
4. idle: after a few requests to settle, CPU seconds (utime+stime, plus the
   cutime+cstime of reaped children such as build processes) of every process
   in the server's process group over ``idle`` seconds, as % of one core; then
   the total PSS (/proc/<pid>/smaps_rollup) of every process in that group:
   the granian main process (`feedsvc serve` itself), its workers (the pids
   /healthz reports), the builder (the main process's other child, niced) and
   a build child of the builder if one is running;
5. wrk 200s and 304s on the feed under load, then both again while a thread
   rewrites a few hundred record files (none of them in the feed under load)
   every second, so the builder rebuilds during the run; PSS is sampled twice
   a second during those runs (peak);
6. nginx as a caching proxy in front of the server (deploy/nginx-proxy.conf);
7. slow clients: 100 connections held open (40 sending a request head a byte
   every 0.5 s, 40 idle, 20 POSTs announcing 100 MB and sending a byte a
   second; any the server closes reopened) while 200 sequential GETs of
   /feeds/all.atom (a new connection each) are timed: their p99, within ~15 s;
8. change latency: the newest record of /feeds/all.atom gets a new title;
   the time from the write until the served /feeds/all.atom shows it
   (polled every 20 ms), less the one-record `feedsvc build` of step 1;
9. the same server on a tenth of the records (a corpus of its own, built
   first): idle CPU and PSS measured as in step 4, for the PSS ratio.

Everything listens on 127.0.0.1 (free ports) and wrk only ever targets it;
every load run is bounded by --duration and every process is stopped (its
whole process group) in a `finally`. The feed under load is the subscription
RSS feed nearest 100 KB, asked for with ``Accept-Encoding: identity`` (full
200s) and with its ETag in If-None-Match (304s), 32 connections, 2 threads.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import yaml
from builds import Workspace, log
from report import SETUPS, Results

from feedsvc.synth import file_name, write_corpus

ROOT = Path(__file__).resolve().parent.parent
FEEDSVC = Path(sys.executable).with_name("feedsvc")
WRK_HINT = "wrk is not installed: run `sudo scripts/setup --system` (Debian/Ubuntu: apt-get install wrk)"
SERVE_START_TIMEOUT = 600.0
BUILD_TIMEOUT = 3_600
STOP_TIMEOUT = 20.0
SETTLE_TIMEOUT = 300.0
CHANGE_TIMEOUT = 120.0
CONNECTIONS, THREADS = 32, 2
TARGET_FEED_BYTES = 100_000
#: Record files rewritten every second while the rebuild runs go.
REBUILD_FILES = 300
CLK_TCK = os.sysconf("SC_CLK_TCK")
_SUMMARY = re.compile(r"feedsvc\.(builder|server): (\d+) records read \((\d+) parsed")


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("feedsvc_deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_render()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# -- processes: the group, its memory and CPU ------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def group(pgid: int) -> dict[int, int]:
    """Every live process of process group `pgid`: pid → parent pid."""
    members = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # fields[0] state, [1] ppid, [2] pgrp
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members[int(entry.name)] = int(fields[1])
    return members


def cpu_seconds(pgid: int) -> float:
    """utime+stime of every process in the group, plus cutime+cstime (children it reaped)."""
    ticks = 0
    for pid in group(pgid):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLK_TCK


def pss_kb(pid: int) -> int:
    try:
        m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


@dataclass(frozen=True)
class Memory:
    total_mb: float
    parts: dict[str, float]  # role → MB

    def note(self) -> str:
        return ", ".join(f"{role} {mb:,.0f}" for role, mb in self.parts.items()) + " MB"


def memory(master: int, workers: set[int]) -> Memory:
    """Total PSS of the server's process group, and how it splits by role."""
    parts: dict[str, float] = {}
    members = group(master)
    for pid, parent in members.items():
        if pid == master:
            role = "granian main"
        elif pid in workers:
            role = "workers"
        elif parent == master:
            role = "builder"
        else:
            role = "build child"
        parts[role] = parts.get(role, 0.0) + pss_kb(pid) / 1024
    order = ("granian main", "workers", "builder", "build child")
    return Memory(sum(parts.values()), {r: parts[r] for r in order if r in parts})


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the leader, then SIGKILL to whatever of its process group is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(STOP_TIMEOUT)


# -- one setup: its config and folders --------------------------------------------------------------


@dataclass
class Setup:
    name: str  # "shipped" or "defaults"
    root: Path
    records: Path
    out: Path
    data: dict[str, object]  # the config, minus the port
    results: Results
    workers: int = 2
    log_offset: int = 0
    pids: set[int] = field(default_factory=set)
    port: int = field(default_factory=free_port)
    base_url_note: str = ""
    #: The running server's pid (its process group), 0 when none runs.
    leader: int = 0

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def errlog(self) -> Path:
        return self.root / "serve.err"

    def id(self, metric: str) -> str:
        return f"{self.name}_{metric}"

    def add(self, metric: str, value: float, note: str = "") -> None:
        self.results.add(self.id(metric), value, note)

    def write_config(self) -> None:
        """The config file, on this setup's port (one port for its builds and its server).

        Without a site.base_url `feedsvc serve` links to the address it listens
        on and `feedsvc build` to http://127.0.0.1:8000/, so a build before a
        server on another port would leave every document to render again:
        the address served is then written in, as the server would use it.
        """
        data = json.loads(json.dumps(self.data))  # a deep copy
        server = dict(data.get("server") or {})  # type: ignore[call-overload]
        server.update(host="127.0.0.1", port=self.port)
        data["server"] = server
        site = dict(data.get("site") or {})  # type: ignore[call-overload]
        if not site.get("base_url"):
            site["base_url"] = f"http://127.0.0.1:{self.port}/"
            self.base_url_note = f"site.base_url unset: {site['base_url']} (the address served)"
        data["site"] = site
        self.workers = int(server.get("workers", 2))
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def make_setup(name: str, ws: Workspace, root: Path, records: Path, out: Path, results: Results) -> Setup:
    if name == "shipped":
        data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    else:
        # The build figures' configuration: every setting at its default
        # (except that the synthetic corpus's unpublished half is published).
        data = yaml.safe_load(ws.config.read_text(encoding="utf-8"))
    data["records_dir"] = str(records)
    data["output_dir"] = str(out)
    return Setup(name, root, records, out, data, results)


# -- feedsvc build ----------------------------------------------------------------------------------------


def feedsvc_build(setup: Setup) -> tuple[float, str]:
    """`feedsvc build` as a user runs it: wall-clock seconds and its summary line."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(FEEDSVC), "--config", str(setup.config), "build"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL, cwd=setup.root,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"feedsvc build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "records read" in line]
    return seconds, lines[-1].strip() if lines else ""


def build_seconds(summary: str) -> float:
    m = re.search(r" in ([\d.]+)s ", summary)
    return float(m.group(1)) if m else float("nan")


def retitle(path: Path, marker: str) -> str:
    """Give the record at `path` a title starting with `marker`; its original text."""
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(r'^title: "', f'title: "{marker} ', text, count=1, flags=re.MULTILINE)
    assert n == 1, path
    path.write_text(new, encoding="utf-8")
    return text


def newest_record(out: Path, records: Path) -> Path:
    """The record file of /feeds/all.atom's first entry (synth URLs end with -<index>)."""
    atom = (out / "feeds" / "all.atom").read_text(encoding="utf-8")
    entry = atom[atom.index("<entry") :]
    m = re.search(r'<link href="[^"]*-(\d+)"/>', entry)
    assert m, "no entry link in /feeds/all.atom"
    path = records / file_name(int(m.group(1)), 1)
    assert path.exists(), path
    return path


# -- feedsvc serve ---------------------------------------------------------------------------------------


@contextmanager
def feedsvc_serve(setup: Setup, *args: str) -> Iterator[tuple[int, subprocess.Popen[bytes], float]]:
    """`feedsvc serve [args]` on a free port: (port, process, seconds until every worker answered 200)."""
    port = setup.port
    setup.write_config()
    err = open(setup.errlog, "wb")
    started = time.monotonic()
    with err:
        proc = subprocess.Popen(
            [str(FEEDSVC), "--config", str(setup.config), "serve", *args],
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=setup.root, start_new_session=True,
        )  # fmt: skip
    try:
        setup.leader = proc.pid
        setup.pids = wait_for_workers(proc, port, setup)
        seconds = time.monotonic() - started
        setup.log_offset = 0
        log(f"{setup.name}: feedsvc serve answering from {len(setup.pids)} workers after {seconds:.2f}s")
        yield port, proc, seconds
    finally:
        stop_group(proc)


def wait_for_workers(proc: subprocess.Popen[bytes], port: int, setup: Setup) -> set[int]:
    """Poll /healthz (a new connection each time) until every worker has answered 200."""
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    pids: set[int] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = setup.errlog.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"feedsvc serve exited with {proc.returncode}:\n{tail}")
        try:
            r = get(port, "/healthz", timeout=5)
        except OSError:
            time.sleep(0.02)
            continue
        if r.status == 200:
            pids.add(int(json.loads(r.body)["pid"]))
            if len(pids) >= setup.workers:
                return pids
        else:
            time.sleep(0.02)
    raise RuntimeError(f"feedsvc serve did not answer from {setup.workers} workers in {SERVE_START_TIMEOUT:.0f}s")


def summaries(setup: Setup) -> list[tuple[str, int, int]]:
    """(who, records, parsed) of every build summary logged since the last call."""
    with open(setup.errlog, "rb") as f:
        f.seek(setup.log_offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    setup.log_offset += end
    text = data[:end].decode("utf-8", "replace")
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in _SUMMARY.finditer(text)]


def settle(setup: Setup, quiet: float = 3.0) -> int:
    """Wait until the builder has built what changed (a build that parsed records) and then
    `quiet` seconds passed with no other such build and no build process running (a build
    started before the last one finished would hold up what is measured next); how many
    such builds there were."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    seen, last = 0, 0.0
    while time.monotonic() < deadline:
        parsed = sum(1 for who, _, n in summaries(setup) if who == "builder" and n > 0)
        if parsed:
            seen, last = seen + parsed, time.monotonic()
        members = group(setup.leader) if setup.leader else {}
        if any(pid != setup.leader and parent != setup.leader for pid, parent in members.items()):
            last = time.monotonic()  # a build child of the builder is running
        if seen and time.monotonic() - last >= quiet:
            return seen
        time.sleep(0.2)
    raise RuntimeError(f"{setup.name}: the builder did not settle in {SETTLE_TIMEOUT:.0f}s")


def warm(port: int, path: str, workers: set[int]) -> None:
    """A few requests of each kind, so every worker has answered before anything is measured."""
    for _ in range(4 * max(1, len(workers))):
        get(port, "/healthz")
        get(port, path, {"Accept-Encoding": "identity"})
        get(port, path, {"Accept-Encoding": "gzip"})


def idle(setup: Setup, master: int, seconds: float) -> tuple[float, Memory]:
    """CPU (% of one core) of the whole server over `seconds` with nothing changing, then its PSS."""
    before, started = cpu_seconds(master), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(master) - before, time.monotonic() - started
    return 100 * used / elapsed, memory(master, setup.pids)


# -- nginx ----------------------------------------------------------------------------------------


@contextmanager
def nginx(prefix_dir: Path, snippet: str) -> Iterator[int]:
    binary = render.find_nginx()
    if binary is None:
        raise RuntimeError(f"nginx is not installed: {render.INSTALL_HINT}")
    prefix = render.Prefix(prefix_dir)
    user = "root" if os.geteuid() == 0 else None  # nobody could not enter a 0700 temporary folder
    render.write_prefix(prefix, render.main_conf(snippet, prefix, workers="auto", user=user))
    port = int(snippet.split("listen 127.0.0.1:", 1)[1].split(";", 1)[0])
    with open(prefix_dir / "nginx.out", "wb") as out:
        proc = subprocess.Popen(
            render.command(prefix, binary),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                output = (prefix_dir / "nginx.out").read_text() + prefix.error_log.read_text()
                raise RuntimeError(f"nginx exited: {output}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        stop_group(proc)


# -- wrk ----------------------------------------------------------------------------------------------


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Load:
    rps: float
    p99_ms: float
    requests: int
    bad: int
    errors: int

    def note(self) -> str:
        return (
            f"{self.requests:,} requests"
            + (f"; {self.bad:,} bad statuses" if self.bad else "")
            + (f"; {self.errors:,} socket errors" if self.errors else "")
        )


def wrk(port: int, path: str, duration: float, etag: str | None, *extra: str) -> Load:
    """wrk on `path` (its ETag in If-None-Match when given); `extra` are more wrk options (-H, -s)."""
    args = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration:.0f}s", "--latency", "--timeout", "5s",
        "-H", "Accept-Encoding: identity", *extra,
    ]  # fmt: skip
    if etag:
        args += ["-H", f"If-None-Match: {etag}"]
    url = f"http://127.0.0.1:{port}{path}"
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return Load(rps, p99, requests, int(bad.group(1)) if bad else 0, sum(map(int, sock.groups())) if sock else 0)


def expect(port: int, path: str, etag: str | None, body: bytes) -> None:
    """The request wrk will repeat gives what it should: the feed's bytes, or a 304."""
    headers = {"Accept-Encoding": "identity"} | ({"If-None-Match": etag} if etag else {})
    r = get(port, path, headers)
    if etag:
        assert r.status == 304, f"port {port}: expected 304 for {path}, got {r.status}"
    else:
        assert r.status == 200 and r.body == body, f"port {port}: {path} is not the built file ({r.status})"


def etag_of(port: int, path: str) -> str:
    etag = get(port, path, {"Accept-Encoding": "identity"}).headers.get("etag")
    assert etag, f"port {port}: no ETag for {path}"
    return etag


def load_runs(setup: Setup, name: str, port: int, path: str, body: bytes, runs: int, duration: float) -> None:
    etag = etag_of(port, path)
    for code, tag in (("200", None), ("304", etag)):
        expect(port, path, tag, body)
        for run in range(runs):
            load = wrk(port, path, duration, tag)
            setup.add(f"{name}_{code}_rps", load.rps, load.note())
            setup.add(f"{name}_{code}_p99", load.p99_ms)
            log(f"{setup.name}: wrk {name} {code}s {run + 1}/{runs}: {load.rps:,.0f} req/s, p99 {load.p99_ms:.2f} ms")


class Rewriter(threading.Thread):
    """Rewrites `paths` (a new title each round) once a second until stopped; samples PSS meanwhile."""

    def __init__(self, paths: list[Path], master: int, workers: set[int]) -> None:
        super().__init__(daemon=True)
        self.paths, self.master, self.workers = paths, master, workers
        self.originals = {p: p.read_text(encoding="utf-8") for p in paths}
        self.stopping = threading.Event()
        self.rounds = 0
        self.peak = Memory(0.0, {})
        #: Samples taken, and those that found a build process running.
        self.samples = self.building = 0

    def run(self) -> None:
        next_round = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_round:
                self.rounds += 1
                for p, text in self.originals.items():
                    p.write_text(text.replace('title: "', f'title: "Rebuild {self.rounds}: ', 1), encoding="utf-8")
                next_round = now + 1.0
            m = memory(self.master, self.workers)
            if m.total_mb > self.peak.total_mb:
                self.peak = m
            self.samples += 1
            self.building += "build child" in m.parts
            self.stopping.wait(0.5)

    def restore(self) -> None:
        for p, text in self.originals.items():
            p.write_text(text, encoding="utf-8")


def rebuild_runs(setup: Setup, port: int, master: int, path: str, body: bytes, runs: int, duration: float) -> None:
    """wrk 200s and 304s while a few hundred records change every second (none in the feed under load)."""
    candidates = sorted(setup.records.iterdir())
    step = max(1, len(candidates) // (3 * REBUILD_FILES))
    chosen = []
    for p in candidates[::step]:
        m = re.search(r'^webUrl: "([^"]+)"', p.read_text(encoding="utf-8"), re.MULTILINE)
        if m and m.group(1).encode() not in body:
            chosen.append(p)
        if len(chosen) >= min(REBUILD_FILES, len(candidates) // 3):
            break
    etag = etag_of(port, path)
    summaries(setup)  # only builds from here on count
    rewriter = Rewriter(chosen, master, setup.pids)
    builds, parsed = 0, 0
    rewriter.start()
    try:
        # Until the first rebuild is done: from then on the builder is always busy or about to be.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not builds and time.monotonic() < deadline:
            time.sleep(0.1)
            done = [n for who, _, n in summaries(setup) if who == "builder" and n > 0]
            builds, parsed = builds + len(done), parsed + sum(done)
        for code, tag in (("200", None), ("304", etag)):
            for run in range(runs):
                samples, building = rewriter.samples, rewriter.building
                load = wrk(port, path, duration, tag)
                done = [n for who, _, n in summaries(setup) if who == "builder" and n > 0]
                builds, parsed = builds + len(done), parsed + sum(done)
                share = 100 * (rewriter.building - building) / max(1, rewriter.samples - samples)
                setup.add(f"rebuild_{code}_rps", load.rps, load.note() + f"; a build running in {share:.0f}% of "
                          f"0.5 s samples, {len(done)} builds finished meanwhile")  # fmt: skip
                setup.add(f"rebuild_{code}_p99", load.p99_ms)
                log(
                    f"{setup.name}: wrk while rebuilding {code}s {run + 1}/{runs}: {load.rps:,.0f} req/s, "
                    f"p99 {load.p99_ms:.2f} ms, {len(done)} builds"
                )
    finally:
        rewriter.stopping.set()
        rewriter.join(10)
        rewriter.restore()
    setup.add("rebuild_builds", builds, f"{len(chosen)} files rewritten each second, {rewriter.rounds} rounds; "
              f"{parsed:,} records parsed in all (the first build before the runs included)")  # fmt: skip
    setup.add("pss_rebuild_peak", rewriter.peak.total_mb, rewriter.peak.note() + ", sampled every 0.5 s")
    after = etag_of(port, path)
    if after != etag:
        setup.results.note(setup.id("rebuild_304_rps"), "the feed under load changed during the run: 304s turned 200")
    settle(setup)


def change_latency(setup: Setup, port: int, record: Path, runs: int) -> None:
    """Retitle the newest record; seconds until the served /feeds/all.atom shows it."""
    for run in range(runs):
        marker = f"Changed{run}x{os.getpid()}x{time.monotonic_ns() % 1_000_000}"
        summaries(setup)
        written = time.monotonic()
        original = retitle(record, marker)
        try:
            while True:
                body = get(port, "/feeds/all.atom", {"Accept-Encoding": "identity"}).body
                seconds = time.monotonic() - written
                if marker.encode() in body:
                    break
                if seconds > CHANGE_TIMEOUT:
                    raise RuntimeError(f"{setup.name}: a changed record was not served in {CHANGE_TIMEOUT:.0f}s")
                time.sleep(0.02)
        finally:
            settle(setup, quiet=1.0)
            record.write_text(original, encoding="utf-8")
            settle(setup, quiet=1.0)
        setup.add("change_latency", seconds, record.name)
        log(f"{setup.name}: change served after {seconds:.2f}s")


# -- slow and idle clients ---------------------------------------------------------------------------

#: Slow clients: heads sent a byte every 0.5 s, idle connections, POSTs trickling a 100 MB body.
SLOW_HEADS, IDLE, SLOW_BODIES = 40, 40, 20
SLOW_BOUND = 15.0
SLOW_GETS = 200


class SlowClients(threading.Thread):
    """Keeps SLOW_HEADS + IDLE + SLOW_BODIES connections open to 127.0.0.1:`port` until stopped.

    A head-trickler sends ``GET /feeds/all.atom HTTP/1.1`` and its headers one
    byte every 0.5 s; an idle connection sends nothing; a body-trickler sends a
    whole POST head announcing ``Content-Length: 104857600`` and then one body
    byte a second. One that the server closes (its header timeout, or a 405
    answered without reading the body) is opened again half a second later,
    as a stubborn client would; how many of each kind were closed is counted.
    """

    HEAD = b"GET /feeds/all.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nAccept: */*\r\n"
    POST = (
        b"POST /feeds/all.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.refused = 0
        self.closed: dict[str, int] = {"head": 0, "idle": 0, "body": 0}
        #: kind, socket, bytes sent, next send time
        self.conns: list[list[object]] = []

    def _open(self, kind: str) -> list[object] | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.refused += 1
            return None
        sock.setblocking(False)
        conn: list[object] = [kind, sock, 0, time.monotonic()]
        if kind == "body":
            sock.setblocking(True)
            sock.sendall(self.POST)
            sock.setblocking(False)
        return conn

    def open_count(self) -> int:
        return sum(1 for c in self.conns if c[1] is not None)

    def run(self) -> None:
        for kind, n in (("head", SLOW_HEADS), ("idle", IDLE), ("body", SLOW_BODIES)):
            for _ in range(n):
                self.conns.append(self._open(kind) or [kind, None, 0, time.monotonic()])
        while not self.stopping.wait(0.05):
            now = time.monotonic()
            for c in self.conns:
                kind, sock, sent, due = c
                assert isinstance(kind, str) and isinstance(sent, int) and isinstance(due, float)
                if sock is None:
                    if now >= due:
                        c[:] = self._open(kind) or [kind, None, 0, now + 0.5]
                    continue
                if self._closed(sock):  # type: ignore[arg-type]
                    sock.close()  # type: ignore[attr-defined]
                    self.closed[kind] += 1
                    c[:] = [kind, None, 0, now + 0.5]
                    continue
                if kind == "idle" or now < due:
                    continue
                data = self.HEAD[sent % len(self.HEAD) : sent % len(self.HEAD) + 1] if kind == "head" else b"x"
                try:
                    sock.send(data)  # type: ignore[attr-defined]
                except OSError:
                    continue  # reopened on the next round
                c[2], c[3] = sent + 1, now + (0.5 if kind == "head" else 1.0)
        for c in self.conns:
            if c[1] is not None:
                c[1].close()  # type: ignore[attr-defined]

    @staticmethod
    def _closed(sock: socket.socket) -> bool:
        """Whether the server closed `sock` (EOF or reset); whatever it sent is read and dropped."""
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return not data


def slow_clients(setup: Setup, port: int) -> None:
    """p99 of SLOW_GETS sequential GETs of /feeds/all.atom (a new connection each, gzip accepted)
    while SlowClients holds 100 connections open; all within about SLOW_BOUND seconds."""
    crowd = SlowClients(port)
    started = time.monotonic()
    crowd.start()
    time.sleep(1.0)  # every connection opened and trickling
    opened = crowd.open_count()
    times: list[float] = []
    bad = 0
    try:
        while len(times) < SLOW_GETS and time.monotonic() - started < SLOW_BOUND:
            t0 = time.perf_counter()
            try:
                r = get(port, "/feeds/all.atom", {"Accept-Encoding": "gzip"}, timeout=5)
                bad += r.status != 200
            except OSError:
                bad += 1
            times.append(1000 * (time.perf_counter() - t0))
    finally:
        still = crowd.open_count()
        crowd.stopping.set()
        crowd.join(10)
    ordered = sorted(times)
    p99 = ordered[max(0, -(-99 * len(ordered) // 100) - 1)] if ordered else float("nan")
    median = ordered[len(ordered) // 2] if ordered else float("nan")
    note = (
        f"{len(times)} GETs (median {median:.1f} ms, max {ordered[-1]:.1f} ms){f', {bad} not 200' if bad else ''}; "
        f"{opened} of {SLOW_HEADS + IDLE + SLOW_BODIES} slow connections open at the start, {still} at the end, "
        f"closed by the server (and reopened 0.5 s later): {crowd.closed['head']} head-tricklers, "
        f"{crowd.closed['idle']} idle, {crowd.closed['body']} POSTs; {crowd.refused} connections refused; "
        f"{time.monotonic() - started:.1f} s in all"
    )
    setup.add("slow_clients_p99", p99, note)
    log(f"{setup.name}: beside 100 slow clients: p99 {p99:.1f} ms; {note}")


# -- the whole of one setup ---------------------------------------------------------------------------


def pick_feed(out: Path) -> tuple[str, bytes]:
    """The subscription RSS feed (not an archive page) nearest TARGET_FEED_BYTES."""
    feeds = [p for p in out.rglob("*.rss") if "archive" not in p.relative_to(out).parts]
    chosen = min(feeds, key=lambda p: (abs(p.stat().st_size - TARGET_FEED_BYTES), str(p)))
    return "/" + chosen.relative_to(out).as_posix(), chosen.read_bytes()


def prepare(setup: Setup, runs: int, *, one_record: bool) -> None:
    """`feedsvc build`, then (if `one_record`) a one-record change and build `runs` times."""
    setup.write_config()
    seconds, summary = feedsvc_build(setup)
    setup.add("build", seconds, "; ".join(filter(None, [summary.split(" → ")[0], setup.base_url_note])))
    log(f"{setup.name}: feedsvc build {seconds:.1f}s: {summary}")
    if not one_record:
        return
    record = newest_record(setup.out, setup.records)
    own = []
    for run in range(runs):
        original = retitle(record, f"Build{run}")
        seconds, summary = feedsvc_build(setup)
        own.append(build_seconds(summary))
        setup.add("one_build", seconds, f"{record.name}; the build's own time (its summary line): "
                  + ", ".join(f"{s:.2f}s" for s in own))  # fmt: skip
        log(f"{setup.name}: one-record feedsvc build {seconds:.2f}s: {summary}")
        record.write_text(original, encoding="utf-8")
    # Back to the corpus as written; the server's start-up build must then parse nothing.
    seconds, summary = feedsvc_build(setup)
    log(f"{setup.name}: feedsvc build after the restore {seconds:.2f}s: {summary}")


def startup_parsed(setup: Setup) -> tuple[int, str]:
    found = [(n, f"{total:,} records, {n:,} parsed") for who, total, n in summaries(setup) if who == "server"]
    return found[0] if found else (-1, "no start-up build summary in the log")


def serve_setup(ws: Workspace, name: str, runs: int, duration: float, idle_seconds: float, results: Results) -> None:
    root = ws.root / f"serve-{name}"
    out = ws.out if name == "defaults" else root / "public"  # defaults: the build figures' folder
    setup = make_setup(name, ws, root, ws.records, out, results)
    prepare(setup, runs, one_record=True)
    path, body = pick_feed(setup.out)
    setup.add("feed_bytes", len(body) / 1000, path)
    max_age = int(setup.data.get("server", {}).get("cache_max_age", 300))  # type: ignore[union-attr]

    # nginx on the static files first, alone.
    static_conf = render.static_snippet(listen=f"127.0.0.1:{free_port()}", output_dir=setup.out, max_age=max_age)
    with nginx(root / "nginx-static", static_conf) as static_port:
        load_runs(setup, "static", static_port, path, body, runs, duration)

    with feedsvc_serve(setup) as (port, proc, ready):
        setup.add("ready", ready, f"{len(setup.pids)} workers")
        parsed, note = startup_parsed(setup)
        setup.add("startup_parsed", parsed, note)
        warm(port, path, setup.pids)
        time.sleep(1.0)
        summaries(setup)
        cpu, mem = idle(setup, proc.pid, idle_seconds)
        scans = summaries(setup)
        setup.add("idle_cpu", cpu, f"{idle_seconds:.0f} s; {len(scans)} builds (periodic scans) meanwhile")
        setup.add("pss", mem.total_mb, mem.note())
        log(f"{setup.name}: idle CPU {cpu:.1f}% of a core, PSS {mem.total_mb:,.0f} MB ({mem.note()})")

        load_runs(setup, "serve", port, path, body, runs, duration)
        rebuild_runs(setup, port, proc.pid, path, body, runs, duration)

        proxy_conf = render.proxy_snippet(
            listen=f"127.0.0.1:{free_port()}", upstream=f"127.0.0.1:{port}", cache_dir=root / "nginx-proxy" / "cache"
        )
        with nginx(root / "nginx-proxy", proxy_conf) as proxy_port:
            load_runs(setup, "proxy", proxy_port, path, body, runs, duration)

        slow_clients(setup, port)
        change_latency(setup, port, newest_record(setup.out, setup.records), runs)
        after = memory(proc.pid, setup.pids)
        setup.add("pss_after", after.total_mb, after.note())

    baseline(ws, name, idle_seconds, setup, results)
    for code in ("200", "304"):
        results.ratio(
            setup.id(f"serve_static_{code}_ratio"), setup.id(f"serve_{code}_rps"), setup.id(f"static_{code}_rps")
        )
        results.ratio(
            setup.id(f"proxy_static_{code}_ratio"), setup.id(f"proxy_{code}_rps"), setup.id(f"static_{code}_rps")
        )
    results.ratio(setup.id("pss_ratio"), setup.id("pss"), setup.id("base_pss"))
    latency, build = results.median(setup.id("change_latency")), results.median(setup.id("one_build"))
    if latency is not None and build is not None:
        results.add(setup.id("change_over_build"), latency - build, f"{latency:.2f}s − {build:.2f}s")


def baseline(ws: Workspace, name: str, idle_seconds: float, main: Setup, results: Results) -> None:
    """The same server on a tenth of the records (their own corpus and output): idle CPU and PSS."""
    count = max(50, ws.count // 10)
    records = ws.root / "records-tenth"
    if not records.exists():
        write_corpus(records, count, seed=1)
    root = ws.root / f"serve-{name}-tenth"
    setup = make_setup(name, ws, root, records, root / "public", results)
    setup.write_config()
    seconds, summary = feedsvc_build(setup)
    log(f"{name} at {count:,} records: feedsvc build {seconds:.1f}s: {summary}")
    path, _ = pick_feed(setup.out)
    with feedsvc_serve(setup) as (port, proc, ready):
        warm(port, path, setup.pids)
        time.sleep(1.0)
        cpu, mem = idle(setup, proc.pid, idle_seconds)
    setup.add("base_ready", ready, f"{count:,} records")
    setup.add("base_idle_cpu", cpu, f"{count:,} records")
    setup.add("base_pss", mem.total_mb, f"{count:,} records: {mem.note()}")
    log(f"{name} at {count:,} records: ready {ready:.2f}s, idle CPU {cpu:.1f}%, PSS {mem.total_mb:,.0f} MB")


def serving(
    ws: Workspace, setups: list[str], runs: int, duration: float, idle_seconds: float, results: Results
) -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_HINT)
    for name in setups:
        assert name in SETUPS, name
        serve_setup(ws, name, runs, duration, idle_seconds, results)
