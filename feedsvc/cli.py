"""The command line: thin commands over the library, no logic of their own.

Bad data and bad configuration end in a one-line message and an exit code,
never a traceback.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from feedsvc import __version__
from feedsvc.build import incremental
from feedsvc.config import MAX_WINDOW_HOURS, Config, check_records_dir, load_config
from feedsvc.errors import ConfigError, FeedsvcError, RecordError
from feedsvc.feeds.rules import Filters, dedupe
from feedsvc.records.read import load_records, with_identity_lines
from feedsvc.web import websub
from feedsvc.web.builder import nothing_published, summary_line, watch_forever

#: From this many files on, a build on a terminal shows progress bars.
PROGRESS_THRESHOLD = 2_000


def _config_here(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """`feedsvc build --config X` means what `feedsvc --config X build` means."""
    if value is not None:
        ctx.ensure_object(dict)["config_path"] = value


#: `--config` after the command name as well as before it.
config_option = click.option(
    "--config",
    type=click.Path(path_type=Path),
    expose_value=False,
    is_eager=True,
    callback=_config_here,
    help="Configuration file (as before the command name).",
)


def _config(ctx: click.Context, *, records: bool = True) -> Config:
    """The configuration, checked; with `records`, records_dir must exist too."""
    try:
        config = load_config(ctx.obj.get("config_path"))
        if records:
            check_records_dir(config)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    return config


def _report(problems: tuple[RecordError, ...], *, warnings: bool) -> None:
    for p in problems:
        if warnings or not p.is_warning:
            click.echo(str(p), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="FEEDSVC_CONFIG",
    help="Configuration file (default: $FEEDSVC_CONFIG, else ./config.yaml).",
)
@click.version_option(__version__, prog_name="feedsvc")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Publish news records as RSS 2.0 and Atom 1.0 feeds, per topic and per provider."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command("build")
@config_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: output_dir from the config).",
)
@click.option("--strict", is_flag=True, help="Exit 1 if any record was rejected.")
@click.option(
    "--warnings/--no-warnings", default=False, help="Also print warnings (records published with something dropped)."
)
@click.option("--full", is_flag=True, help="Ignore the build cache: parse every record and render every feed.")
@click.option("--jobs", type=click.IntRange(min=1), help="Processes for parsing records (default: one per core).")
@click.option(
    "--overwrite", is_flag=True, help="Replace files in the output folder that feedsvc did not write (default: stop)."
)
@click.option(
    "--watch", is_flag=True, help="Keep building: watch records_dir and rebuild on every change (until Ctrl-C)."
)
@click.pass_context
def build_command(
    ctx: click.Context,
    out: Path | None,
    strict: bool,
    warnings: bool,
    full: bool,
    jobs: int | None,
    overwrite: bool,
    watch: bool,
) -> None:
    """Write every feed, page and the OPML as static files.

    The files sit at the same URL paths the web app serves, each with a .gz
    beside it for servers that send precompressed files. Rejected records are
    reported as "file: field: reason" and left out; every good record is
    still published. Builds are incremental: only changed record files are
    read again and only the feeds they touch are rendered (the cache lives
    beside the output folder, see docs/design.md).
    """
    config = _config(ctx)
    target = out or config.output_dir

    def waiting(folder: Path) -> None:
        click.echo(f"another build is writing {folder}; waiting for it to finish", err=True)

    with _Bar("Reading records") as bar:
        try:
            report = incremental.build(
                config, target, full=full, workers=jobs, progress=bar.update, on_wait=waiting, overwrite=overwrite
            )
        except (FeedsvcError, OSError, sqlite3.Error) as e:
            raise click.ClickException(f"cannot write the output: {e}") from None
    _report(report.problems, warnings=warnings)
    empty = nothing_published(report, config.records_dir)
    for note in (*report.notes, *([empty] if empty else [])):
        click.echo(f"warning: {note}", err=True)
    click.echo(summary_line(report, target), err=True)
    if config.websub.hubs:  # tell the hubs which feeds changed; a hub that is down never fails the build
        click.echo(websub.notify(config, report.changed_paths, wait=config.websub.timeout).summary(), err=True)
    if watch:
        from feedsvc.web.app import configure_logging

        configure_logging()
        click.echo(f"Watching {config.records_dir} for changes (Ctrl-C to stop)", err=True)
        watch_forever(dataclasses.replace(config, output_dir=target), target, first=False, parent=None)
        return
    if strict and report.rejected:
        sys.exit(1)


class _Bar:
    """A progress bar on stderr for a large job, when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> _Bar:
        return self

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@main.command()
@config_option
@click.option("--warnings/--no-warnings", default=True, help="Also print warnings (default: yes).")
@click.argument("folder", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_context
def check(ctx: click.Context, warnings: bool, folder: Path | None) -> None:
    """Validate every record; print "file: field: reason" lines and a summary.

    Checks FOLDER, or records_dir from the config. Exits 1 if any record was
    rejected.
    """
    config = _config(ctx, records=folder is None)
    root = folder or config.records_dir
    loaded = load_records(root, config)
    # The same problems a build reports: a duplicate article is one too.
    problems = loaded.problems + with_identity_lines(root, dedupe(loaded.records).problems)
    _report(tuple(sorted(problems, key=lambda p: p.path)), warnings=warnings)
    filters = Filters.from_config(config)
    left = Counter(
        reason for r in loaded.records if (reason := filters.left_out(r.is_published, r.quality)) is not None
    )
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(left.items()))
    click.echo(
        f"{loaded.files} records checked: {len(loaded.records)} usable, "
        f"{loaded.rejected} rejected, {sum(1 for p in problems if p.is_warning)} warnings"
        + (f"; {left.total()} would be left out ({why})" if left else "")
    )
    if loaded.errors:
        sys.exit(1)


