"""One engine, over real processes: the server sends what the build wrote, old or new, never a mix.

- While builds rewrite records continuously, clients fetching from a real
  `feedsvc serve --no-build` get, in every 200, exactly the bytes its ETag
  names, always one of the versions a build wrote, and never an older version
  after a newer one; every 304 names a version a build wrote.
- One `feedsvc build --watch` keeps an output folder current for two
  `feedsvc serve --no-build` processes: a changed record reaches both.
- `feedsvc serve` (with its own builder) picks up a change through file events.
- Two builds on one output folder take turns (the lock) and give a full build's bytes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from servers import FEEDSVC, Server, free_port, poll, request, write_config

from feedsvc.build import incremental
from feedsvc.build.served import etag_of
from feedsvc.config import load_config

#: Documents the clients fetch: feeds in every format, a page, the index.
PATHS = ("/feeds/all.atom", "/feeds/all.rss", "/feeds/all.json", "/feeds/topics/racing.atom", "/index.html")
VERSION = re.compile(rb"Race version (\d+)")


def record(n: int, version: int) -> str:
    return (
        "---\n"
        f'title: "Race version {version} story {n}"\n'
        f'excerpt: "Story {n}, as of version {version}."\n'
        f"publishedDateTime: 2024-03-{n + 1:02d}T08:00:00Z\n"
        f"updatedDateTime: 2024-03-{n + 1:02d}T08:{version % 60:02d}:00Z\n"
        f'webUrl: "https://race.example/{n}"\n'
        'provider: {name: "Race desk", domain: race.example}\n'
        'topics: ["Racing"]\n'
        "---\n"
    )


def write_all(records: Path, version: int, count: int = 5) -> None:
    for n in range(count):
        target = records / f"{n:03d}.txt"
        tmp = records / f".{n:03d}.tmp"
        tmp.write_text(record(n, version), encoding="utf-8")
        tmp.replace(target)  # an editor's save: the build never reads half a file


def files_of(out: Path) -> dict[str, bytes]:
    wanted = {p.lstrip("/") for p in PATHS}
    return {rel: (out / rel).read_bytes() for rel in wanted} | {
        rel + ".gz": (out / (rel + ".gz")).read_bytes() for rel in wanted if (out / (rel + ".gz")).is_file()
    }


def test_clients_see_old_or_new_never_a_mix_while_builds_rewrite(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    write_all(records, 0)
    config_path = write_config(tmp_path / "config.yaml", records, workers=2, threads=4)
    config = load_config(config_path)
    out = config.output_dir
    incremental.build(config)
    #: URL path → every ETag a build wrote for it (plain and gzip), and the version in those bytes.
    written: dict[str, dict[str, int]] = defaultdict(dict)

    def remember(version: int) -> None:
        for rel, body in files_of(out).items():
            plain = gzip.decompress(body) if rel.endswith(".gz") else body
            found = VERSION.search(plain)
            written[rel.removesuffix(".gz")][etag_of(body)] = int(found.group(1)) if found else -1

    remember(0)
    server = Server(config_path, free_port(), tmp_path, workers=2, args=("--no-build",)).start()
    problems: list[str] = []
    stop = threading.Event()
    counts = defaultdict(int)

    def client(k: int) -> None:
        last_etag: dict[tuple[str, bool], str] = {}
        newest: dict[str, int] = {}
        i = 0
        while not stop.is_set():
            path = PATHS[(i + k) % len(PATHS)]
            gz = (i // len(PATHS)) % 2 == 1
            i += 1
            headers = {"Accept-Encoding": "gzip"} if gz else {}
            if i % 3 == 0 and (path, gz) in last_etag:
                headers["If-None-Match"] = last_etag[path, gz]
            try:
                r = request(server.port, path, headers=headers, timeout=10)
            except OSError as e:
                problems.append(f"{path}: {type(e).__name__}")
                continue
            etag = r.header("ETag") or ""
            counts[r.status] += 1
            if r.status == 304:
                if etag != headers.get("If-None-Match"):
                    problems.append(f"{path}: 304 with {etag}, asked {headers.get('If-None-Match')}")
                continue
            if r.status != 200:
                problems.append(f"{path}: {r.status}")
                continue
            if etag_of(r.body) != etag:
                problems.append(f"{path}: a 200 whose bytes are not its ETag {etag}")
            plain = gzip.decompress(r.body) if r.header("Content-Encoding") == "gzip" else r.body
            found = VERSION.search(plain)
            version = int(found.group(1)) if found else -1
            if version < newest.get(path, -1):
                problems.append(f"{path}: version {version} after version {newest[path]}")
            newest[path] = max(version, newest.get(path, -1))
            last_etag[path, gz] = etag
            seen.append((path.lstrip("/"), etag))

    seen: list[tuple[str, str]] = []
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 8
        version = 0
        while time.monotonic() < deadline and version < 40:  # bounded in count and in time
            version += 1
            write_all(records, version)
            incremental.build(config)
            remember(version)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        server.stop()
    assert not problems, problems[:10]
    assert version >= 5, "too few builds ran to test anything"
    assert counts[200] > 50 and counts[304] > 5, dict(counts)
    unknown = [(path, etag) for path, etag in seen if etag not in written[path]]
    assert not unknown, f"bytes no build wrote: {unknown[:5]}"
    versions = {written[path][etag] for path, etag in seen if path == "feeds/all.atom"}
    assert len(versions) > 2, "the clients saw too few versions for the test to mean anything"


def test_one_builder_keeps_two_servers_current(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    write_all(records, 1, count=3)
    config_path = write_config(tmp_path / "config.yaml", records, workers=1, threads=2)
    out_log = (tmp_path / "watch.out").open("wb")
    watcher = subprocess.Popen(
        [str(FEEDSVC), "--config", str(config_path), "build", "--watch"],
        stdout=out_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    servers: list[Server] = []
    try:
        config = load_config(config_path)
        assert poll(lambda: incremental.generation_path(config.output_dir).is_file(), timeout=30)
        servers = [Server(config_path, free_port(), tmp_path, args=("--no-build",)).start() for _ in range(2)]
        first = [s.get("/feeds/all.atom") for s in servers]
        assert [r.status for r in first] == [200, 200]
        assert first[0].header("ETag") == first[1].header("ETag")
        assert b"Race version 1 story 2" in first[0].body
        (records / "002.txt").write_text(record(2, 7), encoding="utf-8")

        def both_new() -> bool:
            bodies = [s.get("/feeds/all.atom").body for s in servers]
            return all(b"Race version 7 story 2" in b for b in bodies)

        assert poll(both_new, timeout=15), (tmp_path / "watch.out").read_text(errors="replace")
        after = [s.get("/feeds/all.atom") for s in servers]
        assert after[0].header("ETag") == after[1].header("ETag") != first[0].header("ETag")
        # Both serve the same build (its generation file may land a moment after the bytes).
        assert poll(lambda: len({s.health()["generation"] for s in servers}) == 1, timeout=5)
    finally:
        for s in servers:
            s.stop()
        watcher.terminate()
        try:
            watcher.wait(15)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait(15)
        out_log.close()
    assert watcher.returncode == 0, (tmp_path / "watch.out").read_text(errors="replace")


def test_serve_rebuilds_on_a_file_event_well_before_its_full_scan(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    write_all(records, 1, count=2)
    # The fallback scan is far away: only a file event can bring the change in time.
    config_path = write_config(tmp_path / "config.yaml", records, workers=2, threads=2, reload_interval=3600)
    server = Server(config_path, free_port(), tmp_path, workers=2).start()
    try:
        assert b"Race version 1 story 1" in server.get("/feeds/all.atom").body
        started = time.monotonic()
        (records / "001.txt").write_text(record(1, 9), encoding="utf-8")
        assert poll(lambda: b"Race version 9 story 1" in server.get("/feeds/all.atom").body, timeout=10)
        assert time.monotonic() - started < 5
        (records / "001.txt").unlink()
        assert poll(lambda: b"story 1" not in server.get("/feeds/all.atom").body, timeout=10)
    finally:
        server.stop()
    assert "Traceback" not in server.stderr()


def test_two_builds_on_one_folder_take_turns(tmp_path: Path) -> None:
    from feedsvc import synth

    records = tmp_path / "records"
    synth.write_corpus(records, 600, seed=5)
    config_path = write_config(tmp_path / "config.yaml", records)
    runs = [
        subprocess.Popen([str(FEEDSVC), "--config", str(config_path), "build"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for _ in range(3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0].decode("utf-8", "replace") for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0], outputs
    assert any("another build is writing" in o for o in outputs), outputs
    config = load_config(config_path)
    fresh = tmp_path / "fresh"
    incremental.build(dataclasses.replace(config, output_dir=fresh), fresh)

    def tree(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()
        }  # fmt: skip

    assert tree(config.output_dir) == tree(fresh)
    shutil.rmtree(fresh)


@pytest.mark.parametrize("flag", ["--no-build"])
def test_a_server_without_a_build_says_so(tmp_path: Path, flag: str) -> None:
    records = tmp_path / "records"
    records.mkdir()
    config_path = write_config(tmp_path / "config.yaml", records)
    port = free_port()
    proc = subprocess.Popen(
        [str(FEEDSVC), "--config", str(config_path), "serve", "--port", str(port), flag],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        r = poll(lambda: _get(port, "/healthz"), timeout=20)
        assert r is not None and r.status == 503
        assert b"no build yet" in r.body
        assert _get(port, "/feeds/all.atom").status == 404
    finally:
        proc.terminate()
        proc.wait(15)


def _get(port: int, path: str):  # type: ignore[no-untyped-def]
    try:
        return request(port, path, timeout=2)
    except OSError:
        return None
