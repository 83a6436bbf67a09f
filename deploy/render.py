#!/usr/bin/env python3
"""Fill in an nginx config from deploy/ and write a complete, runnable nginx.conf.

    python3 deploy/render.py static --prefix DIR --listen 127.0.0.1:8080 --output-dir /srv/feedsvc/public --max-age 300
    python3 deploy/render.py proxy  --prefix DIR --listen 127.0.0.1:8080 --upstream 127.0.0.1:8000
    .venv/bin/python deploy/render.py static --config config.yaml --prefix DIR --listen 8080

writes DIR/nginx.conf (plus DIR/logs and DIR/temp; the proxy cache goes to
DIR/cache unless --cache-dir says otherwise) and prints the command that runs
nginx in the foreground on it. With --snippet, only the filled-in block (to
include inside your own `http { }`) is printed and nothing is written.
--config reads output_dir, server.cache_max_age and server.host:port from a
feedsvc config file (feedsvc must be importable: use the project's venv);
options given on the command line win.

Values are checked before anything is written: paths must be absolute, and
nothing may hold characters that would end or change an nginx directive
(whitespace, quotes, ";", "{", "}", "#", "$", "\\"). Only the standard
library is needed, so the tests, the benchmark and users share this file.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = {"static": HERE / "nginx-static.conf", "proxy": HERE / "nginx-proxy.conf"}
_UNSAFE = re.compile(r"[\s\"';{}#$\\]")
_PORT = r"(?:[1-9][0-9]{0,4})"
_ADDRESS = re.compile(rf"(?:{_PORT}|[A-Za-z0-9.-]+:{_PORT}|\[[0-9A-Fa-f:.]+\]:{_PORT})")
_UPSTREAM = re.compile(rf"(?:[A-Za-z0-9.-]+:{_PORT}|\[[0-9A-Fa-f:.]+\]:{_PORT}|unix:/[^\s\"';{{}}#$\\]+)")
#: Where nginx is looked for when it is not on PATH (Debian puts it in /usr/sbin).
NGINX_PLACES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
INSTALL_HINT = "install it with `sudo scripts/setup --system` (Debian/Ubuntu: apt-get install nginx-light)"


class RenderError(ValueError):
    """A value that cannot go into an nginx config, named by its option."""


@dataclass(frozen=True)
class Prefix:
    """The files of one rendered nginx: its config, logs, pid and cache."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.root / "logs" / "access.log"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def temp(self) -> Path:
        return self.root / "temp"


