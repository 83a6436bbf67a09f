"""The front matter's YAML, read hardened: PyYAML's safe loader (the C one where
PyYAML has it) with no anchors or aliases, a bounded depth and size of scalars, no
duplicate keys, and never a `secured` value in a message (docs/design.md, "Input rules")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from feedsvc.records import yamlfast

#: Deepest nesting of lists and mappings a record may use (a real one needs 5).
MAX_DEPTH = 64
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A record never needs YAML anchors or aliases; looking for them first keeps
# alias bombs from ever being expanded. `_maybe_alias` is a cheap pre-check
# (an "&" or "*" where YAML could start an anchor or alias), the parser's
# events the real one.
_BEFORE_ALIAS = frozenset(" \t\n\r[{,:-?\x85\u2028\u2029\ufeff")
# libyaml's composer recurses once per nesting level and overflows the C stack
# (a segfault, not an exception) some 20,000 levels down. A level opens with
# "[", "{", "?", "- " (up to two: an item holding a mapping) or a "-" ending a
# line, or one more column of indentation, so the depth is at most twice those
# openers plus the indentation plus one. Front matter with few openers and no
# deep indentation is parsed directly; only the rest has its depth measured
# first, from the parser's events (which do not recurse).
_MAX_OPENERS = 1_000
_DEEP_INDENT = "\n" + " " * 200
_OPENERS = ("[", "{", "?", "- ", "-\t", "-\n")
# A number or date longer than this is not one; it stays text (and a field
# rule reports it). It also keeps "1:2:3:…" (YAML 1.1 base 60) from costing
# quadratic time, and int() from refusing more than 4,300 digits.
_MAX_SCALAR_CHARS = 64


class Reject(Exception):
    """A record rejected while reading it: the field, the reason and the line, for `RecordError`."""

    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        super().__init__(field, reason, line)
        self.field, self.reason, self.line = field, reason, line


def load_yaml(fm: str) -> Any:
    if _maybe_alias(fm) or _may_nest_deeply(fm):
        _check_events(fm)
    try:
        return yamlfast.load(fm, _reference_load)
    except _DuplicateKey as e:
        if e.inside_secured:
            raise Reject(SECURED, f"a key inside it is given twice (first on line {e.first})", e.line) from None
        what = "given twice" if e.field != "-" else "YAML error: a key is given twice"
        raise Reject(e.field, f"{what} (first on line {e.first})", e.line) from None
    except _InsideSecured as e:
        raise Reject(SECURED, f"YAML error inside it: {e.problem}", e.line) from None
    except yaml.MarkedYAMLError as e:
        raise _yaml_reject(e) from None
    except yaml.YAMLError as e:
        raise Reject("-", f"YAML error: {type(e).__name__}") from None
    except RecursionError:
        raise Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)") from None


def _reference_load(fm: str) -> Any:
    """PyYAML's reading of `fm` (what `yaml.load` does), telling apart errors inside `secured`.

    An error PyYAML raises while building values (an unknown tag, say) quotes
    the part at fault; inside `secured` that part is the secret, so the error
    is reported without it (`_InsideSecured`).
    """
    loader = _Loader(fm)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if mark is not None and _top_level_key(loader, mark.index) == SECURED:
            raise _InsideSecured(e, mark.line + 1) from None
        raise
    finally:
        loader.dispose()


def _maybe_alias(fm: str) -> bool:
    # str.find is far faster than a regex here: most records hold a few "&"
    # (in URLs), each after a letter.
    for marker in "&*":
        i = fm.find(marker)
        while i != -1:
            if i == 0 or fm[i - 1] in _BEFORE_ALIAS:
                return True
            i = fm.find(marker, i + 1)
    return False


def _may_nest_deeply(fm: str) -> bool:
    # An upper bound on the depth, from a few fast counts (no regex, no loop per character).
    if _DEEP_INDENT in fm:
        return True
    # Every "-" opener starts with a "-": four counts bound the six, and usually settle it.
    bound = fm.count("[") + fm.count("{") + fm.count("?") + fm.count("-")
    return bound > _MAX_OPENERS and nesting_openers(fm) > _MAX_OPENERS


def nesting_openers(fm: str) -> int:
    """How many places in `fm` could open a nested list or mapping (an upper bound)."""
    return sum(fm.count(opener) for opener in _OPENERS) + fm.endswith("-")


def _check_events(fm: str) -> None:
    """Reject anchors, aliases and deep nesting, reading events only (no expansion)."""
    depth = 0
    try:
        for event in yaml.parse(fm, Loader=_BASE_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise Reject("-", "YAML anchors and aliases are not allowed in records", _line(event))
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)", _line(event))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as e:
        raise _yaml_reject(e) from None
    except yaml.YAMLError as e:
        raise Reject("-", f"YAML error: {type(e).__name__}") from None


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


def _yaml_reject(e: yaml.MarkedYAMLError) -> Reject:
    # PyYAML's problem text names the construct, never a value (at most one
    # character, or a tag, which is safe to show).
    problem = (e.problem or e.context or "invalid YAML").strip().split("\n")[0][:200]
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else None
    if "maximum nesting depth" in problem:
        # libyaml 0.2.5+ (in PyYAML 6.0.4's wheels) has its own limit, which its
        # scanner can reach before our event count does: one message for both.
        return Reject("-", f"YAML nested too deeply (more than {MAX_DEPTH} levels)", line)
    context = e.context_mark
    if e.context and context is not None and mark is not None and context.line != mark.line:
        problem += f" ({e.context.strip()[:100]} on line {context.line + 1})"
    return Reject("-", f"YAML error: {problem}", line)


def first_content_line(fm: str) -> int:
    for number, line in enumerate(fm.split("\n"), 1):
        if line.strip() and not line.startswith(("---", "#")):
            return number
    return 1


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, field: str, line: int, first: int, inside_secured: bool = False) -> None:
        super().__init__(field, line, first, inside_secured)
        self.field, self.line, self.first, self.inside_secured = field, line, first, inside_secured


class _InsideSecured(Exception):
    """A YAML error inside the `secured` field, with its problem text less anything it quotes."""

    def __init__(self, error: yaml.MarkedYAMLError, line: int) -> None:
        problem = (error.problem or error.context or "invalid YAML").strip().split("\n")[0]
        self.problem = _QUOTED.sub("", problem).strip()[:200] or "invalid YAML"
        self.line = line
        super().__init__(self.problem, line)


#: The field whose value no message may quote, keys and tags included.
SECURED = "secured"
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,40}")
# What PyYAML's problem texts quote (a tag, a character): left out inside `secured`.
_QUOTED = re.compile(r"""\s*(?:'[^']*'|"[^"]*")""")


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader, hardened for untrusted records.

    Duplicate keys are an error (YAML says so; PyYAML keeps the last one
    silently), and a number, date or true/false that cannot be converted
    stays text (a field rule then reports it) instead of raising ValueError
    out of the parser. The document's root node is kept (`_root`), so an
    error can tell whether it is inside `secured`.
    """

    _root: yaml.Node | None = None

    def construct_document(self, node: yaml.Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        keys = [key.value for key, _value in node.value]
        try:
            repeated = len(set(keys)) != len(keys) and "<<" not in keys
        except TypeError:  # a complex key: constructing it reports the error
            repeated = False
        if repeated:
            _raise_duplicate(self, node)
        return super().construct_mapping(node, deep=deep)


def _raise_duplicate(loader: _Loader, node: yaml.MappingNode) -> None:
    """Raise `_DuplicateKey` for the first key of `node` given twice.

    The key is named when it is a plain field-like name, except inside
    `secured`: there the keys are part of the secret (``token: …`` twice
    must not print ``token``), so only the field is named.
    """
    seen: dict[tuple[str, str], int] = {}
    for key_node, _value in node.value:
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            if node is not loader._root and _top_level_key(loader, node.start_mark.index) == SECURED:
                raise _DuplicateKey(SECURED, line, seen[key], inside_secured=True)
            name = key_node.value if _SIMPLE_KEY.fullmatch(key_node.value) else "-"
            raise _DuplicateKey(name, line, seen[key])
        seen[key] = line


def _top_level_key(loader: _Loader, index: int) -> str | None:
    """The top-level field whose value holds the character at `index` of the text, if known.

    Known once the document's nodes are composed (errors while building
    values); None before that, at the top level itself, or between fields.
    """
    root = loader._root
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if value_node.start_mark.index <= index < max(value_node.end_mark.index, value_node.start_mark.index + 1):
            return key_node.value if isinstance(key_node, yaml.ScalarNode) else None
    return None


def _scalar(base: Callable[[Any, yaml.Node], Any]) -> Callable[[Any, yaml.Node], Any]:
    def construct(loader: Any, node: yaml.Node) -> Any:
        text = node.value  # a scalar's text; for any other node, base() raises
        if isinstance(text, str) and len(text) > _MAX_SCALAR_CHARS:
            return text
        try:
            return base(loader, node)
        except (ValueError, OverflowError, TypeError, AttributeError, KeyError):
            return text

    return construct


_TAG = "tag:yaml.org,2002:"
for _name in ("int", "float", "bool", "timestamp"):
    _Loader.add_constructor(_TAG + _name, _scalar(SafeConstructor.yaml_constructors[_TAG + _name]))
