"""Running the server: a builder process and HTTP workers over one output folder.

`feedsvc serve` first brings the output folder up to date with the
incremental build (right after a `feedsvc build` it parses nothing), then
starts one builder process (`builder.py`: it watches records_dir and rebuilds,
and tells the WebSub hubs) and the HTTP workers (granian by default, Flask's
development server with --dev), which serve the files the build wrote
(`web.py`). With ``--no-build`` there is no builder: the workers serve a
folder another process keeps current (`feedsvc build --watch`).

The processes share one private runtime folder, made for this run and removed
when it ends: prometheus-client's multiprocess files, so /metrics in any
worker reports all of them and the builder's counts too.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from feedsvc.config import Config, base_url, canonical_base_url
from feedsvc.errors import FeedsvcError
from feedsvc.web import builder, metrics
from feedsvc.web.app import configure_logging, create_app

log = logging.getLogger("feedsvc.server")

#: Longest a client may take to send a request's head (ms); then the connection is closed.
HEADER_TIMEOUT_MS = 10_000
#: Largest request head (request line and header fields) read; a larger one is refused.
MAX_REQUEST_HEAD = 32 * 1024
#: Connections waiting to be accepted.
BACKLOG = 1024


def run(
    config: Config, host: str | None = None, port: int | None = None, dev: bool = False, build: bool = True
) -> None:
    """Serve `config`'s feeds until interrupted; `host`/`port` override the config.

    With `build` (the default), build first and keep building while records
    change; without, serve the output folder as it is kept by someone else.
    """
    server = dataclasses.replace(config.server, host=host or config.server.host, port=port or config.server.port)
    config = dataclasses.replace(config, server=server)
    configure_logging()
    url = index_url(server.host, server.port)
    check_port(server.host, server.port)
    config = with_served_base_url(config, url)
    out = config.output_dir
    owner = os.getpid()
    with runtime_dir():
        watcher = None
        if build:
            # Before any thread or worker exists: both builds fork.
            first = builder.build_in_child(config, out)
            if not first.ok:
                raise FeedsvcError(first.summary)
            for problem in first.problems:
                log.warning("%s", problem)
            log.info("%s", first.summary)
            # The builder tells the hubs what this first build changed (records
            # changed while no server ran), then watches.
            watcher = builder.start_process(config, out, first=False, announce=first.changed_paths)
        try:
            app = create_app(config)
            if dev:
                _run_dev(app, server.host, server.port, url)
            else:
                run_granian(app, config, url)
        finally:
            if watcher is not None and os.getpid() == owner:  # forked workers may unwind through here too
                builder.stop_process(watcher)


@contextmanager
def runtime_dir() -> Iterator[str]:
    """A private folder for this server's processes, named in the environment, removed after.

    PROMETHEUS_MULTIPROC_DIR (its ``metrics`` subfolder) and
    FEEDSVC_RUNTIME_DIR are set before the app is made, so the metrics are
    created in multiprocess mode, and inherited by the workers forked later.
    A value already in the environment is replaced: the folder must start
    empty and belong to this run alone.
    """
    owner = os.getpid()
    folder = tempfile.mkdtemp(prefix="feedsvc-run-")  # mode 0700
    saved = {name: os.environ.get(name) for name in (metrics.ENV_VAR,)}
    os.mkdir(os.path.join(folder, "metrics"), 0o700)
    os.environ[metrics.ENV_VAR] = os.path.join(folder, "metrics")
    try:
        yield folder
    finally:
        # Forked workers may leave through here too (sys.exit unwinds the
        # fork): only the process that made the folder removes it.
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def check_port(host: str, port: int) -> None:
    """Raise `FeedsvcError` in one line if the address cannot be listened on (before any build)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as granian and werkzeug bind
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise FeedsvcError(f"port {port} on {host} is in use; choose another with --port") from None
            raise FeedsvcError(f"cannot listen on {bind_address(host, port)}: {e.strerror or e}") from None


def with_served_base_url(config: Config, url: str) -> Config:
    """`config` with site.base_url set to the address served, if it sets none; else as it is.

    A configured base_url that is not the address served is kept (it is the
    public address behind a proxy, say), and said once, since every link then
    leads elsewhere.
    """
    served = url.removesuffix("index.html")
    if not config.site.base_url:
        if config.server.host in ("0.0.0.0", "::"):  # every address: links need one that works here
            served = served.replace("//0.0.0.0", "//127.0.0.1").replace("//[::]", "//[::1]")
            log.warning("listening on every address: links lead to %s; set site.base_url to the public one", served)
        return dataclasses.replace(config, site=dataclasses.replace(config.site, base_url=canonical_base_url(served)))
    if base_url(config) != canonical_base_url(served):
        log.info("site.base_url is %s: the links in feeds and pages lead there, not to %s", base_url(config), served)
    return config


def index_url(host: str, port: int) -> str:
    """The URL of the index page for a listening address."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/index.html"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _DevRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its own request log (feedsvc writes one) and
    without quoting bad request lines in its error log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        code = args[0] if args and format.startswith("code") else "?"
        log.warning("dev server: refused a request from %s (%s)", self.address_string(), code)

    def make_environ(self) -> Any:
        # Python's http.server turns a leading "//" into "/" before werkzeug
        # sees the path: RAW_URI gets the target as sent, so "//metrics" is
        # 404 here as under granian (web/spelling.py).
        environ = super().make_environ()
        parts = self.requestline.split(" ")
        if len(parts) == 3:
            environ["RAW_URI"] = environ["REQUEST_URI"] = parts[1]
        return environ


def run_granian(app: Flask, config: Config, url: str) -> None:
    """Serve `app` with granian until SIGTERM or SIGINT.

    Why granian: its connections live in Rust (tokio and hyper), so a slow or
    idle client costs a socket, never a Python thread: a request reaches the
    app only once its head has arrived, within `HEADER_TIMEOUT_MS`. The app's
    threads only ever run complete requests, one per worker by default
    (`server.threads`), which keeps the GIL uncontended (docs/design.md,
    "Web service", has the measurements against gunicorn's gthread workers).
    Workers are forked from this process after the app is made.
    """
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    server = config.server
    granian = Server(
        "feedsvc",
        address=server.host,
        port=server.port,
        interface=Interfaces.WSGI,
        workers=server.workers,
        blocking_threads=server.threads,
        backlog=BACKLOG,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT_MS, max_buffer_size=MAX_REQUEST_HEAD),
        log_access=False,  # feedsvc writes its own access log (web.AccessLog)
    )
    granian.on_startup(lambda: print(f"Serving feeds at {url}", flush=True))
    granian.serve(target_loader=lambda _target: app)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run_dev(app: Flask, host: str, port: int, url: str) -> None:
    try:
        httpd = make_server(host, port, app, threaded=True, request_handler=_DevRequestHandler)
    except OSError as e:
        raise SystemExit(f"feedsvc serve: cannot listen on {bind_address(host, port)}: {e.strerror or e}") from None
    print(f"Serving feeds at {url} (development server)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, so the builder is stopped too
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    sys.stdout.flush()
