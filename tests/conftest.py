"""Shared fixtures: paths, configs over temporary folders, built sites, the synthetic corpus."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# In CI every run tries the same examples, so a red build is reproducible and
# never a coin toss; locally each run explores new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from flask import Flask

from feedsvc.build import incremental
from feedsvc.build.write import publish
from feedsvc.config import Config, load_config
from feedsvc.formats.documents import Build, build_in_memory
from feedsvc.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"
#: The Content-Type of each suffix, as every deployment sends it: the app, nginx with
#: deploy/nginx-static.conf, and the caching proxy (written here, apart from the
#: code's registry, so a change to either shows).
MEDIA_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "opml": "text/x-opml; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "ico": "image/x-icon",
}
ATOM_SCHEMA = Path(__file__).resolve().parent / "schema" / "atom.rnc"

#: Size of the synthetic corpus: a few thousand records, small enough for a
#: fast suite, large enough for hundreds of feeds, capped ones among them.
CORPUS_RECORDS = 2_000
#: A small cap, so many corpus feeds are full and the cap is exercised.
CORPUS_MAX_ENTRIES = 20


def copy_seeds(target: Path) -> Path:
    """A private copy of the shipped seeds in `target` (created), safe to change or add to."""
    target.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS.iterdir():
        (target / seed.name).write_bytes(seed.read_bytes())
    return target


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped seeds, safe to change."""
    target = tmp_path / "records"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture
def config(seeds_dir: Path, tmp_path: Path) -> Config:
    """The shipped config.yaml (include_unpublished: true) over a private copy of the seeds."""
    shipped = load_config(ROOT / "config.yaml")
    assert shipped.include_unpublished, "the seeds are all unpublished; the demo config publishes them"
    return dataclasses.replace(shipped, records_dir=seeds_dir, output_dir=tmp_path / "public")


@pytest.fixture
def seed_site(config: Config) -> Build:
    """The seeds built and published to config.output_dir."""
    result = build_in_memory(config)
    publish(result.documents, config.output_dir)
    return result


def served_app(config: Config) -> Flask:
    """What `feedsvc serve` does in-process: build `config`'s output folder, then the app serving it."""
    incremental.build(config)
    return create_app(config)


def rebuild(config: Config) -> incremental.BuildReport:
    """What the server's builder does after a change: an incremental build (the app notices it)."""
    return incremental.build(config)


@pytest.fixture
def write_records(tmp_path: Path) -> Callable[[dict[str, dict[str, object]]], Path]:
    """Write {file name: front matter mapping} as record files into a fresh folder."""
    counter = iter(range(1_000_000))

    def write(records: dict[str, dict[str, object]]) -> Path:
        folder = tmp_path / f"records-{next(counter)}"
        folder.mkdir()
        for name, fields in records.items():
            text = yaml.safe_dump(fields, allow_unicode=True, sort_keys=False)
            (folder / name).write_text(f"---\n{text}---\n", encoding="utf-8")
        return folder

    return write


def feed_files(out: Path) -> list[Path]:
    """Every RSS and Atom file under `out`, sorted."""
    return sorted(p for p in out.rglob("*") if p.suffix in (".rss", ".atom"))


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The synthetic corpus, built once per session by the real CLI."""

    records_dir: Path
    out: Path
    config_path: Path
    #: What `feedsvc build --warnings` printed (stderr and stdout).
    output: str
    exit_code: int
    #: Every record's secured value, to look for in everything produced.
    secrets: tuple[str, ...]
    seconds: float


#: Records the synthetic generator does not write: rejected ones, so the build
#: reports errors (which must not quote the secured value either).
BAD_RECORDS = {
    "zz_bad_date.txt": 'title: "Bad date"\nwebUrl: "https://bad.example/1"\npublishedDateTime: "yesterday"\n',
    "zz_no_title.txt": 'webUrl: "https://bad.example/2"\npublishedDateTime: 2023-01-02T03:04:05Z\n',
    "zz_bad_url.txt": 'title: "Bad URL"\nwebUrl: "javascript:alert(1)"\npublishedDateTime: 2023-01-02T03:04:05Z\n',
}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """A few thousand synthetic records (feedsvc.synth) built with `feedsvc build`."""
    from click.testing import CliRunner

    from feedsvc import synth
    from feedsvc.cli import main

    base = tmp_path_factory.mktemp("corpus")
    records_dir = base / "records"
    synth.write_corpus(records_dir, CORPUS_RECORDS, seed=1)
    for i, (name, body) in enumerate(sorted(BAD_RECORDS.items())):
        secret = f"BadRecordSecret{i}x" + "Q" * 40 + f"/{i}+="
        (records_dir / name).write_text(f'---\n{body}secured: "{secret}"\n---\n', encoding="utf-8")
    config_path = base / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "records_dir": "records",
                "output_dir": "public",
                "include_unpublished": True,
                "max_entries": CORPUS_MAX_ENTRIES,
                "archives": {"enabled": True},  # so every check covers archive pages too
                "site": {"title": "Corpus", "base_url": "https://feeds.example.org/news/"},
            }
        ),
        encoding="utf-8",
    )
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--config", str(config_path), "build", "--warnings"])
    seconds = time.monotonic() - started
    yield Corpus(
        records_dir=records_dir,
        out=base / "public",
        config_path=config_path,
        output=result.output,
        exit_code=result.exit_code,
        secrets=tuple(secured_values(records_dir)),
        seconds=seconds,
    )


def secured_values(records_dir: Path) -> list[str]:
    """The `secured` value of every record file in `records_dir`."""
    values = []
    for path in sorted(records_dir.iterdir()):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("secured:"):
                values.append(yaml.safe_load(line)["secured"])
    return values
