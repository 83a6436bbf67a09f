"""Serving benchmarks: `feedsvc serve`, nginx on the static build, nginx as a caching proxy.

Everything listens on 127.0.0.1 (free ports) and wrk only ever targets it;
every load run is bounded by --duration and every process is stopped in a
`finally`. The feed under load is the build's RSS feed nearest 100 KB, asked
for with `Accept-Encoding: identity` (full 200s) and with its ETag in
If-None-Match (304s). Memory is the resident set of gunicorn's master and
workers summed from /proc, at startup and after the records changed every
second for a while (so every worker reloaded several times).
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

from feedsvc.config import ServerConfig

from builds import Workspace, log
from report import Results

ROOT = Path(__file__).resolve().parent.parent
FEEDSVC = Path(sys.executable).with_name("feedsvc")
WRK_HINT = "wrk is not installed: run `sudo scripts/setup --system` (Debian/Ubuntu: apt-get install wrk)"
SERVE_START_TIMEOUT = 1_800.0
STOP_TIMEOUT = 20.0
CONNECTIONS, THREADS = 32, 2
TARGET_FEED_BYTES = 100_000


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


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL of the whole process group."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)


# -- feedsvc serve ---------------------------------------------------------------------------


def serve_config(ws: Workspace, port: int) -> Path:
    """The build's config plus a port; everything else at its default (2 workers)."""
    data = yaml.safe_load(ws.config.read_text(encoding="utf-8"))
    data["server"] = {"host": "127.0.0.1", "port": port}
    # The load comes from one address, which polite polling would soon refuse
    # (loopback is exempt by default too; this says so explicitly).
    data["polite"] = {"enabled": False}
    path = ws.root / "serve.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@contextmanager
def feedsvc_serve(ws: Workspace, results: Results) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    config = serve_config(ws, port)
    err = open(ws.root / "serve.err", "wb")
    started = time.monotonic()
    with err:
        proc = subprocess.Popen(
            [str(FEEDSVC), "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=ws.root, start_new_session=True,
        )  # fmt: skip
    try:
        workers = int(yaml.safe_load(config.read_text()).get("server", {}).get("workers", 2))
        wait_for_workers(proc, port, workers, ws)
        seconds = time.monotonic() - started
        results.add("serve_startup", seconds)
        log(f"feedsvc serve answering from {workers} workers after {seconds:.0f}s")
        yield port, proc
    finally:
        stop(proc)


def wait_for_workers(proc: subprocess.Popen[bytes], port: int, workers: int, ws: Workspace) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    pids: set[int] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (ws.root / "serve.err").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"feedsvc serve exited with {proc.returncode}:\n{tail}")
        try:
            r = get(port, "/healthz", timeout=5)
            if r.status == 200:
                pids.add(json.loads(r.body)["pid"])
                if len(pids) >= workers:
                    return
                continue
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"feedsvc serve did not answer from {workers} workers in {SERVE_START_TIMEOUT:.0f}s")


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return pids


def rss_mb(pid: int) -> float:
    """Resident set of `pid` and every process under it, summed (shared pages count in each)."""
    total = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(m.group(1)) if m else 0
    return total / 1024


def pss_mb(pid: int) -> float:
    """Proportional set (shared pages split between the processes sharing them), summed."""
    total = 0
    for p in process_tree(pid):
        try:
            m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{p}/smaps_rollup").read_text(), re.MULTILINE)
        except OSError:
            continue
        total += int(m.group(1)) if m else 0
    return total / 1024


def generations(port: int, tries: int = 20) -> dict[int, int]:
    """Each worker's snapshot generation (its reload count), by pid."""
    seen: dict[int, int] = {}
    for _ in range(tries):
        health = json.loads(get(port, "/healthz").body)
        seen[health["pid"]] = health["generation"]
    return seen


