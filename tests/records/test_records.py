"""The loader against hostile and broken record files.

Each case in tests/data/records is a record file NAME.txt with its expected
outcome beside it in NAME.expect.yaml (a comment says what it checks):

    status: ok | rejected
    field, reason, line   the first error: its field, a part of its reason, its line
    errors                every field that has an error (when there are several)
    warnings              exactly the fields that get warnings
    url                   ok only: the canonical URL the entry id is made from
    record                ok only: attributes of the record (see RECORD_CHECKS)

A new case is a new pair of files. Cases too big or too odd to commit (many
megabytes, a FIFO) are made by the tests below them.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import DATA, ROOT

from feedsvc.cli import main
from feedsvc.config import Config
from feedsvc.model import Record
from feedsvc.records.fields import Settings
from feedsvc.records.read import Loaded, load_file, load_records, parse_bytes, settings_for
from feedsvc.records.walk import record_files

CASES_DIR = DATA / "records"
CASES = sorted(CASES_DIR.glob("*.txt"))
SETTINGS = settings_for(Config())
#: Loading any one file, however hostile, takes less than this (seconds).
MAX_SECONDS = 1.0
_SECURED = re.compile(rb'^[\s#-]*(?:value|secured):\s*"([^"]+)"', re.MULTILINE)


def expectation(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.with_suffix(".expect.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data.get("status") in ("ok", "rejected"), path
    return data


def secured_of(path: Path) -> str | None:
    """A case's secured value, read from its bytes (the YAML may be broken on purpose)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = data.decode("utf-16").encode("utf-8")
    m = _SECURED.search(data.replace(b"\r", b"\n"))
    return m.group(1).decode("ascii") if m else None


