"""``python -m feedsvc.synth OUT --count N [--seed S] [--topics T] [--providers P]``."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from feedsvc.synth.corpus import write_corpus


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
