"""What the records of one corpus share: seed-derived pools, and the draws and YAML pieces they are made of.

A `Vocabulary` depends on (seed, topics, providers) alone and is built once
per argument set: topic names, providers, a pool of phrases and a pool of
related stories, all rendered and escaped up front, so that a record
(`corpus.py`) costs a handful of random draws and string joins.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from feedsvc.synth.words import (
    IMAGE_SIZES,
    NAME_STYLES,
    NAMED_TOPICS,
    RELATED_IMAGE_COUNTS,
    SPICE,
    SPICE_RATE,
    TLDS,
    TYPES,
    WORDS,
)

# Naive datetimes are UTC throughout; isoformat() of a whole-second naive
# datetime is exactly YYYY-MM-DDTHH:MM:SS, and it is much cheaper than strftime.
EPOCH = datetime(2023, 1, 1)
SPAN_SECONDS = 3 * 365 * 86400
RELATED_WINDOW_SECONDS = 72 * 3600

PHRASE_BITS = 12  # pool of 4096 phrases; three phrases give ~6.9e10 titles
RELATED_BITS = 13  # pool of 8192 related stories, shared across records as in real feeds

_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Provider:
    """A news source, with its YAML-quoted forms rendered once."""

    name: str
    domain: str
    name_q: str
    domain_q: str


@dataclass(frozen=True, slots=True)
class RelatedStory:
    """A pre-rendered related item; only its date is filled in per record."""

    head: str  # YAML up to and including "publishedDateTime: "
    tail: str  # the rest of the item, starting with a newline


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Everything shared by the records of one (seed, topics, providers).

    Cumulative Zipf weights are precomputed so that each heavy-tailed pick is a
    single ``rng.random()`` plus a bisect; phrases and names are stored already
    quoted/escaped because escaping distributes over concatenation.  Related
    stories come from a pre-rendered pool: that keeps 100,000 records within a
    few seconds, and real feeds do attach the same story to many records.
    """

    topics_q: tuple[str, ...]
    topic_cum: tuple[float, ...]
    providers: tuple[Provider, ...]
    provider_cum: tuple[float, ...]
    phrases_q: tuple[str, ...]
    phrase_slugs: tuple[str, ...]
    related: tuple[RelatedStory, ...] = ()


def escape(value: str) -> str:
    """Escape for the inside of a YAML double-quoted scalar (no control chars occur)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def quoted(value: str) -> str:
    """Render a YAML double-quoted scalar."""
    return f'"{escape(value)}"'


def slug(text: str) -> str:
    """URL path segment: lower-case ASCII alphanumerics joined by dashes."""
    return _SLUG_JUNK.sub("-", text.lower()).strip("-")


def between(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] from one ``random()`` draw.

    ``randint``/``choice`` cost ~2 us each in pure Python, which would dominate
    the cost of a record.  A 53-bit float draw is just as portable and exact
    enough for the ranges used here (at most ~10^8).
    """
    return lo + int(rng.random() * (hi - lo + 1))


def pick(rng: random.Random, items: Sequence):
    """Uniform choice from one ``random()`` draw (see ``between``)."""
    return items[int(rng.random() * len(items))]


def zipf_cumulative(n: int, exponent: float) -> tuple[float, ...]:
    """Cumulative weights 1/k**s: a few items carry most records, as in real news."""
    return tuple(itertools.accumulate(1.0 / (k + 1) ** exponent for k in range(n)))


def zipf_pick(rng: random.Random, items: Sequence, cum: Sequence[float]):
    """Pick one item with the heavy-tailed weights in ``cum``."""
    return items[bisect.bisect(cum, rng.random() * cum[-1])]


def make_topics(seed: int, count: int) -> tuple[str, ...]:
    """Topic names in popularity order; which topic leads depends on the seed."""
    names = list(NAMED_TOPICS[:count])
    names += [f"Topic {i}" for i in range(1, count - len(names) + 1)]
    random.Random(f"topics:{seed}").shuffle(names)
    return tuple(names)


def make_providers(seed: int, count: int) -> tuple[Provider, ...]:
    """Providers with varied name styles and TLDs; domains are unique."""
    rng = random.Random(f"providers:{seed}")
    used: set[str] = set()  # membership tests only; never iterated
    out: list[Provider] = []
    for i in range(count):
        stem = rng.choice(WORDS) + rng.choice(WORDS)
        domain = f"{stem}.{rng.choice(TLDS)}"
        if domain in used:
            domain = f"{stem}{i}.{rng.choice(TLDS)}"
        used.add(domain)
        name = rng.choice(NAME_STYLES).format(W=stem.capitalize(), w=stem)
        out.append(Provider(name, domain, quoted(name), quoted(domain)))
    return tuple(out)


