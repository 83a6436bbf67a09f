"""Properties that hold for any input (hypothesis), not just the cases on file.

- Any bytes as a record file: the loader returns a `Loaded`, never raises.
- The loader's cheap pre-checks are sound: every YAML text with an anchor or
  alias is sent to the event scan, and a text's nesting depth never exceeds
  the bound the depth pre-check computes.
- Any Unicode in every text field still renders RSS and Atom that feedparser
  reads without complaint and that follow the W3C validator's rules.
- Any topic or provider name publishes only inside the output folder.
"""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import yaml
from conftest import DATA
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_validity import check_feed

from feedsvc.build.write import publish
from feedsvc.config import Config
from feedsvc.formats.documents import assemble
from feedsvc.model import Record
from feedsvc.records.fields import Settings, record_from_mapping
from feedsvc.records.frontyaml import _maybe_alias, nesting_openers
from feedsvc.records.read import Loaded, LoadResult, parse_bytes

SETTINGS = Settings()
CONFIG = dataclasses.replace(Config(), include_unpublished=True)
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = (DATA / "records" / "ok_full.txt").read_text(encoding="utf-8")

#: Pieces of YAML, so random text often is YAML (with anchors, aliases, tags).
YAML_TOKENS = st.sampled_from(
    list("-:[]{},&*!?|>'\"#%@` \n\n\t abcxyz019.")
    + [
        "\x85",
        "\u2028",
        "é",
        "\ufeff",
        "\x00",
        "\x9d",
        "a: ",
        "- ",
        "? ",
        "&a ",
        "*a",
        "!!str ",
        "<<: ",
        "---\n",
        "\n  ",
    ]
)
yamlish = st.lists(YAML_TOKENS, max_size=120).map("".join)
#: What breaks XML, HTML, feeds or the validator's rules, to be drawn often.
TRICKY = (
    [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
    + ["\ud800", "\udfff", "\ufffd", "\ufffe", "\uffff", "\ufdd0", "\U0001fffe", "\U0010ffff", "\u2028", "\u202e"]
    + list("<>&;#/\"'=]![?-: ")
    + ["]]>", "<script>", "</", "&amp;", "&lt;b&gt;", "&#0;", "&copy", "onerror=", "â€", "Ã©"]
)
#: Any code point, surrogates and controls included, tricky ones often.
any_text = st.lists(st.one_of(st.sampled_from(TRICKY), st.characters(codec=None, categories=None)), max_size=40).map(
    "".join
)


def _assert_loaded(loaded: Loaded) -> None:
    assert isinstance(loaded, Loaded)
    if loaded.record is None:
        assert any(not p.is_warning for p in loaded.problems)
    for problem in loaded.problems:
        assert str(problem).startswith("x.txt")


# --- The loader never raises ----------------------------------------------------


@PROPERTY
@given(st.binary(max_size=2_000))
def test_any_bytes_load_without_raising(data: bytes) -> None:
    _assert_loaded(parse_bytes("x.txt", data, SETTINGS))


@PROPERTY
@given(yamlish)
def test_any_front_matter_loads_without_raising(text: str) -> None:
    _assert_loaded(parse_bytes("x.txt", f"---\n{text}\n---\n".encode("utf-8", "surrogatepass"), SETTINGS))


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 20), yamlish), min_size=1, max_size=5))
def test_a_mangled_record_loads_without_raising(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    _assert_loaded(parse_bytes("x.txt", text.encode("utf-8"), SETTINGS))


# --- The pre-checks are sound ---------------------------------------------------------


def _events(text: str) -> list[yaml.Event]:
    events: list[yaml.Event] = []
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            events.append(event)
    except yaml.YAMLError:
        pass
    return events


@PROPERTY
@given(yamlish)
def test_every_anchor_and_alias_is_seen_by_the_pre_check(text: str) -> None:
    events = _events(text)
    if any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events):
        assert _maybe_alias(text)


NESTING = st.lists(
    st.sampled_from(list("[]{}-?:, \n\n\n  ax") + ["- ", "? ", ": ", "\n  ", "\n    "]), max_size=200
).map("".join)


