"""Issue 11.6 and 11.7: record file names that are not UTF-8, or that could forge report lines.

A name that is not valid UTF-8 is reported as a rejected file and the rest is
built; a name with a newline, an ANSI escape or another character a terminal
acts on is shown escaped (`feedsvc.text.printable_name`), so every line
`build` and `check` print is one real report. Both are driven through the
real CLI (click's CliRunner on `feedsvc.cli.main`), as a user would run them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import SEEDS
from hypothesis import given
from hypothesis import strategies as st

from feedsvc.cli import main
from feedsvc.config import Config
from feedsvc.errors import RecordError
from feedsvc.records.read import load_records
from feedsvc.records.walk import record_files, walk_records
from feedsvc.text import printable_name

#: One report line: "file: field: reason" with ":line" after the file when there is one.
#: The file may hold anything printable but a raw line break or escape.
REPORT = re.compile(r"^(?P<file>[^\x00-\x1f\x7f]+?)(?::(?P<line>\d+))?: (?P<field>[\w.\[\]-]+): (?P<reason>.+)$")
BUILD_SUMMARY = re.compile(r"^\d+ records read \(.*\), (?P<rejected>\d+) rejected, .* → .+$")
CHECK_SUMMARY = re.compile(
    r"^(?P<files>\d+) records checked: (?P<usable>\d+) usable, (?P<rejected>\d+) rejected, \d+ warnings(?:; .*)?$"
)
RECORD = (
    '---\ntitle: "{title}"\nwebUrl: "https://example.org/{slug}"\n'
    "publishedDateTime: 2024-03-01T10:00:00Z\ntopics: [Names]\n---\n"
)


def project(tmp_path: Path) -> Path:
    """A config over a copy of the seeds; the caller adds the odd files."""
    records = tmp_path / "records"
    records.mkdir()
    for seed in SEEDS.iterdir():
        (records / seed.name).write_bytes(seed.read_bytes())
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"records_dir": "records", "output_dir": "public", "include_unpublished": True}),
        encoding="utf-8",
    )
    return tmp_path


def write_bytes_name(folder: Path, name: bytes, body: str) -> None:
    """Write a file whose name is raw bytes; skip where the file system refuses such names."""
    path = os.path.join(os.fsencode(folder), name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body.encode("utf-8"))
    except OSError as e:  # macOS (APFS) refuses names that are not UTF-8
        pytest.skip(f"this file system refuses the name {name!r}: {e}")


def run(base: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(base / "config.yaml"), *args])


def report_lines(text: str) -> list[re.Match[str]]:
    """Every line of `text` but the summaries, each parsed as a report; fails on a line that is not one."""
    found = []
    for line in text.splitlines():
        if BUILD_SUMMARY.match(line) or CHECK_SUMMARY.match(line):
            continue
        m = REPORT.match(line)
        assert m, f"not a report line: {line!r}"
        found.append(m)
    return found


# -- 11.6: names that are not UTF-8 --------------------------------------------------------


@pytest.fixture
def undecodable(tmp_path: Path) -> Path:
    """The seeds plus a file and a folder whose names are not UTF-8, each holding a good record."""
    base = project(tmp_path)
    records = base / "records"
    write_bytes_name(records, b"bad\xff.txt", RECORD.format(title="Bad name", slug="bad-name"))
    write_bytes_name(records, b"dir\xfe\xfd/inside.txt", RECORD.format(title="Bad folder", slug="bad-folder"))
    write_bytes_name(records, b"ignored\xff.png", "not a record")  # not a record name: not read, not reported
    (records / "good.txt").write_text(RECORD.format(title="Good neighbour", slug="good"), encoding="utf-8")
    return base


NOT_UTF8 = "name is not valid UTF-8 (its bad bytes are shown as \\xNN); rename it to publish the record"
UNDECODABLE_REPORTS = [
    ("bad\\xff.txt", "-", NOT_UTF8),
    ("dir\\xfe\\xfd/inside.txt", "-", NOT_UTF8),
]


def test_build_reports_a_name_that_is_not_utf8_and_builds_the_rest(undecodable: Path) -> None:
    for attempt in ("first build", "incremental build", "full build"):
        result = run(undecodable, "build", *(["--full"] if attempt == "full build" else []))
        assert result.exit_code == 0, (attempt, result.output)
        assert "Traceback" not in result.output and "surrogates" not in result.output
        problems = [(m["file"], m["field"], m["reason"]) for m in report_lines(result.stderr)]
        assert problems == UNDECODABLE_REPORTS, attempt  # the cache keeps and gives back the same reports
        summary = [m for line in result.stderr.splitlines() if (m := BUILD_SUMMARY.match(line))]
        assert summary and summary[0]["rejected"] == "2", result.stderr
        atom = (undecodable / "public/feeds/all.atom").read_text(encoding="utf-8")
        assert "Good neighbour" in atom and "Bad name" not in atom and "Bad folder" not in atom
    assert run(undecodable, "build", "--strict").exit_code == 1  # a rejection, as --strict counts them


def test_check_reports_a_name_that_is_not_utf8(undecodable: Path) -> None:
    result = run(undecodable, "check")
    assert result.exit_code == 1, result.output
    problems = [(m["file"], m["field"], m["reason"]) for m in report_lines(result.output)]
    assert problems == UNDECODABLE_REPORTS
    summary = CHECK_SUMMARY.search(result.stdout)
    assert summary and (summary["files"], summary["usable"], summary["rejected"]) == ("5", "3", "2"), result.stdout


def test_the_walk_never_yields_a_name_that_cannot_be_stored(undecodable: Path) -> None:
    """Every path the walk gives can be written as UTF-8 (the cache, the terminal) and never names a real file."""
    rels = record_files(undecodable / "records")
    for rel in rels:
        rel.encode("utf-8")  # no lone surrogates
    good = [rel for rel in rels if (undecodable / "records" / rel).is_file()]
    assert len(good) == 3 and len(rels) == 5
    entries = dict(walk_records(undecodable / "records"))
    assert all(entry.stat().st_size > 0 for entry in entries.values())  # scan_rows stats every entry
    loaded = load_records(undecodable / "records", Config(records_dir=undecodable / "records"))
    assert len(loaded.records) == 3 and "Good neighbour" in {r.title for r in loaded.records}
    assert [str(e) for e in loaded.errors] == [": ".join(report) for report in UNDECODABLE_REPORTS]


def test_a_real_file_named_like_the_escape_is_a_different_file(tmp_path: Path) -> None:
    r"""`bad\xff.txt` spelled with a real backslash is a good record, shown as `bad\\xff.txt`."""
    base = project(tmp_path)
    records = base / "records"
    write_bytes_name(records, b"bad\xff.txt", RECORD.format(title="Undecodable", slug="u"))
    (records / "bad\\xff.txt").write_text(RECORD.format(title="Backslash", slug="b"), encoding="utf-8")
    result = run(base, "build")
    assert result.exit_code == 0, result.output
    assert [(m["file"], m["reason"]) for m in report_lines(result.stderr)] == [("bad\\xff.txt", NOT_UTF8)]
    assert "Backslash" in (base / "public/feeds/all.atom").read_text(encoding="utf-8")


# -- 11.7: names that could forge report lines ---------------------------------------------

#: Record file names a hostile folder could hold, and how every report shows them.
FORGING = {
    "x.txt\nforged.txt: title: missing\n.txt": "x.txt\\nforged.txt: title: missing\\n.txt",
    "esc\x1b[2K\x1b[31mred.txt": "esc\\x1b[2K\\x1b[31mred.txt",
    "cr\rover.txt": "cr\\rover.txt",
    "tab\there.txt": "tab\\there.txt",
    "back\\slash.txt": "back\\\\slash.txt",
    "bidi\u202etxt.exe.txt": "bidi\\u202etxt.exe.txt",
    "c1\x9bcsi.txt": "c1\\u009bcsi.txt",
    "line\u2028sep.txt": "line\\u2028sep.txt",
    "überall.txt": "überall.txt",  # printable text stays as it is
}


@pytest.fixture
def forging(tmp_path: Path) -> Path:
    """The seeds plus one rejected record (no date) under each forging name."""
    base = project(tmp_path)
    for name in FORGING:
        (base / "records" / name).write_text(
            f'---\ntitle: "Forger"\nwebUrl: "https://example.org/{len(name)}"\n---\n', encoding="utf-8"
        )
    return base


def _assert_forgery_escaped(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text and "\x9b" not in text
    lines = [m.string for m in report_lines(text)]
    # A name may hold ": " itself, so each line is cut at the one report it must end with.
    suffix = ": publishedDateTime: missing"
    assert all(line.endswith(suffix) for line in lines), text
    assert sorted(line[: -len(suffix)] for line in lines) == sorted(FORGING.values())


def test_check_shows_forging_names_escaped(forging: Path) -> None:
    result = run(forging, "check")
    assert result.exit_code == 1
    _assert_forgery_escaped(result.output)


def test_build_shows_forging_names_escaped(forging: Path) -> None:
    for _ in range(2):  # the second build's reports come from the cache
        result = run(forging, "build")
        assert result.exit_code == 0, result.output
        _assert_forgery_escaped(result.stderr)


def test_a_duplicate_warning_escapes_both_names(tmp_path: Path) -> None:
    base = project(tmp_path)
    body = RECORD.format(title="Same", slug="same")
    (base / "records" / "a\nfirst.txt").write_text(body, encoding="utf-8")
    (base / "records" / "b\x1bsecond.txt").write_text(body, encoding="utf-8")
    for _ in range(2):  # the second build's warning comes from the cache
        result = run(base, "build", "--warnings")
        assert "\x1b" not in result.output
        warnings = [m for m in report_lines(result.stderr) if m["reason"].startswith("warning: same article")]
        assert len(warnings) == 1, result.output
        assert {warnings[0]["file"], warnings[0]["reason"].split(" as ")[1].split(",")[0]} == {
            "a\\nfirst.txt",
            "b\\x1bsecond.txt",
        }


# -- the escape itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain/name-1.txt", "plain/name-1.txt"),
        ("a\nb", "a\\nb"),
        ("a\\nb", "a\\\\nb"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
        ("bad\udcff", "bad\\xff"),  # an undecodable byte, as os.fsdecode gives it
        ("\udcc3\udca9", "\\xc3\\xa9"),
        ("\x85\x9f", "\\u0085\\u009f"),  # C1 controls: characters, not bytes
        ("\ud800", "\\ud800"),  # a surrogate that is no escaped byte
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("\U000e0001tag", "\\U000e0001tag"),
        ("Künstliche Intelligenz 😀 日本", "Künstliche Intelligenz 😀 日本"),
    ],
)
def test_printable_name(name: str, shown: str) -> None:
    assert printable_name(name) == shown
    assert shown.isprintable()


@given(st.text(), st.text())
def test_printable_name_tells_different_names_apart(a: str, b: str) -> None:
    assert printable_name(a).isprintable()
    if a != b:
        assert printable_name(a) != printable_name(b)


def test_a_record_error_shows_path_field_and_reason_on_one_line() -> None:
    e = RecordError("a\nb.txt", "title", "missing\nforged.txt: title: missing", 3)
    assert str(e) == "a\\nb.txt:3: title: missing\\nforged.txt: title: missing"
    assert e.path == "a\nb.txt"  # the path itself is kept: it names the file
    assert str(RecordError("x.txt", "ti\x1btle", "r")) == "x.txt: ti\\x1btle: r"
    # A reason keeps its own backslashes (PyYAML words some errors with them); only line breaks and controls go.
    assert str(RecordError("x.txt", "-", "found character '\\t'")) == "x.txt: -: found character '\\t'"


def test_the_server_log_shows_names_escaped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`feedsvc serve`'s builder logs each rejected file as `build` reports it: one escaped line each."""
    from feedsvc.config import load_config
    from feedsvc.web import builder

    base = project(tmp_path)
    write_bytes_name(base / "records", b"bad\xff.txt", RECORD.format(title="Bad name", slug="bad-name"))
    (base / "records" / "x\n\x1b[31mforged.txt").write_text('---\ntitle: "No link"\n---\n', encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    config = load_config(base / "config.yaml")
    outcome = builder.Builder(config, config.output_dir, build=builder.build_once).build()
    assert outcome.ok, outcome.summary
    assert "\x1b" not in caplog.text and "\udcff" not in caplog.text
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all("\n" not in line for line in logged)
    assert f"bad\\xff.txt: -: {NOT_UTF8}" in logged
    assert "x\\n\\x1b[31mforged.txt: publishedDateTime: missing" in logged
