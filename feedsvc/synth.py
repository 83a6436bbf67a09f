"""Deterministic synthetic corpus of news records, for tests and benchmarks.

Each record is a text file holding only YAML front matter between ``---`` lines,
shaped like the real feed records the service ingests (category, title, excerpt,
dates, URLs, provider, topics, images, related items and an opaque ``secured``
blob that must never leak into any output).

Why a generator instead of checked-in fixtures: scale tests need 10^5 records,
and tests need to regenerate or tweak a single record cheaply.  So every record
depends only on ``(index, seed, topics, providers)``: each one gets its own
``random.Random`` seeded from ``(seed, index)``, and the vocabularies (topics,
providers, text phrases) depend on the seed alone.  Nothing reads the clock,
``hash()`` of a string, or set iteration order, so the bytes are identical on
every machine.

Why phrases rather than words: text is assembled from a seed-derived pool of
pre-escaped short phrases, so a record costs a handful of random draws and no
per-string escaping; 100,000 records generate in a few seconds.

    python -m feedsvc.synth OUT --count N [--seed S] [--topics T] [--providers P]
"""

from __future__ import annotations

import argparse
import base64
import bisect
import dataclasses
import functools
import hashlib
import itertools
import pathlib
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["record_text", "write_corpus", "main"]

# Naive datetimes are UTC throughout; isoformat() of a whole-second naive
# datetime is exactly YYYY-MM-DDTHH:MM:SS, and it is much cheaper than strftime.
EPOCH = datetime(2023, 1, 1)
SPAN_SECONDS = 3 * 365 * 86400
RELATED_WINDOW_SECONDS = 72 * 3600

PHRASE_BITS = 12  # pool of 4096 phrases; three phrases give ~6.9e10 titles
RELATED_BITS = 13  # pool of 8192 related stories, shared across records as in real feeds

# Plain lower-case ASCII vocabulary: text, URL slugs and provider domains.
WORDS: tuple[str, ...] = tuple(
    """
    police facial recognition database driver licence privacy campaigners clause
    criminal justice bill minister surveillance commissioner biometrics cameras crowd
    court ruling government data protection regulator algorithm bias accuracy trial
    deployment council city streets retail stores airport border passport scheme
    contract supplier vendor study researchers university sensors wireless voice
    muscle movement dataset open model training benchmark startup funding chip cloud
    platform update release security breach leak hackers ransomware patch network
    outage energy battery climate report election campaign satellite launch rocket
    vaccine hospital patients doctors robots factory workers union strike market
    shares investors bank lending inflation housing prices schools teachers exams
    drone camera software hardware quantum processor memory smartphone browser search
    engine app store subscription streaming music film festival football league
    transfer weather storm flood wildfire drought harvest farmers water pipeline
    """.split()
)

# Occasional tokens that exercise YAML quoting and non-ASCII text: quotes,
# backslashes, colons, ampersands, typographic punctuation and other scripts.
SPICE: tuple[str, ...] = (
    '"exclusive"',
    '"no plans"',
    "AT&T",
    "50%",
    "#1",
    "Zürich",
    "café",
    "naïve",
    "São Paulo",
    "Kraków",
    "driver’s",
    "—",
    "C:\\data",
    "a\\b",
    "Q&A:",
    "[update]",
    "{draft}",
    "it's",
    "100,000",
    "2.0",
    "–",
    "Москва",
    "東京",
    "résumé",
)
SPICE_RATE = 0.05  # share of pool phrases carrying one SPICE token

# Named topics in several scripts, interleaved so that even a small vocabulary
# keeps some non-Latin names; "Topic N" fills the rest up to the requested size.
NAMED_TOPICS: tuple[str, ...] = (
    "AI",
    "Computer Vision",
    "Künstliche Intelligenz",
    "Privacy",
    "人工知能",
    "Security",
    "Vie privée",
    "Policy",
    "Право",
    "Biometrics",
    "الذكاء الاصطناعي",
    "Robotics",
    "Seguridad",
    "Machine Learning",
    "Cloud",
    "Chips",
    "Startups",
    "Energy",
    "Climate",
    "Health",
    "Transport",
    "Space",
    "Open Source",
    "Mobile",
    "Web",
    "Data",
    "Finance",
    "Law",
    "Education",
    "Media",
    "Gaming",
    "Quantum",
    "Networking",
    "Hardware",
    "Science",
    "Surveillance",
    "Smart Cities",
    "Drones",
    "Ethics",
    "Research",
    "Retail",
    "Automotive",
    "Telecom",
    "Crypto",
    "Agriculture",
    "Manufacturing",
    "Defense",
    "Elections",
    "Datenschutz",
    "Intelligence artificielle",
    "Кибербезопасность",
    "ロボット",
    "الخصوصية",
    "Inteligencia artificial",
    "Ciberseguridad",
    "Gesundheit",
)

TLDS: tuple[str, ...] = (
    "com",
    "com",
    "com",
    "co.uk",
    "net",
    "org",
    "io",
    "de",
    "fr",
    "news",
    "com.au",
    "jp",
    "es",
    "it",
    "ca",
    "in",
    "tech",
    "ru",
    "ae",
)
NAME_STYLES: tuple[str, ...] = (
    "{W}",
    "{W} News",
    "The {W} Times",
    "{W} Daily",
    "{W} Update",
    "{W} Wire",
    "The {W}",
    "{W}'s Review",
    "news.{w}",
    "{W} Zeitung",
    "Le {W}",
    "{W} Über",
    'The "{W}" Post',
    "{W} \\ Tech",
)