def find_nginx() -> str | None:
    """The nginx binary: on PATH, else where distributions put it; None if missing."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in NGINX_PLACES if os.access(p, os.X_OK)), None)


def check_path(option: str, value: str | Path) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = path.resolve()
    text = str(path)
    if _UNSAFE.search(text):
        raise RenderError(
            f"{option}: {text!r} holds whitespace, a quote or one of ; {{ }} # $ \\ (nginx would misread it)"
        )
    return text


def check_listen(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise RenderError(f"--listen: {value!r} is not PORT, HOST:PORT or [IPv6]:PORT")
    return value


def check_upstream(value: str) -> str:
    if not _UPSTREAM.fullmatch(value):
        raise RenderError(f"--upstream: {value!r} is not HOST:PORT, [IPv6]:PORT or unix:/path")
    return value


def check_max_age(value: int) -> str:
    if not 0 <= value <= 10**9:
        raise RenderError(f"--max-age: {value} is not a number of seconds (0 to 1000000000)")
    return str(value)


def fill(kind: str, values: dict[str, str]) -> str:
    """The template for `kind` with every placeholder replaced; raises if one is left."""
    text = TEMPLATES[kind].read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    left = sorted(set(re.findall(r"__[A-Z_]+__", text)))
    if left:
        raise RenderError(f"{kind}: no value for {', '.join(left)}")
    return text


def static_snippet(*, listen: str, output_dir: str | Path, max_age: int) -> str:
    """deploy/nginx-static.conf filled in."""
    return fill(
        "static",
        {
            "LISTEN": check_listen(listen),
            "OUTPUT_DIR": check_path("--output-dir", output_dir),
            "MAX_AGE": check_max_age(max_age),
        },
    )


def proxy_snippet(*, listen: str, upstream: str, cache_dir: str | Path) -> str:
    """deploy/nginx-proxy.conf filled in."""
    return fill(
        "proxy",
        {
            "LISTEN": check_listen(listen),
            "UPSTREAM": check_upstream(upstream),
            "CACHE_DIR": check_path("--cache-dir", cache_dir),
        },
    )


def main_conf(snippet: str, prefix: Prefix, *, workers: int | str = "auto", user: str | None = None) -> str:
    """A complete nginx.conf around `snippet`, keeping every file nginx writes inside `prefix`.

    No `pid` or `daemon` line: the command line sets both (see `command`), so
    the same file runs in the foreground under a test, a benchmark or a
    process supervisor.
    """
    root = check_path("--prefix", prefix.root)
    if user is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(?: [A-Za-z0-9_.-]+)?", user):
        raise RenderError(f"--user: {user!r} is not USER or 'USER GROUP'")
    if not (workers == "auto" or (isinstance(workers, int) and 1 <= workers <= 256)):
        raise RenderError(f"--workers: {workers!r} is not 'auto' or 1 to 256")
    temp = f"{root}/temp"
    lines = [
        "# Written by deploy/render.py; run it with the command it printed.",
        f"worker_processes {workers};",
        f"error_log {root}/logs/error.log notice;",
    ]
    if user is not None:
        lines.append(f"user {user};")
    lines += [
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        f"    access_log {root}/logs/access.log;",
        f"    client_body_temp_path {temp}/client_body;",
        f"    proxy_temp_path {temp}/proxy;",
        f"    fastcgi_temp_path {temp}/fastcgi;",
        f"    uwsgi_temp_path {temp}/uwsgi;",
        f"    scgi_temp_path {temp}/scgi;",
        "    sendfile on;",
        "    keepalive_timeout 65s;",
        "",
    ]
    lines += [f"    {line}" if line else "" for line in snippet.splitlines()]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_prefix(prefix: Prefix, conf: str) -> Path:
    """Create `prefix` with its logs and temp folders and write nginx.conf; return its path."""
    for folder in (prefix.root, prefix.root / "logs", prefix.temp):
        folder.mkdir(parents=True, exist_ok=True)
    prefix.conf.write_text(conf, encoding="utf-8")
    return prefix.conf


def command(prefix: Prefix, nginx: str = "nginx") -> list[str]:
    """The argv running nginx in the foreground on `prefix` (pid file inside it)."""
    return [nginx, "-p", f"{prefix.root}/", "-c", str(prefix.conf), "-g", f"daemon off; pid {prefix.pid};"]


def _config_values(path: Path) -> dict[str, object]:
    try:
        from feedsvc.config import load_config
        from feedsvc.errors import FeedsvcError
    except ImportError:
        raise RenderError("--config needs feedsvc: run this with the project's .venv/bin/python") from None
    try:
        config = load_config(path)
    except FeedsvcError as e:
        raise RenderError(str(e)) from None
    host = config.server.host
    return {
        "output_dir": config.output_dir,
        "max_age": config.server.cache_max_age,
        "upstream": f"[{host}]:{config.server.port}" if ":" in host else f"{host}:{config.server.port}",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deploy/render.py",
        description="Write a complete nginx.conf serving feedsvc: the static build (static), "
        "or a caching proxy in front of `feedsvc serve` (proxy).",
    )
    add = parser.add_argument
    add("kind", choices=sorted(TEMPLATES), help="static: serve output_dir; proxy: cache in front of feedsvc serve")
    add("--prefix", type=Path, help="folder for nginx.conf, logs, temp files and the proxy cache")
    add("--listen", required=True, help="PORT, HOST:PORT or [IPv6]:PORT nginx listens on")
    add("--config", type=Path, help="feedsvc config file to take output_dir, cache_max_age, host:port from")
    add("--output-dir", help="static: the folder feedsvc build writes (output_dir)")
    add("--max-age", type=int, help="static: server.cache_max_age, in seconds")
    add("--upstream", help="proxy: feedsvc serve's HOST:PORT")
    add("--cache-dir", help="proxy: folder for nginx's cache (default PREFIX/cache)")
    add("--workers", default="auto", help="worker_processes (default auto: one per core)")
    add("--user", help="user (and group) of the workers when nginx starts as root; they must read output_dir")
    add("--snippet", action="store_true", help="print only the filled-in block for your own http { }; write nothing")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    """Do what the command line asks; return what to print."""
    from_config = _config_values(args.config) if args.config else {}
    prefix = Prefix(Path(check_path("--prefix", args.prefix))) if args.prefix else None
    if prefix is None and not args.snippet:
        raise RenderError("--prefix: required (or --snippet to print the block only)")
    if args.kind == "static":
        output_dir = args.output_dir or from_config.get("output_dir")
        max_age = args.max_age if args.max_age is not None else from_config.get("max_age")
        if output_dir is None or max_age is None:
            raise RenderError("static: give --output-dir and --max-age (or --config)")
        assert isinstance(max_age, int)
        snippet = static_snippet(listen=args.listen, output_dir=str(output_dir), max_age=max_age)
    else:
        upstream = args.upstream or from_config.get("upstream")
        if upstream is None:
            raise RenderError("proxy: give --upstream (or --config)")
        cache_dir = args.cache_dir or (prefix.cache if prefix else None)
        if cache_dir is None:
            raise RenderError("proxy: give --cache-dir with --snippet")
        snippet = proxy_snippet(listen=args.listen, upstream=str(upstream), cache_dir=cache_dir)
    if args.snippet:
        return snippet
    assert prefix is not None
    workers: int | str = args.workers if args.workers == "auto" else _int("--workers", args.workers)
    conf = write_prefix(prefix, main_conf(snippet, prefix, workers=workers, user=args.user))
    nginx = find_nginx() or "nginx"
    argv = " ".join(a if not _UNSAFE.search(a) else f"'{a}'" for a in command(prefix, nginx))
    note = "" if find_nginx() else f"\n(nginx is not installed: {INSTALL_HINT})"
    check = f"{nginx} -t -p {prefix.root}/ -c {conf}"
    return f"wrote {conf}\nrun nginx in the foreground with:\n  {argv}\ncheck it with:\n  {check}{note}"


def _int(option: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RenderError(f"{option}: {value!r} is not a number") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except RenderError as e:
        print(f"deploy/render.py: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"deploy/render.py: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
