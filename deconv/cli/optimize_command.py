"""``deconv optimize``: feature visualization by optimization of one feature map.

Example::

    deconv optimize --model hed-vgg16 --layer 3 --channel 41 --out results/opt
    deconv optimize --model hed-vgg16 --layer 5 --channel 188 --both --size 128 --out out/
    deconv optimize --model efficientnet-lite0 --layer 9 --channel 7 --negative --out out/

Optimizes an image (Olah et al., Distill 2017: Fourier + decorrelated colour parametrization,
pad/jitter/scale/rotation robustness, Adam) so the mean of the feature map is as large as
possible, or with ``--negative`` as small as possible (``--both``: the two together). For an
activation layer (ReLU, ReLU6, ...) the map's pre-activation is optimized, so the negative
optimum is meaningful (``--post-activation`` reads the output instead). Writes one PNG per
image and ``optimize.json`` (settings, objective before/after, timings).
"""

from __future__ import annotations

import argparse
import json

from deconv.cli.arguments import LAYER_HELP, layer_of, nonnegative_int, positive_int
from deconv.validation import check_channel, check_output_dir
from deconv.zoo import list_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``optimize`` subcommand."""
    p = sub.add_parser("optimize", help="feature visualization by optimization (Olah et al.)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model")
    p.add_argument("--layer", required=True, help=LAYER_HELP)
    p.add_argument("--channel", required=True, type=nonnegative_int,
                   help="feature map (channel) index")
    sign = p.add_mutually_exclusive_group()
    sign.add_argument("--negative", action="store_true", help="minimize (negative optimum)")
    sign.add_argument("--both", action="store_true", help="positive and negative optima")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--neuron", type=nonnegative_int, nargs=2, metavar=("Y", "X"), default=None,
                   help="optimize one unit at (Y, X) of the feature map instead of its mean")
    p.add_argument("--post-activation", action="store_true",
                   help="read the activation layer's output, not its pre-activation")
    p.add_argument("--size", type=positive_int, default=128, help="image side (default 128)")
    p.add_argument("--steps", type=positive_int, default=128, help="Adam steps (default 128)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="images per sign, made distinct by a diversity term")
    p.add_argument("--diversity", type=float, default=100.0,
                   help="weight of the diversity term when --batch > 1 (default 100)")
    p.add_argument("--parametrization", choices=["fourier", "pixel"], default="fourier")
    p.add_argument("--no-decorrelate", action="store_true", help="optimize in plain RGB")
    p.add_argument("--no-transforms", action="store_true", help="no transformation robustness")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Optimize and write the images."""
    import deconv
    from deconv.optimization import (
        channel,
        diversity,
        evaluate,
        is_activation_layer,
        neuron,
        optima_objectives,
        per_image,
        visualize_feature,
    )
    from deconv.plots.optima import save_image

    out = check_output_dir(args.out, create=False)
    loaded = deconv.load_model(args.model, device=args.device)
    name = layer_of(loaded, args.layer)
    check_channel(args.channel, _channels(loaded, name, args.size, args.device), name)
    pre = not args.post_activation and is_activation_layer(loaded, name)
    if args.neuron:
        unit = neuron(name, args.channel, *args.neuron, pre_activation=pre)
        positive, negative = unit, -unit
    else:
        positive, negative = optima_objectives(loaded, name, args.channel, args.post_activation)
    signs = ["positive", "negative"] if args.both else \
        ["negative" if args.negative else "positive"]
    objectives, labels = [], []
    for s in signs:
        for i in range(args.batch):
            objectives.append(positive if s == "positive" else negative)
            labels.append((s, i))
    objective = objectives
    if args.batch > 1:
        objective = per_image(objectives) - args.diversity * diversity(name, pre_activation=pre)
    result = visualize_feature(
        loaded, objective, batch=len(objectives), size=args.size, steps=args.steps, lr=args.lr,
        parametrization=args.parametrization, decorrelate=not args.no_decorrelate,
        transforms=None if args.no_transforms else "standard", seed=args.seed,
        device=args.device, progress=not args.no_progress)
    inputs = loaded.normalize(result.images.to(args.device))
    means = evaluate(loaded, channel(name, args.channel), inputs).cpu()
    pre_means = (evaluate(loaded, channel(name, args.channel, pre_activation=True), inputs).cpu()
                 if pre else means)
    check_output_dir(out)
    stem = f"{args.model}_{name}_{args.channel}".replace(".", "-")
    record = {"model": args.model, "layer": name, "channel": args.channel,
              "objectives": {"positive": positive.name, "negative": negative.name},
              "pre_activation": pre,
              "seconds": round(result.seconds, 1), "settings": result.settings, "images": []}
    for j, (s, i) in enumerate(labels):
        file = f"{stem}_{s}" + (f"_{i}" if args.batch > 1 else "") + ".png"
        save_image(result.images[j], out / file)
        record["images"].append({"file": file, "sign": s, "feature_map_mean": float(means[j]),
                                 "pre_activation_mean": float(pre_means[j])})
        print(f"{s} optimum -> {out / file} (feature-map mean {float(means[j]):.4g}"
              + (f", pre-activation mean {float(pre_means[j]):.4g})" if pre else ")"))
    (out / "optimize.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"optimized {len(labels)} image(s) in {result.seconds:.1f} s")
    return 0


def _channels(loaded, name: str, size: int, device: str) -> int:
    """Channels of layer ``name`` on a ``size`` x ``size`` input (one forward of zeros)."""
    import torch

    from deconv.mining.taps import channel_counts

    param = next(loaded.model.parameters())
    conv = next((m for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    zeros = torch.zeros(1, channels, size, size, device=device, dtype=param.dtype)
    return channel_counts(loaded, zeros, [name])[name]
