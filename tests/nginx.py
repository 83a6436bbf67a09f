"""Running nginx with the configs in deploy/ for end-to-end tests.

deploy/render.py writes a complete nginx.conf into a temporary prefix (logs,
temp files and the proxy cache inside it); nginx runs as a non-daemon child
(`-g 'daemon off; pid …;'`) with one worker on a free 127.0.0.1 port, is
waited for with a deadline and is always stopped: SIGTERM, then SIGKILL of
its process group. A missing nginx fails the tests with the command that
installs it: CI installs it, so a skip would only hide a broken deployment.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from servers import Response, free_port, request

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("feedsvc_deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: deploy/render.py, the one place that fills in the configs (tests, bench and users).
render = _load_render()


def nginx_binary() -> str:
    """nginx's path; fails the calling test (never skips) when it is not installed."""
    found: str | None = render.find_nginx()
    if found is None:
        pytest.fail(
            "nginx is not installed, and the nginx deployment tests need it: run `scripts/setup --system` "
            "as root (it installs nginx-light with apt), or install nginx yourself",
            pytrace=False,
        )
    return found


def worker_user() -> str | None:
    """`user` for nginx's workers: root when the tests run as root.

    Started as root, nginx runs its workers as `nobody`, who cannot enter
    pytest's private temporary folders (mode 0700) where the output is.
    """
    return "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


@dataclass
class Nginx:
    """A running nginx on 127.0.0.1:`port`, configured in `prefix`."""

    prefix: Any  # render.Prefix
    port: int
    binary: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        out = open(self.prefix.root / "nginx.out", "wb")
        with out:
            self.proc = subprocess.Popen(
                render.command(self.prefix, self.binary),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port} in {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        """nginx's own output and error log."""
        parts = []
        for path in (self.prefix.root / "nginx.out", self.prefix.error_log):
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def get(self, target: str, **kwargs: Any) -> Response:
        return request(self.port, target, **kwargs)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # nginx's fast shutdown
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the master and its workers
            proc.wait(STOP_TIMEOUT)


def start(prefix_dir: Path, make_snippet: Any) -> Nginx:
    """Write nginx.conf for `make_snippet(listen)` into `prefix_dir` and start nginx.

    A free port can be taken by someone else before nginx binds it: then
    nginx exits at once and another port is tried.
    """
    binary = nginx_binary()
    prefix = render.Prefix(prefix_dir)
    last: Exception | None = None
    for _attempt in range(3):
        port = free_port()
        snippet = make_snippet(f"127.0.0.1:{port}")
        render.write_prefix(prefix, render.main_conf(snippet, prefix, workers=1, user=worker_user()))
        try:
            return Nginx(prefix, port, binary).start()
        except RuntimeError as e:
            if "Address already in use" not in str(e):
                raise
            last = e
    raise RuntimeError(f"no free port for nginx: {last}")


def start_static(prefix_dir: Path, output_dir: Path, max_age: int) -> Nginx:
    """nginx serving `output_dir` with deploy/nginx-static.conf."""
    return start(
        prefix_dir, lambda listen: render.static_snippet(listen=listen, output_dir=output_dir, max_age=max_age)
    )


def start_proxy(prefix_dir: Path, upstream_port: int) -> Nginx:
    """nginx caching `feedsvc serve` on `upstream_port` with deploy/nginx-proxy.conf."""
    cache = prefix_dir / "cache"
    return start(
        prefix_dir,
        lambda listen: render.proxy_snippet(listen=listen, upstream=f"127.0.0.1:{upstream_port}", cache_dir=cache),
    )
