"""The README's worked deconvnet example: project the strongest layer-5 unit of ``hed-vgg16``.

The same as ``deconv project --model hed-vgg16 --image coffee --layer 5 --out results/``: one
call of :func:`deconv.plots.save_strongest_projections`, which writes
``results/project_hed-vgg16_coffee_layer5.png`` (image with the unit's receptive field, the
projection, both cropped to the field) and ``.json`` (the unit and its activation).

Usage: ``python experiments/project_example.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse

import deconv
from deconv.plots import save_strongest_projections
from deconv.samples import sample_images


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``--quick`` projects on a 112 px input into ``results/quick``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: results)")
    parser.add_argument("--quick", action="store_true", help="112 px input, results/quick")
    args = parser.parse_args(argv)
    out = args.out or ("results/quick" if args.quick else "results")
    loaded = deconv.load_model("hed-vgg16")
    image = loaded.preprocess(sample_images(["coffee"])[0].image, 112 if args.quick else None)
    record = save_strongest_projections(loaded, image, 5, out, image_name="coffee")
    print(f"wrote {record['png']} and {record['json']}")
    return record


if __name__ == "__main__":
    main()
