"""`feedsvc build` over every hostile case mixed with the good seeds.

One folder holds the shipped seeds, every case in tests/data/records, files too
big or too deep to commit, and a FIFO. The build must publish exactly the good
records (checked in all.atom with feedparser), name every rejected file on
stderr, write only valid feeds (feedparser, the W3C rules of test_validity,
jing against the Atom schema) and safe pages, write nothing outside its output
folder, and give the same bytes twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import feedparser
import html5lib
import pytest
import yaml
from click.testing import CliRunner
from conftest import ATOM_SCHEMA, SEEDS, feed_files
from test_records import CASES, expectation
from test_validity import check_feed

from feedsvc.cli import main

#: Rejected files the test writes itself (too big, too deep or too odd to commit).
GENERATED = {
    "generated/huge.txt": b"---\ntitle: x\n" + b"excerpt: " + b"y" * (2 * 1024 * 1024) + b"\n---\n",
    "generated/deep.txt": b"---\ntitle: " + b"[" * 100_000 + b"]" * 100_000 + b"\n---\n",
    "generated/bomb.md": b"---\na: &a [x, x]\n"
    + b"".join(f"b{i}: &b{i} [*a, *a]\n".encode() for i in range(30))
    + b"---\n",
    "generated/garbage.txt": os.urandom(4096).replace(b"\n", b" "),
}
BASE_URL = "https://feeds.example.org/news/"


@dataclass(frozen=True)
class Built:
    base: Path
    out: Path
    exit_code: int
    stderr: str
    #: Record files that must be rejected, relative to records_dir.
    rejected: frozenset[str]
    #: Entry ids all.atom must hold.
    ids: frozenset[str]


def canonical(url: str) -> str:
    """The design notes' canonical URL: scheme and host lower-cased, default port and fragment dropped."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port not in (None, 80, 443) else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def entry_id(url: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}"


def _seed_ids() -> set[str]:
    ids = set()
    for path in SEEDS.iterdir():
        fields = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
        ids.add(entry_id(canonical(fields.get("originalUrl") or fields["webUrl"])))
    return ids