def reload_phase(ws: Workspace, port: int, proc: subprocess.Popen[bytes], seconds: float, results: Results) -> None:
    """Change a record every second for `seconds`; sample RSS each second."""
    start_rss = rss_mb(proc.pid)
    results.add("serve_rss_startup", start_rss, f"PSS {pss_mb(proc.pid):,.0f} MB")
    first = generations(port)
    victim = sorted(ws.records.iterdir())[0]
    original = victim.read_text(encoding="utf-8")
    samples = []
    try:
        ends = time.monotonic() + seconds
        n = 0
        while time.monotonic() < ends:
            n += 1
            victim.write_text(original.replace('title: "', f'title: "Reload {n}: ', 1), encoding="utf-8")
            time.sleep(1.0)
            samples.append(rss_mb(proc.pid))
    finally:
        victim.write_text(original, encoding="utf-8")
    time.sleep(ServerConfig().reload_interval + 1)  # the default interval: let the last change land
    last = generations(port)
    samples.append(rss_mb(proc.pid))
    reloads = min(last.get(pid, 0) - first.get(pid, 0) for pid in last)
    results.add("serve_reloads", reloads, f"{n} changes in {seconds:.0f}s; generations {sorted(last.values())}")
    results.add("serve_rss_reloaded", samples[-1], f"PSS {pss_mb(proc.pid):,.0f} MB; peak {max(samples):,.0f} MB")
    half = samples[len(samples) // 2]
    results.add("serve_rss_drift", 100 * (samples[-1] - half) / half, f"{half:,.0f} → {samples[-1]:,.0f} MB")


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
        stop(proc)


# -- wrk ----------------------------------------------------------------------------------------------


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Load:
    rps: float
    p99_ms: float
    requests: int
    bad: int
    errors: int


def wrk(port: int, path: str, duration: float, etag: str | None) -> Load:
    args = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration:.0f}s", "--latency", "--timeout", "5s",
        "-H", "Accept-Encoding: identity",
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


def load_runs(name: str, port: int, path: str, body: bytes, runs: int, duration: float, results: Results) -> None:
    etag = get(port, path, {"Accept-Encoding": "identity"}).headers.get("etag")
    assert etag, f"{name}: no ETag"
    for code, tag in (("200", None), ("304", etag)):
        expect(port, path, tag, body)
        for run in range(runs):
            load = wrk(port, path, duration, tag)
            note = f"{load.requests:,} requests" + (f"; {load.bad:,} bad statuses" if load.bad else "") + (
                f"; {load.errors:,} socket errors" if load.errors else ""
            )
            results.add(f"{name}_{code}_rps", load.rps, note)
            results.add(f"{name}_{code}_p99", load.p99_ms)
            log(f"wrk {name} {code}s {run + 1}/{runs}: {load.rps:,.0f} req/s, p99 {load.p99_ms:.1f} ms")


def pick_feed(out: Path) -> tuple[str, bytes]:
    feeds = sorted(out.rglob("*.rss"), key=lambda p: (abs(p.stat().st_size - TARGET_FEED_BYTES), str(p)))
    chosen = feeds[0]
    return "/" + chosen.relative_to(out).as_posix(), chosen.read_bytes()


def serving(ws: Workspace, runs: int, duration: float, reload_seconds: float, results: Results) -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_HINT)
    path, body = pick_feed(ws.out)
    results.add("serve_feed_bytes", len(body) / 1000, path)
    max_age = yaml.safe_load(ws.config.read_text()).get("server", {}).get("cache_max_age", 300)
    # nginx on the static files first, alone: feedsvc's record scanner (every
    # reload_interval, over every record file) would otherwise take its share
    # of the cores.
    static_conf = render.static_snippet(listen=f"127.0.0.1:{free_port()}", output_dir=ws.out, max_age=max_age)
    with nginx(ws.root / "nginx-static", static_conf) as static_port:
        load_runs("static", static_port, path, body, runs, duration, results)
    with feedsvc_serve(ws, results) as (serve_port, proc):
        load_runs("serve", serve_port, path, body, runs, duration, results)
        proxy_conf = render.proxy_snippet(
            listen=f"127.0.0.1:{free_port()}",
            upstream=f"127.0.0.1:{serve_port}",
            cache_dir=ws.root / "nginx-proxy" / "cache",
        )
        with nginx(ws.root / "nginx-proxy", proxy_conf) as proxy_port:
            load_runs("proxy", proxy_port, path, body, runs, duration, results)
        reload_phase(ws, serve_port, proc, reload_seconds, results)
    for code in ("200", "304"):
        results.ratio(f"serve_static_{code}_ratio", f"serve_{code}_rps", f"static_{code}_rps")
        results.ratio(f"proxy_static_{code}_ratio", f"proxy_{code}_rps", f"static_{code}_rps")
