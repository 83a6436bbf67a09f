"""The builder: one process that keeps an output folder current while records change.

`feedsvc build --watch` runs it alone; `feedsvc serve` starts it beside its
HTTP workers (unless ``--no-build``), so a server has exactly one watcher and
one build at a time, however many workers answer requests.

It watches ``records_dir`` through the operating system's file events
(watchfiles: inotify on Linux), waits for a burst of changes to settle, and
runs the incremental build (`incremental.build`), which reads only the changed
files and rewrites only the documents whose bytes change. Then it tells the
WebSub hubs about exactly those documents. A full scan also runs every
``server.reload_interval`` seconds, for file systems that send no events
(network mounts); without events that is the delay before a change is seen.

Each build runs in a child process forked for it: a build of 100,000 records
holds hundreds of megabytes while it renders, and a long-lived process would
keep that memory after the build. The builder itself holds only the watcher.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedsvc.build import incremental
from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.feeds.rules import LOW_QUALITY, UNPUBLISHED
from feedsvc.web import websub

log = logging.getLogger("feedsvc.builder")

#: Longest a burst of changes is gathered before a build starts (ms).
DEBOUNCE_MS = 1_000
#: Quiet time that ends a burst (ms): one saved file builds this soon after.
STEP_MS = 100
#: How often the watcher wakes to see whether it should stop (ms).
TICK_MS = 1_000
#: The builder's niceness (its builds inherit it): on a busy machine requests come first.
BUILD_NICENESS = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one build did, as the builder reports it."""

    ok: bool
    summary: str
    changed_paths: tuple[str, ...] = ()
    records_loaded: int = 0
    records_rejected: int = 0
    seconds: float = 0.0
    problems: tuple[str, ...] = ()


def summary_line(report: incremental.BuildReport, target: Path) -> str:
    """The one line `feedsvc build` and the builder print after a build."""
    c, p = report.changes, report.published
    left = sum(report.left_out.values())
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(report.left_out.items()))
    return (
        f"{c.files} records read ({c.parsed} parsed, {c.cached} from cache), {report.rejected} rejected, "
        f"{left} left out{f' ({why})' if left else ''}; "
        f"{c.feeds} feeds ({c.feeds_rendered} rendered, {c.feeds - c.feeds_rendered} unchanged); "
        f"{p.written} files written, {p.removed} removed in {report.seconds:.2f}s → {target}"
    )


def nothing_published(report: incremental.BuildReport, records_dir: Path) -> str | None:
    """The warning for a build that publishes no entry at all, saying why; None otherwise."""
    if report.published_entries:
        return None
    files = report.changes.files
    if not files:
        return f"no entry is published: {records_dir} holds no record files (*.txt, *.md)"
    reasons = []
    if report.left_out.get(UNPUBLISHED):
        reasons.append(
            f"{report.left_out[UNPUBLISHED]} marked published: false (set include_unpublished: true to publish them)"
        )
    if report.left_out.get(LOW_QUALITY):
        reasons.append(f"{report.left_out[LOW_QUALITY]} below min_quality")
    if report.rejected:
        reasons.append(f"{report.rejected} rejected")
    return f"no entry is published: of {files} record files, " + "; ".join(reasons)


def build_once(config: Config, out: Path, *, on_wait: Callable[[Path], None] | None = None) -> Outcome:
    """Run one incremental build here; a failure is an `Outcome`, never an exception."""
    started = time.monotonic()
    try:
        report = incremental.build(config, out, on_wait=on_wait)
    except Exception as e:  # noqa: BLE001 - a failed build must not end the builder
        # The type only: a message could quote record data.
        return Outcome(False, f"build failed ({type(e).__name__}); still serving the previous build",
                       seconds=time.monotonic() - started)  # fmt: skip
    empty = nothing_published(report, config.records_dir)
    notes = (*report.notes, *([empty] if empty else []))
    problems = tuple(str(p) for p in report.problems if not p.is_warning) + tuple(f"warning: {n}" for n in notes)
    loaded = report.changes.files - report.rejected
    return Outcome(True, summary_line(report, out), report.changed_paths, loaded, report.rejected,
                   report.seconds, problems)  # fmt: skip


