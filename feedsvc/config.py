"""Configuration: `config.yaml` read once into a typed, frozen `Config`.

The dataclasses below are the schema: `config_file.py` reads the file into
them (a key that is not a field is an error that names the known keys, a value
of the wrong type is an error naming the key), and `check` here refuses values
a type alone cannot (ranges, URL shapes). Relative paths are resolved against
the config file's folder, so `feedsvc build` gives the same result from any
working directory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from feedsvc.config_file import from_mapping, read_mapping
from feedsvc.errors import ConfigError
from feedsvc.text import encode_url_part, normalize_host

ENV_VAR = "FEEDSVC_CONFIG"
#: The base URL when none is configured and no server says where it listens.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
DEFAULT_FILE = "config.yaml"

#: Markup in a plain-text setting (a tag or an entity) would reach RSS as HTML.
_MARKUP = re.compile(r"<[A-Za-z/!?]|&#?\w+;")
#: An RFC 5646 language tag, in the shape the feed validator accepts.
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class SiteConfig:
    #: Shown as the title of every feed ("<title>: <Topic>") and of the index.
    title: str = "feedsvc"
    #: Absolute URL the site is published under; every self link starts with it.
    #: Empty: the address `feedsvc serve` listens on (`DEFAULT_BASE_URL` for a build).
    base_url: str = ""
    #: The RSS channel description and Atom subtitle.
    description: str = "News feeds published by feedsvc"
    #: RSS <language> and Atom xml:lang (an RFC 5646 tag).
    language: str = "en"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    #: Seconds a client or cache may reuse a response without asking again.
    cache_max_age: int = 300
    #: HTTP worker processes (granian); two suit a 2-core machine.
    workers: int = 2
    #: Python threads per worker that run requests. One is fastest (no GIL
    #: contention; slow clients never hold a thread); more only help when
    #: requests wait, as custom feeds rendering on a cold cache do.
    threads: int = 1
    #: Seconds between full scans of records_dir by the builder. File events
    #: (inotify) bring changes within a second; the scan is the fallback for
    #: file systems that send none (network mounts).
    reload_interval: float = 300.0


@dataclass(frozen=True)
class LimitsConfig:
    #: Record files larger than this are rejected unread (a real record is a few KB).
    max_file_bytes: int = 1_048_576
    #: Longest title a feed carries, in characters; longer ones are cut with "…".
    max_title_chars: int = 300
    #: Longest excerpt a feed carries, in characters.
    max_excerpt_chars: int = 2_000
    #: Most topics, images and related items kept from one record.
    max_topics: int = 20
    max_images: int = 10
    max_related: int = 20


@dataclass(frozen=True)
class WebSubConfig:
    #: WebSub hubs (absolute http(s) URLs): every feed names each as rel="hub",
    #: and each is told when a feed's bytes change. Empty: WebSub is off.
    hubs: tuple[str, ...] = ()
    #: Seconds to keep retrying the notifications of one change before giving up.
    timeout: float = 60.0


@dataclass(frozen=True)
class PoliteConfig:
    #: Answer 429 to a client that fetches one URL too often.
    enabled: bool = True
    #: Fetches one address may make of one URL within the window; one
    #: answered 304 Not Modified counts half.
    max_requests: int = 60
    window_seconds: int = 600
    #: Addresses or networks (CIDR) never limited.
    exempt: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    #: Reverse proxies (addresses or CIDR) whose X-Forwarded-For is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Most (address, URL) pairs tracked, shared by all workers; the least recent go first.
    max_clients: int = 10_000


@dataclass(frozen=True)
class QueriesConfig:
    #: Custom feeds (feeds with a query string) kept rendered per worker.
    cache_entries: int = 256
    #: Most bytes those rendered custom feeds may take per worker.
    cache_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class ArchivesConfig:
    #: Publish RFC 5005 archive pages, so a reader can page back to every entry.
    #: Off unless asked for: at 100,000 records they are some 30,000 more
    #: documents to render and write (README, "Archives").
    enabled: bool = False
    #: The average entries per archive page (1 to max_entries); pages hold
    #: page_size // 4 to 4 x page_size. Boundaries are content-defined
    #: (`archives.layout`), so one record's change rewrites its own page and
    #: at most a page or two beside it. In a config file that leaves it out,
    #: the default is 25 or max_entries, whichever is smaller.
    page_size: int = 25


@dataclass(frozen=True)
class AudienceConfig:
    #: Count who polls the feeds (feedsvc/web/audience/): subscribers by feed
    #: service, direct pollers, 304s; the report at /audience.html and gauges
    #: on /metrics. Off unless asked for: the page tells about the readers.
    enabled: bool = False
    #: Hours a report covers; the server forgets what it recorded after that.
    window_hours: float = 48.0
    #: Most rows the server keeps (one per feed, client and minute polled); the oldest go first.
    max_rows: int = 200_000
    #: Seconds a worker counts in memory before writing the counts to the store.
    flush_seconds: float = 10.0


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    records_dir: Path = Path("seeds")
    output_dir: Path = Path("public")
    #: Entries per feed, newest first.
    max_entries: int = 50
    #: Publish records marked `published: false` (off by default, so they never leak).
    include_unpublished: bool = False
    #: Leave out records whose quality is below this.
    min_quality: float = 0
    #: Repair mojibake (UTF-8 decoded as cp1252/latin-1) with ftfy.
    repair_mojibake: bool = True
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    websub: WebSubConfig = field(default_factory=WebSubConfig)
    polite: PoliteConfig = field(default_factory=PoliteConfig)
    queries: QueriesConfig = field(default_factory=QueriesConfig)
    archives: ArchivesConfig = field(default_factory=ArchivesConfig)
    audience: AudienceConfig = field(default_factory=AudienceConfig)
    #: Where this config was read from ("<defaults>" when built in code).
    source: str = field(default="<defaults>", compare=False)


def default_path() -> Path:
    """The config file to use when none is named: $FEEDSVC_CONFIG, else ./config.yaml."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_FILE)


