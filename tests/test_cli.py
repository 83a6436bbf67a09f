"""cli.py: the commands, their exit codes and messages, run with click's CliRunner."""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import SEEDS, copy_seeds

from feedsvc import cli
from feedsvc.build.write import files_for
from feedsvc.cli import main
from feedsvc.config import load_config
from feedsvc.formats.documents import build_in_memory

SUMMARY = re.compile(
    r"^(?P<read>\d+) records read \((?P<parsed>\d+) parsed, (?P<cached>\d+) from cache\), "
    r"(?P<rejected>\d+) rejected, (?P<left>\d+) left out(?: \([^)]*\))?; "
    r"(?P<feeds>\d+) feeds \((?P<rendered>\d+) rendered, (?P<unchanged>\d+) unchanged\); "
    r"(?P<changed>\d+) files written, (?P<removed>\d+) removed in (?P<seconds>\d+\.\d\d)s → (?P<out>.+)$",
    re.MULTILINE,
)
#: "file: field: reason", with ":line" after the file when the field has one.
PROBLEM = re.compile(r"^(?P<file>[\w./-]+)(?::(?P<line>\d+))?: (?P<field>[\w.\[\]-]+): (?P<reason>.+)$", re.MULTILINE)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config file over a copy of the seeds plus one rejected record."""
    records = copy_seeds(tmp_path / "records")
    (records / "bad.txt").write_text(
        '---\ntitle: "No date"\nwebUrl: "https://example.com/x"\nsecured: "sEcReTvAlUe1234567890abcdef"\n---\n'
    )
    _config(tmp_path / "config.yaml", records_dir="records", output_dir="public", include_unpublished=True)
    return tmp_path


def _config(path: Path, **values: Any) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_build_publishes_and_reports_rejected_records(project: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "build")
    assert result.exit_code == 0, result.output
    problems = [(m["file"], m["field"], m["reason"]) for m in PROBLEM.finditer(result.stderr)]
    assert problems == [("bad.txt", "publishedDateTime", "missing")]
    summary = SUMMARY.search(result.stderr)
    assert summary, result.stderr
    files = set(files_for(build_in_memory(load_config(project / "config.yaml")).documents))
    assert (summary["read"], summary["rejected"], summary["feeds"], summary["changed"]) == (
        "3",
        "1",
        "5",
        str(len(files)),
    )
    assert Path(summary["out"]) == project / "public"
    assert (project / "public/feeds/all.atom").is_file()
    assert "sEcReTvAlUe" not in result.output
    again = _run("--config", str(project / "config.yaml"), "build")
    assert SUMMARY.search(again.stderr)["changed"] == "0"  # type: ignore[index]


def test_build_strict_fails_on_a_rejected_record(project: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "build", "--strict")
    assert result.exit_code == 1
    assert PROBLEM.search(result.stderr)
    (project / "records/bad.txt").unlink()
    assert _run("--config", str(project / "config.yaml"), "build", "--strict").exit_code == 0


def test_build_out_overrides_output_dir(project: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "build", "--out", str(project / "elsewhere"))
    assert result.exit_code == 0
    assert (project / "elsewhere/index.html").is_file()
    assert not (project / "public").exists()


def test_build_warnings_are_opt_in(project: Path) -> None:
    (project / "records/warn.txt").write_text(
        '---\ntitle: "Odd"\nwebUrl: "https://example.com/w"\npublishedDateTime: 2023-01-01T00:00:00Z\nheat: lots\n---\n'
    )
    quiet = _run("--config", str(project / "config.yaml"), "build")
    loud = _run("--config", str(project / "config.yaml"), "build", "--warnings")
    assert "warn.txt" not in quiet.stderr
    assert re.search(r"^warn\.txt:\d+: heat: warning: ", loud.stderr, re.MULTILINE)


def test_check_lists_problems_and_fails(project: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "check")
    assert result.exit_code == 1
    problem = PROBLEM.search(result.stderr)
    assert problem and problem["file"] == "bad.txt" and problem["field"] == "publishedDateTime"
    assert problem["reason"] == "missing"
    assert "3 records checked: 2 usable, 1 rejected" in result.stdout


def test_check_a_folder_of_good_records(project: Path, tmp_path: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "check", str(SEEDS))
    assert result.exit_code == 0, result.output
    assert "2 records checked: 2 usable, 0 rejected" in result.stdout


def test_feeds_lists_every_feed(project: Path) -> None:
    result = _run("--config", str(project / "config.yaml"), "feeds")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "/feeds/all.atom",
        "/feeds/providers/biometricupdate.com.atom",
        "/feeds/providers/jalopnik.com.atom",
        "/feeds/topics/ai.atom",
        "/feeds/topics/computer-vision.atom",
    ]
    assert lines[0].split("\t")[1:] == ["2 of 2", "2023-12-21T17:35:00+00:00", "All articles"]


def test_serve_help() -> None:
    result = _run("serve", "--help")
    assert result.exit_code == 0
    assert "--port" in result.output and "--host" in result.output and "--dev" in result.output


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help(name: str) -> None:
    command = main.commands[name]
    assert command.help and len(command.help.split()) >= 4, name
    result = _run(name, "--help")
    assert result.exit_code == 0
    assert command.help.splitlines()[0] in result.output
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts}"


def test_the_group_has_help_and_a_version() -> None:
    assert main.help
    result = _run("--version")
    assert result.exit_code == 0 and "feedsvc" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_entry: 3\n", "max_entry: unknown key; known keys here: site, records_dir"),
        ("site: [oops\n", "line 2: not valid YAML"),
        ("server:\n  port: eighty\n", "server.port: must be a whole number"),
        ("records_dir: nowhere\n", "records_dir: not a folder"),
    ],
)
@pytest.mark.parametrize("command", ["build", "check", "feeds", "serve"])
def test_a_bad_config_gives_one_line_and_exit_1(tmp_path: Path, text: str, message: str, command: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = _run("--config", str(path), command)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: {message}"), lines
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("where", ["missing.yaml", "a-folder"])
def test_an_unreadable_config_gives_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-folder").mkdir()
    result = _run("--config", str(tmp_path / where), "build")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and "cannot read" in result.stderr


def test_an_unwritable_output_gives_one_line(project: Path) -> None:
    (project / "public").write_text("a file where the folder should be")
    result = _run("--config", str(project / "config.yaml"), "build")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: cannot write the output:")
    assert "Traceback" not in result.output


def test_config_option_and_environment_choose_the_file(project: Path) -> None:
    records = str(project / "records")
    one = _config(project / "one.yaml", records_dir=records, include_unpublished=True, site={"title": "One"})
    two = _config(project / "two.yaml", records_dir=records, include_unpublished=True, site={"title": "Two"})
    out = str(project / "out")
    _run("build", "--out", out, env={"FEEDSVC_CONFIG": str(one)})
    assert "<title>One</title>" in (project / "out/index.html").read_text()
    _run("--config", str(two), "build", "--out", out, env={"FEEDSVC_CONFIG": str(one)})
    assert "<title>Two</title>" in (project / "out/index.html").read_text()


# --- Progress on a terminal ----------------------------------------------------


def _build_on_a_terminal(project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run `feedsvc build` in-process with stderr on a pseudo-terminal; what it showed."""
    master, slave = os.openpty()
    shown: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    terminal = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        main.main(["--config", str(project / "config.yaml"), "build"], standalone_mode=False)
    finally:
        terminal.flush()
        monkeypatch.undo()
        terminal.close()
        reader.join(timeout=5)
        os.close(master)
    return b"".join(shown).decode("utf-8", "replace")


def test_a_large_build_on_a_terminal_shows_progress(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "PROGRESS_THRESHOLD", 3)
    shown = _build_on_a_terminal(project, monkeypatch)
    assert "Reading records" in shown
    assert "100%" in shown
    assert SUMMARY.search(shown.replace("\r", "\n"))


def test_a_small_build_on_a_terminal_shows_no_progress(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _build_on_a_terminal(project, monkeypatch)
    assert "Reading records" not in shown
    assert SUMMARY.search(shown.replace("\r", "\n"))


def test_no_progress_when_stderr_is_not_a_terminal(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "PROGRESS_THRESHOLD", 1)
    result = _run("--config", str(project / "config.yaml"), "build")
    assert result.exit_code == 0
    assert "Reading records" not in result.output and "%" not in result.output
