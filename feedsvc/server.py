"""Running the server: a builder process and HTTP workers over one output folder.

`feedsvc serve` first brings the output folder up to date with the
incremental build (right after a `feedsvc build` it parses nothing), then
starts one builder process (`builder.py`: it watches records_dir and rebuilds,
and tells the WebSub hubs) and the HTTP workers (gunicorn by default, Flask's
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
import socket
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.glogging import Logger as GunicornLogger  # type: ignore[import-untyped]
from werkzeug.serving import WSGIRequestHandler, make_server

from . import builder, metrics
from .config import Config, base_url, canonical_base_url
from .errors import FeedsvcError
from .web import configure_logging, create_app

log = logging.getLogger("feedsvc.server")

#: gunicorn's request limits: the longest request line (method, target,
#: version), the most header fields and the longest one. Anything larger is
#: refused by gunicorn with 414 or 431 before the app sees it.
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 50
LIMIT_REQUEST_FIELD_SIZE = 8190


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
                FeedsvcGunicorn(app, gunicorn_options(config, url)).run()
        finally:
            if watcher is not None and os.getpid() == owner:  # gunicorn's workers unwind through here too
                builder.stop_process(watcher)


@contextmanager
def runtime_dir() -> Iterator[str]:
    """A private folder for this server's processes, named in the environment, removed after.

    PROMETHEUS_MULTIPROC_DIR (its ``metrics`` subfolder) and
    FEEDSVC_RUNTIME_DIR are set before the app is made, so the metrics are
    created in multiprocess mode, and inherited by the workers gunicorn forks.
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
        # gunicorn's workers leave through here too (sys.exit unwinds the
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
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and werkzeug bind
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


def gunicorn_options(config: Config, url: str) -> dict[str, Any]:
    """gunicorn settings for `config`: workers, threads, limits, hooks."""
    server = config.server

    def when_ready(arbiter: Any) -> None:
        print(f"Serving feeds at {url}", flush=True)

    def post_fork(arbiter: Any, worker: Any) -> None:
        # Until the worker installs its own signal handlers, a SIGTERM would
        # reach the master's handlers that fork copied and be lost, leaving the
        # worker to be killed after graceful_timeout: stop the worker instead.
        def stop_worker(signum: int, frame: Any) -> None:
            worker.alive = False

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, stop_worker)

    def child_exit(arbiter: Any, worker: Any) -> None:
        # A dead worker's gauges must not count; its counters still do.
        metrics.mark_process_dead(worker.pid)

    return {
        "bind": [bind_address(server.host, server.port)],
        "workers": server.workers,
        "threads": server.threads,
        "worker_class": "gthread",
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        # SCRIPT_NAME and PATH_INFO request headers would otherwise be taken
        # from loopback clients as a proxy's word (a 500 for any mismatch).
        "forwarder_headers": "",
        # feedsvc writes its own access log (web.AccessLog).
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": QuietLogger,
        # gunicorn 25+ otherwise creates a control socket under $HOME.
        "control_socket_disable": True,
        # The workers' heartbeat files (unlinked at once) stay off the disk.
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "proc_name": "feedsvc",
        "graceful_timeout": 10,
        "when_ready": when_ready,
        "post_fork": post_fork,
        "child_exit": child_exit,
    }


class FeedsvcGunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn running one ready-made app object, configured in code only."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


class QuietLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger, minus the raw request line it quotes for a bad request.

    gunicorn logs "Invalid request from ip=…: Invalid Request Line '<line>'";
    the line holds the query string, which feedsvc never logs.
    """

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith("Invalid request from"):
            msg, args = msg.split("'", 1)[0].rstrip(" :"), ()
        super().warning(msg, *args, **kwargs)


class _DevRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its own request log (feedsvc writes one) and
    without quoting bad request lines in its error log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        code = args[0] if args and format.startswith("code") else "?"
        log.warning("dev server: refused a request from %s (%s)", self.address_string(), code)


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
