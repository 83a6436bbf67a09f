"""feedsvc as a user installs it: a wheel, in a fresh virtualenv outside the checkout.

The rest of the suite runs against the editable install of scripts/setup,
which reads templates straight from the source tree, so a file the wheel
leaves out goes unnoticed there. Here the checkout's wheel is built (offline:
the project venv's setuptools, no build isolation), installed into a new
virtualenv with its dependencies, and that venv's `feedsvc` builds and serves
a copy of the shipped seeds with the shipped config.yaml, from a working
directory outside the checkout.

The dependencies come from a wheelhouse kept in pytest's cache folder
(.pytest_cache/d/feedsvc-wheelhouse): filled from the package index (with
pip's cache) the first time, or when pyproject.toml's dependencies change;
every later run installs from it with --no-index, offline. Nothing is
skipped: a wheel that cannot be built or installed fails the test.

The copy of the seeds sits in a throwaway git repository with the checkout's
.gitignore, so the same run checks that nothing `build` and `serve` leave
beside config.yaml (public/, the cache and lock files beside it) shows up as
untracked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import ROOT
from servers import free_port, request, stop_process

START_TIMEOUT = 30.0
#: Files the web app and the build load from the package (feedsvc/formats/templates/).
PACKAGE_FILES = ("base.html", "feed.html", "index.html", "feeds.opml", "style.css")


def run(
    args: list[str | Path], *, cwd: Path, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; unless `check` is false, fail the test with its output if it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def clean_env() -> dict[str, str]:
    """The environment without anything that points into the project venv or picks a config."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "FEEDSVC_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def checkout_files() -> list[str]:
    """The checkout's files as a fresh clone would have them, plus new ones not yet committed (not ignored ones)."""
    out = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    return sorted(p for p in out.split("\0") if p and (ROOT / p).is_file())


@dataclass
class Wheel:
    path: Path
    #: Files under feedsvc/ in the source it was built from.
    package_files: list[str]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    """The checkout's wheel, built from a copy of its files (setuptools' build/ would carry stale ones)."""
    setuptools = tuple(int(p) for p in version("setuptools").split(".")[:2])
    assert setuptools >= (70, 1), (
        f"setuptools {version('setuptools')} cannot build the wheel offline: run scripts/setup"
    )
    src = tmp_path_factory.mktemp("src")
    files = checkout_files()
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", dist, src],
        cwd=dist,
    )
    built = sorted(dist.glob("feedsvc-*.whl"))
    assert len(built) == 1, f"expected one wheel in {dist}, found {built}"
    package = [rel for rel in files if rel.startswith("feedsvc/") and "__pycache__" not in rel]
    return Wheel(built[0], package)


@pytest.fixture(scope="module")
def venv(wheel: Wheel, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """A new virtualenv (none of the project venv's packages) with the wheel and its dependencies installed."""
    env = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", env], cwd=env.parent)
    python = env / "bin" / "python"
    cache = getattr(pytestconfig, "cache", None)
    house = cache.mkdir("feedsvc-wheelhouse") if cache is not None else tmp_path_factory.mktemp("wheelhouse")
    install = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", house, wheel.path]
    if run(install, cwd=env.parent, check=False).returncode != 0:
        # A dependency missing from the wheelhouse (first run, or pyproject.toml
        # changed): fetch them all as wheels, then install offline as before.
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "-w", house, wheel.path], cwd=env.parent)
        for own in house.glob("feedsvc-*.whl"):
            own.unlink()
        run(install, cwd=env.parent)
    run([python, "-m", "pip", "check"], cwd=env.parent)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.yaml and seeds/ as shipped, in a git repository with the checkout's .gitignore."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy2(ROOT / "config.yaml", site / "config.yaml")
    shutil.copy2(ROOT / ".gitignore", site / ".gitignore")
    shutil.copytree(ROOT / "seeds", site / "seeds")
    run(["git", "init", "--quiet", "."], cwd=site)
    run(["git", "add", "."], cwd=site)
    return site


def untracked(repo: Path) -> list[str]:
    status = run(
        ["git", "-c", "core.excludesFile=/dev/null", "status", "--porcelain", "--untracked-files=all", "--ignored=no"],
        cwd=repo,
    ).stdout
    return [line for line in status.splitlines() if line.startswith("??")]


def test_wheel_ships_every_package_file(wheel: Wheel) -> None:
    with zipfile.ZipFile(wheel.path) as whl:
        names = set(whl.namelist())
    for name in PACKAGE_FILES:
        assert f"feedsvc/formats/templates/{name}" in names
    missing = [rel for rel in wheel.package_files if rel not in names]
    assert not missing, f"files under feedsvc/ left out of the wheel (package data in pyproject.toml): {missing}"


def test_installed_wheel_builds_and_serves_the_seeds(venv: Path, site: Path, tmp_path: Path) -> None:
    feedsvc = venv / "bin" / "feedsvc"
    work = tmp_path / "work"  # neither the checkout nor the site folder
    work.mkdir()
    config = site / "config.yaml"

    where = run([venv / "bin" / "python", "-c", "import feedsvc; print(feedsvc.__file__)"], cwd=work).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"feedsvc imported from {where}, not from {venv}"

    run([feedsvc, "--config", config, "build"], cwd=work)
    out = site / "public"  # config.yaml's output_dir, relative to it
    for name in ("index.html", "style.css", "feeds.opml", "feeds/all.atom"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"build wrote no {name}"
    assert ET.parse(out / "feeds" / "all.atom").getroot().tag == "{http://www.w3.org/2005/Atom}feed"
    assert ET.parse(out / "feeds.opml").getroot().tag == "opml"
    assert b"<html" in (out / "index.html").read_bytes().lower()

    port = free_port()
    stdout, stderr = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(stdout, "wb") as o, open(stderr, "wb") as e:
        proc = subprocess.Popen(
            [str(feedsvc), "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,
            env=clean_env(),
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"feedsvc serve exited with {proc.returncode}:\n{stderr.read_text(errors='replace')}")
            try:
                if request(port, "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = stderr.read_text(errors="replace")
                pytest.fail(f"feedsvc serve did not answer /healthz in {START_TIMEOUT}s:\n{log}")
            time.sleep(0.05)
        for path, kind in (("/index.html", "text/html"), ("/style.css", "text/css"), ("/feeds/all.atom", "atom")):
            r = request(port, path)
            assert r.status == 200, f"GET {path}: {r.status}"
            assert kind in (r.header("Content-Type") or ""), f"GET {path}: Content-Type {r.header('Content-Type')}"
            assert r.body
        assert request(port, "/style.css").body == (out / "style.css").read_bytes()
    finally:
        stop_process(proc)
    assert f"Serving feeds at http://127.0.0.1:{port}/index.html" in stdout.read_text(errors="replace")

    # What build and serve left beside config.yaml is ignored by the checkout's .gitignore.
    assert not untracked(site)


@pytest.mark.parametrize(
    "name",
    [
        "public/index.html",
        ".public.feedsvc-cache.sqlite",
        ".public.feedsvc-cache.sqlite-wal",
        ".public.feedsvc-cache.sqlite-shm",
        ".public.feedsvc-lock",
        ".public.feedsvc-audience.sqlite",  # the audience store, with audience.enabled
    ],
)
def test_gitignore_covers_what_scripts_run_writes(name: str) -> None:
    """scripts/run builds config.yaml's public/ in the root, its cache and lock beside it."""
    proc = run(["git", "check-ignore", "--quiet", "--no-index", name], cwd=ROOT, check=False)
    assert proc.returncode == 0, f"{name} in the repository root is not ignored by .gitignore"