def build_in_child(config: Config, out: Path) -> Outcome:
    """`build_once` in a forked child, so its memory goes back to the system when it ends."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, config, out), name="feedsvc-build", daemon=False)
    child.start()
    send.close()
    try:
        outcome: Outcome = receive.recv()
    except EOFError:
        outcome = Outcome(False, f"build process died (exit {child.exitcode}); still serving the previous build")
    finally:
        receive.close()
        child.join()
    return outcome


def _child(send: Any, config: Config, out: Path) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        send.send(build_once(config, out, on_wait=_waiting))
    finally:
        send.close()


def _waiting(out: Path) -> None:
    log.info("another build is writing %s; waiting for it", out)


class Builder:
    """Builds on every change until stopped; tells hubs and listeners after each build."""

    def __init__(
        self,
        config: Config,
        out: Path,
        *,
        build: Callable[[Config, Path], Outcome] = build_in_child,
        on_build: Callable[[Outcome], None] | None = None,
        notifier: websub.Notifier | None = None,
    ) -> None:
        self.config = config
        self.out = out
        self.interval = config.server.reload_interval
        self._build = build
        self._on_build = on_build
        self.stop_event = threading.Event()
        if notifier is None and config.websub.hubs:
            notifier = websub.Notifier(config.websub.hubs, config.websub.timeout)
        self.notifier = notifier
        self._problems: set[str] = set()

    def announce(self, paths: tuple[str, ...]) -> None:
        """Tell the hubs about the feeds among `paths` (URL paths whose bytes changed)."""
        if self.notifier is not None and paths:
            urls = websub.feed_urls(self.config, paths)
            if urls:
                self.notifier.submit(urls)

    def build(self) -> Outcome:
        outcome = self._build(self.config, self.out)
        for problem in outcome.problems:
            if problem not in self._problems:  # each rejected file once, not at every build
                log.warning("%s", problem)
        self._problems = set(outcome.problems)
        if outcome.ok:
            log.info("%s", outcome.summary)
        else:
            log.error("%s", outcome.summary)
        self.announce(outcome.changed_paths)
        if self._on_build is not None:
            self._on_build(outcome)
        return outcome

    def run(self, *, first: bool = True, parent: int | None = None) -> None:
        """Build (unless `first` is false), then again after every change, until `stop()`.

        With `parent`, also stop when that process is gone (the server that
        started this one was killed).
        """
        import watchfiles

        if first:
            self.build()
        last_scan = time.monotonic()
        root = self.config.records_dir
        for changes in watchfiles.watch(
            root,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
            stop_event=self.stop_event,
            # Every change counts (the build decides what a record file is);
            # if notify must fall back to polling, it polls at our interval.
            watch_filter=None,
            force_polling=False,
            poll_delay_ms=int(self.interval * 1000),
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            if self.stop_event.is_set() or (parent is not None and os.getppid() != parent):
                return
            due = time.monotonic() - last_scan >= self.interval
            if changes or due:
                self.build()
                last_scan = time.monotonic()

    def stop(self) -> None:
        self.stop_event.set()


def watch_forever(
    config: Config, out: Path, *, first: bool, parent: int | None, announce: tuple[str, ...] = ()
) -> None:
    """The body of a builder process: build on every change until SIGTERM."""
    from feedsvc.web.metrics import Metrics

    metrics = Metrics()

    def count(outcome: Outcome) -> None:
        metrics.reload("changed" if outcome.changed_paths else "unchanged" if outcome.ok else "failed", outcome.seconds)
        if outcome.ok:
            metrics.records(outcome.records_loaded, outcome.records_rejected)

    notifier = (
        websub.Notifier(config.websub.hubs, config.websub.timeout, on_outcome=metrics.websub)
        if config.websub.hubs
        else None
    )
    builder = Builder(config, out, on_build=count, notifier=notifier)
    # Builds yield the CPU to the HTTP workers: a rebuild must not stall requests.
    os.nice(BUILD_NICENESS)
    signal.signal(signal.SIGTERM, lambda *_: builder.stop())
    signal.signal(signal.SIGINT, lambda *_: builder.stop())
    builder.announce(announce)  # what the build before this process changed (feedsvc serve's first)
    try:
        builder.run(first=first, parent=parent)
    except FeedsvcError as e:
        log.error("builder stopped: %s", e)


def start_process(config: Config, out: Path, *, first: bool = True, announce: tuple[str, ...] = ()) -> int:
    """Fork a builder process (call before any thread starts); its pid.

    A plain fork, not `multiprocessing.Process`: the HTTP workers are forked
    from this process later and must not inherit a child to join at exit.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the builder
        code = 0
        try:
            watch_forever(config, out, first=first, parent=parent, announce=announce)
        except BaseException:  # noqa: BLE001 - never unwind into the server's code
            log.exception("builder failed")
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """Stop a builder process: SIGTERM, then SIGKILL after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (by the HTTP server's main process)
            return
        if done:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