@main.command()
@config_option
@click.pass_context
def feeds(ctx: click.Context) -> None:
    """List every feed with its entry count and newest date.

    Brings the output folder up to date first (an incremental build: after
    `feedsvc build`, nothing is parsed), then lists what the build publishes.
    """
    config = _config(ctx)
    try:
        summaries = incremental.summaries(config)
    except (FeedsvcError, OSError, sqlite3.Error) as e:
        raise click.ClickException(f"cannot write the output: {e}") from None
    for feed, shown in summaries:
        newest = feed.updated.isoformat() if feed.updated else "-"
        click.echo(f"/{feed.key.path}.atom\t{shown} of {feed.total}\t{newest}\t{feed.name}")


@main.command()
@config_option
@click.option("--host", help="Address to listen on (default: server.host).")
@click.option("--port", type=int, help="Port to listen on (default: server.port).")
@click.option("--dev", is_flag=True, help="Use Flask's development server instead of granian.")
@click.option(
    "--build/--no-build",
    default=True,
    help="Build first and rebuild on every change (default), or only serve an output folder "
    "another process keeps current (feedsvc build --watch).",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, dev: bool, build: bool) -> None:
    """Serve the feeds over HTTP (granian; --dev for Flask's server).

    Builds the output folder first (incrementally: after `feedsvc build`
    nothing is parsed again), then serves the files the build wrote while one
    builder process rebuilds on every change to records_dir.
    """
    from feedsvc.web.server import run

    config = _config(ctx, records=build)
    try:
        run(config, host=host, port=port, dev=dev, build=build)
    except FeedsvcError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        where = f"{host or config.server.host}:{port or config.server.port}"
        raise click.ClickException(f"cannot serve on {where}: {e.strerror or e}") from None
    except SystemExit as e:
        if e.code not in (None, 0):  # the HTTP server ends this way when it cannot start; it said why
            raise click.exceptions.Exit(1) from None
        raise


@main.command()
@config_option
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as an HTML page with charts to this file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
@click.option(
    "--window",
    type=click.FloatRange(1, MAX_WINDOW_HOURS),
    help="Hours the report covers, up to the newest line (default: audience.window_hours, 48).",
)
@click.pass_context
def audience(
    ctx: click.Context, logs: tuple[Path, ...], html_out: Path | None, as_json: bool, window: float | None
) -> None:
    """Who reads the feeds, from nginx access logs (the combined format; .gz too).

    Per feed: subscribers by feed service (Feedly, Inoreader and others say
    how many in their User-Agent), direct pollers, polls, the share answered
    304 and the share conditional, and clients polling faster than polite
    polling allows: the report `feedsvc serve` shows at /audience.html.
    Malformed lines are counted and skipped.
    """
    from feedsvc.formats.common import Site
    from feedsvc.web.audience import logs as access_logs
    from feedsvc.web.audience.page import render_html, to_json, to_text

    config = _config(ctx, records=False)
    try:
        report = access_logs.report(logs, config, window_hours=window)
    except OSError as e:
        raise click.ClickException(f"cannot read {e.filename or 'a log'}: {e.strerror or e}") from None
    click.echo(to_json(report) if as_json else to_text(report), nl=False)
    if html_out is not None:
        try:
            html_out.write_bytes(render_html(report, Site.from_config(config), standalone=True))
        except OSError as e:
            raise click.ClickException(f"cannot write {html_out}: {e.strerror or e}") from None
        click.echo(f"wrote {html_out}", err=True)
