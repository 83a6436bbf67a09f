"""Issue 11.13: no message about the `secured` field quotes anything from inside it.

A key given twice inside `secured` was reported under that key's name
(``token: given twice``), and a tag inside it was quoted, in `check`, `build`,
the cache's stored problems (a second build prints them from there) and the
server log (which logs the same `RecordError` strings). Each case here hides
a marker in a key or tag inside `secured`; the marker must appear nowhere,
and the problem must be reported under the field ``secured``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import copy_seeds

from feedsvc.cli import main
from feedsvc.config import Config
from feedsvc.records.read import load_records, parse_bytes, settings_for

HEAD = 'title: "Secret keys"\nwebUrl: "https://example.org/{name}"\npublishedDateTime: 2024-03-01T10:00:00Z\n'
MARKER = "sk_live_Q9xZ"
DUPLICATE = "a key inside it is given twice"

#: name: (what follows the head, the line reported, the reason the report starts with)
CASES = {
    "flow": (f"secured: {{{MARKER}a: one, {MARKER}a: two}}\n", 5, f"{DUPLICATE} (first on line 5)"),
    "block": (f"secured:\n  {MARKER}b: one\n  {MARKER}b: two\n", 7, f"{DUPLICATE} (first on line 6)"),
    "field_name": ("secured:\n  title: one\n  title: two\n", 7, f"{DUPLICATE} (first on line 6)"),
    "nested": (f"secured:\n  - {{{MARKER}c: 1, {MARKER}c: 2}}\n", 6, f"{DUPLICATE} (first on line 6)"),
    "deep": (f"secured:\n  outer:\n    {MARKER}d: 1\n    {MARKER}d: 2\n", 8, f"{DUPLICATE} (first on line 7)"),
    "odd_key": (f'secured:\n  "{MARKER} e!": 1\n  "{MARKER} e!": 2\n', 7, f"{DUPLICATE} (first on line 6)"),
    "tag": (f"secured: !{MARKER}f abc\n", 5, "YAML error inside it: could not determine a constructor for the tag"),
    "nested_tag": (
        f"secured:\n  k: !{MARKER}g abc\n",
        6,
        "YAML error inside it: could not determine a constructor for the tag",
    ),
}


def record(name: str) -> bytes:
    return f"---\n{HEAD.format(name=name)}{CASES[name][0]}---\n".encode()


def expected(name: str) -> str:
    _body, line, reason = CASES[name]
    return f"{name}.txt:{line}: secured: {reason}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_message_names_only_the_secured_field(name: str) -> None:
    loaded = parse_bytes(f"{name}.txt", record(name), settings_for(Config()))
    assert loaded.record is None
    assert [str(p) for p in loaded.problems] == [expected(name)]
    assert MARKER not in repr(loaded.problems)


def test_a_duplicate_outside_secured_still_names_its_key() -> None:
    """Only `secured` is kept quiet: elsewhere the key helps the writer find the mistake."""
    data = f"---\n{HEAD.format(name='x')}title: again\n---\n".encode()
    assert [str(p) for p in parse_bytes("x.txt", data, settings_for(Config())).problems] == [
        "x.txt:5: title: given twice (first on line 2)"
    ]
    data = f"---\n{HEAD.format(name='x')}images:\n  - url: https://a.example/1.png\n    url: https://a.example/2.png\n---\n"
    assert [str(p) for p in parse_bytes("x.txt", data.encode(), settings_for(Config())).problems] == [
        "x.txt:7: url: given twice (first on line 6)"
    ]
    data = f"---\n{HEAD.format(name='x')}secured: a\nsecured: b\n---\n".encode()
    assert [str(p) for p in parse_bytes("x.txt", data, settings_for(Config())).problems] == [
        "x.txt:6: secured: given twice (first on line 5)"
    ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    records = copy_seeds(tmp_path / "records")
    for name in CASES:
        (records / f"{name}.txt").write_bytes(record(name))
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"records_dir": "records", "output_dir": "public", "include_unpublished": True}),
        encoding="utf-8",
    )
    return tmp_path


def run(base: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(base / "config.yaml"), *args])


def reports(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if re.match(r"^\w+\.txt:\d+: ", line))


def test_check_and_build_name_only_the_secured_field(project: Path) -> None:
    want = sorted(expected(name) for name in CASES)
    check = run(project, "check")
    assert check.exit_code == 1
    assert reports(check.output) == want
    for attempt in ("first", "from the cache", "full"):
        build = run(project, "build", "--warnings", *(["--full"] if attempt == "full" else []))
        assert build.exit_code == 0, build.output
        assert reports(build.stderr) == want, attempt
        assert MARKER not in build.output
    assert MARKER not in check.output
    loaded = load_records(project / "records", Config(records_dir=project / "records"))
    assert MARKER not in "\n".join(str(p) for p in loaded.problems)
    assert not any(
        p.is_file() and MARKER in p.read_text(encoding="utf-8", errors="replace")
        for p in (project / "public").rglob("*")
        if p.suffix != ".gz"
    )


def test_the_server_log_names_only_the_secured_field(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`feedsvc serve`'s builder logs each rejected file's problem: the same words, nothing from inside."""
    from feedsvc.config import load_config
    from feedsvc.web import builder

    caplog.set_level(logging.DEBUG)
    config = load_config(project / "config.yaml")
    outcome = builder.Builder(config, config.output_dir, build=builder.build_once).build()
    assert outcome.ok, outcome.summary
    assert MARKER not in caplog.text
    logged = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert logged == sorted(expected(name) for name in CASES)
