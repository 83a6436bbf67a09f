"""The benchmark's figures: one catalogue of rows, judged against targets, printed and saved.

Every row the benchmark can report is declared here, in table order, with its
unit and target, so the table always has the same shape (a row that was not
measured says why) and tests/test_bench.py can check that none went missing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PASS, MISS, INFO, SKIP = "PASS", "MISS", "INFO", "SKIP"


@dataclass(frozen=True)
class Spec:
    id: str
    label: str
    unit: str
    #: How the target reads in the table; "" for figures without one.
    target: str = ""
    #: Given the median, whether the target is met; None for figures without one.
    meets: Callable[[float], bool] | None = None
    #: Rows measured only with the serving part (skipped by --skip-serve).
    serving: bool = False


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def at_least(limit: float) -> Callable[[float], bool]:
    return lambda v: v >= limit


def below(limit: float) -> Callable[[float], bool]:
    return lambda v: v < limit


def equal(expected: float) -> Callable[[float], bool]:
    return lambda v: v == expected


def _wrk_rows() -> list[Spec]:
    rows = []
    for code in ("200", "304"):
        for name, label in (("serve", "feedsvc serve"), ("static", "nginx static"), ("proxy", "nginx proxy")):
            rows.append(Spec(f"{name}_{code}_rps", f"{label}, {code}s: requests/s", "req/s", serving=True))
            # Issue 5 sets a latency target for feedsvc serve only (32 connections).
            p99_target = ("< 15", below(15)) if name == "serve" else ("", None)
            rows.append(Spec(f"{name}_{code}_p99", f"{label}, {code}s: p99 latency", "ms", *p99_target, True))
        rows.append(
            Spec(f"serve_static_{code}_ratio", f"{code}s: serve / nginx static", "×", "≥ 0.08", at_least(0.08), True)
        )
        rows.append(
            Spec(f"proxy_static_{code}_ratio", f"{code}s: proxy / nginx static", "×", "≥ 0.6", at_least(0.6), True)
        )
    return rows


CATALOGUE: tuple[Spec, ...] = (
    Spec("corpus_records", "records in the corpus", "records"),
    Spec("corpus_write", "writing the corpus (feedsvc.synth)", "s"),
    Spec("floor_read", "floor: read every file's bytes", "s"),
    Spec("floor_cloader", "floor: PyYAML C loader on every front matter, 1 core (baseline)", "s"),
    Spec("floor_yaml_rs", "yaml-rs on every front matter, 1 core", "s"),
    Spec("fast_path_share", "records taking the yaml-rs fast path", "%"),
    Spec(
        "fast_path_differs",
        "records parsed differently with and without yaml-rs (records.parse_bytes)",
        "records",
        "0",
        equal(0),
    ),
    Spec("full_build", "full build (--full, fresh output folder)", "s"),
    Spec("full_build_ratio", "full build / C-loader floor", "×", "≤ 0.35", at_most(0.35)),
    Spec("build_peak_rss", "full build peak RSS, build process (maxrss self)", "MB"),
    Spec("build_peak_rss_workers", "full build peak RSS, largest parse worker (maxrss children)", "MB"),
    Spec("noop_build", "no-op rebuild", "s"),
    Spec("noop_ratio", "no-op rebuild / full build", "×", "≤ 0.03", at_most(0.03)),
    Spec("noop_written", "no-op rebuild: files written", "files", "0", equal(0)),
    Spec("noop_mtimes_changed", "no-op rebuild: output files with a changed mtime", "files", "0", equal(0)),
    Spec("add_build", "one record added", "s"),
    Spec("add_ratio", "one record added / full build", "×", "≤ 0.05", at_most(0.05)),
    Spec("change_build", "one record changed", "s"),
    Spec("change_ratio", "one record changed / full build", "×", "≤ 0.05", at_most(0.05)),
    Spec("delete_build", "one record deleted", "s"),
    Spec("delete_ratio", "one record deleted / full build", "×", "≤ 0.05", at_most(0.05)),
    Spec(
        "incremental_identical",
        "incremental output = fresh full build (add, change, delete)",
        "checks",
        "3 of 3",
        equal(3),
    ),
    Spec("serve_feed_bytes", "feed under load (size)", "KB", serving=True),
    Spec("serve_startup", "feedsvc serve: start to every worker answering", "s", serving=True),
    *_wrk_rows(),
    Spec("serve_rss_startup", "feedsvc serve RSS at startup (master + workers)", "MB", "< 300", below(300), True),
    Spec("serve_reloads", "reloads per worker while records changed every second", "reloads", serving=True),
    Spec("serve_rss_reloaded", "feedsvc serve RSS after the reloads", "MB", "< 300", below(300), True),
    Spec("serve_rss_drift", "RSS change over the second half of the reloads (steady)", "%", "≤ 5", at_most(5), True),
)
SPECS = {s.id: s for s in CATALOGUE}


@dataclass
class Row:
    spec: Spec
    values: list[float] = field(default_factory=list)
    note: str = ""
    skipped: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def status(self) -> str:
        if self.skipped or not self.values:
            return SKIP
        if self.spec.meets is None:
            return INFO
        assert self.median is not None
        return PASS if self.spec.meets(self.median) else MISS

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.spec.id,
            "figure": self.spec.label,
            "unit": self.spec.unit,
            "values": self.values,
            "median": self.median,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "target": self.spec.target,
            "status": self.status,
            "note": self.skipped or self.note,
        }


class Results:
    """The rows being filled in, in catalogue order."""

    def __init__(self) -> None:
        self.rows = {s.id: Row(s) for s in CATALOGUE}

    def add(self, id: str, value: float, note: str = "") -> None:
        row = self.rows[id]
        row.values.append(float(value))
        if note:
            row.note = note

    def note(self, id: str, note: str) -> None:
        self.rows[id].note = note

    def skip(self, id: str, why: str) -> None:
        self.rows[id].skipped = why

    def median(self, id: str) -> float | None:
        return self.rows[id].median

    def ratio(self, id: str, numerator: str, denominator: str) -> None:
        """Row `id` = median(numerator) / median(denominator), if both were measured."""
        top, bottom = self.median(numerator), self.median(denominator)
        if top is not None and bottom:
            self.add(id, top / bottom)

    def as_list(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rows.values()]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit in ("records", "files", "checks", "reloads", "req/s"):
        return f"{value:,.0f}"
    if unit == "×":
        return f"{value:.3f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of `rows` (as `Results.as_list` gives them)."""
    lines = [
        "| figure | median | min–max | unit | target | result | note |",
        "| --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in rows:
        spread = "–" if len(r["values"]) < 2 else f"{_number(r['min'], r['unit'])}–{_number(r['max'], r['unit'])}"
        note = str(r["note"]).replace("|", "\\|")
        median, target = _number(r["median"], r["unit"]), r["target"] or "–"
        lines.append(f"| {r['figure']} | {median} | {spread} | {r['unit']} | {target} | {r['status']} | {note} |")
    return "\n".join(lines)
