"""Starting real `feedsvc serve` processes for end-to-end tests, and talking to them.

A server runs in its own process group on a free 127.0.0.1 port, writes its
output to files (never a pipe that could fill up), is waited for through
/healthz with a deadline, and is always stopped: SIGTERM, then SIGKILL of its
whole group if it does not exit in time.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The feedsvc command of the environment running the tests.
FEEDSVC = Path(sys.executable).with_name("feedsvc")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The base URL test configs name, whatever port a server listens on: servers on
#: different ports, and a static build, then give the same bytes.
BASE_URL = "http://127.0.0.1:8000/"


def write_config(
    path: Path,
    records_dir: Path,
    *,
    settings: dict[str, Any] | None = None,
    base_url: str | None = BASE_URL,
    **server: Any,
) -> Path:
    """A config file over `records_dir` with `server.*` settings (and other top-level `settings`).

    `base_url` None leaves site.base_url unset (`feedsvc serve` then uses its own address).
    """
    site: dict[str, Any] = {"title": "feedsvc test"}
    if base_url is not None:
        site["base_url"] = base_url
    data = {
        "site": site,
        "records_dir": str(records_dir),
        "output_dir": str(path.parent / "public"),
        "include_unpublished": True,
        "server": server,
        **(settings or {}),
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def request(
    port: int, target: str, *, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 10.0
) -> Response:
    """One HTTP/1.1 request with `target` sent exactly as given (no quoting)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@dataclass
class Server:
    """A running `feedsvc serve` process."""

    config: Path
    port: int
    workdir: Path
    dev: bool = False
    #: Worker processes to wait for (gunicorn's server.workers; 1 under --dev).
    workers: int = 1
    #: More arguments for `feedsvc serve` (e.g. "--no-build").
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"serve-{self.port}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"serve-{self.port}.err"

    def start(self) -> Server:
        args = [str(FEEDSVC), "--config", str(self.config), "serve", "--port", str(self.port)]
        if self.dev:
            args.append("--dev")
        args += self.args
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Wait until every worker has answered /healthz (each says its pid).

        A worker that has answered has its signal handlers set up, so a test
        that stops the server at once stops it cleanly.
        """
        deadline = time.monotonic() + START_TIMEOUT
        pids: set[int] = set()
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"feedsvc serve exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                r = request(self.port, "/healthz", timeout=2)
                if r.status == 200:
                    pids.add(json.loads(r.body)["pid"])
                    if len(pids) >= self.workers:
                        return
                    continue
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"feedsvc serve did not answer /healthz in {START_TIMEOUT}s:\n{self.stderr()}")

    def get(self, target: str, **kwargs: Any) -> Response:
        return request(self.port, target, **kwargs)

    def health(self) -> dict[str, Any]:
        return json.loads(self.get("/healthz").body)

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL of its group); return its exit code."""
        return stop_process(self.proc) if self.proc is not None else None


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL of the whole group (the HTTP workers and the builder too); the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


def poll(check: Any, *, timeout: float, interval: float = 0.1) -> Any:
    """Call `check` until it returns a truthy value or `timeout` passes; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
