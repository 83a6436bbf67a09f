"""The loader's shortcuts give exactly what the plain code they skip gives (hypothesis).

- The closing front-matter line is found where python-frontmatter's regex finds it.
- The byte pre-check never hides a character `FILE_CONTROLS` would find.
- A URL `http_url` takes the fast way for comes out as the general way makes it,
  and `canonical_url`'s shortcut agrees with urlsplit.
- A file is read whole, whatever its size against the read-ahead.
- The depth pre-check decides as the exact count of openers does.
- Entry ids are `uuid.uuid5`'s, and ASCII text skips cleaning only when
  cleaning would not change it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc import text
from feedsvc.records import frontyaml
from feedsvc.records import read as records
from feedsvc.records.fields import entry_id
from feedsvc.records.read import _BOUNDARY, _closing_boundary, read_bytes

PROPERTY = settings(max_examples=300, deadline=None, database=None)
LINES = st.lists(
    st.sampled_from(["---", "----", "--- ", "---x", "-- -", "a: b", "", " ---", "---\t", "x---"]), max_size=8
)


@PROPERTY
@given(LINES)
def test_the_closing_line_is_where_the_regex_finds_it(lines: list[str]) -> None:
    doc = "---\n" + "\n".join(lines)
    start = doc.find("\n")
    expected = _BOUNDARY.search(doc, start)
    got = _closing_boundary(doc, start)
    assert (got and got.span()) == (expected and expected.span())


@PROPERTY
@given(st.text(alphabet=st.characters(max_codepoint=0x10FFFF, blacklist_categories=("Cs",)), max_size=40))
def test_the_control_byte_check_misses_nothing(value: str) -> None:
    data = value.encode("utf-8")
    if text.FILE_CONTROLS.search(value):
        assert data.translate(None, records._NOT_CONTROL_BYTES)


URL_PARTS = st.sampled_from(
    ["a", "B", "0", "-", ".", "/", "%", "%41", "%zz", "?", "&", "=", "#", ":", "@", "~", "é", " ", ":80"]
)


@PROPERTY
@given(
    st.sampled_from(["http", "https", "HTTP"]),
    st.sampled_from(["example.org", "a-b.example", "EX.org", "x"]),
    st.lists(URL_PARTS, max_size=8),
)
def test_fast_urls_come_out_as_the_general_way_makes_them(scheme: str, host: str, parts: list[str]) -> None:
    url = f"{scheme}://{host}/{''.join(parts)}"
    got = text.http_url(url)
    assert got == text._general_http_url(url.strip())
    if got is not None:
        parsed = text.urlsplit(got)
        netloc = parsed.hostname if (parsed.scheme, parsed.port) in (("http", 80), ("https", 443)) else parsed.netloc
        assert text.canonical_url(got) == text.urlunsplit((parsed.scheme, netloc, parsed.path or "/", parsed.query, ""))


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65536, 70_000, 1 << 20])
def test_a_file_is_read_whole(size: int, tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(bytes(i % 251 for i in range(size)))
    assert read_bytes(path, 1 << 20) == path.read_bytes()


@PROPERTY
@given(st.text(max_size=60))
def test_entry_ids_are_uuid5_of_the_url(url: str) -> None:
    assert entry_id(url) == f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}"


@PROPERTY
@given(st.lists(st.sampled_from(list(" \t\n<&;ab#x1") + ["  ", "&amp;", "<b>"]), max_size=12))
def test_ascii_text_skips_cleaning_only_when_cleaning_changes_nothing(parts: list[str]) -> None:
    value = "".join(parts)
    assert text.plain_text(value) == text._plain_text(value, True, None)


OPENER_PARTS = ["- ", "-\t", "-\n", "-", "[", "{", "?", "a", "x-y", "\n"]


@PROPERTY
@given(st.lists(st.sampled_from(OPENER_PARTS), max_size=60), st.integers(0, 40))
def test_the_depth_pre_check_decides_as_the_exact_count(parts: list[str], limit: int) -> None:
    """`_may_nest_deeply`'s first bound (one count for every "-") never decides otherwise than the six counts."""
    doc = "".join(parts)
    exact = frontyaml._DEEP_INDENT in doc or frontyaml.nesting_openers(doc) > limit
    with pytest.MonkeyPatch.context() as m:
        m.setattr(frontyaml, "_MAX_OPENERS", limit)
        assert frontyaml._may_nest_deeply(doc) == exact
