"""``deconv`` command line: one module per subcommand, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order ``deconv --help`` lists them.
SUBCOMMANDS = ["models", "project", "topk", "occlude", "optimize", "compare"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="deconv", description="Deconvnet, occlusion and feature analyses for PyTorch CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"deconv.cli.{name}_command").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deconv`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as exc:
        print(f"deconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
