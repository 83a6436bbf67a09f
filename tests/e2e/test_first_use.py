"""First use as a new user meets it (issue 13 points 4 to 7): one-line errors, right links, no silent empties."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import feedparser
import yaml
from click.testing import CliRunner
from conftest import ROOT, SEEDS
from servers import FEEDSVC, Server, free_port, write_config

from feedsvc.cli import main


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(SEEDS, records)
    config = write_config(tmp_path / "config.yaml", records)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra in ([], ["--dev"]):
            started = time.monotonic()
            done = subprocess.run(
                [str(FEEDSVC), "--config", str(config), "serve", "--port", str(port), *extra],
                capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert done.returncode == 1, done
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert lines == [f"Error: port {port} on 127.0.0.1 is in use; choose another with --port"], done.stderr
            assert time.monotonic() - started < 10
    assert not (tmp_path / "public").exists()  # refused before building anything


def test_links_follow_the_port_served_unless_base_url_says_otherwise(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(SEEDS, records)
    port = free_port()
    config = write_config(tmp_path / "config.yaml", records, base_url=None)
    server = Server(config, port, tmp_path).start()
    try:
        feed = feedparser.parse(server.get("/feeds/all.atom").body)
        self_links = [link.href for link in feed.feed.links if link.rel == "self"]
        assert self_links == [f"http://127.0.0.1:{port}/feeds/all.atom"]
        assert f'href="http://127.0.0.1:{port}/style.css"' in server.get("/index.html").body.decode()
    finally:
        server.stop()
    assert "site.base_url is" not in server.stderr()
    # Set, and not the address served: kept (the public address), and said once.
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["site"]["base_url"] = "https://feeds.example.org/news/"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    server = Server(config, free_port(), tmp_path).start()
    try:
        feed = feedparser.parse(server.get("/feeds/all.atom").body)
        assert [link.href for link in feed.feed.links if link.rel == "self"] == [
            "https://feeds.example.org/news/feeds/all.atom"
        ]
    finally:
        server.stop()
    assert server.stderr().count("site.base_url is https://feeds.example.org/news/") == 1


def test_config_goes_before_or_after_the_command(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(SEEDS, records)
    config = write_config(tmp_path / "config.yaml", records)
    runner = CliRunner()
    for args in (["--config", str(config), "check"], ["check", "--config", str(config)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "2 records checked: 2 usable" in result.output
    after = runner.invoke(main, ["build", "--config", str(config)])
    assert after.exit_code == 0, after.output
    assert (tmp_path / "public" / "feeds" / "all.atom").is_file()
    listed = runner.invoke(main, ["feeds", "--config", str(config)])
    assert listed.exit_code == 0 and "/feeds/all.atom" in listed.output


def test_a_build_says_what_it_left_out_and_warns_when_nothing_is_published(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(SEEDS, records)  # both seeds say published: false
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"records_dir": str(records), "output_dir": str(tmp_path / "out")}), "utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "build"])
    assert result.exit_code == 0
    assert "2 left out (2 unpublished)" in result.output
    assert "warning: no entry is published" in result.output and "include_unpublished: true" in result.output
    check = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert "2 would be left out (2 unpublished)" in check.output
    # The shipped config publishes them: no warning.
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    shipped.update(records_dir=str(records), output_dir=str(tmp_path / "demo"))
    config.write_text(yaml.safe_dump(shipped), "utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "build"])
    assert "0 left out" in result.output and "no entry is published" not in result.output


def test_an_empty_records_folder_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"records_dir": "records", "output_dir": "out"}), "utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "build"])
    assert result.exit_code == 0
    assert "warning: no entry is published" in result.output and "holds no record files" in result.output


def test_check_and_build_report_a_duplicate_the_same_way_with_its_line(tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(SEEDS, records)
    original = sorted(records.iterdir())[0]
    copy = records / "zz_copy.txt"
    copy.write_text("---\n# a copy of the same article\n" + original.read_text(encoding="utf-8").split("---\n", 1)[1],
                    encoding="utf-8")  # fmt: skip
    line = next(
        n for n, text in enumerate(copy.read_text(encoding="utf-8").splitlines(), 1) if text.startswith("originalUrl:")
    )
    config = write_config(tmp_path / "config.yaml", records)
    check = CliRunner().invoke(main, ["--config", str(config), "check"])
    build = CliRunner().invoke(main, ["--config", str(config), "build", "--warnings"])
    expected = f"zz_copy.txt:{line}: originalUrl: warning: same article as {original.name}, which is the current copy"
    assert expected in check.output.splitlines(), check.output
    assert expected in build.output.splitlines(), build.output
