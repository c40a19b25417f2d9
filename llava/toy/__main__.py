"""Command line: ``python -m llava.toy build [--out DIR] [--seed N] [--force]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llava.toy.world import build_world


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and build the world."""
    parser = argparse.ArgumentParser(prog="python -m llava.toy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the tiny offline world (reused when up to date)")
    build.add_argument("--out", default="playground/toy", help="world folder (default: playground/toy)")
    build.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    build.add_argument("--force", action="store_true", help="rebuild even if an up-to-date world exists")
    args = parser.parse_args(argv)
    world = build_world(args.out, seed=args.seed, force=args.force, log=lambda msg: print(msg, flush=True))
    print(f"[toy] root: {world.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
