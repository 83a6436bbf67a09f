"""The W3C feed validator's rules that matter for our output, as a checker.

The W3C validator (validator.w3.org/feed) is a web service, so the rules it
applies to what feedsvc writes are re-implemented here with lxml and html5lib
and applied to every feed the seeds and the synthetic corpus give. Each check
can fail: tests/data/validity/bad.yaml holds a broken document for every one.

The rules, as the validator's source states them:
- RSS plain-text fields (title, category, dc:creator): no "<" before a letter
  or "/", no "&#" reference, no HTML entity name after decoding; Atom text
  constructs and link titles: no HTML end tag, no HTML entity (ContainsHTML).
- RSS description / content:encoded, Atom type="html": html5lib strict parses
  it; only safe elements and attributes (SecurityRisk), absolute links.
- Dates: RFC 822 with the right weekday (RSS), RFC 3339 (Atom); before 1990 is
  implausible (and after 2099 is a typo for us).
- No C1 controls or U+FFFD anywhere (BadCharacters).
- A self link of the feed's own type; unique guids and Atom ids; no duplicate
  alternate links; no media:group with a single media:content; canonical Atom
  ids; URLs are plain ASCII URIs; RSS <docs> and a positive <ttl>; Atom entries
  with distinct <updated> values (DuplicateUpdated).
- An `fh:archive` document links rel="current" (MissingCurrentInArchive) and
  rel="prev-archive" or rel="next-archive" (ArchiveIncomplete), unless it is
  `fh:complete`.
"""

from __future__ import annotations

import email.utils
import functools
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.entities import name2codepoint
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import html5lib
import pytest
import yaml
from conftest import ATOM_SCHEMA, DATA, Corpus, feed_files
from html5lib.html5parser import ParseError
from lxml import etree

from feedsvc.config import Config
from feedsvc.formats.common import Site
from feedsvc.formats.documents import Build
from feedsvc.formats.rss_atom import render_archive, render_feed
from feedsvc.model import ALL, ArchivePage, Feed, FeedKey, FeedKind, Image, Provider, Record, Related

ATOM = "{http://www.w3.org/2005/Atom}"
MEDIA = "{http://search.yahoo.com/mrss/}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
FH = "{http://purl.org/syndication/history/1.0}"

#: Every check, with what it stands for.
CHECKS = {
    "xml": "well-formed XML",
    "bad-characters": "no C1 control characters or U+FFFD",
    "plain-text": "plain-text fields hold no markup",
    "html": "HTML fields parse with html5lib (strict)",
    "unsafe-html": "HTML holds only safe elements, attributes and absolute http(s) links",
    "date-format": "strict RFC 822 (RSS) and RFC 3339 (Atom) dates",
    "date-implausible": "dates from 1990 to 2099",
    "self-link": "a self link, absolute, of the feed's own type",
    "guid": "unique guids and Atom ids; isPermaLink right",
    "duplicate-link": "no duplicate alternate links",
    "media": "media:content outside media:group; positive sizes",
    "atom-id": "Atom ids in canonical form",
    "url": "URLs are absolute ASCII URIs",
    "rss-channel": "RSS channel title, link, description, docs; positive ttl",
    "duplicate-updated": "Atom entries have distinct updated values",
    "required": "required elements present",
    "description-order": "RSS description before content:encoded",
    "language": "a language tag",
    "archive": "an RFC 5005 archive (fh:archive) has rel=current and a prev- or next-archive link",
}

_HTML_TAGS = {
    "a", "abbr", "address", "area", "article", "aside", "audio", "b", "base", "bdi", "bdo", "big",
    "blockquote", "body", "br", "button", "canvas", "caption", "center", "cite", "code", "col",
    "colgroup", "data", "dd", "del", "details", "dfn", "dialog", "div", "dl", "dt", "em", "embed",
    "fieldset", "figcaption", "figure", "font", "footer", "form", "frame", "frameset", "h1", "h2",
    "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "i", "iframe", "img", "input", "ins",
    "kbd", "label", "legend", "li", "link", "main", "map", "mark", "menu", "meta", "meter", "nav",
    "noscript", "object", "ol", "optgroup", "option", "output", "p", "param", "picture", "pre",
    "progress", "q", "s", "samp", "script", "section", "select", "small", "source", "span",
    "strike", "strong", "style", "sub", "summary", "sup", "table", "tbody", "td", "template",
    "textarea", "tfoot", "th", "thead", "time", "title", "tr", "u", "ul", "var", "video", "wbr",
}  # fmt: skip
_SAFE_ELEMENTS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li",
    "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody",
    "td", "th", "thead", "time", "tr", "u", "ul",
}  # fmt: skip
_SAFE_ATTRIBUTES = {"href", "src", "alt", "title", "width", "height", "lang", "dir", "datetime", "loading", "cite"}
_LINK_REGISTRY = {"alternate", "enclosure", "related", "self", "via", "license", "replies", "hub"}
# RFC 5005 (feed paging and archiving), as registered in the validator's link.py.
_LINK_REGISTRY |= {"current", "prev-archive", "next-archive", "first", "last", "next", "previous"}
_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")