CATEGORIES: tuple[str, ...] = ("news", "news", "news", "analysis", "opinion", "review")
TYPES: tuple[str, ...] = ("article", "article", "article", "video", "podcast")
IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (1200, 675),
    (620, 372),
    (2048, 1333),
    (2560, 1440),
    (619, 377),
    (800, 450),
)
IMAGE_COUNTS: tuple[int, ...] = (0, 1, 1, 1, 2, 3)
RELATED_COUNTS: tuple[int, ...] = (0, 1, 2, 3, 3, 4, 5)
RELATED_IMAGE_COUNTS: tuple[int, ...] = (0, 0, 1, 1, 1, 2)

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


def record_rng(seed: int, index: int) -> random.Random:
    """Per-record generator: string seeding goes through SHA-512, hence portable."""
    return random.Random(f"{seed}:{index}")


def file_name(index: int, seed: int) -> str:
    """``NNNNNN_<16 hex>.txt``; the hex is a stable digest of (seed, index)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).hexdigest()
    return f"{index:06d}_{digest}.txt"


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


def related_yaml(rng: random.Random, vocab: Vocabulary, when: int, count: int) -> str:
    """YAML list items for ``count`` pooled stories dated within 72h of ``when``."""
    bits = rng.getrandbits
    items = []
    for _ in range(count):
        story = vocab.related[bits(RELATED_BITS)]
        moment = stamp(when + between(rng, -RELATED_WINDOW_SECONDS, RELATED_WINDOW_SECONDS))
        items.append(f"{story.head}{moment}{story.tail}")
    return "\n".join(items)


def secured_blob(rng: random.Random) -> str:
    """Opaque secret: 300-500 random bytes, ``;``, 16 more bytes, all base64.

    It is long and random so that a test can search any output for it (or a
    slice of it) and be sure a hit is a real leak, never a coincidence.
    """
    body = base64.b64encode(rng.randbytes(between(rng, 300, 500))).decode("ascii")
    tail = base64.b64encode(rng.randbytes(16)).decode("ascii")
    return f"{body};{tail}"


def record_text(index: int, *, seed: int = 1, topics: int = 60, providers: int = 800) -> str:
    """The text of record number `index` — depends only on (index, seed, topics, providers),
    so a single record can be regenerated or modified in tests without writing the whole corpus."""
    vocab = vocabulary(seed, topics, providers)
    rng = record_rng(seed, index)
    source: Provider = zipf_pick(rng, vocab.providers, vocab.provider_cum)
    when = between(rng, 0, SPAN_SECONDS - 1)
    published_at = stamp(when)
    title = phrase_ids(rng, 3, 5)
    month = published_at[:7].replace("-", "/")
    url = f"https://{source.domain}/{month}/{url_slug(vocab, title)}-{index}"
    heat = between(rng, 0, 1000) if rng.random() < 0.4 else -1
    picked = [zipf_pick(rng, vocab.topics_q, vocab.topic_cum) for _ in range(between(rng, 1, 4))]
    topic_items = "\n".join([f"  - {t}" for t in dict.fromkeys(picked)])  # ordered de-dup

    parts = [
        "---\n"
        f'category: "{pick(rng, CATEGORIES)}"\n'
        f'title: "{text_q(vocab, title)}"\n'
        f'excerpt: "{text_q(vocab, phrase_ids(rng, 8, 16), ".")}"\n'
        f"publishedDateTime: {published_at}\n"
        f'originalUrl: "{url}"\n'
        f'webUrl: "{url}"\n'
        f'type: "{pick(rng, TYPES)}"\n'
        f"quality: {between(rng, 0, 100)}\n"
        f"heat: {heat}\n"
        f"published: {'true' if rng.random() < 0.5 else 'false'}\n"
        "\n"
        "provider:\n"
        f"  name: {source.name_q}\n"
        f"  domain: {source.domain_q}\n"
        "\n"
        f"topics:\n{topic_items}\n"
    ]
    n_images = pick(rng, IMAGE_COUNTS)
    if n_images:
        parts.append(f"\nimages:\n{images_yaml(rng, source.domain, str(index), n_images, '  ')}\n")
    n_related = pick(rng, RELATED_COUNTS)
    if n_related:
        parts.append(f"\nrelated:\n{related_yaml(rng, vocab, when, n_related)}\n")
    parts.append(f'\nsecured: "{secured_blob(rng)}"\n---\n')
    return "".join(parts)


def write_corpus(
    out_dir: pathlib.Path,
    count: int,
    *,
    seed: int = 1,
    topics: int = 60,
    providers: int = 800,
    start_index: int = 0,
) -> list[pathlib.Path]:
    """Write `count` record files into out_dir (created if needed); return their paths in order."""
    if count < 0 or start_index < 0:
        raise ValueError("count and start_index must be non-negative")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[pathlib.Path] = []
    for index in range(start_index, start_index + count):
        path = out_dir / file_name(index, seed)
        data = record_text(index, seed=seed, topics=topics, providers=providers).encode("utf-8")
        # Binary mode: no newline translation, so every OS writes the same bytes.
        with open(path, "wb") as handle:
            handle.write(data)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m feedsvc.synth OUT --count N ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m feedsvc.synth",
        description="Write a deterministic synthetic corpus of news records.",
    )
    parser.add_argument("out", type=pathlib.Path, help="output directory (created if needed)")
    parser.add_argument("--count", type=int, required=True, help="number of records")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--topics", type=int, default=60, help="topic vocabulary size")
    parser.add_argument("--providers", type=int, default=800, help="provider vocabulary size")
    args = parser.parse_args(argv)
    if args.count < 0 or args.topics < 1 or args.providers < 1:
        parser.error("--count must be >= 0; --topics and --providers must be >= 1")
    paths = write_corpus(args.out, args.count, seed=args.seed, topics=args.topics, providers=args.providers)
    print(f"wrote {len(paths)} records to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
