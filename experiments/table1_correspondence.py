"""Table 1 / Fig. 8 (Zeiler & Fergus 2014): correspondence of object parts across images.

For 5 face images (``deconv/data/face_landmarks.json``: astronaut, grace_hopper, chelsea the
cat, and mirrored crops of the two human faces) occlude the right eye, the left eye, the nose
or a random box of the same size with the model's mean pixel, take ``eps = features(original)
- features(occluded)`` at a mid and a top layer and report ``Delta`` (mean +- std over the
image pairs of the normalized Hamming distance between sign vectors), beside the paper's.

Writes ``table1_correspondence.json``, ``table1_correspondence.md`` and
``fig8_faces.png`` (the images with their boxes) under ``--out``.

Usage: ``python experiments/table1_correspondence.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import deconv  # noqa: E402
from deconv.correspondence import (  # noqa: E402
    PARTS,
    correspondence_delta,
    face_images,
    layer_features,
    occlude_boxes,
    random_boxes,
)
from deconv.layers import resolve_layer  # noqa: E402

# The paper's Table 1 (mean +- std): layer 5 and layer 7 of their ImageNet model, 5 dog images.
PAPER = {
    "layer 5": {"right_eye": [0.067, 0.007], "left_eye": [0.069, 0.007], "nose": [0.079, 0.017],
                "random": [0.107, 0.017]},
    "layer 7": {"right_eye": [0.069, 0.015], "left_eye": [0.068, 0.013], "nose": [0.069, 0.011],
                "random": [0.073, 0.014]},
}
# (model, mid layer, top layer): efficientnet-lite0 paper layer 5 = stages.3 (14x14x80, linear
# bottleneck), top = the global-average-pooled 1280-d head (the fc7 analogue); hed-vgg16: conv4_3
# and conv5_3 (rectified), it has no fully connected layers.
DEFAULT_MODELS = [("efficientnet-lite0", "stages.3", "pool"), ("hed-vgg16", "22", "29")]


def main(argv: list[str] | None = None) -> dict:
    """Compute the table, write JSON / markdown / figure; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; --quick: results/quick)")
    parser.add_argument("--quick", action="store_true", help="one model, 3 random draws")
    parser.add_argument("--random-draws", type=int, default=10,
                        help="random-box draws (each draws one box per image)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    models = DEFAULT_MODELS[:1] if args.quick else DEFAULT_MODELS
    draws = 3 if args.quick else args.random_draws
    faces = face_images(224)
    pixels = torch.stack([f.pixels for f in faces])
    sizes = [_mean_part_size(f.boxes) for f in faces]
    generator = torch.Generator().manual_seed(args.seed)
    random_sets = [random_boxes(sizes, 224, generator) for _ in range(draws)]

    record = {"paper": PAPER, "images": {f.name: {"description": f.description,
                                                  "boxes": {k: list(v) for k, v in
                                                            f.boxes.items()}} for f in faces},
              "settings": {"size": 224, "fill": "the model's mean pixel (0 after normalizing)",
                           "random_draws": draws, "seed": args.seed,
                           "random_box": "per image, the mean size of its three part boxes, at "
                                         "a uniform random position; pairs pooled over draws",
                           "std": "population std over the 10 image pairs (random: over all "
                                  "pairs of all draws)"},
              "models": {}}
    for name, mid, top in models:
        loaded = deconv.load_model(name)
        images = loaded.normalize(pixels)
        layers = [resolve_layer(loaded, mid), resolve_layer(loaded, top)]
        result = {layer: {} for layer in layers}
        before = layer_features(loaded, images, layers)

        def differences(boxes, before=before, images=images, loaded=loaded, layers=layers):
            after = layer_features(loaded, occlude_boxes(images, boxes), layers)
            return {layer: before[layer] - after[layer] for layer in layers}

        for part in PARTS:
            eps = differences([f.boxes[part] for f in faces])
            for layer in layers:
                stats = correspondence_delta(eps[layer])
                result[layer][part] = {"mean": stats.mean, "std": stats.std,
                                       "pairs": stats.pairs}
        pooled = {layer: [] for layer in layers}
        for boxes in random_sets:
            eps = differences(boxes)
            for layer in layers:
                pooled[layer].extend(correspondence_delta(eps[layer]).pairs)
        for layer in layers:
            values = torch.tensor(pooled[layer], dtype=torch.float64)
            result[layer]["random"] = {"mean": float(values.mean()),
                                       "std": float(values.std(unbiased=False)),
                                       "pairs": len(values)}
        record["models"][name] = {"mid_layer": layers[0], "top_layer": layers[1],
                                  "source": loaded.source, "delta": result}
        print(f"{name}: " + "; ".join(
            f"{layer} " + ", ".join(f"{p} {result[layer][p]['mean']:.3f}"
                                    for p in (*PARTS, "random")) for layer in layers))
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "table1_correspondence.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "table1_correspondence.md").write_text(_markdown(record))
    _figure(faces, random_sets[0], out / "fig8_faces.png")
    print(f"wrote {out / 'table1_correspondence.md'} in {record['seconds']} s")
    return record


def _mean_part_size(boxes: dict) -> tuple[int, int]:
    widths = [b[2] - b[0] for b in (boxes[p] for p in PARTS)]
    heights = [b[3] - b[1] for b in (boxes[p] for p in PARTS)]
    return round(sum(widths) / len(widths)), round(sum(heights) / len(heights))


def _cell(entry: dict) -> str:
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}"