_RSS_MARKUP = re.compile(r"&#[x0-9]|<[/a-zA-Z]")
_END_TAG = re.compile(r"</(\w+)>")
_ENTITY = re.compile(r"&(#?\w+)")
_C1_OR_FFFD = re.compile("[\x80-\x9f\ufffd]")
_RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
#: The W3C validator's "full URI" pattern (rfc2396_full), plus well-formed escapes.
_URI = re.compile(r"^[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UUID_URN = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")  # case-insensitive, as BCP 47
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Problem:
    check: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


def check_feed(data: bytes) -> list[Problem]:
    """Every rule above that `data` (an RSS 2.0 or Atom 1.0 document) breaks."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        return [Problem("xml", "document", str(e))]
    problems = list(_bad_characters(root))
    if root.tag == "rss":
        problems += _check_rss(root)
    elif root.tag == f"{ATOM}feed":
        problems += _check_atom(root)
    else:
        problems.append(Problem("required", "document", f"root element {root.tag} is neither rss nor feed"))
    return problems


# --- Shared rules ------------------------------------------------------------


def _bad_characters(root: Any) -> Iterator[Problem]:
    for el in root.iter():
        for text in (el.text, el.tail, *el.attrib.values()):
            if text and _C1_OR_FFFD.search(text):
                yield Problem("bad-characters", _name(el), repr(_C1_OR_FFFD.search(text).group(0)))


def _plain_text(text: str | None, where: str, *, rss: bool) -> Iterator[Problem]:
    """The validator's `nonhtml` rule on decoded text."""
    if not text:
        return
    tags = [t for t in _END_TAG.findall(text) if t.lower() in _HTML_TAGS]
    if tags:
        yield Problem("plain-text", where, f"end tag </{tags[0]}>")
    for name in _ENTITY.findall(text):
        if name in name2codepoint or name == "apos" or not name.isalpha():
            yield Problem("plain-text", where, f"entity &{name}")
    if rss and _RSS_MARKUP.search(text):
        yield Problem("plain-text", where, f"markup {_RSS_MARKUP.search(text).group(0)!r}")


