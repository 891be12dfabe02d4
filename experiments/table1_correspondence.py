"""Table 1 / Fig. 8 (Zeiler & Fergus 2014): correspondence of object parts across images.

For 5 face images (``deconv/data/face_landmarks.json``: astronaut, grace_hopper, chelsea the
cat, and mirrored crops of the two human faces) occlude the right eye, the left eye, the nose
or a random box of the same size with the model's mean pixel, take ``eps = features(original)
- features(occluded)`` at a mid and a top layer and report ``Delta`` (mean +- std over the
image pairs of the normalized Hamming distance between sign vectors), beside the paper's.

Controls:

* **the same boxes on non-face images**: image i of five crops of the coffee and rocket photos
  (no face) gets exactly the boxes of face i. If ``Delta`` of the "parts" stays as low without
  faces, the low value comes from the box positions and the network's spatial layout, not from
  recognising eyes and noses;
* **one shared random position**: per draw, one random centre for all five images (the part
  boxes of the aligned faces nearly share positions, a per-image random box does not);
* **bootstrap 95 % intervals** over the images (2,000 resamples of the five images; pairs of an
  image with its own copy left out, :func:`deconv.correspondence.bootstrap_delta`), and of the
  paired difference random - part. The paper's ordering "holds" at a layer when that difference
  is above 0 (its interval excludes 0) for all three parts.

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
    bootstrap_delta,
    face_images,
    layer_features,
    occlude_boxes,
    pairwise_sign_hamming,
    random_boxes,
    shared_random_boxes,
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
# Five crops without a face (photo, square crop, mirrored): image i gets face i's boxes.
NONFACE_CROPS = [("coffee", (0, 0, 400, 400), False), ("rocket", (0, 0, 427, 427), False),
                 ("coffee", (200, 0, 600, 400), False), ("rocket", (213, 0, 640, 427), False),
                 ("coffee", (100, 0, 500, 400), True)]
CONDITIONS = ("parts", "random", "random_shared")


def nonface_pixels(size: int = 224) -> tuple[torch.Tensor, list[str]]:
    """The five non-face crops as ``[5, 3, size, size]`` pixels in [0, 1], with their names."""
    import numpy as np
    from PIL import Image

    from deconv.samples import sample_images

    photos = {s.name: s.image for s in sample_images(sorted({c[0] for c in NONFACE_CROPS}))}
    out, names = [], []
    for name, crop, mirror in NONFACE_CROPS:
        picture = photos[name].crop(crop).resize((size, size), Image.BILINEAR)
        if mirror:
            picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1))
        names.append(f"{name} {list(crop)}" + (" mirrored" if mirror else ""))
    return torch.stack(out), names


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
    nonface, nonface_names = nonface_pixels(224)
    shared_sets = [shared_random_boxes(sizes, 224, generator) for _ in range(draws)]
    part_boxes = {part: [f.boxes[part] for f in faces] for part in PARTS}
    record["nonface_images"] = nonface_names
    for name, mid, top in models:
        loaded = deconv.load_model(name)
        layers = [resolve_layer(loaded, mid), resolve_layer(loaded, top)]
        entry = {"mid_layer": layers[0], "top_layer": layers[1], "source": loaded.source}
        for images_name, picture in (("faces", pixels), ("nonfaces", nonface)):
            images = loaded.normalize(picture)
            before = layer_features(loaded, images, layers)

            def distances(boxes, before=before, images=images, loaded=loaded, layers=layers):
                after = layer_features(loaded, occlude_boxes(images, boxes), layers)
                return {layer: pairwise_sign_hamming(before[layer] - after[layer])
                        for layer in layers}

            matrices = {part: distances(part_boxes[part]) for part in PARTS}
            for key, sets in (("random", random_sets), ("random_shared", shared_sets)):
                stacked = [distances(boxes) for boxes in sets]
                matrices[key] = {layer: torch.stack([d[layer] for d in stacked])
                                 for layer in layers}
            entry[images_name] = _delta_table(matrices, layers, args.seed)
        entry["ordering"] = _ordering(entry, layers)
        record["models"][name] = entry
        record["models"][name]["delta"] = entry["faces"]  # the paper's table (faces)
        print(f"{name}: " + "; ".join(
            f"{layer} " + ", ".join(f"{p} {entry['faces'][layer][p]['mean']:.3f}"
                                    for p in (*PARTS, "random")) for layer in layers))
        print(f"  ordering: {entry['ordering']}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "table1_correspondence.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "table1_correspondence.md").write_text(_markdown(record))
    _figure(faces, random_sets[0], shared_sets[0], nonface, out / "fig8_faces.png")
    print(f"wrote {out / 'table1_correspondence.md'} in {record['seconds']} s")
    return record


def _delta_table(matrices: dict, layers: list[str], seed: int) -> dict:
    """Per layer and condition: Delta mean, std over pairs, bootstrap interval, paired
    differences random - part (for per-image and shared random positions)."""
    table = {}
    for layer in layers:
        rows = {}
        for key, per_layer in matrices.items():
            d = per_layer[layer]
            sets = d.unsqueeze(0) if d.ndim == 2 else d
            n = sets.shape[-1]
            upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
            pairs = sets[:, upper].reshape(-1)
            ci = bootstrap_delta(d, seed=seed)
            rows[key] = {"mean": float(pairs.mean()), "std": float(pairs.std(unbiased=False)),
                         "ci95": [ci["low"], ci["high"]], "pairs": int(pairs.numel())}
        for part in PARTS:
            for key in ("random", "random_shared"):
                diff = bootstrap_delta(matrices[part][layer], reference=matrices[key][layer],
                                       seed=seed)["difference"]
                rows[part][f"{key}_minus_part"] = {"mean": diff["mean"],
                                                   "ci95": [diff["low"], diff["high"]]}
        table[layer] = rows
    return table


def _ordering(entry: dict, layers: list[str]) -> dict:
    """Per layer: does random - part exceed 0 (interval above 0) for every part, on faces, with
    per-image and with shared random boxes; and is Delta(parts) on non-faces within the faces'
    interval (the parts are no more consistent on faces than on non-faces)?"""
    out = {}
    for layer in layers:
        faces, nonfaces = entry["faces"][layer], entry["nonfaces"][layer]
        out[layer] = {
            "holds_vs_random": all(faces[p]["random_minus_part"]["ci95"][0] > 0 for p in PARTS),
            "holds_vs_shared_random": all(faces[p]["random_shared_minus_part"]["ci95"][0] > 0
                                          for p in PARTS),
            "holds_on_nonfaces_vs_random": all(
                nonfaces[p]["random_minus_part"]["ci95"][0] > 0 for p in PARTS),
            "parts_faces_mean": round(sum(faces[p]["mean"] for p in PARTS) / 3, 4),
            "parts_nonfaces_mean": round(sum(nonfaces[p]["mean"] for p in PARTS) / 3, 4),
        }
    return out


def _mean_part_size(boxes: dict) -> tuple[int, int]:
    widths = [b[2] - b[0] for b in (boxes[p] for p in PARTS)]
    heights = [b[3] - b[1] for b in (boxes[p] for p in PARTS)]
    return round(sum(widths) / len(widths)), round(sum(heights) / len(heights))


def _cell(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['mean']:.3f} ± {entry['std']:.3f} [{low:.3f}, {high:.3f}]"


def _markdown(record: dict) -> str:
    lines = ["# Table 1: correspondence (Delta, lower = more consistent)", "",
             "Paper: Zeiler & Fergus 2014, 5 frontal dog images, their ImageNet model. Ours: "
             f"{len(record['images'])} face images ({', '.join(record['images'])}), occluded "
             "with the mean pixel; mean ± std over image pairs [95% bootstrap interval over "
             "images]. Rows marked *non-face* put the same boxes on five crops of the coffee "
             "and rocket photos.", ""]
    header = ["part", "paper layer 5", "paper layer 7"]
    columns = []
    for model, entry in record["models"].items():
        for key in ("mid_layer", "top_layer"):
            header.append(f"{model} `{entry[key]}`")
            columns.append(entry["delta"][entry[key]])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    nonface_columns = []
    for entry in record["models"].values():
        for key in ("mid_layer", "top_layer"):
            nonface_columns.append(entry["nonfaces"][entry[key]])
    for cols, tag in ((columns, ""), (nonface_columns, " (non-face)")):
        for part in (*PARTS, "random", "random_shared"):
            paper = [f"{record['paper'][k][part][0]:.3f} ± {record['paper'][k][part][1]:.3f}"
                     if part in record["paper"][k] and not tag else "-"
                     for k in ("layer 5", "layer 7")]
            label = part.replace("_", " ").replace("random shared", "random, shared position")
            lines.append("| " + " | ".join([label + tag] + paper +
                                           [_cell(c[part]) for c in cols]) + " |")
    lines += ["", "Paired difference random - part (faces; 95% bootstrap interval), per-image "
              "random position / shared position:", "",
              "| part | " + " | ".join(header[3:]) + " |", "|" + "---|" * (len(header) - 2)]
    for part in PARTS:
        cells = []
        for c in columns:
            a, b = c[part]["random_minus_part"], c[part]["random_shared_minus_part"]
            cells.append(f"{a['mean']:+.3f} [{a['ci95'][0]:+.3f}, {a['ci95'][1]:+.3f}] / "
                         f"{b['mean']:+.3f} [{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]")
        lines.append(f"| {part.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines += ["", "Ordering (random above every part, interval excludes 0):", ""]
    def said(flag: bool) -> str:
        return "holds" if flag else "does not hold"

    for model, entry in record["models"].items():
        for layer, verdict in entry["ordering"].items():
            lines.append(f"- {model} `{layer}`: vs per-image random "
                         f"{said(verdict['holds_vs_random'])}; vs shared random "
                         f"{said(verdict['holds_vs_shared_random'])}; same boxes on non-faces: "
                         f"parts Delta {verdict['parts_nonfaces_mean']:.3f} vs "
                         f"{verdict['parts_faces_mean']:.3f} on faces, ordering vs random "
                         f"{said(verdict['holds_on_nonfaces_vs_random'])} there")
    draws = record["settings"]["random_draws"]
    lines += ["", "Random: " + record["settings"]["random_box"] + f" ({draws} draws); shared: "
              "one random centre per draw for all five images.",
              "Non-face images: " + "; ".join(record["nonface_images"]) + ".",
              "Images: " + "; ".join(f"{k}: {v['description']}" for k, v in
                                     record["images"].items()), ""]
    return "\n".join(lines)


def _figure(faces, random_set, shared_set, nonface: torch.Tensor, path: Path) -> None:
    colors = {"right_eye": "tab:red", "left_eye": "tab:blue", "nose": "tab:green",
              "random": "white", "random_shared": "yellow"}
    fig, axes = plt.subplots(2, len(faces), figsize=(2.2 * len(faces), 5.0), dpi=80)
    for row, pictures in enumerate((torch.stack([f.pixels for f in faces]), nonface)):
        for i, (ax, face) in enumerate(zip(axes[row], faces)):
            ax.imshow(pictures[i].permute(1, 2, 0).numpy())
            boxes = [*face.boxes.items(), ("random", random_set[i]),
                     ("random_shared", shared_set[i])]
            for part, box in boxes:
                x0, y0, x1, y1 = box
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                           lw=1.5, ls="--" if "random" in part else "-",
                                           color=colors[part]))
            ax.set_title(face.name if row == 0 else f"non-face {i + 1}",
                         fontsize=7)
            ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=2, ls="--" if "random" in p else "-")
               for p, c in colors.items()]
    labels = ["right eye", "left eye", "nose", "random (one draw)",
              "random, shared position (one draw)"]
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, facecolor="0.7")
    fig.suptitle("Fig. 8 analogue: occluded parts (subject's right/left eye, nose) and random "
                 "boxes; bottom: the same boxes on images without a face", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
