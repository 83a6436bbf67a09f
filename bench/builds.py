"""Build benchmarks: the corpus, the parsing floors, full and incremental builds.

The floors say what reading the corpus costs at the least: the bytes alone,
and PyYAML's C loader on every front matter on one core (the baseline every
build time is divided by). Each build runs in a fresh process
(bench/build_child.py) and the output is checked, not just timed: a no-op
rebuild must write nothing and leave every mtime alone, and after an added,
a changed and a deleted record the output must equal a fresh full build, file
by file. Then issue 12's figures with the shipped config.yaml (archives on):
a full build, and one record added, changed, re-dated and deleted, each timed
against that full build and judged by the archive pages it rewrote (the most
in any one feed; a page's RSS, Atom and .gz files count as one page).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from report import Results

from feedsvc.build.incremental import default_cache_path
from feedsvc.config import load_config
from feedsvc.records import read as records
from feedsvc.records import yamlfast
from feedsvc.records.read import parse_bytes, settings_for
from feedsvc.synth import file_name, record_text, write_corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: How many records are parsed both ways to compare yaml-rs with PyYAML.
SAMPLE = 2_000
BUILD_TIMEOUT = 3_600


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Workspace:
    """The corpus and everything built from it, under one temporary folder."""

    root: Path
    count: int

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def out(self) -> Path:
        """The output folder incremental builds keep up to date (served later)."""
        return self.root / "public"

    @property
    def cache(self) -> Path:
        """Where `feedsvc build` keeps its cache, so the serving part builds on these builds."""
        return default_cache_path(self.out)

    @property
    def archives_config(self) -> Path:
        """The repository's config.yaml (archives on), on this corpus and `archives_out`."""
        return self.root / "config-archives.yaml"

    @property
    def archives_out(self) -> Path:
        return self.root / "public-archives"

    @property
    def archives_cache(self) -> Path:
        return default_cache_path(self.archives_out)

    @property
    def archives_off_config(self) -> Path:
        """config.yaml with archives off: what the archives-on full build is compared with."""
        return self.root / "config-archives-off.yaml"

    @property
    def archives_off_out(self) -> Path:
        return self.root / "public-archives-off"


def make_workspace(root: Path, count: int, results: Results) -> Workspace:
    ws = Workspace(root, count)
    started = time.perf_counter()
    write_corpus(ws.records, count, seed=1)
    results.add("corpus_write", time.perf_counter() - started)
    size = sum(p.stat().st_size for p in ws.records.iterdir())
    results.add("corpus_records", count, f"{size / 2**20:,.0f} MB in {root}")
    ws.config.write_text(
        yaml.safe_dump(
            {
                "site": {"title": "feedsvc benchmark", "base_url": "https://feeds.example.org/"},
                "records_dir": str(ws.records),
                "output_dir": str(ws.out),
                # The corpus marks half its records unpublished; publish all.
                "include_unpublished": True,
            }
        ),
        encoding="utf-8",
    )
    return ws


def record_paths(ws: Workspace) -> list[Path]:
    return [ws.records / rel for rel in records.record_files(ws.records)]


def front_matter(data: bytes) -> str:
    """The front matter text as records.py hands it to YAML (opening line included)."""
    text = data.decode("utf-8")
    closing = records._BOUNDARY.search(text, text.find("\n"))
    assert closing is not None
    return text[: closing.start()]


def floors(ws: Workspace, runs: int, results: Results) -> None:
    paths = record_paths(ws)
    for _run in range(runs):
        started = time.perf_counter()
        for p in paths:
            with open(p, "rb") as f:
                f.read()
        results.add("floor_read", time.perf_counter() - started)
    texts = [front_matter(p.read_bytes()) for p in paths]
    loader = yaml.CSafeLoader
    for run in range(runs):
        started = time.perf_counter()
        for fm in texts:
            yaml.load(fm, Loader=loader)  # noqa: S506 - the C safe loader
        seconds = time.perf_counter() - started
        results.add("floor_cloader", seconds)
        log(f"C loader floor {run + 1}/{runs}: {seconds:.1f}s")
    if yamlfast.yaml_rs is not None:
        loads = yamlfast.yaml_rs.loads
        started = time.perf_counter()
        for fm in texts:
            loads(fm, parse_datetime=False)
        results.add("floor_yaml_rs", time.perf_counter() - started)
    else:
        results.skip("floor_yaml_rs", "yaml-rs is not installed")
    taken = sum(1 for fm in texts if yamlfast.fast_path_taken(fm))
    results.add("fast_path_share", 100 * taken / len(texts), f"{taken:,} of {len(texts):,}")
    compare_parsers(ws, paths, results)


