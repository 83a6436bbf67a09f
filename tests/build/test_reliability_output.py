"""Reliability: where a build may write, whose files it may replace, what a client can make the server do.

Issue 11 points 1, 2, 9, 10 and 11, each through the real command or a real
`feedsvc serve` on 127.0.0.1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import SEEDS
from servers import Server, free_port, write_config

from feedsvc.cli import main


def _config(tmp_path: Path, output_dir: str, records: Path | None = None) -> Path:
    if records is None:
        records = tmp_path / "records"
        shutil.copytree(SEEDS, records)
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"records_dir": str(records), "output_dir": output_dir, "include_unpublished": True}), "utf-8"
    )
    return path


@pytest.mark.parametrize(
    ("output_dir", "why"),
    [
        ("/", "is the root folder"),
        ("~", "is the home folder"),
        ("..", "holds records_dir"),  # the config's folder's parent holds the records
        (".", "holds records_dir"),
    ],
)
def test_an_output_folder_that_must_not_be_written_is_refused(tmp_path: Path, output_dir: str, why: str) -> None:
    config = _config(tmp_path, output_dir)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, ["--config", str(config), "build"])
    assert result.exit_code != 0
    assert "output_dir" in result.output and why in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no cache


def test_out_on_the_command_line_is_checked_too(tmp_path: Path) -> None:
    config = _config(tmp_path, "public")
    result = CliRunner().invoke(main, ["--config", str(config), "build", "--out", "/"])
    assert result.exit_code != 0 and "is the root folder" in result.output


def test_a_users_own_files_are_never_replaced_without_asking(tmp_path: Path) -> None:
    config = _config(tmp_path, "site")
    site = tmp_path / "site"
    (site / "feeds").mkdir(parents=True)
    mine = {
        "index.html": b"<p>my own front page</p>\n",
        "feeds/all.atom": b"<feed>my own</feed>\n",
        "about.html": b"hi",
    }
    for rel, body in mine.items():
        (site / rel).write_bytes(body)
    result = CliRunner().invoke(main, ["--config", str(config), "build"])
    assert result.exit_code != 0
    assert "feedsvc did not write" in result.output
    assert "index.html" in result.output and "feeds/all.atom" in result.output and "--overwrite" in result.output
    assert {rel: (site / rel).read_bytes() for rel in mine} == mine
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()) == sorted(mine)
    # Asked explicitly: ours replace theirs; an unrelated file stays.
    result = CliRunner().invoke(main, ["--config", str(config), "build", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (site / "index.html").read_bytes() != mine["index.html"]
    assert (site / "about.html").read_bytes() == b"hi"
    # From now on they are feedsvc's files: later builds need no flag.
    (tmp_path / "records" / "000_9eb475cc126ca26e.txt").unlink()
    assert CliRunner().invoke(main, ["--config", str(config), "build"]).exit_code == 0


@pytest.fixture(scope="module", params=["granian", "dev"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """`feedsvc serve` (granian) and `feedsvc serve --dev` (werkzeug): the same answers."""
    base = tmp_path_factory.mktemp("reliable")
    records = base / "records"
    shutil.copytree(SEEDS, records)
    config = write_config(base / "config.yaml", records, workers=1, threads=2)
    s = Server(config, free_port(), base, dev=request.param == "dev").start()
    yield s
    s.stop()


@pytest.mark.parametrize("target", ["/healthz", "/feeds/all.atom", "/index.html"])
def test_a_script_name_header_changes_nothing(server: Server, target: str) -> None:
    plain = server.get(target)
    forged = server.get(target, headers={"SCRIPT_NAME": "/elsewhere", "PATH_INFO": "/metrics"})
    assert plain.status == forged.status == 200
    if target != "/healthz":
        assert forged.body == plain.body


@pytest.mark.parametrize(
    "target", ["//", "////feeds/all.html", "//metrics", "//healthz", "/%2f/healthz", "/feeds//all.atom", "/%2Fmetrics"]
)
def test_a_document_answers_at_one_spelling_only(server: Server, target: str) -> None:
    assert server.get(target).status == 404


def test_leading_zeros_in_numbers_are_dropped(server: Server) -> None:
    zeros = server.get("/feeds/all.atom?limit=0000000001")
    plain = server.get("/feeds/all.atom?limit=1")
    assert zeros.status == plain.status == 200
    assert zeros.body == plain.body and zeros.header("ETag") == plain.header("ETag")
    assert server.get("/feeds/all.atom?limit=0").status == 400  # zero is still out of range