def entry_id(url: str) -> str:
    """The id the design notes promise: urn:uuid: + UUID5(URL namespace, canonical URL)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}"


#: How each key under `record:` in an expect file is checked.
RECORD_CHECKS: dict[str, Callable[[Record, Any], bool]] = {
    "title": lambda r, v: r.title == v,
    "title_max": lambda r, v: len(r.title) <= v,
    "title_ends": lambda r, v: r.title.endswith(v),
    "link": lambda r, v: r.link == v,
    "published": lambda r, v: r.published.isoformat() == v,
    "updated": lambda r, v: r.updated.isoformat() == v,
    "excerpt": lambda r, v: r.excerpt == v,
    "excerpt_max": lambda r, v: 0 < len(r.excerpt) <= v,
    "topics": lambda r, v: list(r.topics) == v,
    "topics_max": lambda r, v: all(0 < len(t) <= v for t in r.topics) and bool(r.topics),
    "topics_count": lambda r, v: len(r.topics) == v,
    "provider": lambda r, v: r.provider.domain == v,
    "provider_name": lambda r, v: r.provider.name == v,
    "provider_name_max": lambda r, v: 0 < len(r.provider.name) <= v,
    "images": lambda r, v: [i.url for i in r.images] == v,
    "image_sizes": lambda r, v: [[i.width, i.height] for i in r.images] == v,
    "images_count": lambda r, v: len(r.images) == v,
    "related": lambda r, v: [x.url for x in r.related] == v,
    "related_titles": lambda r, v: [x.title for x in r.related] == v,
    "related_count": lambda r, v: len(r.related) == v,
    "category": lambda r, v: r.category == v,
    "quality": lambda r, v: r.quality == v,
    "heat": lambda r, v: r.heat == v,
    "is_published": lambda r, v: r.is_published is v,
}


def check_outcome(loaded: Loaded, expect: dict[str, Any], name: str, secured: str | None) -> None:
    """Assert that `loaded` is what `expect` (an expect file's mapping) says."""
    errors = [p for p in loaded.problems if not p.is_warning]
    warnings = [p for p in loaded.problems if p.is_warning]
    for problem in loaded.problems:
        text = str(problem)
        assert text.startswith(f"{name}:"), text
        assert "Traceback" not in text and "\n" not in text, text
        if problem.line is not None:
            assert text.startswith(f"{name}:{problem.line}: {problem.field}: "), text
        if secured:
            for piece in secured.split(";"):
                assert piece not in text
    assert sorted({w.field for w in warnings}) == sorted(set(expect.get("warnings", []))), [str(w) for w in warnings]
    if expect["status"] == "ok":
        assert errors == [], [str(e) for e in errors]
        record = loaded.record
        assert record is not None
        assert record.id == entry_id(expect["url"])
        for key, value in expect.get("record", {}).items():
            assert RECORD_CHECKS[key](record, value), (key, value, record)
        if "line" in expect:
            assert warnings[0].line == expect["line"]
    else:
        assert loaded.record is None
        assert errors, "rejected without an error"
        first = errors[0]
        assert first.field == expect["field"], str(first)
        assert expect["reason"] in first.reason, str(first)
        if "line" in expect:
            assert first.line == expect["line"], str(first)
        if "errors" in expect:
            assert [e.field for e in errors] == expect["errors"]


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_case(path: Path) -> None:
    expect = expectation(path)
    started = time.perf_counter()
    loaded = load_file(CASES_DIR, path.name, SETTINGS)
    assert time.perf_counter() - started < MAX_SECONDS
    check_outcome(loaded, expect, path.name, secured_of(path))


def test_every_case_has_an_expectation_and_a_secret() -> None:
    expects = sorted(CASES_DIR.glob("*.expect.yaml"))
    assert len(CASES) >= 100
    assert {p.name.removesuffix(".expect.yaml") for p in expects} == {p.stem for p in CASES}
    secrets = [secured_of(p) for p in CASES if p.read_bytes().strip()]
    assert all(secrets) and len(set(secrets)) == len(secrets)


def test_the_cases_cover_both_outcomes_and_warnings() -> None:
    outcomes = [expectation(p) for p in CASES]
    assert sum(e["status"] == "ok" for e in outcomes) >= 50
    assert sum(e["status"] == "rejected" for e in outcomes) >= 50
    assert sum(bool(e.get("warnings")) for e in outcomes) >= 30


def test_a_python_tag_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = f'---\ntitle: !!python/object/apply:os.system ["touch {marker}"]\n---\n'.encode()
    loaded = parse_bytes("x.txt", data, SETTINGS)
    assert loaded.record is None and not marker.exists()


# --- Generated cases: too big, too slow or too odd to commit -------------------

HEAD = b'---\ntitle: "Big"\nwebUrl: "https://example.org/big"\npublishedDateTime: 2024-01-01T00:00:00Z\n'


def _generated() -> dict[str, tuple[bytes, dict[str, Any]]]:
    return {
        "huge_file": (
            HEAD + b"excerpt: " + b"x" * (3 * 1024 * 1024) + b"\n---\n",
            {"status": "rejected", "field": "-", "reason": "over the limit of 1,048,576 (limits.max_file_bytes)"},
        ),
        "deep_flow_100k": (
            HEAD + b"excerpt: " + b"[" * 100_000 + b"]" * 100_000 + b"\n---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply", "line": 5},
        ),
        "deep_flow_unclosed": (
            HEAD + b"excerpt: " + b"[" * 100_000 + b"\n---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply", "line": 5},
        ),
        "deep_mapping": (
            HEAD + b"excerpt: " + b"{a: " * 50_000 + b"1" + b"}" * 50_000 + b"\n---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply", "line": 5},
        ),
        "deep_block_sequence": (
            HEAD + b"excerpt:\n" + b"- " * 400_000 + b"x\n---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply", "line": 6},
        ),
        "deep_complex_keys": (
            HEAD + b"? " * 100_000 + b"x\n---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply", "line": 5},
        ),
        "deep_indentation": (
            HEAD + b"".join(b" " * i + b"a:\n" for i in range(1_400)) + b"---\n",
            {"status": "rejected", "field": "-", "reason": "nested too deeply"},
        ),
        # A megabyte of 250,000 values is as slow as PyYAML is (about 1.5 s here),
        # no slower: the field rules read only the first few items.
        "wide_flow_1mb": (
            HEAD + b"topics: [" + b"AI, " * 250_000 + b"AI]\n---\n",
            {
                "status": "ok",
                "warnings": ["topics"],
                "url": "https://example.org/big",
                "record": {"topics": ["AI"]},
                "seconds": 4,
            },
        ),
        "many_images_1mb": (
            HEAD + b"images:\n" + b'  - {url: "https://i.example.com/a.jpg"}\n' * 24_000 + b"---\n",
            {
                "status": "ok",
                "warnings": ["images"],
                "url": "https://example.org/big",
                "record": {"images_count": 10},
                "seconds": 4,
            },
        ),
        "huge_markup_excerpt": (
            HEAD + b'excerpt: "' + b"<b>x</b> " * 60_000 + b'"\n---\n',
            {
                "status": "ok",
                "warnings": ["excerpt"],
                "url": "https://example.org/big",
                "record": {"excerpt_max": 2000},
            },
        ),
        "alias_bomb_deep": (
            HEAD
            + b'a0: &a0 ["lol"]\n'
            + b"".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n".encode() for i in range(1, 200))
            + b"---\n",
            {"status": "rejected", "field": "-", "reason": "anchors and aliases", "line": 5},
        ),
    }


GENERATED = _generated()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_case(name: str, tmp_path: Path) -> None:
    data, expect = GENERATED[name]
    (tmp_path / f"{name}.txt").write_bytes(data)
    started = time.perf_counter()
    loaded = load_file(tmp_path, f"{name}.txt", SETTINGS)
    assert time.perf_counter() - started < expect.get("seconds", MAX_SECONDS)
    check_outcome(loaded, expect, f"{name}.txt", None)


def test_alias_bomb_is_rejected_without_expansion() -> None:
    data = (CASES_DIR / "yaml_alias_bomb.txt").read_bytes()
    started = time.perf_counter()
    for _ in range(20):
        loaded = parse_bytes("bomb.txt", data, SETTINGS)
    assert (time.perf_counter() - started) / 20 < 0.05
    assert loaded.record is None


