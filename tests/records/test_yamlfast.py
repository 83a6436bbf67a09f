"""The yaml-rs fast path gives exactly the records PyYAML gives.

Every case is loaded twice, once as shipped (yaml-rs where it may) and once
with yaml-rs switched off (PyYAML only), and the outcomes (record and every
problem) must be equal. The synthetic corpus must take the fast path, or the
benchmark would measure nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_records import CASES

from feedsvc.config import Config
from feedsvc.records import frontyaml, yamlfast
from feedsvc.records.read import Loaded, parse_bytes, settings_for
from feedsvc.synth import record_text

SETTINGS = settings_for(Config())
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))


def both(name: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Loaded, Loaded]:
    fast = parse_bytes(name, data, SETTINGS)
    with monkeypatch.context() as m:
        m.setattr(yamlfast, "yaml_rs", None)
        slow = parse_bytes(name, data, SETTINGS)
    return fast, slow


@pytest.mark.parametrize("path", CASES + SEEDS, ids=lambda p: p.stem)
def test_cases_read_alike(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both(path.name, path.read_bytes(), monkeypatch)
    assert fast == slow


def test_corpus_reads_alike_and_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = 0
    for i in range(300):
        text = record_text(i, seed=7)
        fast, slow = both(f"{i}.txt", text.encode("utf-8"), monkeypatch)
        assert fast == slow
        assert fast.record is not None
        taken += yamlfast.fast_path_taken(text.split("\n---\n", 1)[0] + "\n")
    # The cheap text checks cannot tell quoted text from YAML, so the odd record
    # ("100,000" in a title beside a "[") goes to PyYAML; nearly all must not.
    assert taken >= 295


def test_the_fast_path_is_really_yaml_rs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A canary: if yaml-rs were not called, the comparisons above would prove nothing."""
    calls = []
    real = yamlfast.yaml_rs.loads

    def spy(text: str, **kw: object) -> object:
        calls.append(text)
        return real(text, **kw)

    monkeypatch.setattr(yamlfast.yaml_rs, "loads", spy)
    assert parse_bytes("seed.txt", SEEDS[0].read_bytes(), SETTINGS).record is not None
    assert len(calls) == 1


@pytest.mark.parametrize(
    "text",
    [
        "published: yes",
        "published: Off",
        "quality: 010",
        "quality: 0o10",
        "quality: 1e3",
        "quality: 3.10",
        "title: 1:20",
        "title: 2023-12-21",
        "title: 2023-12-21T17:35:00Z",
        "title: !!str 12",
        "a: &x 1\nb: *x",
        "<<: {title: x}",
        "? [1, 2]\n: x",
        "title: 1_000",
        "title: 123456789012345678901234567890123456789012345",
        "a: 1\na: 2",
        "title: ~",
        "title: .inf",
        "title: 2023-02-30",
        "topics: [yes, no, 007]",
        "published: TRUE",
        "title: '2023-12-21'",
    ],
)
def test_scalars_yaml_11_and_12_read_differently_go_to_pyyaml(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = f"---\ntitle: t\nwebUrl: https://example.com/a\npublishedDateTime: 2023-12-21T17:35:00Z\n{text}\n---\n"
    fast, slow = both("x.txt", doc.encode("utf-8"), monkeypatch)
    assert fast == slow


_SCALARS = st.sampled_from(
    [
        "yes",
        "No",
        "on",
        "~",
        "null",
        "Null",
        "true",
        "True",
        "010",
        "0o7",
        "0x1F",
        "1e3",
        "1.0e+3",
        "3.10",
        ".5",
        "-.inf",
        ".NaN",
        "1:20",
        "1_000",
        "2023-12-21",
        "2023-12-21T17:35:00Z",
        "2023-12-21 17:35:00",
        "2023-1-5",
        "'quoted'",
        '"dq \\u00e9"',
        "plain words",
        "a: b",
        "x # c",
        "=",
        "<<",
        "-1",
        "+1",
        "0",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "title",
                    "excerpt",
                    "quality",
                    "heat",
                    "published",
                    "topics",
                    "type",
                    "publishedDateTime",
                    "updatedDateTime",
                    "category",
                ]
            ),
            _SCALARS,
        ),
        max_size=8,
    )
)
def test_any_mix_of_tricky_scalars_reads_alike(pairs: list[tuple[str, str]]) -> None:
    lines = ["---", "webUrl: https://example.com/a"]
    lines += [f"{k}: [{v}]" if k == "topics" else f"{k}: {v}" for k, v in pairs]
    data = ("\n".join(lines) + "\n---\n").encode("utf-8")
    fast = parse_bytes("x.txt", data, SETTINGS)
    saved = yamlfast.yaml_rs
    yamlfast.yaml_rs = None
    try:
        slow = parse_bytes("x.txt", data, SETTINGS)
    finally:
        yamlfast.yaml_rs = saved
    assert fast == slow


def test_reference_loader_is_the_hardened_one() -> None:
    # Errors and odd values are always worded by records' own loader.
    assert frontyaml._reference_load("a: 2023-02-30\n") == {"a": "2023-02-30"}
