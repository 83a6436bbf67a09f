"""The records themselves: the text of record number N, and a folder of them.

Each record gets its own ``random.Random`` seeded from ``(seed, index)`` and
draws from the shared `Vocabulary`, so a record depends only on
``(index, seed, topics, providers)`` and can be regenerated alone.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import random

from feedsvc.synth.vocabulary import (
    RELATED_BITS,
    RELATED_WINDOW_SECONDS,
    SPAN_SECONDS,
    Provider,
    Vocabulary,
    between,
    images_yaml,
    phrase_ids,
    pick,
    stamp,
    text_q,
    url_slug,
    vocabulary,
    zipf_pick,
)
from feedsvc.synth.words import CATEGORIES, IMAGE_COUNTS, RELATED_COUNTS, TYPES


def record_rng(seed: int, index: int) -> random.Random:
    """Per-record generator: string seeding goes through SHA-512, hence portable."""
    return random.Random(f"{seed}:{index}")


def file_name(index: int, seed: int) -> str:
    """``NNNNNN_<16 hex>.txt``; the hex is a stable digest of (seed, index)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).hexdigest()
    return f"{index:06d}_{digest}.txt"


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