def load_config(path: Path | str | None = None) -> Config:
    """Read and check a config file; raise `ConfigError` naming the bad key."""
    path = Path(path) if path is not None else default_path()
    data = read_mapping(path)
    config = from_mapping(Config, data, str(path))
    base = path.resolve().parent
    config = dataclasses.replace(
        config,
        archives=_default_page_size(config, data),
        site=dataclasses.replace(
            config.site, base_url=canonical_base_url(config.site.base_url, str(path)) if config.site.base_url else ""
        ),
        records_dir=_resolve(base, config.records_dir),
        output_dir=_resolve(base, config.output_dir),
        source=str(path),
    )
    check(config)
    return config


def canonical_base_url(value: str, src: str = "<defaults>") -> str:
    """site.base_url in canonical form, ending in "/"; `ConfigError` if unusable.

    Every feed's Atom id and self link start with it, and the feed validator
    wants ids in canonical form: scheme and host lower-case, no default port,
    non-ASCII percent-encoded with upper-case hex digits.
    """
    key = "site.base_url"
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(src, key, f"not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(src, key, "must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(src, key, "must not contain a user name or password")
    if parts.query or parts.fragment or value.strip().endswith(("?", "#")):
        raise ConfigError(src, key, "must not have a query or a fragment")
    if ":" in parts.hostname:  # an IPv6 literal
        host: str | None = f"[{parts.hostname.lower()}]"
    else:
        host = normalize_host(parts.hostname)
    if host is None:
        raise ConfigError(src, key, "the host is not a valid domain name or address")
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    segments = parts.path.split("/")
    if any(seg in (".", "..") for seg in segments):
        raise ConfigError(src, key, "the path must not contain '.' or '..' segments")
    # Percent-encoded as record URLs are (`text.encode_url_part`), escapes in upper case: one spelling of the base.
    path = re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), encode_url_part(parts.path))
    return urlunsplit((scheme, host, path.rstrip("/") + "/", "", ""))


