"""Writing a build to disk: atomically, only what changed, never outside the folder.

Each file is written to a temporary name in its own folder and renamed over
the old one, so a web server reading the folder sees the old file or the new
one, never half of either. A file whose bytes did not change is not touched
(its modification time stays, so rsync, CDNs and nginx's gzip_static see no
change). Feeds are written before the index and OPML that list them; files
from an earlier build that are gone now are removed last, and only files that
feedsvc itself wrote there (listed in its manifest) are ever removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import FeedsvcError
from .site import Document

MANIFEST = ".feedsvc-manifest.json"
#: Written last, listed first in the folder: the documents that list the others.
LISTINGS = ("index.html", "feeds.opml")


@dataclass(frozen=True, slots=True)
class PublishResult:
    written: int
    unchanged: int
    removed: int


class UnsafePath(FeedsvcError):
    """A document path that would leave the output folder."""


def safe_target(out: Path, rel: str) -> Path:
    """The file for URL path `rel` inside `out`; raises `UnsafePath` otherwise."""
    pure = PurePosixPath(rel)
    if (
        not rel
        or pure.is_absolute()
        or "\\" in rel
        or "\x00" in rel
        or any(part in ("", ".", "..") or part.startswith(".") for part in rel.split("/"))
    ):
        raise UnsafePath(f"refusing to write {rel!r}: not a plain relative path")
    target = out.joinpath(*pure.parts)
    root = out.resolve()
    if root != target.resolve().parent and root not in target.resolve().parents:
        raise UnsafePath(f"refusing to write {rel!r}: outside {out}")
    return target


def publish(documents: Mapping[str, Document], out: Path) -> PublishResult:
    """Write `documents` under `out`; remove what an earlier build wrote and is gone."""
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out)
    current: dict[str, str] = {}
    written = unchanged = 0
    ordered = sorted(documents, key=lambda p: (p in LISTINGS, p))
    for rel in ordered:
        body = documents[rel].body
        digest = hashlib.sha256(body).hexdigest()
        current[rel] = digest
        target = safe_target(out, rel)
        if previous.get(rel) == digest and _same_size(target, len(body)):
            unchanged += 1
            continue
        write_atomic(target, body)
        written += 1
    removed = _remove_stale(out, previous.keys() - current.keys())
    write_atomic(out / MANIFEST, json.dumps(current, sort_keys=True, indent=0).encode("utf-8"))
    return PublishResult(written, unchanged, removed)


def write_atomic(target: Path, body: bytes) -> None:
    """Replace `target` whole: write a temporary file beside it, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same_size(target: Path, size: int) -> bool:
    try:
        return target.stat().st_size == size
    except OSError:
        return False


def _read_manifest(out: Path) -> dict[str, str]:
    """The files feedsvc wrote here last time; an unreadable manifest counts as none."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _remove_stale(out: Path, stale: Iterable[str]) -> int:
    removed = 0
    for rel in sorted(stale):
        try:
            target = safe_target(out, rel)
        except UnsafePath:
            continue
        try:
            target.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        _prune_empty(target.parent, out)
    return removed


def _prune_empty(folder: Path, out: Path) -> None:
    root = out.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
