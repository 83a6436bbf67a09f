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
message. tests/test_yamlfast.py checks both paths give identical records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

try:
    import yaml_rs
except ImportError:  # pragma: no cover - without yaml-rs, PyYAML reads everything
    yaml_rs = None

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Keys whose timestamp text the field rules parse themselves (nested ones,
#: in related items, are not read at all).
DATE_KEYS = frozenset({"publishedDateTime", "updatedDateTime"})

# Tags (!x), anchors (&x) and aliases (*x) at the start of a value.
_NODE_PROPERTY = re.compile(r"(?<![^\s,\[{:-])[!&*][^\s,\]}]")
_COMPLEX_KEY = re.compile(r"(?m)^[ \t]*\?(?:[ \t]|$)")
# Unquoted numbers YAML 1.1 and 1.2 read differently: 010 and 0o10 ...
# (after a space; after "," "[" or "{" only where a flow collection could be).
_LEADING_ZERO = re.compile(r"(?<![^\s])[-+]?0[0-9_oO]")
_ZERO_STARTS = (" 0", "\t0", "\n0", " -0", " +0")
_FLOW_LEADING_ZERO = re.compile(r"[,\[{][ \t]*[-+]?0[0-9_oO]")
_BIG = 10**40
_STRICT_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = yaml.resolver.Resolver.yaml_implicit_resolvers


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
    """Cheap checks first: the regexes run only where their characters occur."""
    if "<<" in text:
        return False
    if ("!" in text or "&" in text or "*" in text) and _NODE_PROPERTY.search(text):
        return False
    if any(s in text for s in _ZERO_STARTS) and _LEADING_ZERO.search(text):
        return False
    if ("[" in text or "{" in text) and _FLOW_LEADING_ZERO.search(text):
        return False
    return "?" not in text or not _COMPLEX_KEY.search(text)


def _same_as_pyyaml(value: Any) -> bool:
    if isinstance(value, str):
        return not _resolves(value)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or _resolves(key):
                return False
            if key in DATE_KEYS and isinstance(item, str) and _STRICT_ISO.fullmatch(item):
                continue
            if not _same_as_pyyaml(item):
                return False
        return True
    if isinstance(value, list):
        return all(_same_as_pyyaml(v) for v in value)
    if isinstance(value, bool) or value is None:
        return True
    # Floats are rare in records and their spellings many (1e3, 3.10, .5):
    # PyYAML reads them. So are numbers longer than PyYAML's loader keeps.
    return isinstance(value, int) and -_BIG < value < _BIG


def _resolves(text: str) -> bool:
    """Would PyYAML read this text, written plain, as something other than a string?"""
    for _tag, regexp in _RESOLVERS.get(text[:1] or "", ()):
        if regexp.match(text):
            return True
    return False
