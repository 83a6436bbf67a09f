"""A record's `secured` value never leaves feedsvc.

Over a synthetic corpus (feedsvc.synth), the seeds and every hostile case in
tests/data/records, nothing feedsvc produces may hold any record's secured
value or a part of it: not a file `feedsvc build` writes (feeds, pages, OPML,
manifest), not what `build` and `check` print, not a log record, not a
RecordError message. "A part" is any 24 characters of a piece, also after
percent-decoding and in the lower-case, punctuation-free form a slug has.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from click.testing import CliRunner
from conftest import SEEDS
from test_records import CASES, secured_of

from feedsvc.cli import main
from feedsvc.config import load_config
from feedsvc.formats.documents import assemble
from feedsvc.records.read import load_records

SYNTH_RECORDS = 300
WINDOW = 24
_BASE64_RUN = re.compile(rf"[A-Za-z0-9+/=]{{{WINDOW},}}")
_SLUG_RUN = re.compile(rf"[a-z0-9-]{{{WINDOW},}}")


class Detector:
    """Finds any 24-character window of any secret piece in a text, in one pass.

    Every window of every piece goes into a set; the text is cut into runs of
    characters a piece can hold, and each window of each long run is looked
    up. Slug forms (lower case, letters and digits only) are checked the same way.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.folded: set[str] = set()
        self.short: set[str] = set()
        for secret in secrets:
            for piece in secret.split(";"):
                if len(piece) < WINDOW:
                    self.short.add(piece)
                self.exact.update(piece[i : i + WINDOW] for i in range(len(piece) - WINDOW + 1))
                slug = re.sub("[^a-z0-9]", "", piece.lower())
                self.folded.update(slug[i : i + WINDOW] for i in range(len(slug) - WINDOW + 1))

    def leaks(self, text: str) -> list[str]:
        found = []
        for haystack in (text, unquote(text)):
            for run in _BASE64_RUN.findall(haystack):
                found += [
                    run[i : i + WINDOW] for i in range(len(run) - WINDOW + 1) if run[i : i + WINDOW] in self.exact
                ]
            for run in _SLUG_RUN.findall(haystack.lower()):
                flat = run.replace("-", "")
                found += [
                    flat[i : i + WINDOW] for i in range(len(flat) - WINDOW + 1) if flat[i : i + WINDOW] in self.folded
                ]
            found += [piece for piece in self.short if piece in haystack]
        return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic records, the seeds and every hostile case, in one records folder."""
    synth = pytest.importorskip("feedsvc.synth")
    base = tmp_path_factory.mktemp("secrets")
    records = base / "records"
    synth.write_corpus(records / "synth", SYNTH_RECORDS, seed=1)
    shutil.copytree(SEEDS, records / "seeds")
    (records / "hostile").mkdir()
    for case in CASES:
        shutil.copyfile(case, records / "hostile" / case.name)
    (base / "config.yaml").write_text(
        yaml.safe_dump({"records_dir": "records", "output_dir": "public", "include_unpublished": True}),
        encoding="utf-8",
    )
    return base


def all_secrets(records: Path) -> list[str]:
    secrets = [s for path in sorted(records.rglob("*.txt")) if (s := secured_of(path))]
    assert len(secrets) >= SYNTH_RECORDS + len(CASES) - 2  # the empty and blank cases have none
    return secrets


def test_no_output_holds_a_secured_value(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config_path = corpus / "config.yaml"
    runner = CliRunner()
    build = runner.invoke(main, ["--config", str(config_path), "build", "--warnings"])
    check = runner.invoke(main, ["--config", str(config_path), "check"])
    assert build.exit_code == 0, build.output
    assert check.exit_code == 1  # the hostile cases include rejected ones

    config = load_config(config_path)
    loaded = load_records(config.records_dir, config)
    messages = [str(p) for p in assemble(loaded, config).problems]
    assert len(loaded.errors) > 50 and len(loaded.warnings) > 30

    files = sorted(p for p in (corpus / "public").rglob("*") if p.is_file())
    assert any(p.suffix == ".opml" for p in files) and sum(p.suffix == ".html" for p in files) > 100
    # Precompressed .gz files are checked as what they hold; the favicon is an image.
    outputs = {
        str(p.relative_to(corpus)): (gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).decode(
            "latin-1" if p.name.removesuffix(".gz").endswith(".ico") else "utf-8"
        )
        for p in files
    }
    assert any(p.suffix == ".gz" for p in files)
    outputs |= {
        "build stdout": build.stdout,
        "build stderr": build.stderr,
        "check stdout": check.stdout,
        "check stderr": check.stderr,
        "log": caplog.text,
        "messages": "\n".join(messages),
    }
    detector = Detector(all_secrets(corpus / "records"))
    leaks = {name: found[:2] for name, text in outputs.items() if (found := detector.leaks(text))}
    assert not leaks


def test_the_detector_finds_a_leak(corpus: Path) -> None:
    """The check above can fail: a planted piece, slice or slug of a secret is found."""
    secrets = all_secrets(corpus / "records")
    detector = Detector(secrets)
    body, tail = secrets[0].split(";")
    middle = body[len(body) // 2 : len(body) // 2 + 30]
    assert detector.leaks(f"<title>{middle}</title>")
    assert detector.leaks(f"x {tail} y")
    assert detector.leaks("https://e.example/?t=" + body[:40].replace("+", "%2B").replace("/", "%2F"))
    slug = re.sub("[^a-z0-9]+", "-", body[:60].lower())
    assert detector.leaks(f"/feeds/topics/{slug}.atom")
    assert not detector.leaks(" ".join(Path(__file__).read_text(encoding="utf-8").split()))