@PROPERTY
@given(NESTING)
def test_nesting_depth_is_bounded_by_openers_and_indentation(text: str) -> None:
    depth = deepest = 0
    for event in _events(text):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.split("\n")), default=0)
    openers = nesting_openers(text)
    # A "- " can open two levels at once (a list item holding a mapping).
    assert deepest <= 2 * openers + indent + 1


# --- Any text renders valid feeds --------------------------------------------------------


def _record(values: dict[str, Any]) -> Record | None:
    problems: list[Any] = []
    return record_from_mapping("x.txt", values, "", SETTINGS, problems)


def _assert_valid_feeds(records: list[Record]) -> None:
    site = assemble(LoadResult(tuple(records), (), len(records)), CONFIG)
    feeds = [doc for path, doc in site.documents.items() if path.endswith((".rss", ".atom"))]
    assert len(feeds) >= 4  # all, a provider, in both formats
    for doc in feeds:
        parsed = feedparser.parse(doc.body)
        assert not parsed.bozo, (doc.path, parsed.get("bozo_exception"))
        assert len(parsed.entries) == 1
        assert [str(p) for p in check_feed(doc.body)] == [], doc.path


@PROPERTY
@given(
    title=any_text,
    excerpt=any_text,
    provider=any_text,
    domain=any_text,
    topics=st.lists(any_text, max_size=4),
    related=any_text,
    image=any_text,
)
def test_any_text_in_any_field_renders_valid_feeds(
    title: str, excerpt: str, provider: str, domain: str, topics: list[str], related: str, image: str
) -> None:
    record = _record(
        {
            "title": "T " + title,
            "webUrl": "https://example.org/story",
            "publishedDateTime": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "excerpt": excerpt,
            "provider": {"name": provider, "domain": domain},
            "topics": topics,
            "images": [{"url": "https://i.example.org/" + image, "width": 10}],
            "related": [{"title": "R " + related, "webUrl": "https://r.example.org/" + related}],
        }
    )
    assert record is not None
    _assert_valid_feeds([record])


@PROPERTY
@given(st.text(max_size=200), st.text(max_size=200))
def test_any_text_through_yaml_renders_valid_feeds(title: str, excerpt: str) -> None:
    front = yaml.safe_dump(
        {
            "title": title,
            "excerpt": excerpt,
            "webUrl": "https://example.org/y",
            "publishedDateTime": "2024-01-02T03:04:05Z",
        },
        allow_unicode=True,
    )
    loaded = parse_bytes("x.txt", f"---\n{front}---\n".encode("utf-8", "surrogatepass"), SETTINGS)
    assume(loaded.record is not None)  # a title that is only markup or spaces is rejected
    assert loaded.record is not None
    _assert_valid_feeds([loaded.record])


# --- Any name stays inside the output folder ------------------------------------------------

#: Names made of what path tricks are made of, and anything else.
PATHISH = st.lists(
    st.sampled_from(list("./\\:~%\x00 aA-_") + ["..", "../", "%2e%2e", "\u2215", "\uff0f", "é", "🤖"]), max_size=15
).map("".join)
names = st.one_of(PATHISH, any_text)


@PROPERTY
@given(topics=st.lists(names, min_size=1, max_size=4), provider=names, domain=names)
def test_any_name_publishes_inside_the_output_folder(topics: list[str], provider: str, domain: str) -> None:
    record = _record(
        {
            "title": "Names",
            "webUrl": "https://example.org/names",
            "publishedDateTime": "2024-01-02T03:04:05Z",
            "provider": {"name": provider, "domain": domain},
            "topics": topics,
        }
    )
    assert record is not None
    site = assemble(LoadResult((record,), (), 1), CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        out = base / "out"
        publish(site.documents, out)
        assert [p.name for p in base.iterdir()] == ["out"]
        root = out.resolve()
        written = [p for p in out.rglob("*") if p.is_file()]
        assert len(written) > len(site.documents)  # the documents and the manifest
        for path in written:
            assert root in path.resolve().parents and not path.is_symlink()
    for path in site.documents:
        assert path.isascii() and ".." not in path.split("/") and "\\" not in path
