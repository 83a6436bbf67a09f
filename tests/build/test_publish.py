"""publish.py: the static build on disk: atomic, minimal, reproducible, contained."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from conftest import feed_files

from feedsvc.build.write import MANIFEST, UnsafePath, files_for, publish, safe_target
from feedsvc.config import Config
from feedsvc.formats.documents import build_in_memory
from feedsvc.model import Document

OLD = 1_000_000_000  # 2001-09-09: a modification time no write of ours can produce


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _age(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD, OLD))


def _mtimes(root: Path) -> dict[str, float]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_every_file_is_written_by_rename(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    result = build_in_memory(config)
    publish(result.documents, config.output_dir)
    targets = {dst.relative_to(config.output_dir).as_posix() for _, dst in renames}
    assert targets == set(files_for(result.documents)) | {MANIFEST}
    assert all(src.parent == dst.parent and src.name.startswith(f".{dst.name}.") for src, dst in renames)
    assert _temps(config.output_dir) == []


def test_a_failed_write_leaves_no_temporary_file(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    result = build_in_memory(config)
    calls = 0
    real_replace = os.replace

    def flaky(src: str, dst: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        publish(result.documents, config.output_dir)
    assert _temps(config.output_dir) == []
    monkeypatch.setattr(os, "replace", real_replace)
    publish(result.documents, config.output_dir)
    assert _snapshot(config.output_dir).keys() == set(files_for(result.documents)) | {MANIFEST}


def test_temporary_files_of_a_killed_build_are_cleaned_up(config: Config) -> None:
    result = build_in_memory(config)
    publish(result.documents, config.output_dir)
    out = config.output_dir
    leftovers = [out / ".index.html.k3j_9x2a.tmp", out / "feeds/topics/.ai.rss.abcdefgh.tmp"]
    keep = [out / ".my-notes.tmp", out / "feeds/.index.html.abcdefgh.tmp", out / ".style.css.bak"]
    for p in leftovers + keep:
        p.write_text("partial")
    publish(result.documents, out)
    assert [p.exists() for p in leftovers] == [False, False]
    assert [p.exists() for p in keep] == [True, True, True]


def test_builds_a_second_apart_are_byte_identical(config: Config, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    publish(build_in_memory(config).documents, first)
    time.sleep(1.1)
    publish(build_in_memory(config).documents, second)
    assert _snapshot(first) == _snapshot(second)
    assert len(feed_files(first)) == 10


def test_a_rebuild_leaves_unchanged_files_alone(config: Config) -> None:
    out = config.output_dir
    publish(build_in_memory(config).documents, out)
    _age(out)
    result = publish(build_in_memory(config).documents, out)
    assert (result.written, result.removed) == (0, 0)
    assert set(_mtimes(out).values()) == {OLD}


def test_unchanged_files_stay_even_without_the_manifest(config: Config) -> None:
    out = config.output_dir
    publish(build_in_memory(config).documents, out)
    (out / MANIFEST).unlink()
    _age(out)
    result = publish(build_in_memory(config).documents, out)
    assert result.written == 0
    assert {k: v for k, v in _mtimes(out).items() if k != MANIFEST} == {k: OLD for k in _mtimes(out) if k != MANIFEST}


def test_a_changed_file_is_restored_even_at_the_same_size(config: Config) -> None:
    out = config.output_dir
    documents = build_in_memory(config).documents
    publish(documents, out)
    target = out / "feeds/all.rss"
    body = target.read_bytes()
    target.write_bytes(body.replace(b"<ttl>5</ttl>", b"<ttl>9</ttl>"))
    assert target.stat().st_size == len(body)
    publish(documents, out)
    assert target.read_bytes() == body


def test_one_changed_record_rewrites_only_what_shows_it(config: Config) -> None:
    out = config.output_dir
    publish(build_in_memory(config).documents, out)
    _age(out)
    before = _snapshot(out)
    seed = next(p for p in sorted(config.records_dir.iterdir()) if "jalopnik" in p.read_text(encoding="utf-8"))
    seed.chmod(0o644)
    seed.write_text(
        seed.read_text(encoding="utf-8").replace("UK Police Can Now", "UK Police Can Soon"), encoding="utf-8"
    )
    result = publish(build_in_memory(config).documents, out)
    after = _snapshot(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert "feeds/providers/biometricupdate.com.rss" not in changed
    assert {"feeds/all.rss", "feeds/providers/jalopnik.com.atom", MANIFEST} <= changed
    assert result.written == len(changed - {MANIFEST})
    assert {k for k, t in _mtimes(out).items() if t != OLD} == changed


def test_gone_feeds_are_removed_but_only_files_feedsvc_wrote(config: Config) -> None:
    out = config.output_dir
    before = files_for(build_in_memory(config).documents)
    publish(build_in_memory(config).documents, out)
    mine = [out / "mine.html", out / "feeds/providers/notes.txt", out / "feeds/providers/jalopnik.com.xml"]
    for p in mine:
        p.write_text("the user's own file")
    # A file feedsvc wrote and the user changed since is theirs now.
    edited = out / "feeds/providers/jalopnik.com.html"
    edited.write_text("edited by hand")
    for seed in config.records_dir.iterdir():
        if "jalopnik" in seed.read_text(encoding="utf-8"):
            seed.unlink()
    result = publish(build_in_memory(config).documents, out)
    assert not (out / "feeds/providers/jalopnik.com.rss").exists()
    assert not (out / "feeds/providers/jalopnik.com.atom").exists()
    # Every file of the gone feed (each format, each .gz) but the edited page.
    gone = {p for p in before if p.startswith("feeds/providers/jalopnik.com.")} - {"feeds/providers/jalopnik.com.html"}
    assert result.removed == len(gone) >= 4
    assert not any((out / p).exists() for p in gone)
    assert all(p.read_text() == "the user's own file" for p in mine)
    assert edited.read_text() == "edited by hand"
    assert (out / "feeds/providers/biometricupdate.com.rss").exists()


def test_emptied_folders_are_pruned(config: Config) -> None:
    out = config.output_dir
    publish(build_in_memory(config).documents, out)
    for seed in config.records_dir.iterdir():
        seed.unlink()
    publish(build_in_memory(config).documents, out)
    assert not (out / "feeds/topics").exists()
    assert not (out / "feeds/providers").exists()
    assert (out / "feeds/all.rss").exists()


def test_nothing_is_written_outside_the_output_folder(config: Config, tmp_path: Path) -> None:
    before = {p for p in tmp_path.rglob("*") if config.output_dir not in (p, *p.parents)}
    publish(build_in_memory(config).documents, config.output_dir)
    after = {p for p in tmp_path.rglob("*") if config.output_dir not in (p, *p.parents)}
    assert after == before


@pytest.mark.parametrize(
    "path", ["../escape.html", "/etc/passwd", "feeds/../../x", "a/./b", ".hidden", "feeds//x", "a\\b", "", "x\x00y"]
)
def test_unsafe_paths_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafePath):
        safe_target(tmp_path, path)


def test_a_symlink_out_of_the_folder_is_refused_before_writing(config: Config, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = config.output_dir
    out.mkdir()
    (out / "feeds").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath):
        publish(build_in_memory(config).documents, out)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["feeds"]


def test_a_corrupt_manifest_removes_nothing(config: Config) -> None:
    out = config.output_dir
    publish(build_in_memory(config).documents, out)
    (out / MANIFEST).write_text("{not json")
    extra = Document("feeds/topics/extra.rss", b"<rss/>", "application/rss+xml")
    documents = dict(build_in_memory(config).documents)
    result = publish({**documents, extra.path: extra}, out)
    assert result.removed == 0
    result = publish(documents, out)
    assert result.removed == 1 and not (out / extra.path).exists()


def test_an_interrupted_build_still_tracks_what_it_wrote(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    out = config.output_dir
    documents = dict(build_in_memory(config).documents)
    extra = Document("feeds/topics/extra.rss", b"<rss/>", "application/rss+xml")
    real_replace = os.replace

    def crash_on_index(src: str, dst: str) -> None:
        if str(dst).endswith("index.html"):
            raise OSError(5, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_index)
    with pytest.raises(OSError):
        publish({**documents, extra.path: extra}, out)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / extra.path).exists()
    publish(documents, out)
    assert not (out / extra.path).exists()


def test_documents_are_written_before_the_listings(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        order.append(Path(dst).relative_to(config.output_dir).as_posix())
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    publish(build_in_memory(config).documents, config.output_dir)
    written = [p.removesuffix(".gz") for p in order if p != MANIFEST]
    assert set(written[-4:]) == {"feeds.opml", "index.html"}
    assert set(written[:-4]).isdisjoint({"feeds.opml", "index.html"})


def test_config_output_dir_is_used_as_given(config: Config, tmp_path: Path) -> None:
    nested = dataclasses.replace(config, output_dir=tmp_path / "a" / "b" / "site")
    publish(build_in_memory(nested).documents, nested.output_dir)
    assert (nested.output_dir / "index.html").is_file()
