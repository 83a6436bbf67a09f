"""A synthetic corpus of a few thousand records (feedsvc.synth), built by `feedsvc build`.

The build runs once per session (the `corpus` fixture in conftest.py); these
tests look at what it wrote with real clients: feedparser for every feed, jing
with the Atom RELAX NG schema for every .atom file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from conftest import ATOM_SCHEMA, BAD_RECORDS, CORPUS_MAX_ENTRIES, CORPUS_RECORDS, Corpus, feed_files

#: Secrets are searched for in pieces this long: any leak of at least twice
#: this many consecutive characters of a secret contains a whole piece.
PIECE = 12
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=]{%d,}" % PIECE)


def leaked(secrets: Iterable[str], blobs: Iterable[bytes]) -> set[str]:
    """The secrets that appear (whole, or a run of 2×PIECE-1 characters) in any blob."""
    pieces: dict[bytes, str] = {}
    for secret in secrets:
        for part in re.split(r"[;\s]+", secret):
            data = part.encode("utf-8")
            for i in range(0, len(data) - PIECE + 1, PIECE):
                pieces[data[i : i + PIECE]] = secret
    found: set[str] = set()
    for blob in blobs:
        for run in _BASE64_RUN.findall(blob):
            for i in range(len(run) - PIECE + 1):
                secret = pieces.get(run[i : i + PIECE])
                if secret is not None:
                    found.add(secret)
    return found


def _parse(path: Path) -> Any:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, (path, parsed.get("bozo_exception"))
    return parsed


@pytest.fixture(scope="module")
def parsed_feeds(corpus: Corpus) -> dict[Path, Any]:
    return {path: _parse(path) for path in feed_files(corpus.out)}


def test_the_build_succeeds_and_reports_the_rejected_records(corpus: Corpus) -> None:
    assert corpus.exit_code == 0, corpus.output
    summary = corpus.output.strip().splitlines()[-1]
    read = CORPUS_RECORDS + len(BAD_RECORDS)
    assert summary.startswith(f"{read} records read ({read} parsed, 0 from cache), {len(BAD_RECORDS)} rejected, ")
    for name in BAD_RECORDS:
        assert re.search(rf"^{re.escape(name)}(:\d+)?: [\w.\-\[\]]+: ", corpus.output, re.MULTILINE), name
    assert "Traceback" not in corpus.output


def test_every_feed_parses(parsed_feeds: dict[Path, Any], corpus: Corpus) -> None:
    assert len(parsed_feeds) > 200
    assert (corpus.out / "feeds/all.rss") in parsed_feeds
    for path, parsed in parsed_feeds.items():
        assert parsed.version == ("rss20" if path.suffix == ".rss" else "atom10"), path


def test_no_feed_exceeds_max_entries(parsed_feeds: dict[Path, Any], corpus: Corpus) -> None:
    sizes = {path: len(parsed.entries) for path, parsed in parsed_feeds.items() if path.parent.name != "archive"}
    assert max(sizes.values()) == CORPUS_MAX_ENTRIES
    assert sizes[corpus.out / "feeds/all.atom"] == CORPUS_MAX_ENTRIES
    assert min(sizes.values()) >= 1
    # Archive pages average page_size (here max_entries) and hold at most four times it.
    pages = [len(parsed.entries) for path, parsed in parsed_feeds.items() if path.parent.name == "archive"]
    assert pages and 1 <= min(pages) and max(pages) <= 4 * CORPUS_MAX_ENTRIES


def test_every_feed_is_newest_first(parsed_feeds: dict[Path, Any]) -> None:
    for path, parsed in parsed_feeds.items():
        keys = [(datetime(*e.published_parsed[:6], tzinfo=UTC), e.id) for e in parsed.entries]
        # Newest first; entries published at the same second are in id order.
        assert keys == sorted(keys, key=lambda k: (-k[0].timestamp(), k[1])), path


def test_rss_and_atom_of_a_feed_hold_the_same_entries(parsed_feeds: dict[Path, Any]) -> None:
    for path, parsed in parsed_feeds.items():
        if path.suffix == ".rss":
            atom = parsed_feeds[path.with_suffix(".atom")]
            assert [e.id for e in parsed.entries] == [e.id for e in atom.entries], path


def test_an_article_has_one_id_everywhere(parsed_feeds: dict[Path, Any]) -> None:
    ids: dict[str, set[str]] = {}
    for parsed in parsed_feeds.values():
        for entry in parsed.entries:
            ids.setdefault(entry.link, set()).add(entry.id)
    assert all(len(found) == 1 for found in ids.values())


def test_every_atom_file_matches_the_schema(corpus: Corpus) -> None:
    assert shutil.which("jing"), "jing is not installed: run scripts/setup --system (as root, it uses apt)"
    atoms = [str(p) for p in feed_files(corpus.out) if p.suffix == ".atom"]
    assert len(atoms) > 100
    done = subprocess.run(
        ["jing", "-c", str(ATOM_SCHEMA), *atoms], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[:3000]


def test_no_secured_value_in_any_output(corpus: Corpus) -> None:
    assert len(corpus.secrets) == CORPUS_RECORDS + len(BAD_RECORDS)
    files = sorted(p for p in corpus.out.rglob("*") if p.is_file())
    assert len(files) > 600
    assert leaked(corpus.secrets, (p.read_bytes() for p in files)) == set()
    assert leaked(corpus.secrets, [corpus.output.encode("utf-8")]) == set()


def test_the_leak_finder_finds_leaks() -> None:
    secret = "IHkDRX6eFf7ebLctOLehCq/NxYzeef022d54ly/gQmn/A1/bBS4lGGwv2N7g8CnNVFPN4;p6zYN0BLC8blLe57+Ezk7Q=="
    other = "QjpdY3BsEjhsdcQ38rsxiTMpi3rKvZEtVwVQqTdNM4EaAJgZGt//p62GN0L0Ir;XKevw0cf5Z1vYqdFjfnOsQ=="
    assert leaked([secret, other], [b"<title>clean text</title>"]) == set()
    assert leaked([secret, other], [b"<x>" + secret.encode() + b"</x>"]) == {secret}
    assert leaked([secret, other], [b'href="https://x/?q=' + secret[20:50].encode() + b'"']) == {secret}
    assert leaked([secret, other], [b"tail p6zYN0BLC8blLe57+Ezk7Q== leaked"]) == {secret}
