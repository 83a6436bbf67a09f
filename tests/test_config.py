"""config.py: reading config.yaml into a typed Config, and refusing bad ones by key."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DATA, ROOT

from feedsvc.config import (
    ENV_VAR,
    Config,
    canonical_base_url,
    check_records_dir,
    default_path,
    load_config,
)
from feedsvc.errors import ConfigError

SHIPPED = ROOT / "config.yaml"
ERRORS = yaml.safe_load((DATA / "config_errors.yaml").read_text(encoding="utf-8"))


def _dotted_fields(cls: type, prefix: str = "") -> list[str]:
    """Every configurable key, dotted ("site.title"), from the dataclasses themselves."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _dotted_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def test_the_shipped_config_loads() -> None:
    config = load_config(SHIPPED)
    assert config.include_unpublished is True
    assert config.records_dir == ROOT / "seeds"
    assert config.output_dir == ROOT / "public"
    assert config.source == str(SHIPPED)


def test_the_shipped_config_sets_and_documents_every_key() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    for key in _dotted_fields(Config):
        node: Any = data
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} is not set in config.yaml"
            node = node[part]
        assert _documented(lines, key), f"{key} has no comment above it in config.yaml"


def _documented(lines: list[str], key: str) -> bool:
    """True if a comment sits above the key's line, or above the run of keys it is in."""
    parts = key.split(".")
    indent = "  " * (len(parts) - 1)
    pattern = re.compile(rf"^{indent}{re.escape(parts[-1])}:")
    index = next(i for i, line in enumerate(lines) if pattern.match(line))
    for line in reversed(lines[:index]):
        if line.startswith(f"{indent}#"):
            return True
        if not re.match(rf"^{indent}\w+:", line):
            return False
    return False


def test_defaults_are_the_dataclass_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    config = load_config(path)
    assert dataclasses.replace(config, records_dir=Path("seeds"), output_dir=Path("public")) == Config()


@pytest.mark.parametrize(
    ("text", "page_size"),
    [
        ("max_entries: 10\n", 10),  # unset: 25, or max_entries when smaller, so old files keep working
        ("max_entries: 100\n", 25),
        ("max_entries: 10\narchives: {enabled: false}\n", 10),
        ("max_entries: 10\narchives: {page_size: 4}\n", 4),
    ],
)
def test_the_archive_page_size_defaults_to_fit_max_entries(text: str, page_size: int, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).archives.page_size == page_size


@pytest.mark.parametrize("case", ERRORS, ids=[repr(c["text"])[:40] for c in ERRORS])
def test_a_bad_config_is_refused_naming_the_key(case: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(case["text"], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.key == case["key"]
    assert case["reason"] in error.reason
    assert str(error) == f"{path}: {error.key}: {error.reason}"
    assert "\n" not in str(error)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"site:\n  title: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "latin1.yaml")


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "config.yaml").write_text("records_dir: news\noutput_dir: ../site\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../conf/config.yaml"))
    assert config.records_dir == folder.resolve() / "news"
    assert (config.output_dir / "x").resolve() == tmp_path.resolve() / "site" / "x"


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "config.yaml"
    path.write_text(f"records_dir: ~/news\noutput_dir: {tmp_path / 'out'}\n")
    config = load_config(path)
    assert config.records_dir == tmp_path / "home" / "news"
    assert config.output_dir == tmp_path / "out"


def test_the_environment_variable_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("max_entries: 7\n")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert default_path() == path
    assert load_config().max_entries == 7
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)
    assert default_path() == Path("config.yaml")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
        ("HTTP://Example.COM:80/news", "http://example.com/news/"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/a b/caf\u00e9/", "https://example.com:8443/a%20b/caf%C3%A9/"),
        ("https://example.com/x%2fy%zz/", "https://example.com/x%2Fy%25zz/"),
        ("https://b\u00fccher.example/", "https://xn--bcher-kva.example/"),
        ("http://[::1]:8000/", "http://[::1]:8000/"),
    ],
)
def test_base_url_is_made_canonical(given: str, canonical: str, tmp_path: Path) -> None:
    assert canonical_base_url(given) == canonical
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"site": {"base_url": given}}, allow_unicode=True), encoding="utf-8")
    assert load_config(path).site.base_url == canonical


def test_records_dir_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("records_dir: missing\n")
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        check_records_dir(config)
    assert caught.value.key == "records_dir"
    (tmp_path / "missing").mkdir()
    check_records_dir(config)