def check_records_dir(config: Config) -> None:
    """Raise `ConfigError` unless records_dir is a folder.

    Without this, a typo in records_dir would publish empty feeds (and a
    rebuild would remove every feed published before) instead of failing.
    """
    if not config.records_dir.is_dir():
        raise ConfigError(config.source, "records_dir", f"not a folder: {config.records_dir}")


def beside_output(out: Path, name: str) -> Path:
    """Where feedsvc keeps its state `name` for the output folder `out`: ``.<folder>.feedsvc-<name>`` beside it.

    Never inside it (a web server would publish it), and next to it so a
    rename between the two stays on one file system. The cache, the lock,
    the generation file, the staging folder and the audience store live here.
    """
    return out.parent / f".{out.name}.feedsvc-{name}"


def check_output_dir(out: Path, records_dir: Path, src: str = "<command line>") -> None:
    """Raise `ConfigError` for an output folder a build must never write into.

    A build writes and, on later builds, removes files in the output folder,
    and keeps its cache beside it: the root, a home folder, or a folder that
    holds the records (a parent of records_dir, or records_dir itself) would
    scatter feeds among the user's own files and put the cache outside.
    """
    real = Path(os.path.abspath(os.path.expanduser(str(out))))
    records = Path(os.path.abspath(os.path.expanduser(str(records_dir))))
    if real == Path(real.anchor):
        raise ConfigError(src, "output_dir", f"{out} is the root folder; choose a folder of its own, such as public")
    if real == Path(os.path.expanduser("~")).resolve():
        raise ConfigError(src, "output_dir", f"{out} is the home folder; choose a folder of its own, such as ~/public")
    if real == records or real in records.parents:
        raise ConfigError(src, "output_dir", f"{out} holds records_dir ({records_dir}); choose a folder beside it")


def check(config: Config) -> None:
    """Check the values that a type alone cannot (ranges, URL shape)."""
    src = config.source
    check_output_dir(config.output_dir, config.records_dir, src)
    base_url(config)
    for name in ("title", "description"):
        text = getattr(config.site, name)
        if not text.strip():
            raise ConfigError(src, f"site.{name}", "must not be empty")
        if _MARKUP.search(text):
            raise ConfigError(src, f"site.{name}", "must be plain text, without HTML tags or entities")
    if not _LANGUAGE.match(config.site.language):
        raise ConfigError(src, "site.language", "must be a language tag such as en or en-GB")
    if not config.server.host.strip():
        raise ConfigError(src, "server.host", "must not be empty")
    if config.max_entries < 1:
        raise ConfigError(src, "max_entries", "must be at least 1")
    if not 0 < config.server.port < 65536:
        raise ConfigError(src, "server.port", "must be between 1 and 65535")
    for name in ("workers", "threads"):
        if getattr(config.server, name) < 1:
            raise ConfigError(src, f"server.{name}", "must be at least 1")
    if config.server.cache_max_age < 0:
        raise ConfigError(src, "server.cache_max_age", "must not be negative")
    if config.server.reload_interval <= 0:
        raise ConfigError(src, "server.reload_interval", "must be positive")
    for f in dataclasses.fields(LimitsConfig):
        if getattr(config.limits, f.name) < 1:
            raise ConfigError(src, f"limits.{f.name}", "must be at least 1")
    _check_features(config)


#: The longest audience window: a year (hours).
MAX_WINDOW_HOURS = 8_784.0
#: The longest a worker may hold its audience counts before writing them (seconds).
MAX_FLUSH_SECONDS = 3_600.0

#: Most shared memory polite polling may take (max_clients × (2 × max_requests + 3) × 8 bytes).
MAX_POLITE_BYTES = 512 * 1024 * 1024

#: What a hub URL may hold: RFC 3986 characters, ASCII only (it is published in every feed).
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+$")