@functools.lru_cache(maxsize=50_000)
def _html(markup: str) -> tuple[tuple[str, str], ...]:
    """(check, detail) for each problem in an HTML fragment; cached, entries repeat across feeds."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    try:
        fragment = parser.parseFragment(markup)
    except ParseError as e:
        return (("html", str(e)),)
    found: list[tuple[str, str]] = []
    for el in fragment.iter():
        if not isinstance(el.tag, str) or el.tag == "DOCUMENT_FRAGMENT":
            continue
        if el.tag not in _SAFE_ELEMENTS:
            found.append(("unsafe-html", f"element <{el.tag}>"))
        for attr, value in el.attrib.items():
            if attr not in _SAFE_ATTRIBUTES:
                found.append(("unsafe-html", f"attribute {attr} on <{el.tag}>"))
            elif attr in ("href", "src", "cite") and urlsplit(value).scheme not in ("http", "https"):
                found.append(("unsafe-html", f"{attr}={value!r} is not an absolute http(s) URL"))
    return tuple(found)


def _check_html(text: str | None, where: str) -> Iterator[Problem]:
    for check, detail in _html(text or ""):
        yield Problem(check, where, detail)


def _date(text: str | None, where: str, *, rss: bool) -> Iterator[Problem]:
    value = (text or "").strip()
    try:
        if rss:
            if not _RFC822.match(value):
                raise ValueError("not RFC 822 (Day, DD Mon YYYY HH:MM:SS +ZZZZ)")
            when = email.utils.parsedate_to_datetime(value)
            if when.strftime("%a") != value[:3]:
                raise ValueError(f"{value[:3]} is the wrong day of the week")
        else:
            if not _RFC3339.match(value):
                raise ValueError("not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM))")
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        yield Problem("date-format", where, f"{value!r}: {e}")
        return
    if not _EARLIEST <= when < _LATEST:
        yield Problem("date-implausible", where, value)


def _url(value: str | None, where: str) -> Iterator[Problem]:
    if not value or not _URI.match(value) or _BAD_ESCAPE.search(value):
        yield Problem("url", where, f"{value!r} is not a plain absolute URI")
        return
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and not parts.hostname:
        yield Problem("url", where, f"{value!r} has no host")


def _self_link(links: list[Any], media_type: str, where: str) -> Iterator[Problem]:
    selfs = [link for link in links if link.get("rel") == "self"]
    if len(selfs) != 1:
        yield Problem("self-link", where, f"{len(selfs)} self links")
        return
    link = selfs[0]
    if link.get("type") != media_type:
        yield Problem("self-link", where, f"type {link.get('type')!r}, not {media_type}")
    if urlsplit(link.get("href", "")).scheme not in ("http", "https"):
        yield Problem("self-link", where, f"{link.get('href')!r} is not absolute")


def _media(parent: Any, where: str) -> Iterator[Problem]:
    for group in parent.iter(f"{MEDIA}group"):
        yield Problem("media", where, f"media:group with {len(group.findall(f'{MEDIA}content'))} media:content")
    for el in [*parent.iter(f"{MEDIA}content"), *parent.iter(f"{MEDIA}thumbnail")]:
        yield from _url(el.get("url"), f"{where}/{_name(el)}@url")
        for attr in ("width", "height"):
            value = el.get(attr)
            if value is not None and not (value.isdigit() and int(value) > 0):
                yield Problem("media", f"{where}/{_name(el)}@{attr}", f"{value!r} is not a positive integer")


def _archive(parent: Any, links: list[Any], where: str) -> Iterator[Problem]:
    """The validator's feed history rules (feed.py: ArchiveIncomplete, MissingCurrentInArchive)."""
    if parent.find(f"{FH}archive") is None or parent.find(f"{FH}complete") is not None:
        return
    rels = {link.get("rel") for link in links}
    if "current" not in rels:
        yield Problem("archive", where, "an archive without rel=current")
    if not rels & {"prev-archive", "next-archive"}:
        yield Problem("archive", where, "Archive incomplete: no prev-archive or next-archive link")


def _language(value: str | None, where: str) -> Iterator[Problem]:
    if not value or not _LANGUAGE.match(value):
        yield Problem("language", where, f"{value!r} is not a language tag")


def _name(el: Any) -> str:
    return str(el.tag).replace(ATOM, "").replace(MEDIA, "media:").replace(CONTENT, "content:").replace(DC, "dc:")


# --- RSS 2.0 -------------------------------------------------------------------


def _check_rss(rss: Any) -> list[Problem]:
    problems: list[Problem] = []
    channel = rss.find("channel")
    if rss.get("version") != "2.0" or channel is None:
        return [Problem("required", "rss", "version 2.0 with one channel")]
    for name in ("title", "link", "description", "docs"):
        if not (channel.findtext(name) or "").strip():
            problems.append(Problem("rss-channel", f"channel/{name}", "missing or empty"))
    ttl = channel.findtext("ttl")
    if ttl is not None and not (ttl.isdigit() and int(ttl) > 0):
        problems.append(Problem("rss-channel", "channel/ttl", f"{ttl!r} is not a positive integer"))
    problems += _plain_text(channel.findtext("title"), "channel/title", rss=True)
    problems += _plain_text(channel.findtext("description"), "channel/description", rss=True)
    problems += _language(channel.findtext("language"), "channel/language")
    for name in ("link", "docs"):
        if channel.find(name) is not None:
            problems += _url(channel.findtext(name), f"channel/{name}")
    atom_links = channel.findall(f"{ATOM}link")
    problems += _self_link(atom_links, "application/rss+xml", "channel/atom:link")
    for link in atom_links:
        problems += _url(link.get("href"), "channel/atom:link@href")
    problems += _archive(channel, atom_links, "channel")
    for name in ("lastBuildDate", "pubDate"):
        if channel.find(name) is not None:
            problems += _date(channel.findtext(name), f"channel/{name}", rss=True)
    guids: Counter[str] = Counter()
    for n, item in enumerate(channel.findall("item"), 1):
        problems += _check_item(item, f"item[{n}]", guids)
    problems += [Problem("guid", "channel", f"guid {g} used {c} times") for g, c in guids.items() if c > 1]
    return problems