def test_a_fifo_does_not_hang_the_loader(tmp_path: Path) -> None:
    good = (CASES_DIR / "ok_minimal.txt").read_bytes()
    (tmp_path / "a_good.txt").write_bytes(good)
    os.mkfifo(tmp_path / "b_pipe.txt")
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(load_records(tmp_path, Config())), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the loader blocked on a FIFO"
    assert record_files(tmp_path) == ["a_good.txt"]
    assert [r.path for r in result[0].records] == ["a_good.txt"]


def test_reading_a_fifo_directly_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    result: list[Loaded] = []
    worker = threading.Thread(target=lambda: result.append(load_file(tmp_path, "pipe.txt", SETTINGS)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "reading a FIFO blocked"
    (problem,) = result[0].problems
    assert result[0].record is None and "not a regular file" in problem.reason


def test_only_regular_record_files_are_listed(tmp_path: Path) -> None:
    good = (CASES_DIR / "ok_minimal.txt").read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_bytes(good)
    (tmp_path / "a.txt").write_bytes(good)
    (tmp_path / "notes.json").write_bytes(b"{}")
    (tmp_path / ".hidden.txt").write_bytes(good)
    (tmp_path / "folder.txt").mkdir()
    (tmp_path / "null.txt").symlink_to("/dev/null")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(tmp_path / "pipe.md")
    assert record_files(tmp_path) == ["a.txt", "sub/b.md"]


def test_a_file_over_the_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.txt"
    with open(path, "wb") as f:
        f.truncate(8 * 1024**3)  # 8 GiB, sparse: reading it would take minutes
    started = time.perf_counter()
    loaded = load_file(tmp_path, "sparse.txt", SETTINGS)
    assert time.perf_counter() - started < 0.1
    assert "over the limit" in loaded.problems[0].reason


def test_many_files_load_in_path_order(tmp_path: Path) -> None:
    template = (CASES_DIR / "ok_minimal.txt").read_text(encoding="utf-8")
    for i in range(300):
        (tmp_path / f"{i:04d}.txt").write_text(template.replace("ok-minimal", f"n{i}"), encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    loaded = load_records(tmp_path, Config())
    assert loaded.files == 301 and len(loaded.records) == 300
    assert [r.path for r in loaded.records] == sorted(r.path for r in loaded.records)
    assert [e.path for e in loaded.errors] == ["bad.txt"]


# --- Line numbers are the file's -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("---\ntitle: x\nwebUrl: [a\nfoo: b\n---\n", 4),
        ("\n\n---\n\n\ntitle: [\n---\n", 7),
        ("---\n\n\n\ntitle: 'x\n---\n", 6),
        ("---\ntitle: x\n  bad: indent\n---\n", 3),
        ("\ufeff---\r\n\r\ntitle: {\r\n---\r\n", 4),
    ],
)
def test_yaml_errors_name_the_file_line(text: str, line: int) -> None:
    loaded = parse_bytes("x.txt", text.encode("utf-8"), SETTINGS)
    (error,) = loaded.problems
    assert error.line == line, str(error)


def test_field_errors_name_the_file_line() -> None:
    text = "\n\n---\n# comment\n\ntitle: yes\nwebUrl: 'javascript:x'\n\npublishedDateTime: soon\n---\n"
    loaded = parse_bytes("x.txt", text.encode(), SETTINGS)
    assert [(e.field, e.line) for e in loaded.problems] == [("title", 6), ("webUrl", 7), ("publishedDateTime", 9)]


# --- Mojibake repair is a setting --------------------------------------------------


def test_mojibake_is_left_alone_when_repair_is_off() -> None:
    data = (CASES_DIR / "text_mojibake.txt").read_bytes()
    repaired = parse_bytes("m.txt", data, Settings(repair_mojibake=True)).record
    kept = parse_bytes("m.txt", data, Settings(repair_mojibake=False)).record
    assert repaired is not None and kept is not None
    assert repaired.title == "It’s café time — naïve “quotes”"
    assert kept.title.startswith("Itâ€™s cafÃ© time â€” naÃ¯ve â€œquotesâ€")


# --- The check command ---------------------------------------------------------------


def test_check_prints_one_line_per_rejected_file_and_exits_1() -> None:
    result = CliRunner().invoke(main, ["--config", str(_config_file()), "check", "--no-warnings", str(CASES_DIR)])
    assert result.exit_code == 1
    rejected = {p.name for p in CASES if expectation(p)["status"] == "rejected"}
    lines = [line for line in result.stderr.splitlines() if line]
    named = [line.split(":", 1)[0] for line in lines]
    assert set(named) == rejected
    assert "Traceback" not in result.output
    for line in lines:
        assert re.match(r"^[\w.-]+\.txt(:\d+)?: [\w.\[\]-]+: \S", line), line
    assert f"{len(CASES)} records checked" in result.stdout


def test_check_exits_0_when_every_record_is_usable(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_bytes((CASES_DIR / "ok_full.txt").read_bytes())
    result = CliRunner().invoke(main, ["--config", str(_config_file()), "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 usable, 0 rejected" in result.stdout


def _config_file() -> Path:
    return ROOT / "config.yaml"
