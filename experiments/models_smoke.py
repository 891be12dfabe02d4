"""Smoke run of the model zoo: load every model whose weights are here, classify the samples.

Writes ``results/models.json``: per model its source, licence, paper layers, the load time,
and, for classifiers, the top-5 ImageNet labels of each sample photo.

Usage: ``python experiments/models_smoke.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import deconv
from deconv.samples import sample_images
from deconv.zoo import model_info


def main(argv: list[str] | None = None) -> dict:
    """Run the smoke test and write ``models.json``; returns the written record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: results)")
    parser.add_argument("--quick", action="store_true", help="two photos only")
    args = parser.parse_args(argv)
    samples = sample_images()
    if args.quick:
        samples = samples[:2]
    record: dict = {"images": {s.name: {"source": s.source, "licence": s.licence}
                               for s in samples}, "models": {}}
    for name in deconv.list_models():
        info = model_info(name)
        entry: dict = {"source": info.source, "licence": info.licence, "offline": info.offline}
        if not info.available():
            entry["status"] = "weights not available here (offline); skipped"
            record["models"][name] = entry
            print(f"{name}: weights not available here; skipped")
            continue
        start = time.perf_counter()
        loaded = deconv.load_model(name)
        entry["load_seconds"] = round(time.perf_counter() - start, 2)
        entry["source"] = loaded.source
        entry["layers"] = {str(k): v for k, v in loaded.layers.items()}
        entry["parameters"] = sum(p.numel() for p in loaded.model.parameters())
        if loaded.categories is None:
            entry["top5"] = "no classifier head"
        elif "random init" in loaded.source:
            entry["top5"] = "random init: labels would be meaningless; not classified"
        else:
            batch = torch.stack([loaded.preprocess(s.image) for s in samples])
            entry["top5"] = {
                s.name: [[label, round(p, 4)] for label, p in preds]
                for s, preds in zip(samples, loaded.classify(batch, top=5))
            }
        entry["status"] = "ok"
        record["models"][name] = entry
        print(f"{name}: ok ({entry['load_seconds']} s)")
        if isinstance(entry["top5"], dict):
            for img, preds in entry["top5"].items():
                print(f"  {img:14s} {preds[0][0]} ({preds[0][1]:.2f})")
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
