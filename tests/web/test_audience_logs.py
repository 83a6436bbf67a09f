"""`feedsvc audience ACCESS_LOG…`: the report from access logs, case by case from tests/data/audience/logs/.

Each NAME.log comes with NAME.expect.yaml, the figures its report must show
(only the keys given are checked), worked out by hand from the lines and
explained in the file. The command is run as a user runs it (click's
runner over the real CLI), for text, --json and --html.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import lxml.html
import pytest
import yaml
from click.testing import CliRunner
from conftest import DATA

from feedsvc.cli import main
from feedsvc.config import Config
from feedsvc.web.audience import logs
from feedsvc.web.audience.page import as_json

LOGS = DATA / "audience" / "logs"
CASES = sorted(LOGS.glob("*.log"))


def figures(feed: dict[str, Any]) -> dict[str, Any]:
    """A feed's JSON with services as {name: subscribers} and feed_ids beside, as the cases write them."""
    out = dict(feed)
    out["feed_ids"] = {name: s["feed_ids"] for name, s in feed["services"].items()}
    out["services"] = {name: s["subscribers"] for name, s in feed["services"].items()}
    return out


def check(report: dict[str, Any], expect: dict[str, Any]) -> None:
    for key in ("start", "end"):
        if key in expect:
            assert report[key] == expect[key]
    for key, value in expect.get("skipped", {}).items():
        assert report["skipped"][key] == value, key
    total = figures(report["total"])
    for key, value in expect.get("total", {}).items():
        assert total[key] == value, ("total", key)
    feeds = {f["feed"]: figures(f) for f in report["feeds"]}
    if "feeds" in expect:
        assert set(feeds) == set(expect["feeds"])
    for feed, want in expect.get("feeds", {}).items():
        for key, value in want.items():
            assert feeds[feed][key] == value, (feed, key)


@pytest.mark.parametrize("log", CASES, ids=[p.stem for p in CASES])
def test_a_log_gives_the_expected_report(log: Path) -> None:
    expect = yaml.safe_load(log.with_suffix(".expect.yaml").read_text(encoding="utf-8"))
    check(as_json(logs.report([log], Config())), expect)


def test_every_log_has_its_expectations() -> None:
    assert len(CASES) >= 5
    assert all(log.with_suffix(".expect.yaml").is_file() for log in CASES)


def test_logs_add_up_and_gzip_is_read(tmp_path: Path) -> None:
    """Rotated logs (access.log.1, access.log.2.gz) read together are one report."""
    plain = tmp_path / "access.log.1"
    shutil.copy(LOGS / "combined.log", plain)
    packed = tmp_path / "access.log.2.gz"
    packed.write_bytes(gzip.compress((LOGS / "fast.log").read_bytes()))
    one = as_json(logs.report([plain], Config(), window_hours=8784))
    two = as_json(logs.report([packed], Config(), window_hours=8784))
    both = as_json(logs.report([plain, packed], Config(), window_hours=8784))
    assert both["total"]["polls"] == one["total"]["polls"] + two["total"]["polls"] > 0
    assert both["total"]["fast_clients"] == two["total"]["fast_clients"] == 4


def run(*args: str, config: Path) -> Any:
    return CliRunner().invoke(main, ["--config", str(config), "audience", *args])


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "records").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text("records_dir: records\noutput_dir: public\npolite: {max_requests: 30}\n", encoding="utf-8")
    return path


def test_the_command_prints_text_json_and_writes_html(config_file: Path, tmp_path: Path) -> None:
    log = LOGS / "combined.log"
    text = run(str(log), config=config_file)
    assert text.exit_code == 0, text.output
    assert "/feeds/all.atom" in text.output and "Feedly 462" in text.output and "subscribers 714" in text.output
    result = run(str(log), "--json", config=config_file)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    check(report, yaml.safe_load((LOGS / "combined.expect.yaml").read_text(encoding="utf-8")))
    assert report["floor"] == {"max_requests": 30, "window_seconds": 600}  # the config's polite floor
    out = tmp_path / "report.html"
    result = run(str(log), "--html", str(out), config=config_file)
    assert result.exit_code == 0, result.output
    page = lxml.html.fromstring(out.read_bytes())
    assert page.xpath("//style") and not page.xpath("//script") and not page.xpath("//link[@rel='stylesheet']")
    assert len(page.xpath("//svg")) == 3
    cells = {tr.get("data-feed"): tr for tr in page.xpath("//table[@data-feed]")}
    assert cells["/feeds/all.atom"].xpath("string(.//tr[@data-figure='polls']/@data-value)") == "10"
    assert cells[""].xpath("string(.//tr[@data-figure='subscribers']/@data-value)") == "714"


def test_the_window_option(config_file: Path) -> None:
    result = run(str(LOGS / "window.log"), "--json", "--window", "100", config=config_file)
    report = json.loads(result.output)
    assert report["total"]["services"]["Feedly"]["subscribers"] == 5
    assert report["total"]["direct"] == 2  # the reader of 27 Nov is within 100 hours
    assert run(str(LOGS / "window.log"), "--window", "0.5", config=config_file).exit_code == 2


def test_hostile_lines_never_stop_the_command(config_file: Path) -> None:
    result = run(str(LOGS / "hostile.log"), "--json", config=config_file)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["skipped"] == {"malformed": 14, "refused": 7, "dropped": 0}
    assert "jndi" not in result.output and "<script" not in result.output


def test_a_log_that_cannot_be_read_is_one_line(config_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.log.gz"
    bad.write_bytes(b"not gzip at all")
    result = run(str(bad), config=config_file)
    assert (
        result.exit_code == 1
        and result.output.startswith(f"Error: cannot read {bad}")
        and "Traceback" not in result.output
    )
    assert run(str(tmp_path / "missing.log"), config=config_file).exit_code == 2