def _check_features(config: Config) -> None:
    """WebSub, polite polling, custom-feed, audience and archive settings."""
    src = config.source
    _check_hubs(config)
    if config.websub.timeout <= 0:
        raise ConfigError(src, "websub.timeout", "must be positive")
    for name in ("max_requests", "window_seconds", "max_clients"):
        if getattr(config.polite, name) < 1:
            raise ConfigError(src, f"polite.{name}", "must be at least 1")
    # The budgets live in a table sized when the server starts (polite.py).
    if config.polite.max_clients * (2 * config.polite.max_requests + 3) * 8 > MAX_POLITE_BYTES:
        raise ConfigError(
            src,
            "polite.max_clients",
            f"times max_requests is too large: the budgets would need over {MAX_POLITE_BYTES >> 20} MiB",
        )
    for name in ("exempt", "trusted_proxies"):
        for i, value in enumerate(getattr(config.polite, name)):
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ConfigError(src, f"polite.{name}[{i}]", "not an IP address or network (CIDR)") from None
    for name in ("cache_entries", "cache_bytes"):
        if getattr(config.queries, name) < 1:
            raise ConfigError(src, f"queries.{name}", "must be at least 1")
    _check_audience(config)
    if not 1 <= config.archives.page_size <= config.max_entries:
        raise ConfigError(
            src,
            "archives.page_size",
            f"must be from 1 to max_entries ({config.max_entries}): "
            "a page is cut from the entries the feed no longer holds",
        )


def _check_hubs(config: Config) -> None:
    """Each hub is published in every feed: an absolute, plain ASCII http(s) URL, listed once."""
    src = config.source
    seen: set[str] = set()
    for i, hub in enumerate(config.websub.hubs):
        key = f"websub.hubs[{i}]"
        try:
            parts = urlsplit(hub)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            raise ConfigError(src, key, "not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(src, key, "must be an absolute http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(src, key, "must not contain a user name or password (every feed shows it)")
        if not _URL_CHARS.match(hub) or parts.fragment or hub.endswith("#"):
            raise ConfigError(
                src, key, "must be a plain ASCII URL without spaces or a fragment (percent-encode the rest)"
            )
        if hub in seen:
            raise ConfigError(src, key, "is listed twice")
        seen.add(hub)


def _check_audience(config: Config) -> None:
    src, audience = config.source, config.audience
    if not 1 <= audience.window_hours <= MAX_WINDOW_HOURS:
        raise ConfigError(src, "audience.window_hours", f"must be from 1 to {MAX_WINDOW_HOURS:.0f} (a year)")
    if audience.max_rows < 1:
        raise ConfigError(src, "audience.max_rows", "must be at least 1")
    if not 0 < audience.flush_seconds <= MAX_FLUSH_SECONDS:
        raise ConfigError(src, "audience.flush_seconds", f"must be positive, at most {MAX_FLUSH_SECONDS:.0f}")


def _default_page_size(config: Config, data: dict[Any, Any]) -> ArchivesConfig:
    """archives with the default page size fitted to a small max_entries.

    A file that sets max_entries below 25 and says nothing of archives must
    keep working; a page_size it states is checked as given.
    """
    section = data.get("archives")
    if isinstance(section, dict) and "page_size" in section:
        return config.archives
    default = ArchivesConfig().page_size
    return dataclasses.replace(config.archives, page_size=min(default, max(1, config.max_entries)))


def base_url(config: Config) -> str:
    """site.base_url in canonical form, ending in exactly one "/".

    `load_config` stores it that way already; this also covers a `Config`
    built in code.
    """
    return canonical_base_url(config.site.base_url or DEFAULT_BASE_URL, config.source)


def _resolve(base: Path, p: Path) -> Path:
    """`p` against the config file's folder; a leading ``~`` is the home folder, as in a shell."""
    p = p.expanduser()
    return p if p.is_absolute() else base / p
