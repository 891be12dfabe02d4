"""``deconv`` command line: one module per subcommand, each with ``register(subparsers)``.

Exit status: 0 on success; 2 for a usage error or a refused input (a
:class:`deconv.errors.DeconvError`), printed as one line ``deconv <command>: error: ...``. Any
other exception is a bug in ``deconv`` and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deconv.errors import DeconvError, UsageError

# Subcommand modules, in the order ``deconv --help`` lists them.
SUBCOMMANDS = ["models", "project", "topk", "occlude", "optimize", "compare", "atlas"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting, so
    :func:`main` prints them in one line and returns 2 (also when called in-process)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = _Parser(
        prog="deconv", description="Deconvnet, occlusion and feature analyses for PyTorch CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"deconv.cli.{name}_command").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deconv`` console script; returns the exit status."""
    command = "deconv"
    try:
        args = build_parser().parse_args(argv)
        command = f"deconv {args.command}"
        return int(args.func(args) or 0)
    except DeconvError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
