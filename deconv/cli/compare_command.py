"""``deconv compare``: every attribution method (ours and captum's) on your images, side by side.

Writes ``compare.png`` (rows images, columns methods, one display scale) and ``compare.json``
(targets, seconds per image per method and, with ``--metrics``, deletion / insertion AUC) to
``--out``. ``deconv compare --list`` prints the methods and their channel reductions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deconv.cli.arguments import positive_int
from deconv.errors import InvalidArgumentError
from deconv.methods import list_methods
from deconv.validation import check_class_target, check_output_dir
from deconv.zoo import list_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = sub.add_parser("compare", help="attribution maps of every method side by side",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet-lite0", choices=list_models(),
                   help="zoo classifier")
    p.add_argument("--image", action="append", default=None,
                   help="image file, or sample:NAME (repeat for several; default: the samples)")
    p.add_argument("--methods", nargs="+", default=None, choices=list_methods(),
                   metavar="METHOD", help="registry names (default: all; see --list)")
    p.add_argument("--target", default=None,
                   help="class index or name for every image (default: each image's top-1)")
    p.add_argument("--ig-steps", type=positive_int, default=16,
                   help="integrated-gradients steps")
    p.add_argument("--patch", type=positive_int, default=32,
                   help="occlusion square side (pixels)")
    p.add_argument("--stride", type=positive_int, default=16, help="occlusion step (pixels)")
    p.add_argument("--metrics", action="store_true",
                   help="also compute deletion / insertion AUC (16 steps) per image")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default="results/compare_cli", help="output directory")
    p.set_defaults(func=run)


def _list() -> int:
    from deconv.methods import method_info

    for name in list_methods():
        info = method_info(name)
        print(f"{name:30s} {info.family:7s} reduction={info.reduction:8s} {info.description}")
    return 0


def _pictures(images: list[str] | None):
    from deconv.samples import open_image, sample_images

    if not images:
        return [(s.name, s.image) for s in sample_images()]
    out = []
    for item in images:
        if item.startswith("sample:"):
            sample = sample_images([item.split(":", 1)[1]])[0]
            out.append((sample.name, sample.image))
        else:
            out.append((Path(item).stem, open_image(item)))
    return out


def _target_ids(loaded, batch, target: str | None) -> list[int]:
    import torch

    if target is None:
        with torch.no_grad():
            return loaded.model(batch).argmax(dim=1).tolist()
    index = check_class_target(target, len(loaded.categories), loaded.categories)
    return [index] * batch.shape[0]


def run(args: argparse.Namespace) -> int:
    """Compute the maps, write the figure and the JSON; returns 0."""
    if args.list:
        return _list()
    import torch
    from tqdm.auto import tqdm

    import deconv
    from deconv.methods import attribute
    from deconv.metrics import deletion, insertion
    from deconv.plots import method_grid, save_figure

    methods = args.methods or list_methods()
    out = check_output_dir(args.out, create=False)
    loaded = deconv.load_model(args.model)
    if loaded.categories is None:
        raise InvalidArgumentError(
            f"model {args.model!r} has no classifier head; choose a classifier")
    pictures = _pictures(args.image)
    batch = torch.stack([loaded.preprocess(p) for _, p in pictures])
    targets = _target_ids(loaded, batch, args.target)
    options = {"captum-integrated-gradients": {"n_steps": args.ig_steps},
               "captum-occlusion": {"patch": args.patch, "stride": args.stride},
               "occlusion": {"patch": args.patch, "stride": args.stride}}
    maps, record = {}, {"model": args.model, "images": [n for n, _ in pictures],
                        "targets": [loaded.categories[t] for t in targets], "methods": {}}
    bar = tqdm(methods, desc="methods", unit="method", disable=args.no_progress)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        maps[name] = attribute(name, loaded, batch, targets, **options.get(name, {})).float()
        entry = {"seconds_per_image": round((time.perf_counter() - start) / len(pictures), 3)}
        if args.metrics:
            entry["deletion_auc"] = [round(deletion(loaded, x, m, t).auc, 4)
                                     for x, m, t in zip(batch, maps[name], targets)]
            entry["insertion_auc"] = [round(insertion(loaded, x, m, t).auc, 4)
                                      for x, m, t in zip(batch, maps[name], targets)]
        record["methods"][name] = entry
        bar.write(f"{name:30s} {entry['seconds_per_image']:.2f} s/image")
    check_output_dir(out)
    labels = [f"{n}\n{loaded.categories[t][:16]}" for (n, _), t in zip(pictures, targets)]
    fig = method_grid(loaded.deprocess(batch), maps, labels, title=f"{args.model}")
    save_figure(fig, out / "compare.png")
    (out / "compare.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out / 'compare.png'} and {out / 'compare.json'}")
    return 0
