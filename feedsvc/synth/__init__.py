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

from feedsvc.synth.corpus import file_name, record_text, write_corpus

__all__ = ["file_name", "record_text", "write_corpus"]
