"""Every relative link in README.md and docs/*.md leads somewhere (issue 13.10).

Each link, inline (`[text](target)`) or a reference definition (`[name]:
target`), outside code, is one test case: its file must exist in the
checkout, and its `#anchor` must be a heading of the target Markdown file,
slugged as GitHub does. Links with a scheme (https:, mailto:) are not
followed. The README must link every page in docs/.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

#: The documents whose links are checked.
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
#: An inline link or image: [text](target "title"); the text may hold one level of brackets.
_INLINE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+[\"'(][^)]*)?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}: {self.target}"


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = ""
            continue
        if m:
            fence = m.group(1)
            continue
        out.append((number, line))
    return out


def _without_code_spans(text: str) -> str:
    """`text` with every code span blanked out, line breaks kept (so line numbers still count)."""
    return _CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def links_in(path: Path) -> list[Link]:
    """Every link target in a Markdown file, outside code blocks and code spans."""
    found = []
    lines = _prose_lines(path.read_text(encoding="utf-8"))
    # Inline links may wrap onto the next line: join each paragraph before searching.
    paragraph: list[tuple[int, str]] = []

    def flush() -> None:
        if not paragraph:
            return
        first = paragraph[0][0]
        joined = _without_code_spans("\n".join(text for _n, text in paragraph))
        for m in _INLINE.finditer(joined):
            target = m.group(1).strip("<>")
            found.append(Link(path, first + joined.count("\n", 0, m.start()), target))
        paragraph.clear()

    for number, line in lines:
        ref = _REFERENCE.match(line)
        if ref:
            found.append(Link(path, number, ref.group(1).strip("<>")))
            continue
        if not line.strip() or _HEADING.match(line):
            flush()
            if _HEADING.match(line):
                paragraph.append((number, line))
                flush()
            continue
        paragraph.append((number, line))
    flush()
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower-cased, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)  # `code` keeps its text
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags go
    text = text.strip().lower()
    kept = []
    for ch in text:
        if ch in " -_" or unicodedata.category(ch)[0] in "LNM":
            kept.append("-" if ch == " " else ch)
    return "".join(kept)


def anchors_of(path: Path) -> set[str]:
    """Every anchor of a Markdown file: heading slugs (repeats get -1, -2, …) and HTML ids."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for _number, line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            anchors.add(base if n == 0 else f"{base}-{n}")
        anchors.update(_HTML_ANCHOR.findall(line))
    return anchors


def problem(link: Link) -> str | None:
    """Why `link` leads nowhere, or None when it resolves."""
    target = link.target
    if _SCHEME.match(target) or target.startswith("//"):
        return None  # an absolute URL: not ours to check
    path_part, _, anchor = target.partition("#")
    path_part = path_part.split("?", 1)[0]
    if path_part:
        if path_part.startswith("/"):
            return "an absolute path: GitHub and readers resolve it differently; use a relative one"
        resolved = (link.source.parent / path_part).resolve()
        try:
            resolved.relative_to(ROOT)
        except ValueError:
            return f"{path_part} leads out of the repository"
        if not resolved.exists():
            return f"{path_part} does not exist"
    else:
        resolved = link.source
    if anchor:
        if resolved.is_dir() or resolved.suffix.lower() != ".md":
            return f"#{anchor} on a file that is not Markdown"
        if anchor not in anchors_of(resolved):
            return f"#{anchor} is not a heading of {resolved.relative_to(ROOT)}"
    return None


ALL_LINKS = [link for doc in DOCS for link in links_in(doc)]


@pytest.mark.parametrize("link", ALL_LINKS, ids=str)
def test_every_relative_link_resolves(link: Link) -> None:
    assert problem(link) is None, f"{link}: {problem(link)}"


def test_the_documents_have_links_to_check() -> None:
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 7, DOCS
    assert sum(not _SCHEME.match(link.target) for link in ALL_LINKS) >= 30


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_the_readme_links_every_docs_page(page: str) -> None:
    targets = {link.target.partition("#")[0] for link in links_in(ROOT / "README.md")}
    assert f"docs/{page}" in targets


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Archives (RFC 5005)", "archives-rfc-5005"),
        ("Data flow: one engine", "data-flow-one-engine"),
        ("`site.base_url`", "sitebase_url"),
        ("`/healthz`", "healthz"),
        ("Caching proxy in front of `feedsvc serve`", "caching-proxy-in-front-of-feedsvc-serve"),
        ("One builder, several servers", "one-builder-several-servers"),
        ("Figures of 2026-11-30, before the one-engine server; new figures follow",
         "figures-of-2026-11-30-before-the-one-engine-server-new-figures-follow"),
        ("Old or new, never a mix", "old-or-new-never-a-mix"),
        ("A — B", "a--b"),
        ("Künstliche Intelligenz", "künstliche-intelligenz"),
    ],
)  # fmt: skip
def test_slugs_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails on every kind of broken link, and not on good ones or on code."""
    repo = tmp_path / "repo"
    monkeypatch.setattr(sys.modules[__name__], "ROOT", repo)
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "other.md").write_text("# Other page\n\n## A section\n\n## A section\n", encoding="utf-8")
    readme = repo / "README.md"
    readme.write_text(
        "# Title\n\n## Here\n\n"
        "Good: [page](docs/other.md), [section](docs/other.md#a-section), [again](docs/other.md#a-section-1),\n"
        "[here](#here), [web](https://example.org/nowhere), [folder](docs/).\n\n"
        "Broken: [missing](docs/missing.md), [bad anchor](docs/other.md#nowhere),\n"
        "[bad local](#elsewhere), [escape](../outside.md), [absolute](/docs/other.md),\n"
        "[anchor on a folder](docs/#x).\n\n"
        "[ref]: docs/gone.md\n\n"
        "`[code](docs/not-a-link.md)`\n\n```md\n[fenced](docs/not-a-link.md)\n```\n",
        encoding="utf-8",
    )
    (tmp_path / "outside.md").write_text("x", encoding="utf-8")  # exists, but outside the repository
    links = links_in(readme)
    broken = sorted(link.target for link in links if problem(link) is not None)
    assert broken == sorted(
        ["docs/missing.md", "docs/other.md#nowhere", "#elsewhere", "../outside.md", "/docs/other.md", "docs/#x",
         "docs/gone.md"]
    )  # fmt: skip
    good = {link.target for link in links if problem(link) is None}
    assert good == {
        "docs/other.md", "docs/other.md#a-section", "docs/other.md#a-section-1", "#here",
        "https://example.org/nowhere", "docs/",
    }  # fmt: skip
    assert not any("not-a-link" in link.target for link in links)
    assert [link.line for link in links if link.target == "docs/missing.md"] == [8]
