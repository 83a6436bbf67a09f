"""Shared fixtures: paths, configs over temporary folders, and feed parsing helpers."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from feedsvc.config import Config

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped seeds, safe to change."""
    target = tmp_path / "records"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture
def config(seeds_dir: Path, tmp_path: Path) -> Config:
    """The demo settings over a private copy of the seeds."""
    return dataclasses.replace(
        Config(), records_dir=seeds_dir, output_dir=tmp_path / "public", include_unpublished=True
    )
