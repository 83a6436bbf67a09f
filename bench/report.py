"""The benchmark's figures: one catalogue of rows, judged against targets, printed and saved.

Every row the benchmark can report is declared here, in table order, with its
unit and target, so the table always has the same shape (a row that was not
measured says why) and tests/e2e/test_bench.py can check that none went missing.
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


#: The serving setups: their row-id prefix and how the table names them.
SETUPS = {"shipped": "config.yaml", "defaults": "defaults"}


def _serving_rows(setup: str) -> list[Spec]:
    """Issue 10's targets for one setup (see bench/serving.py for how each is measured)."""
    name = SETUPS[setup]

    def spec(
        metric: str, label: str, unit: str, target: str = "", meets: Callable[[float], bool] | None = None
    ) -> Spec:
        return Spec(f"{setup}_{metric}", f"{name}: {label}", unit, target, meets, True)

    rows = [
        spec("feed_bytes", "feed under load (size)", "KB"),
        spec("build", "`feedsvc build` before serving (wall clock)", "s"),
        spec("one_build", "one record changed, `feedsvc build` (wall clock)", "s"),
        spec("ready", "server ready: launch → /healthz 200 from every worker", "s", "≤ 5", at_most(5)),
        spec("startup_parsed", "records parsed by the server's start-up build", "records", "0", equal(0)),
        spec("idle_cpu", "idle CPU, every server process (utime+stime)", "% core", "≤ 5", at_most(5)),
        spec("pss", "total PSS, every server process, idle", "MB", "≤ 250", at_most(250)),
        spec("base_ready", "server ready at a tenth of the records", "s"),
        spec("base_idle_cpu", "idle CPU at a tenth of the records", "% core"),
        spec("base_pss", "total PSS, idle, at a tenth of the records", "MB"),
        spec("pss_ratio", "total PSS / the same at a tenth of the records", "×", "≤ 1.3", at_most(1.3)),
    ]
    for code in ("200", "304"):
        rows += [
            spec(f"static_{code}_rps", f"nginx static, {code}s: requests/s", "req/s"),
            spec(f"static_{code}_p99", f"nginx static, {code}s: p99 latency", "ms"),
            spec(f"serve_{code}_rps", f"feedsvc serve, {code}s: requests/s", "req/s"),
            spec(f"serve_{code}_p99", f"feedsvc serve, {code}s: p99 latency", "ms", "< 15", below(15)),
            spec(f"rebuild_{code}_rps", f"feedsvc serve while rebuilding, {code}s: requests/s", "req/s"),
            spec(
                f"rebuild_{code}_p99", f"feedsvc serve while rebuilding, {code}s: p99 latency", "ms", "< 15", below(15)
            ),
        ]
    rows += [
        spec("rebuild_builds", "builds finished during the rebuilding runs", "builds"),
        spec(
            "pss_rebuild_peak", "total PSS while rebuilding, peak (build child included)", "MB", "≤ 250", at_most(250)
        ),
        spec("pss_after", "total PSS after the load runs and rebuilds", "MB"),
        spec("serve_static_200_ratio", "200s: serve / nginx static", "×", "≥ 0.08", at_least(0.08)),
        spec("serve_static_304_ratio", "304s: serve / nginx static", "×", "≥ 0.12", at_least(0.12)),
    ]
    for code in ("200", "304"):
        rows += [
            spec(f"proxy_{code}_rps", f"nginx proxy in front, {code}s: requests/s", "req/s"),
            spec(f"proxy_{code}_p99", f"nginx proxy in front, {code}s: p99 latency", "ms"),
        ]
    rows += [
        spec("proxy_static_200_ratio", "200s: proxy / nginx static", "×", "≥ 0.6", at_least(0.6)),
        spec("proxy_static_304_ratio", "304s: proxy / nginx static", "×", "≥ 0.6", at_least(0.6)),
        spec("change_latency", "changed record served (write → in /feeds/all.atom)", "s"),
        spec("change_over_build", "changed record served, less the one-record build", "s", "≤ 3", at_most(3)),
        spec(
            "slow_clients_p99",
            "200 GETs of /feeds/all.atom beside 100 slow or idle connections: p99",
            "ms",
            "< 100",
            below(100),
        ),
        # Issue 16 (bench/audience_cost.py): the same 304s with audience.enabled off and on, side by side.
        spec("audience_off_304_rps", "audience off, 304s (one Feedly client): requests/s", "req/s"),
        spec("audience_on_304_rps", "audience on, 304s (one Feedly client): requests/s", "req/s"),
        spec(
            "audience_304_ratio", "304s: audience on / off (requests/s, pairs of runs)", "×", "≥ 0.98", at_least(0.98)
        ),  # fmt: skip
        spec("audience_off_304_cpu", "audience off, 304s: server CPU per request", "µs"),
        spec("audience_on_304_cpu", "audience on, 304s: server CPU per request", "µs"),
        spec("audience_cpu_ratio", "304s: server CPU per request, audience off / on", "×"),
        spec("audience_app_off_us", "a 304 through the app, in process, audience off", "µs"),
        spec("audience_app_added_us", "a 304 through the app, in process: added by audience on", "µs"),
        spec("audience_app_share", "audience on: added µs / server CPU per 304", "%", "≤ 2", at_most(2)),
        spec("audience_agents_off_304_rps", "audience off, 304s, a new User-Agent each request: requests/s", "req/s"),
        spec("audience_agents_on_304_rps", "audience on, 304s, a new User-Agent each request: requests/s", "req/s"),
        spec("audience_agents_304_ratio", "304s, a new User-Agent each request: audience on / off", "×"),
        spec("audience_agents_off_304_cpu", "audience off, 304s, a new User-Agent each: server CPU per request", "µs"),
        spec("audience_agents_on_304_cpu", "audience on, 304s, a new User-Agent each: server CPU per request", "µs"),
        spec("audience_agents_cpu_ratio", "304s, a new User-Agent each: server CPU per request, off / on", "×"),
        spec("audience_agents_app_off_us", "a 304 through the app, in process, audience off (new User-Agents)", "µs"),
        spec(
            "audience_agents_app_added_us", "a 304, a new User-Agent each: added by audience on, writes included", "µs"
        ),  # fmt: skip
        spec("audience_agents_app_share", "a new User-Agent each: added µs / server CPU per 304", "%"),
    ]
    return rows