def _check_item(item: Any, where: str, guids: Counter[str]) -> Iterator[Problem]:
    children = [child.tag for child in item]
    if "title" not in children and "description" not in children:
        yield Problem("required", where, "neither title nor description")
    if f"{CONTENT}encoded" in children and (
        "description" not in children or children.index("description") > children.index(f"{CONTENT}encoded")
    ):
        yield Problem("description-order", where, "content:encoded without a description before it")
    for name in ("title", "category", f"{DC}creator"):
        for el in item.findall(name):
            yield from _plain_text(el.text, f"{where}/{_name(el)}", rss=True)
    for name in ("description", f"{CONTENT}encoded"):
        for el in item.findall(name):
            yield from _check_html(el.text, f"{where}/{_name(el)}")
    if item.find("link") is not None:
        yield from _url(item.findtext("link"), f"{where}/link")
    for el in item.findall("pubDate"):
        yield from _date(el.text, f"{where}/pubDate", rss=True)
    guid = item.find("guid")
    if guid is not None:
        guids[guid.text or ""] += 1
        permalink = guid.get("isPermaLink", "true")
        if permalink not in ("true", "false"):
            yield Problem("guid", f"{where}/guid", f"isPermaLink={permalink!r}")
        elif permalink == "true" and urlsplit(guid.text or "").scheme not in ("http", "https"):
            yield Problem("guid", f"{where}/guid", f"{guid.text!r} is a permalink but not a URL")
    yield from _media(item, where)


# --- Atom 1.0 ----------------------------------------------------------------


def _check_atom(feed: Any) -> list[Problem]:
    problems: list[Problem] = []
    problems += _language(feed.get(XML_LANG), "feed@xml:lang")
    for name in ("id", "title", "updated"):
        if len(feed.findall(f"{ATOM}{name}")) != 1:
            problems.append(Problem("required", f"feed/{name}", "must occur exactly once"))
    problems += _atom_id(feed.findtext(f"{ATOM}id"), "feed/id")
    problems += _text_construct(feed, "feed")
    problems += _dates(feed, "feed")
    problems += _authors(feed, "feed")
    links = feed.findall(f"{ATOM}link")
    problems += _self_link(links, "application/atom+xml", "feed/link")
    problems += _links(links, "feed", feed_level=True)
    problems += _archive(feed, links, "feed")
    entries = feed.findall(f"{ATOM}entry")
    has_author = feed.find(f"{ATOM}author") is not None
    ids: Counter[str] = Counter()
    updated: Counter[str] = Counter()
    for n, entry in enumerate(entries, 1):
        where = f"entry[{n}]"
        for name in ("id", "title", "updated"):
            if len(entry.findall(f"{ATOM}{name}")) != 1:
                problems.append(Problem("required", f"{where}/{name}", "must occur exactly once"))
        if not has_author and entry.find(f"{ATOM}author") is None:
            problems.append(Problem("required", f"{where}/author", "no author here or in the feed"))
        ids[entry.findtext(f"{ATOM}id") or ""] += 1
        updated[(entry.findtext(f"{ATOM}updated") or "").strip()] += 1
        problems += _atom_id(entry.findtext(f"{ATOM}id"), f"{where}/id")
        problems += _text_construct(entry, where)
        problems += _dates(entry, where)
        problems += _authors(entry, where)
        problems += _links(entry.findall(f"{ATOM}link"), where, feed_level=False)
        problems += _media(entry, where)
        for category in entry.findall(f"{ATOM}category"):
            if not category.get("term"):
                problems.append(Problem("required", f"{where}/category", "no term"))
            problems += _plain_text(category.get("label"), f"{where}/category@label", rss=False)
    problems += [Problem("guid", "feed", f"entry id {i} used {c} times") for i, c in ids.items() if c > 1]
    problems += [Problem("duplicate-updated", "feed", f"{u} used {c} times") for u, c in updated.items() if c > 1]
    if not entries and not has_author:
        problems.append(Problem("required", "feed/author", "a feed without entries needs an author"))
    return problems


