"""End to end on the shipped seeds: build, and parse every feed with feedparser."""

from __future__ import annotations

from pathlib import Path

import feedparser

from feedsvc.build.write import publish
from feedsvc.config import Config
from feedsvc.formats.documents import build_in_memory


def test_seed_build_parses(config: Config) -> None:
    result = build_in_memory(config)
    publish(result.documents, config.output_dir)
    feeds = sorted(p for p in Path(config.output_dir).rglob("*") if p.suffix in (".rss", ".atom"))
    assert len(feeds) == 10
    for path in feeds:
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.entries