def _build(base: Path, out: str) -> tuple[int, str]:
    config = base / "config.yaml"
    result = CliRunner().invoke(main, ["--config", str(config), "build", "--out", str(base / out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("hostile")
    records = base / "records"
    shutil.copytree(SEEDS, records / "seeds")
    (records / "hostile").mkdir()
    rejected, ids = set(), _seed_ids()
    for case in CASES:
        shutil.copyfile(case, records / "hostile" / case.name)
        expect = expectation(case)
        if expect["status"] == "rejected":
            rejected.add(f"hostile/{case.name}")
        else:
            ids.add(entry_id(expect["url"]))
    (records / "generated").mkdir()
    for name, data in GENERATED.items():
        (records / name).write_bytes(data)
        rejected.add(name)
    os.mkfifo(records / "generated" / "pipe.txt")  # skipped: not a regular file
    (base / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "records_dir": "records",
                "output_dir": "public",
                "include_unpublished": True,
                "max_entries": 1000,
                "site": {"title": "Hostile", "base_url": BASE_URL},
            }
        ),
        encoding="utf-8",
    )
    exit_code, stderr = _build(base, "public")
    return Built(base, base / "public", exit_code, stderr, frozenset(rejected), frozenset(ids))


def test_the_build_succeeds_and_names_every_rejected_file(built: Built) -> None:
    assert built.exit_code == 0, built.stderr
    assert "Traceback" not in built.stderr
    lines = built.stderr.splitlines()
    summary = lines.pop()
    assert f"{len(built.rejected)} rejected" in summary
    named = {line.split(":", 1)[0] for line in lines}
    assert named == built.rejected


def test_strict_build_exits_1(built: Built) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(built.base / "config.yaml"), "build", "--strict", "--out", str(built.base / "strict")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_every_good_record_is_published_once(built: Built) -> None:
    parsed = feedparser.parse((built.out / "feeds" / "all.atom").read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    ids = [entry.id for entry in parsed.entries]
    assert len(ids) == len(set(ids))
    assert set(ids) == built.ids
    rss = feedparser.parse((built.out / "feeds" / "all.rss").read_bytes())
    assert {entry.id for entry in rss.entries} == built.ids


def test_a_duplicate_article_is_one_entry_from_the_newest_file(built: Built) -> None:
    parsed = feedparser.parse((built.out / "feeds" / "all.atom").read_bytes())
    (entry,) = [e for e in parsed.entries if e.id == entry_id("https://dup.example.com/story")]
    assert entry.title == "Duplicate, newer copy"
    assert entry.link == "https://dup.example.com/story?src=b"


def test_hostile_text_reaches_readers_as_text(built: Built) -> None:
    parsed = feedparser.parse((built.out / "feeds" / "all.atom").read_bytes())
    titles = {entry.title for entry in parsed.entries}
    assert "Bold news" in titles  # <script> and markup gone
    assert "Ends ]]> here" in titles
    assert "It’s café time — naïve “quotes”" in titles  # mojibake repaired
    assert "‘Curly’ “quotes” — l’été, naïve, Ça, 東京, Привет, 🙂" in titles  # correct text untouched
    assert "Tom & Jerry été — ’s <3 &bogus;" in titles


def test_every_feed_parses_and_follows_the_validator_rules(built: Built) -> None:
    paths = feed_files(built.out)
    assert len(paths) > 100
    broken = {}
    for path in paths:
        data = path.read_bytes()
        parsed = feedparser.parse(data)
        problems = [str(p) for p in check_feed(data)]
        if parsed.bozo:
            problems.append(f"feedparser: {parsed.get('bozo_exception')}")
        if problems:
            broken[str(path.relative_to(built.out))] = problems[:3]
    assert not broken, dict(list(broken.items())[:5])


def test_every_atom_feed_is_valid_against_the_schema(built: Built) -> None:
    atoms = [str(p) for p in feed_files(built.out) if p.suffix == ".atom"]
    result = subprocess.run(["jing", "-c", str(ATOM_SCHEMA), *atoms], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[:2000] + result.stderr[:2000]


def test_pages_carry_no_script_and_only_http_links(built: Built) -> None:
    pages = sorted(built.out.rglob("*.html"))
    assert len(pages) > 50
    for page in pages:
        tree = html5lib.parse(page.read_bytes(), namespaceHTMLElements=False)
        for el in tree.iter():
            assert el.tag not in ("script", "iframe", "object", "embed", "style"), page
            for attr, value in el.attrib.items():
                assert not attr.lower().startswith("on"), (page, attr)
                if attr in ("href", "src"):
                    assert urlsplit(value).scheme in ("http", "https"), (page, value)


def test_nothing_is_written_outside_the_output_folder(built: Built) -> None:
    made = {p.name for p in built.base.iterdir()}
    # Beside each output folder, only its build cache (SQLite and its journal files), its build
    # lock and the generation file servers watch.
    caches = {
        f".{out}.feedsvc-cache.sqlite{suffix}"
        for out in ("public", "strict", "again")
        for suffix in ("", "-wal", "-shm")
    }
    caches |= {f".{out}.feedsvc-{name}" for out in ("public", "strict", "again") for name in ("lock", "generation")}
    assert (
        {"config.yaml", "public", "records"} <= made <= {"config.yaml", "public", "records", "strict", "again"} | caches
    )
    assert ".public.feedsvc-cache.sqlite" in made
    out = built.out.resolve()
    for path in built.out.rglob("*"):
        assert out in path.resolve().parents
        assert not path.is_symlink()
    topic_keys = [p.stem for p in (built.out / "feeds" / "topics").iterdir()]
    assert all(key.isascii() and ".." not in key and "/" not in key for key in topic_keys)


def test_the_same_input_gives_the_same_bytes(built: Built) -> None:
    exit_code, _ = _build(built.base, "again")
    assert exit_code == 0
    again = built.base / "again"
    first = {p.relative_to(built.out): p.read_bytes() for p in built.out.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    shutil.rmtree(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
