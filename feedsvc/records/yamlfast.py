"""A fast YAML path for ordinary records, with PyYAML as the reference.

PyYAML's C loader still builds every value in Python and resolves every plain
scalar with Python regexes; over 100,000 records that is most of a build.
yaml-rs (a Rust parser) reads the same front matter about five times faster,
but it reads YAML 1.2, not PyYAML's YAML 1.1: `yes` stays text, `010` is ten,
`1e3` is a number, tags are ignored, and (if asked to parse dates) it reads
even a quoted '2023-12-21' as a date.

So yaml-rs's answer is used only when it provably equals PyYAML's for what the
field rules read:

- the text has no tags, anchors, aliases, merge keys or complex keys, and no
  unquoted number with leading zeros or `0o`, checked with cheap searches
  before parsing;
- yaml-rs returned no float and no huge integer (PyYAML reads those), and no
  text value PyYAML would have resolved to something else (PyYAML's own
  implicit resolvers decide), except an ISO 8601 timestamp under
  publishedDateTime or updatedDateTime, where the field rules read the text
  and PyYAML's datetime alike.

Anything else, and any error, goes to PyYAML, which also words every error
message. tests/records/test_yamlfast.py checks both paths give identical records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import yaml

yaml_rs: ModuleType | None
try:
    import yaml_rs
except ImportError:  # pragma: no cover - without yaml-rs, PyYAML reads everything
    yaml_rs = None

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Keys whose timestamp text the field rules parse themselves (nested ones,
#: in related items, are not read at all).
DATE_KEYS = frozenset({"publishedDateTime", "updatedDateTime"})

# Tags (!x), anchors (&x) and aliases (*x) start a value: after a space or
# one of these, and followed by a name.
_BEFORE_PROPERTY = frozenset(" \t\n\r,[{:-\ufeff")
_AFTER_PROPERTY = frozenset(" \t\n\r,]}")
# A "?" that could open a complex key ("? key" at the start of a line).
_QUESTION = re.compile(r"\?(?=[ \t\n]|$)")
# Unquoted numbers YAML 1.1 and 1.2 read differently: 010 and 0o10, after a
# space (or after "," "[" "{" where a flow collection could be). Each pattern
# starts with a literal "0", which the regex engine finds fast.
_LEADING_ZERO = re.compile(r"0(?:(?<=\s0)|(?<=\s[-+]0))[0-9_oO]")
_FLOW_LEADING_ZERO = re.compile(r"0(?:(?<=[,\[{]0)|(?<=[,\[{][ \t]0)|(?<=[,\[{][-+]0))[0-9_oO]")
_BIG = 10**40
_STRICT_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = yaml.resolver.Resolver.yaml_implicit_resolvers
#: First characters of text some resolver claims ("" for the empty text).
_RESOLVER_FIRST = frozenset(_RESOLVERS) | {""}
#: Of those, the letters: they begin only words of five letters or fewer.
_WORD_FIRST = frozenset(c for c in _RESOLVERS if c.isalpha())
#: Keys seen to be text PyYAML reads as text too (bounded: keys can be anything).
_PLAIN_KEYS: set[str] = set()
_MAX_PLAIN_KEYS = 10_000


def load(text: str, reference: Callable[[str], Any] | None = None) -> Any:
    """Parse one YAML document as `reference` (PyYAML's safe loader by default) would.

    `reference` reads whatever the fast path does not take, and raises the
    errors. Call only on text already checked for anchors and deep nesting.
    """
    value = _fast(text)
    if value is not None:
        return value
    if reference is not None:
        return reference(text)
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader


def fast_path_taken(text: str) -> bool:
    """Whether `load` reads `text` with yaml-rs (for tests and the benchmark)."""
    return _fast(text) is not None


def _fast(text: str) -> dict[str, Any] | None:
    if yaml_rs is None or not _text_ok(text):
        return None
    try:
        value = yaml_rs.loads(text, parse_datetime=False)
    except Exception:  # noqa: BLE001 - any doubt: the reference decides and words it
        return None
    return value if isinstance(value, dict) and _same_as_pyyaml(value) else None


def _text_ok(text: str) -> bool:
    """Cheap checks on the text (each a scan for a rare character)."""
    if "<<" in text or _has_node_property(text) or _LEADING_ZERO.search(text):
        return False
    if ("[" in text or "{" in text) and _FLOW_LEADING_ZERO.search(text):
        return False
    for m in _QUESTION.finditer(text):
        line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
        if not line.strip(" \t-"):
            return False
    return True


def _has_node_property(text: str) -> bool:
    # str.find beats a regex here: most records hold a few "&" or "!", each
    # inside quoted text after a letter.
    for marker in "!&*":
        i = text.find(marker)
        while i != -1:
            before = text[i - 1] if i else " "
            after = text[i + 1 : i + 2]
            if before in _BEFORE_PROPERTY and after and after not in _AFTER_PROPERTY:
                return True
            i = text.find(marker, i + 1)
    return False


def _same_as_pyyaml(value: Any) -> bool:
    """Whether PyYAML would have built the same value (walked without recursion).

    Text in a mapping or list is checked where it is met rather than pushed
    (most values are text), and keys already seen to be plain text are
    remembered: records repeat the same few dozen.
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    first, resolves, plain_keys = _RESOLVER_FIRST, _resolves, _PLAIN_KEYS
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                if key not in plain_keys:
                    if type(key) is not str or (key[:1] in first and resolves(key)):
                        return False
                    if len(plain_keys) < _MAX_PLAIN_KEYS:
                        plain_keys.add(key)
                if type(child) is str:
                    if (
                        child[:1] in first
                        and not (key in DATE_KEYS and _STRICT_ISO.fullmatch(child))
                        and resolves(child)
                    ):
                        return False
                else:
                    push(child)
        elif kind is list:
            for child in item:
                if type(child) is str:
                    if child[:1] in first and resolves(child):
                        return False
                else:
                    push(child)
        elif kind is str:
            if item[:1] in first and resolves(item):
                return False
        elif kind is int:
            # Numbers longer than PyYAML's loader keeps as numbers stay text there.
            if not -_BIG < item < _BIG:
                return False
        elif not (kind is bool or item is None):
            # Floats are rare in records and their spellings many (1e3, 3.10,
            # .5): PyYAML reads them.
            return False
    return True


def _resolves(text: str) -> bool:
    """Would PyYAML read this text, written plain, as something other than a string?"""
    if len(text) > 5 and text[0] in _WORD_FIRST:
        return False  # only true/false/yes/no/on/off/null start with these
    for _tag, regexp in _RESOLVERS.get(text[:1], ()):
        if regexp.match(text):
            return True
    return False