#: Issue 12's one-record changes with archives on (bench/builds.py, archive_builds).
ARCHIVE_STEPS = {"add": "added", "change": "changed", "redate": "re-dated", "delete": "deleted"}


def _archive_rows() -> list[Spec]:
    """Issue 12's targets: the shipped config.yaml (archives on), ratios within the run."""
    rows = [
        Spec("archives_off_build", "config.yaml with archives off: full build (--full, fresh output folder)", "s"),
        Spec("archives_full_build", "config.yaml (archives on): full build (--full, fresh output folder)", "s"),
        Spec("archives_full_ratio", "config.yaml: full build archives on / archives off", "×", "≤ 1.3",
             at_most(1.3)),
        Spec("archives_defaults_ratio", "full build: config.yaml (archives on) / the defaults (archives off)", "×"),
        Spec("archives_floor_ratio", "full build, config.yaml (archives on) / C-loader floor", "×", "≤ 0.45",
             at_most(0.45)),
        Spec("archives_off_floor_ratio", "full build, config.yaml with archives off / C-loader floor", "×"),
    ]  # fmt: skip
    for step, done in ARCHIVE_STEPS.items():
        rows += [
            Spec(f"archives_{step}_build", f"archives on: one record {done}", "s"),
            Spec(f"archives_{step}_ratio", f"archives on: one record {done} / full build archives on", "×", "≤ 0.05",
                 at_most(0.05)),
            Spec(f"archives_{step}_pages", f"archives on: one record {done}: most archive pages written in one feed",
                 "pages", "≤ 3", at_most(3)),
        ]  # fmt: skip
    rows.append(
        Spec("archives_identical", "archives on: incremental output = fresh full build (after the four steps)",
             "checks", "1 of 1", equal(1))
    )  # fmt: skip
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
    Spec("full_build_yaml_rs_ratio", "full build / yaml-rs floor (stretch)", "×", "≤ 2", at_most(2)),
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
    *_archive_rows(),
    *(row for setup in SETUPS for row in _serving_rows(setup)),
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
    if unit in ("records", "files", "checks", "builds", "req/s", "pages", "connections"):
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