def _markdown(record: dict) -> str:
    lines = ["# Table 1: correspondence (Delta, lower = more consistent)", "",
             "Paper: Zeiler & Fergus 2014, 5 frontal dog images, their ImageNet model. Ours: "
             f"{len(record['images'])} face images ({', '.join(record['images'])}), occluded "
             "with the mean pixel; mean ± std over image pairs.", ""]
    header = ["part", "paper layer 5", "paper layer 7"]
    columns = []
    for model, entry in record["models"].items():
        for key in ("mid_layer", "top_layer"):
            header.append(f"{model} `{entry[key]}`")
            columns.append(entry["delta"][entry[key]])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for part in (*PARTS, "random"):
        paper = [f"{record['paper'][k][part][0]:.3f} ± {record['paper'][k][part][1]:.3f}"
                 for k in ("layer 5", "layer 7")]
        lines.append("| " + " | ".join([part.replace("_", " ")] + paper +
                                       [_cell(c[part]) for c in columns]) + " |")
    draws = record["settings"]["random_draws"]
    lines += ["", "Random: " + record["settings"]["random_box"] + f" ({draws} draws).",
              "Images: " + "; ".join(f"{k}: {v['description']}" for k, v in
                                     record["images"].items()), ""]
    return "\n".join(lines)


def _figure(faces, random_set, path: Path) -> None:
    colors = {"right_eye": "tab:red", "left_eye": "tab:blue", "nose": "tab:green",
              "random": "white"}
    fig, axes = plt.subplots(1, len(faces), figsize=(2.2 * len(faces), 2.6), dpi=80)
    for ax, face, rbox in zip(axes, faces, random_set):
        ax.imshow(face.pixels.permute(1, 2, 0).numpy())
        for part, box in [*face.boxes.items(), ("random", rbox)]:
            x0, y0, x1, y1 = box
            ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       lw=1.5, ls="--" if part == "random" else "-",
                                       color=colors[part]))
        ax.set_title(face.name, fontsize=8)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=2, ls="--" if p == "random" else "-")
               for p, c in colors.items()]
    fig.legend(handles, [p.replace("_", " ") + (" (one draw)" if p == "random" else "")
                         for p in colors], loc="lower center", ncol=4, fontsize=7,
               facecolor="0.7")
    fig.suptitle("Fig. 8 analogue: occluded parts (subject's right/left eye, nose) and a random "
                 "box", fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