def _atom_id(value: str | None, where: str) -> Iterator[Problem]:
    value = value or ""
    if value.lower().startswith("urn:uuid:"):
        if not _UUID_URN.match(value):
            yield Problem("atom-id", where, f"{value!r} is not a canonical urn:uuid")
        return
    yield from _url(value, where)
    parts = urlsplit(value)
    canonical = (
        parts.scheme == parts.scheme.lower()
        and parts.netloc == parts.netloc.lower()
        and (parts.scheme, parts.port) not in (("http", 80), ("https", 443))
        and parts.path
        and not re.search(r"%[0-9a-f][a-f]|%[a-f][0-9a-f]", value)
        and not {".", ".."} & set(parts.path.split("/"))
    )
    if not canonical:
        yield Problem("atom-id", where, f"{value!r} is not in canonical form")


def _text_construct(parent: Any, where: str) -> Iterator[Problem]:
    for name in ("title", "subtitle", "summary", "rights", "content"):
        for el in parent.findall(f"{ATOM}{name}"):
            kind = el.get("type", "text")
            if kind == "html":
                yield from _check_html(el.text, f"{where}/{name}")
            elif kind == "text":
                yield from _plain_text(el.text, f"{where}/{name}", rss=False)


def _dates(parent: Any, where: str) -> Iterator[Problem]:
    for name in ("updated", "published"):
        for el in parent.findall(f"{ATOM}{name}"):
            yield from _date(el.text, f"{where}/{name}", rss=False)


def _authors(parent: Any, where: str) -> Iterator[Problem]:
    for author in parent.findall(f"{ATOM}author"):
        if not (author.findtext(f"{ATOM}name") or "").strip():
            yield Problem("required", f"{where}/author/name", "missing")
        yield from _plain_text(author.findtext(f"{ATOM}name"), f"{where}/author/name", rss=False)
        if author.find(f"{ATOM}uri") is not None:
            yield from _url(author.findtext(f"{ATOM}uri"), f"{where}/author/uri")


def _links(links: list[Any], where: str, *, feed_level: bool) -> Iterator[Problem]:
    seen: Counter[tuple[str, str, str]] = Counter()
    for link in links:
        rel = link.get("rel", "alternate")
        yield from _url(link.get("href"), f"{where}/link@href")
        if rel not in _LINK_REGISTRY:
            yield Problem("required", f"{where}/link@rel", f"unregistered rel {rel!r}")
        if link.get("type") is not None and not _MIME.match(link.get("type")):
            yield Problem("required", f"{where}/link@type", f"{link.get('type')!r} is not a media type")
        if link.get("title") is not None:
            if not link.get("title").strip():
                yield Problem("required", f"{where}/link@title", "empty")
            yield from _plain_text(link.get("title"), f"{where}/link@title", rss=False)
        # A feed names each of its WebSub hubs (rel="hub", no type): several are
        # expected, and the validator only counts alternate links as duplicates.
        if (feed_level and rel != "hub") or rel == "alternate":
            seen[(rel, link.get("type", ""), link.get("hreflang", ""))] += 1
    for (rel, kind, lang), count in seen.items():
        if count > 1:
            yield Problem("duplicate-link", where, f"{count} links rel={rel} type={kind!r} hreflang={lang!r}")


# --- The checker can fail ----------------------------------------------------------

