"""The README's worked deconvnet example: project the strongest layer-5 unit of ``hed-vgg16``.

Runs ``deconv project --model hed-vgg16 --image coffee --layer 5 --out results/`` (the CLI), which
writes ``results/project_hed-vgg16_layer5.png`` (image with the unit's receptive field, the
projection, both cropped to the field) and ``.json`` (the unit and its activation).

Usage: ``python experiments/project_example.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse

from deconv.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the example; ``--quick`` projects on a 112 px input into ``results/quick``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: results)")
    parser.add_argument("--quick", action="store_true", help="112 px input, results/quick")
    args = parser.parse_args(argv)
    out = args.out or ("results/quick" if args.quick else "results")
    command = ["project", "--model", "hed-vgg16", "--image", "coffee", "--layer", "5",
               "--out", out] + (["--size", "112"] if args.quick else [])
    status = cli_main(command)
    if status:
        raise RuntimeError(f"deconv {' '.join(command)} failed with status {status}")
    return status


if __name__ == "__main__":
    main()
