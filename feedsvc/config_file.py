"""Reading config.yaml: the file's YAML into the typed, frozen dataclasses of `config.py`.

The dataclasses are the schema, read from their own fields and type hints, so a
new setting is one field with a default and nothing here changes. Everything
this refuses is a `ConfigError` naming the file and the dotted key, never a
traceback: an unreadable file, YAML that does not parse, a key that is not a
field, a value of the wrong type. The values' ranges and shapes are checked
after, in `config.check`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from feedsvc.errors import ConfigError
from feedsvc.text import UNPUBLISHABLE

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Most items a list setting may hold.
MAX_LIST = 1_000

T = TypeVar("T", bound="DataclassInstance")


def read_mapping(path: Path) -> dict[Any, Any]:
    """The file's YAML: a mapping, {} for an empty file; `ConfigError` if unreadable or not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), "-", f"cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), "-", "not UTF-8 text") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "-"
        raise ConfigError(str(path), where, f"not valid YAML: {getattr(e, 'problem', e)}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "-", "must be a mapping of keys to values")
    return data


def from_mapping(cls: type[T], data: dict[Any, Any], src: str, prefix: str = "") -> T:
    """An instance of the dataclass `cls` from `data`, each value checked against its field's type.

    `ConfigError` names the dotted key (`prefix` + key) of the first value
    that is unknown or of the wrong type; nested dataclasses are read the same
    way, and a field left out keeps its default.
    """
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    values: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(src, dotted, f"unknown key; known keys here: {', '.join(known)}")
        values[key] = _convert(hints[key], value, src, dotted)
    return cls(**values)


def _convert(hint: Any, value: Any, src: str, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if value is None:
            return hint()
        if not isinstance(value, dict):
            raise ConfigError(src, key, "must be a mapping")
        return from_mapping(hint, value, src, key + ".")
    if hint is Path:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(src, key, "must be a path (text)")
        if "\x00" in value:
            raise ConfigError(src, key, "must not contain a NUL character")
        return Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(src, key, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(src, key, "must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(src, key, "must be a number")
        if not math.isfinite(value):
            raise ConfigError(src, key, "must be a finite number")
        return float(value)
    if typing.get_origin(hint) is tuple:
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise ConfigError(src, key, f"must be a list (at most {MAX_LIST} items)")
        return tuple(_convert(str, item, src, f"{key}[{i}]") for i, item in enumerate(value))
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(src, key, "must be text")
        # Settings reach the feeds and pages as a record's text does (site.title
        # is in every one), so they are held to the same characters
        # (`text.UNPUBLISHABLE`): refused here, not dropped where they are written.
        if UNPUBLISHABLE.search(value):
            raise ConfigError(src, key, "must not contain control characters")
        return value
    raise TypeError(f"config field {key} has an unsupported type {hint!r}")