def make_phrases(seed: int) -> list[str]:
    """Pool of short word runs (1-4 words), a few carrying an awkward token."""
    rng = random.Random(f"phrases:{seed}")
    pool: list[str] = []
    for _ in range(1 << PHRASE_BITS):
        words = rng.choices(WORDS, k=rng.randint(1, 4))
        if rng.random() < SPICE_RATE:
            words.insert(rng.randrange(len(words) + 1), rng.choice(SPICE))
        pool.append(" ".join(words))
    return pool


@functools.lru_cache(maxsize=8)
def vocabulary(seed: int, topics: int, providers: int) -> Vocabulary:
    """Build (once per argument set) the vocabularies shared by all records."""
    if topics < 1 or providers < 1:
        raise ValueError("topics and providers must be at least 1")
    phrases = make_phrases(seed)
    base = Vocabulary(
        topics_q=tuple(quoted(t) for t in make_topics(seed, topics)),
        topic_cum=zipf_cumulative(topics, 0.9),
        providers=make_providers(seed, providers),
        provider_cum=zipf_cumulative(providers, 1.1),
        phrases_q=tuple(escape(p) for p in phrases),
        phrase_slugs=tuple(slug(p) for p in phrases),
    )
    return dataclasses.replace(base, related=make_related(seed, base))


def phrase_ids(rng: random.Random, lo: int, hi: int) -> list[int]:
    """Indices of ``lo``..``hi`` phrases from the pool."""
    bits = rng.getrandbits
    return [bits(PHRASE_BITS) for _ in range(between(rng, lo, hi))]


def text_q(vocab: Vocabulary, ids: list[int], end: str = "") -> str:
    """Escaped, capitalised sentence from phrase ids (ready to go inside quotes)."""
    text = " ".join([vocab.phrases_q[i] for i in ids]) + end
    return text[0].upper() + text[1:]


def url_slug(vocab: Vocabulary, ids: list[int]) -> str:
    """Slug matching the title built from the same phrase ids."""
    return "-".join([s for s in [vocab.phrase_slugs[i] for i in ids] if s]) or "story"


def stamp(offset_seconds: int) -> str:
    """Feed timestamp ``YYYY-MM-DDTHH:MM:SSZ`` for seconds since EPOCH (UTC)."""
    return (EPOCH + timedelta(seconds=offset_seconds)).isoformat() + "Z"


def images_yaml(rng: random.Random, domain: str, key: str, count: int, indent: str) -> str:
    """YAML list items for ``count`` images hosted under ``domain``."""
    items = []
    for k in range(count):
        width, height = pick(rng, IMAGE_SIZES)
        cached = "true" if rng.random() < 0.8 else "false"
        items.append(
            f'{indent}- url: "https://img.{domain}/{key}/{k}.jpg?width={width}&quality=85"\n'
            f"{indent}  width: {width}\n"
            f"{indent}  height: {height}\n"
            f"{indent}  isCached: {cached}"
        )
    return "\n".join(items)


def make_related(seed: int, vocab: Vocabulary) -> tuple[RelatedStory, ...]:
    """Pool of related stories: Zipf-chosen provider, own title, excerpt, images."""
    rng = random.Random(f"related:{seed}")
    pool: list[RelatedStory] = []
    for n in range(1 << RELATED_BITS):
        source: Provider = zipf_pick(rng, vocab.providers, vocab.provider_cum)
        title = phrase_ids(rng, 2, 4)
        head = (
            f'  - title: "{text_q(vocab, title)}"\n'
            f'    excerpt: "{text_q(vocab, phrase_ids(rng, 4, 10), ".")}"\n'
            f"    publishedDateTime: "
        )
        tail = (
            f'\n    webUrl: "https://{source.domain}/news/{url_slug(vocab, title)}-{n}"\n'
            f'    type: "{pick(rng, TYPES)}"\n'
            f"    provider:\n"
            f"      name: {source.name_q}\n"
            f"      domain: {source.domain_q}\n"
            f"    quality: {between(rng, 0, 100)}"
        )
        n_images = pick(rng, RELATED_IMAGE_COUNTS)
        if n_images:
            images = images_yaml(rng, source.domain, f"r{n}", n_images, "      ")
            tail += f"\n    images:\n{images}"
        pool.append(RelatedStory(head, tail))
    return tuple(pool)