def compare_parsers(ws: Workspace, paths: list[Path], results: Results) -> None:
    """records.parse_bytes with yaml-rs and without it, on an even sample of the corpus."""
    step = max(1, len(paths) // SAMPLE)
    sample = paths[::step][:SAMPLE]
    settings = settings_for(load_config(ws.config))
    saved = yamlfast.yaml_rs
    differ: list[str] = []
    for p in sample:
        data = p.read_bytes()
        fast = parse_bytes(p.name, data, settings)
        try:
            yamlfast.yaml_rs = None
            slow = parse_bytes(p.name, data, settings)
        finally:
            yamlfast.yaml_rs = saved
        if fast != slow:
            differ.append(p.name)
    note = f"sample of {len(sample):,}" + (f"; e.g. {', '.join(differ[:3])}" if differ else "")
    results.add("fast_path_differs", len(differ), note)


def build(ws: Workspace, out: Path, cache: Path, *, full: bool, config: Path | None = None) -> dict[str, float]:
    """One build in a fresh process (`config`, else the bench's); what bench/build_child.py reports."""
    args = [sys.executable, str(HERE / "build_child.py"), str(config or ws.config), str(out), str(cache)]
    done = subprocess.run(args + (["--full"] if full else []), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()
    }


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def builds(ws: Workspace, runs: int, results: Results) -> None:
    """Per run: a full build into a fresh folder, a no-op, then add, change and delete one record."""
    identical = 0
    for run in range(runs):
        shutil.rmtree(ws.out, ignore_errors=True)
        report = build(ws, ws.out, ws.cache, full=True)
        what = f"{report['files']:,} records, {report['feeds']:,} feeds, {report['written']:,} files"
        results.add("full_build", report["seconds"], what)
        results.add("build_peak_rss", report["maxrss_self_mb"])
        results.add("build_peak_rss_workers", report["maxrss_children_mb"])
        log(f"full build {run + 1}/{runs}: {report['seconds']:.1f}s, {report['written']:,} files")

        before = mtimes(ws.out)
        time.sleep(0.05)  # a rewritten file would get a later mtime
        report = build(ws, ws.out, ws.cache, full=False)
        results.add("noop_build", report["seconds"])
        results.add("noop_written", report["written"])
        after = mtimes(ws.out)
        changed = sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        results.add("noop_mtimes_changed", changed, f"{len(after):,} files compared")
        log(f"no-op rebuild: {report['seconds']:.2f}s, {report['written']} files written, {changed} mtimes changed")

        steps: list[tuple[str, Callable[[], str]]] = [
            ("add", lambda run=run: add_record(ws, ws.count + run)),
            ("change", lambda run=run: change_record(ws, 7 * run + 3, run)),
            ("delete", lambda run=run: delete_record(ws, 13 * run + 5)),
        ]
        for name, step in steps:
            record = step()
            report = build(ws, ws.out, ws.cache, full=False)
            done = f"{report['feeds_rendered']:,} feeds rendered, {report['written']:,} files written"
            results.add(f"{name}_build", report["seconds"], done)
            log(f"{name} {record}: {report['seconds']:.2f}s, {done}")
            if run == 0:
                same = equals_full_build(ws)
                identical += same
                log(f"  output {'equals' if same else 'DIFFERS FROM'} a fresh full build")
    results.add("incremental_identical", identical, "checked after each step of the first run")
    results.ratio("full_build_ratio", "full_build", "floor_cloader")
    results.ratio("full_build_yaml_rs_ratio", "full_build", "floor_yaml_rs")
    results.ratio("noop_ratio", "noop_build", "full_build")
    for name in ("add", "change", "delete"):
        results.ratio(f"{name}_ratio", f"{name}_build", "full_build")


def equals_full_build(ws: Workspace, out: Path | None = None, config: Path | None = None) -> bool:
    """Whether `out` (the bench's output folder) equals a fresh full build of `config` (the bench's)."""
    fresh = ws.root / "verify"
    cache = ws.root / "verify.cache.sqlite"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        build(ws, fresh, cache, full=True, config=config)
        return digests(fresh) == digests(out or ws.out)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        for p in ws.root.glob("verify.cache.sqlite*"):
            p.unlink()


def add_record(ws: Workspace, index: int) -> str:
    path = ws.records / file_name(index, 1)
    assert not path.exists()
    path.write_text(record_text(index, seed=1), encoding="utf-8")
    return path.name


def change_record(ws: Workspace, index: int, run: int) -> str:
    path = ws.records / file_name(index, 1)
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(r'^title: "', f'title: "Changed in run {run}: ', text, count=1, flags=re.MULTILINE)
    assert n == 1
    path.write_text(new, encoding="utf-8")
    return path.name


def delete_record(ws: Workspace, index: int) -> str:
    path = ws.records / file_name(index, 1)
    path.unlink()
    return path.name


# -- issue 12: archives on ---------------------------------------------------------------------------


#: The archive steps, in order: what is done to one record.
ARCHIVE_STEPS = ("add", "change", "redate", "delete")
#: How far a re-dated record moves (earlier, or later if that would leave the corpus's span).
REDATE_DAYS = 45
_DATE = re.compile(r"^publishedDateTime: (\S+)$", re.MULTILINE)


def write_archives_config(ws: Workspace) -> None:
    """The shipped config.yaml as it is (archives on), on the bench's corpus and its own output
    folder; and the same with archives off (`archives_off_config`), the build it is judged against."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    assert data["archives"]["enabled"], "the shipped config.yaml no longer turns archives on"
    data["records_dir"] = str(ws.records)
    data["output_dir"] = str(ws.archives_out)
    ws.archives_config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    data["archives"]["enabled"] = False
    data["output_dir"] = str(ws.archives_off_out)
    ws.archives_off_config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def fresh_full_build(ws: Workspace, out: Path, config: Path) -> dict[str, float]:
    """A full build of `config` into an emptied `out`, with no cache."""
    cache = default_cache_path(out)
    shutil.rmtree(out, ignore_errors=True)
    for p in cache.parent.glob(cache.name + "*"):
        p.unlink()
    return build(ws, out, cache, full=True, config=config)


def archive_files(out: Path) -> dict[str, tuple[int, int]]:
    """Every file under an ``archive`` folder: relative path → (mtime_ns, inode)."""
    found = {}
    for p in out.rglob("archive/*"):
        if p.is_file():
            st = p.stat()
            found[p.relative_to(out).as_posix()] = (st.st_mtime_ns, st.st_ino)
    return found


def page_of(rel: str) -> tuple[str, str]:
    """(feed, page) of an archive file: feeds/topics/ai/archive/first.rss.gz → (feeds/topics/ai, first)."""
    folder, name = rel.rsplit("/archive/", 1)
    return folder, name.split(".", 1)[0]


def pages_rewritten(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> tuple[int, int, int, int]:
    """(most pages written in one feed, feeds with a page written, pages written in all, pages removed).

    A page is written if any of its files (RSS, Atom, their .gz) is new or has
    a new mtime or inode; its formats and encodings count as one page.
    """
    per_feed: dict[str, set[str]] = {}
    for rel, stamp in after.items():
        if before.get(rel) != stamp:
            feed, page = page_of(rel)
            per_feed.setdefault(feed, set()).add(page)
    removed = {page_of(rel) for rel in before.keys() - after.keys()} - {page_of(rel) for rel in after}
    most = max((len(pages) for pages in per_feed.values()), default=0)
    return most, len(per_feed), sum(len(pages) for pages in per_feed.values()), len(removed)


def redate_record(ws: Workspace, index: int) -> str:
    """Move record `index` REDATE_DAYS earlier (later near the corpus's start)."""
    path = ws.records / file_name(index, 1)
    text = path.read_text(encoding="utf-8")
    m = _DATE.search(text)
    assert m, path
    when = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    shift = datetime.timedelta(days=REDATE_DAYS)
    moved = when - shift if when - shift >= datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC) else when + shift
    stamp = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(text[: m.start(1)] + stamp + text[m.end(1) :], encoding="utf-8")
    return f"{path.name} {m.group(1)} → {stamp}"


def archive_builds(ws: Workspace, runs: int, results: Results) -> None:
    """Issue 12 with the shipped config.yaml: a full build, then one record added, changed,
    re-dated and deleted (each an incremental build), per run; the output is compared with
    a fresh full build once, after the first run's four steps."""
    write_archives_config(ws)
    out, cache, config = ws.archives_out, ws.archives_cache, ws.archives_config
    identical = None
    for run in range(runs):
        off = fresh_full_build(ws, ws.archives_off_out, ws.archives_off_config)
        results.add("archives_off_build", off["seconds"], f"{off['written']:,} files")
        log(f"full build, config.yaml with archives off {run + 1}/{runs}: {off['seconds']:.1f}s")
        shutil.rmtree(ws.archives_off_out, ignore_errors=True)
        report = fresh_full_build(ws, out, config)
        pages = len({page_of(rel) for rel in archive_files(out)})
        note = (
            f"{report['files']:,} records, {report['feeds']:,} feeds, {report['written']:,} files, {pages:,} archive "
            f"pages; peak RSS {report['maxrss_self_mb']:,.0f} MB, largest worker {report['maxrss_children_mb']:,.0f} MB"
        )
        results.add("archives_full_build", report["seconds"], note)
        log(f"full build, archives on {run + 1}/{runs}: {report['seconds']:.1f}s, {report['written']:,} files")
        # Indices apart from those builds() touches (7r+3, 13r+5, count+r).
        base = 23 + 29 * run
        steps: dict[str, Callable[[], str]] = {
            "add": lambda run=run: add_record(ws, ws.count + 100 + run),
            "change": lambda run=run, base=base: change_record(ws, base, run),
            "redate": lambda base=base: redate_record(ws, base + 14),
            "delete": lambda base=base: delete_record(ws, base + 18),
        }
        for name in ARCHIVE_STEPS:
            before = archive_files(out)
            time.sleep(0.05)  # a rewritten file gets a later mtime
            record = steps[name]()
            report = build(ws, out, cache, full=False, config=config)
            most, feeds, total, removed = pages_rewritten(before, archive_files(out))
            done = f"{report['feeds_rendered']:,} feeds rendered, {report['written']:,} files written"
            results.add(f"archives_{name}_build", report["seconds"], f"{record}; {done}")
            results.add(f"archives_{name}_pages", most, f"{total} pages written in {feeds} feeds, {removed} removed")
            log(f"archives {name} {record}: {report['seconds']:.2f}s, {done}; most pages in one feed {most} "
                f"({total} in {feeds} feeds, {removed} removed)")  # fmt: skip
        if run == 0:
            identical = equals_full_build(ws, out, config)
            log(f"  archives on: output {'equals' if identical else 'DIFFERS FROM'} a fresh full build")
    results.add("archives_identical", int(bool(identical)), "after the first run's four steps")
    results.ratio("archives_full_ratio", "archives_full_build", "archives_off_build")
    results.ratio("archives_defaults_ratio", "archives_full_build", "full_build")
    results.ratio("archives_floor_ratio", "archives_full_build", "floor_cloader")
    results.ratio("archives_off_floor_ratio", "archives_off_build", "floor_cloader")
    for name in ARCHIVE_STEPS:
        results.ratio(f"archives_{name}_ratio", f"archives_{name}_build", "archives_full_build")


def workspace_root(requested: Path | None, count: int) -> Path:
    """A fresh folder: under `requested`, else /dev/shm when it has room (writing there is fast)."""
    if requested is None:
        # Corpus (~5 KB a record) plus two output folders and caches.
        need = count * 5_000 + 3 * 2**30
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > need:
            requested = shm
    return Path(tempfile.mkdtemp(prefix="feedsvc-bench-", dir=requested))