GOOD = {fmt: (DATA / "validity" / f"good.{fmt}").read_text(encoding="utf-8") for fmt in ("rss", "atom")}
BAD = yaml.safe_load((DATA / "validity" / "bad.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_the_good_documents_pass(fmt: str) -> None:
    assert check_feed(GOOD[fmt].encode("utf-8")) == []


@pytest.mark.parametrize("case", BAD, ids=[f"{c['check']}-{c['doc']}-{c['why']}" for c in BAD])
def test_each_bad_document_is_caught(case: dict[str, Any]) -> None:
    text = GOOD[case["doc"]]
    for old, new in case.get("edits") or [(case["old"], case["new"])]:
        assert old in text, f"the case's old text is not in good.{case['doc']}: {old!r}"
        text = text.replace(old, new, 1)
    problems = check_feed(text.encode("utf-8"))
    assert case["check"] in {p.check for p in problems}, [str(p) for p in problems]


def test_every_check_has_a_bad_document() -> None:
    assert {c["check"] for c in BAD} == set(CHECKS)


def test_an_empty_atom_feed_needs_an_author() -> None:
    doc = GOOD["atom"]
    start, end = doc.index("  <author>"), doc.index("  </author>") + len("  </author>")
    empty = doc[:start] + doc[end : doc.index("  <entry>")] + "</feed>\n"
    assert [p.check for p in check_feed(empty.encode("utf-8"))] == ["required"]


# --- Our feeds pass ------------------------------------------------------------


def _assert_valid(paths: list[Path]) -> None:
    failures = {str(path): [str(p) for p in check_feed(path.read_bytes())] for path in paths}
    failures = {path: problems for path, problems in failures.items() if problems}
    assert not failures, dict(list(failures.items())[:5])


def test_every_seed_feed_is_valid(seed_site: Build, config: Config) -> None:
    paths = feed_files(config.output_dir)
    assert len(paths) == 10
    _assert_valid(paths)


def test_every_corpus_feed_is_valid(corpus: Corpus) -> None:
    paths = feed_files(corpus.out)
    assert len(paths) > 200
    assert sum(p.parent.name == "archive" for p in paths) > 100  # RFC 5005 archive pages too
    _assert_valid(paths)


def _hostile_record(n: int, when: datetime) -> Record:
    url = f"https://news.example.com/{n}?a=1&b=[2]"
    return Record(
        path=f"{n}.txt",
        id=f"urn:uuid:00000000-0000-5000-8000-{n:012d}",
        canonical_url=url,
        title=f"Story {n}: &copy 2023 <b> </p> R&amp;D 50&50 \x85\ufffd\ufdd0",
        link=url,
        published=when,
        updated=when,
        excerpt="Tom & Jerry &nbsp; 1 < 2 <script>alert(1)</script> \U0010fffe",
        provider=Provider("<b>Evil</b> &amp; Co", "evil.example"),
        topics=("C++ & <Rust>", "&lt;tag&gt;"),
        images=(Image("https://img.example.com/a[1].jpg", 10, 20), Image("https://img.example.com/b.png")),
        related=(Related("A &amp; B </a>", "https://r.example.com/x?y=[1]", "R&D <i>"),),
    )


def test_hostile_records_still_give_valid_feeds() -> None:
    """Text the loader should have cleaned, given to the renderer raw: still valid."""
    when = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    records = tuple(_hostile_record(n, when + timedelta(seconds=n // 3)) for n in range(6))
    feed = Feed(FeedKey(FeedKind.TOPIC, "c-rust"), "C++ & <Rust> &copy", records, len(records))
    paged = Feed(feed.key, feed.name, records, 30, archives=2, pages=("first", "20230501-0a1b2c3d"))
    page = ArchivePage(feed.key, feed.name, "20230501-0a1b2c3d", records, "first", None)
    first = ArchivePage(feed.key, feed.name, "first", records, None, "20230501-0a1b2c3d")
    site = Site.from_config(Config())
    for fmt in ("rss", "atom"):
        archives = (render_archive(page, site, fmt), render_archive(first, site, fmt))
        for data in (render_feed(feed, site, fmt), render_feed(paged, site, fmt), *archives):
            assert [str(p) for p in check_feed(data)] == []


def test_seed_hostile_and_empty_atom_feeds_match_the_schema(seed_site: Build, config: Config, tmp_path: Path) -> None:
    assert shutil.which("jing"), "jing is not installed: run scripts/setup --system (as root, it uses apt)"
    when = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    site = Site.from_config(Config())
    hostile = tuple(_hostile_record(n, when) for n in range(3))
    extra = {
        "hostile.atom": Feed(FeedKey(FeedKind.TOPIC, "x"), "X & <y>", hostile, 3),
        "empty.atom": Feed(ALL, "All articles", (), 0),
        "paged.atom": Feed(
            FeedKey(FeedKind.TOPIC, "x"), "X & <y>", hostile, 9, archives=2, pages=("first", "20230501-0a1b2c3d")
        ),
    }
    for name, feed in extra.items():
        (tmp_path / name).write_bytes(render_feed(feed, site, "atom"))
    (tmp_path / "archive.atom").write_bytes(
        render_archive(ArchivePage(FeedKey(FeedKind.TOPIC, "x"), "X & <y>", "first", hostile), site, "atom")
    )
    extra["archive.atom"] = extra["paged.atom"]
    atoms = [p for p in feed_files(config.output_dir) if p.suffix == ".atom"] + [tmp_path / n for n in extra]
    done = subprocess.run(
        ["jing", "-c", str(ATOM_SCHEMA), *map(str, atoms)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout
