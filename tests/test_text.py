"""Normalising untrusted text, URLs and names (feedsvc.text), case by case."""

from __future__ import annotations

import re

import html5lib
import pytest

from feedsvc.text import (
    MAX_SLUG,
    clean_file_text,
    http_url,
    image_media_type,
    plain_text,
    provider_key,
    topic_slug,
    truncate,
)

# --- Mojibake: repaired when on, left alone when off, correct text untouched ------

#: (as scraped, as meant): UTF-8 read as Windows-1252 or Latin-1, from real pages.
MOJIBAKE = [
    ("Itâ€™s", "It’s"),
    ("â€œmismatched quotesâ€\x9d", "“mismatched quotes”"),
    ("cafÃ© and naÃ¯ve", "café and naïve"),
    ("SÃ£o Paulo, ZÃ¼rich", "São Paulo, Zürich"),
    ("Â£100 â€” or The â‚¬5 deal", "£100 — or The €5 deal"),
    ("Â¿QuÃ© tal?", "¿Qué tal?"),
    ("Ã‰cole", "École"),
    ("ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Привет"),
    ("Ð\x9fÑ\x80Ð¸Ð²ÐµÑ\x82", "Привет"),  # Latin-1 mojibake: C1 controls in it
    ("æ—¥æœ¬èªž", "日本語"),
    ("ðŸ˜€ emoji", "😀 emoji"),
    ("DonÃ¢â‚¬â„¢t", "Don’t"),  # encoded wrongly twice
]

#: Correct text that looks a little like mojibake, or is typographically rich.
CORRECT = [
    "‘Curly’ “quotes” — dashes… and ellipses",
    "l’été à Paris, naïve café",
    "Ærø, Kraków, Ñandú, SÃO PAULO, Ã",
    "1 × 2 ÷ 3 ± 4 °C ™ © ® € £ ¥",
    "Привет, 日本語, 한국어, العربية, עברית, हिन्दी",
    "👩\u200d💻 🇬🇧 🙂",
    "È É Ê Ë",
]


@pytest.mark.parametrize(("scraped", "meant"), MOJIBAKE)
def test_mojibake_is_repaired(scraped: str, meant: str) -> None:
    assert plain_text(scraped) == meant


@pytest.mark.parametrize(("scraped", "meant"), MOJIBAKE)
def test_mojibake_is_kept_when_repair_is_off(scraped: str, meant: str) -> None:
    kept = plain_text(scraped, repair=False)
    assert kept != meant
    assert kept == re.sub("[\x80-\x9f]", "", scraped)  # only the control characters go


@pytest.mark.parametrize("text", CORRECT)
@pytest.mark.parametrize("repair", [True, False])
def test_correct_text_is_unchanged(text: str, repair: bool) -> None:
    assert plain_text(text, repair=repair) == text


def test_c1_controls_survive_the_file_reader_for_the_repair() -> None:
    raw = 'title: "â€œquotesâ€\x9d"\x07\n'
    cleaned, line = clean_file_text(raw)
    assert line == 1 and "\x07" not in cleaned
    assert not re.search("[\x80-\x9f]", cleaned)  # YAML would refuse them
    assert plain_text(cleaned.split('"')[1]) == "“quotes”"
    assert plain_text(cleaned.split('"')[1], repair=False) == "â€œquotesâ€"


# --- Markup, entities and characters XML or HTML cannot hold ------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("<script>alert(1)</script>Hi", "Hi"),
        ("<style>p{color:red}</style>Styled", "Styled"),
        ("<b onmouseover='x()'>Bold</b> move", "Bold move"),
        ("<img src=x onerror=alert(1)>Image", "Image"),
        ("<a href='javascript:alert(1)'>link</a>", "link"),
        ("<p>One</p><p>Two</p><br>Three", "One Two Three"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Escaped", "Escaped"),
        ("&amp;lt;b&amp;gt;Twice", "Twice"),
        ("<!-- comment -->After", "After"),
        ("<![CDATA[x]]>Data", "Data"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&eacute;t&eacute; &#8212; &#x2019;", "été — ’"),
        ("AT&T and R&D", "AT&T and R&D"),
        ("&bogus; stays", "&bogus; stays"),
        ("5 < 6 > 4", "5 < 6 > 4"),
        ("a ]]> b", "a ]]> b"),
        ("x </", "x < /"),
        ("&amp;amp;lt;b&amp;amp;gt;x", "< b>x"),
        ("  tabs\t\tand\nnew\u00a0lines  ", "tabs and new lines"),
        ("nul\x00 bell\x07 del\x7f", "nul bell del"),
        ("nel\x85 c1\x9d fffd\ufffd", "nel… c1 fffd"),
        ("non\ufdd0char\U0001fffe\uffff", "nonchar"),
        ("lone\ud800surrogate", "lonesurrogate"),
        ("e\u0301", "é"),  # NFC
    ],
)
def test_plain_text(raw: str, text: str) -> None:
    assert plain_text(raw) == text


_TAG_LIKE = re.compile(r"<[A-Za-z/!?]")


@pytest.mark.parametrize(
    "raw",
    ["x </", "</", "<b", "a<b", "&lt;/&gt;", "&amp;amp;lt;/x&amp;amp;gt;", "<<b>>", "< /a>", "x<é", "&#60;p&#62;"],
)
def test_plain_text_never_holds_a_tag_start(raw: str) -> None:
    """The W3C validator flags "<" before a letter or "/" in RSS plain text."""
    cleaned = plain_text(raw)
    assert not _TAG_LIKE.search(cleaned) and not re.search(r"<(?=[^\W\d_])", cleaned), cleaned


def test_escaped_plain_text_is_strict_html() -> None:
    parser = html5lib.HTMLParser(strict=True)
    text = plain_text("<p>a</p> & b < c \x85 \ufdd0 \U0010ffff &bogus; ]]>")
    parser.parseFragment(text.replace("&", "&amp;").replace("<", "&lt;"))


def test_truncate_cuts_at_a_word_and_marks_the_cut() -> None:
    text = "word " * 100
    cut = truncate(text.strip(), 50)
    assert len(cut) <= 50 and cut.endswith("word…")
    assert plain_text("x" * 500, max_chars=20) == "x" * 19 + "…"


# --- URLs: only absolute http(s), normalised ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("https://example.org/a", "https://example.org/a"),
        ("  HTTP://Example.ORG  ", "http://example.org/"),
        ("https://example.org:8443/x?y=1#z", "https://example.org:8443/x?y=1#z"),
        ("https://Bücher.example/straße?q=ü", "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"),
        ("https://example.org/a%20b?x=%zz&y=%2", "https://example.org/a%20b?x=%25zz&y=%252"),
        ('https://example.org/"onmouseover=x<script>', "https://example.org/%22onmouseover=x%3Cscript%3E"),
        ("https://example.org/{a}|b^c`", "https://example.org/%7Ba%7D%7Cb%5Ec%60"),
        ("http://127.0.0.1/", "http://127.0.0.1/"),
    ],
)
def test_http_url_normalises(raw: str, url: str) -> None:
    assert http_url(raw) == url


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox",
        "file:///etc/passwd",
        "ftp://example.org/",
        "mailto:a@example.org",
        "/relative/path",
        "//example.org/protocol-relative",
        "example.org/no-scheme",
        "https://",
        "https:///path",
        "https://exa mple.org/",
        "https://example.org/a b",
        "https://example.org/a\tb",
        "https://example.org\\@evil.example/",
        "https://user:pass@example.org/",
        "https://user@example.org/",
        "https://example.org:99999/",
        "https://example.org:port/",
        "https://[::1]/",
        "https://-bad-.example/",
        "https://a..b/",
        "https://example.org/\x00",
        "https://example.org/\x9d",
        "https://" + "a" * 64 + ".example/",
        "https://example.org/" + "a" * 2100,
        "",
        "   ",
    ],
)
def test_http_url_refuses(raw: str) -> None:
    assert http_url(raw) is None


def test_every_published_url_is_ascii() -> None:
    url = http_url("https://例え.テスト/パス?クエリ=値#断片")
    assert url is not None and url.isascii() and url.startswith("https://xn--")


# --- Names: keys that are one safe path segment ----------------------------------------

_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Computer Vision", "computer-vision"),
        ("computer-vision!", "computer-vision"),
        ("Künstliche Intelligenz", "kunstliche-intelligenz"),
        ("人工知能", "ren-gong-zhi-neng"),
        ("Искусственный интеллект", "iskusstvennyi-intellekt"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c", "a-b-c"),
        ("C++", "c"),
    ],
)
def test_topic_slug(name: str, slug: str) -> None:
    assert topic_slug(name) == slug


@pytest.mark.parametrize(
    ("spellings", "slug"),
    [
        (["A.I.", "A.I", "AI", "a.i.", "Ai"], "ai"),
        (["U.S.", "U.S", "US", "u.s."], "us"),
        (["U.S.A.", "USA"], "usa"),
        (["U.S.-China", "US China"], "us-china"),
        (["J.R.R. Tolkien", "JRR Tolkien"], "jrr-tolkien"),
        (["С.Ш.А.", "США"], "ssha"),
    ],
)
def test_dots_between_single_letters_fold_before_slugging(spellings: list[str], slug: str) -> None:
    """An initialism is one topic however it is dotted (issue 13.16)."""
    assert {topic_slug(name) for name in spellings} == {slug}


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Web 2.0", "web-2-0"),  # digits are no initialism
        ("Ph.D.", "ph-d"),  # "Ph" is no single letter
        ("Node.js", "node-js"),
        ("A.Io", "a-io"),
        ("A. I.", "a-i"),  # a space between: not one word
    ],
)
def test_other_dots_still_separate_words(name: str, slug: str) -> None:
    assert topic_slug(name) == slug


@pytest.mark.parametrize("name", ["🤖🧠", "..", ".", "/", "\\", "\x00", "---", "🎉"])
def test_a_name_that_slugs_to_nothing_gets_a_stable_hashed_key(name: str) -> None:
    slug = topic_slug(name)
    assert re.fullmatch(r"topic-[0-9a-f]{12}", slug)
    assert topic_slug(name) == slug
    assert topic_slug(name.upper()) == slug


def test_different_unsluggable_names_get_different_keys() -> None:
    assert len({topic_slug(n) for n in ["🤖", "🧠", "🎉", "..", "/"]}) == 5


def test_a_long_name_gives_a_short_key() -> None:
    slug = topic_slug("word " * 500)
    assert len(slug) <= MAX_SLUG and _KEY.match(slug)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("jalopnik.com", "jalopnik.com"),
        ("WWW.Example.COM.", "example.com"),
        ("www.com", "www.com"),
        ("https://www.theguardian.com/technology", "theguardian.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("../../etc/passwd", None),
        ("..", None),
        ("a/b", None),
        ("evil\x00.example", None),
        ("a" * 64 + ".com", None),
        (("a" * 60 + ".") * 5 + "com", None),
        ("", None),
        ("-bad.example", None),
        ("under_score.example", None),
    ],
)
def test_provider_key(value: str, key: str | None) -> None:
    assert provider_key(value) == key
    if key is not None:
        assert _KEY.match(key) and ".." not in key


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        ("https://i.example.com/a.JPG", "image/jpeg"),
        ("https://i.example.com/a.png?w=10", "image/png"),
        ("https://i.example.com/a.webp#x", "image/webp"),
        ("https://i.example.com/image", None),
        ("https://i.example.com/a.exe", None),
    ],
)
def test_image_media_type(url: str, media_type: str | None) -> None:
    assert image_media_type(url) == media_type


# --- Fast paths give what the general paths give ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from feedsvc.text import _general_http_url, _plain_text  # noqa: E402

_URLISH = st.text(alphabet="abcAZ019-._~!$&'()*+,;=:@/?#%[] \t\"<>^`{|}\\é", max_size=40)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", ""]),
    st.text(alphabet="abcxyz09.-", max_size=20),
    _URLISH,
)
def test_fast_url_path_agrees_with_the_general_one(scheme: str, host: str, rest: str) -> None:
    url = scheme + host + rest
    assert http_url(url) == _general_http_url(url.strip())


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60), st.sampled_from([None, 5, 20]))
def test_fast_plain_text_path_agrees_with_the_general_one(value: str, limit: int | None) -> None:
    assert plain_text(value, max_chars=limit) == _plain_text(value, True, limit)
