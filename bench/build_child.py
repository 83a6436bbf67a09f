"""One build in a fresh process, for bench/run.py: prints what it did as one JSON line.

A fresh process per build, so the peak memory (`ru_maxrss`) is the build's own
and not the benchmark's, and the clock covers `incremental.build` only (not
starting Python or importing feedsvc).

    python bench/build_child.py CONFIG OUT CACHE [--full]
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from feedsvc.build import incremental
from feedsvc.config import load_config


def main(argv: list[str]) -> None:
    config_path, out, cache = (Path(a) for a in argv[:3])
    full = "--full" in argv[3:]
    config = load_config(config_path)
    started = time.perf_counter()
    report = incremental.build(config, out, cache=cache, full=full)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "files": report.changes.files,
                "parsed": report.changes.parsed,
                "feeds": report.changes.feeds,
                "feeds_rendered": report.changes.feeds_rendered,
                "written": report.published.written,
                "unchanged": report.published.unchanged,
                "removed": report.published.removed,
                "rejected": report.rejected,
                # Linux reports kilobytes.
                "maxrss_self_mb": own / 1024,
                "maxrss_children_mb": workers / 1024,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
