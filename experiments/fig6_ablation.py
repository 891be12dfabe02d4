"""Zeiler & Fergus (2014) Fig. 6 ablation: first layer 7x7/2 vs 11x11/4, with vs without clipping.

Eighteen runs on Fashion-MNIST: {ZF conv1 7x7 stride 2 (``fashion``), AlexNet-style conv1 11x11
stride 4 (``fashion-alexnet-conv1``)} x {feature-scale clipping at RMS 0.1 (the paper's radius),
at RMS 0.03, none} x seeds {0, 1, 2}. The paper's recipe where it concerns the layer under study:
its input (pixels 0-255 minus the mean), conv1 initialised N(0, 0.01^2), SGD momentum 0.9,
batch 128, learning rate 1e-2 (warmed up linearly over epoch 1), kept for epoch 2, divided by 10
for epoch 3 (by schedule), horizontal flips; all 60,000 training images, 1,000 test images
evaluated per epoch (about 3 CPU-minutes per 7x7/2 run and 1 per 11x11/4 run, one thread).

Why a second radius: the paper's 0.1 is ten times its init (RMS 0.01), a size its ImageNet
filters reach over 70 epochs. In 3 epochs here the largest conv1 filter of an unclipped run ends
between 0.041 and 0.112 (``conv1_rms_max_per_epoch`` in the JSON's ``runs``), so at 0.1 clipping
acts on conv1 in one run of six and the others are their unclipped twins. 0.03 (three times the
init) lies above the median filter and below the largest one of the unclipped runs, so it caps
the filters that outgrow the rest, which is what the paper's clipping is for, and it acts in
every clipped run (``conv1_clipping_acted`` in the JSON says so per run; the verdicts are judged at
both radii). It is applied to conv1 only, the layer under study; the layers above keep the
paper's 0.1, because their He init already has an RMS of 0.05-0.06 and a radius of 0.03 would
rescale every one of their filters at every step.
The paper's init in *all* layers does not train at all here: a probe of 40 steps (recorded in the
JSON under ``paper_init_probe``) leaves the loss at ln 10 = 2.3026 and the filters unchanged, so
the layers above conv1 keep the He init of the ``fashion`` configs. The warm-up is the one
departure from the paper's schedule: also recorded, 40 steps of each configuration at 1e-2 from
the first step, where the 7x7/2 network's loss becomes non-finite with and without clipping.

Committed per run (``results/checkpoints/ablation/<run>/``): float16 conv1+conv2 state, conv1
after every epoch, and the log (clipped filters per layer and epoch, every filter's RMS per
epoch, conv1's per-filter RMS every 20 steps). Without ``--retrain`` they are only analysed.

Statistics per run, over 2,000 test images: dead and mostly dead (zero on >= 99 % of images)
layer-1 feature maps, weak filters (RMS < 1 % of the median), dominance (share of the strongest
layer-1 map in the layer's activation energy; max / median filter RMS), distinctiveness (mean
absolute cosine between pairs of layer-1 filters), aliasing evidence (relative change of the
layer-2 response, ``features.7``, when the input moves by 1 pixel; share of the layer-1 filters'
spectral energy above the Nyquist frequency of their stride, 1 / (2 * stride) cycles per pixel).
``claims`` gives one verdict per claim of the paper with its numbers: means over the seeds whose
three runs (no clipping, 0.1, 0.03) of that architecture all learned. A run that ends under 50 %
test accuracy collapsed and its first layer says nothing about the claims, so that seed of that
architecture is left out of every mean (listed under ``excluded``) and the settings are always
compared on the same seeds.

Writes ``<out>/ablation_filters.png``, ``<out>/ablation_training.png`` and ``<out>/ablation.json``.

Usage: ``python experiments/fig6_ablation.py [--quick] [--retrain [--train-only]] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deconv.activations import dead_filters, tile_images
from deconv.datasets import load_fashion_mnist
from deconv.training import TrainSettings, filter_rms
from deconv.training.ablation_run import (
    ablation_transforms,
    load_ablation_run,
    paper_init_probe,
    train_ablation_run,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINTS = ROOT / "results" / "checkpoints" / "ablation"
ARCHS = {"zf": "fashion", "alexnet": "fashion-alexnet-conv1"}
SEEDS = (0, 1, 2)
#: Clipping settings: none, the paper's radius, and one that acts in 3 epochs (docstring).
RADII = (None, 0.1, 0.03)


def setting(radius: float | None) -> str:
    """``"noclip"`` or ``"clip<radius>"``, the middle part of a run's name."""
    return "noclip" if radius is None else f"clip{radius:g}"


def conv1_radius(settings: dict) -> float | None:
    """The clipping radius a run's ``settings`` (JSON) apply to conv1."""
    return (settings.get("clip_layer_radii") or {}).get("features.0", settings["clip_radius"])


def run_names() -> dict[str, tuple[str, float | None, int]]:
    """``{run name: (config, clip radius, seed)}`` of the eighteen runs."""
    return {f"{arch}-{setting(radius)}-s{seed}": (config, radius, seed)
            for seed in SEEDS for arch, config in ARCHS.items() for radius in RADII}


def train_all(args, checkpoints: Path, command: str) -> None:
    """Train every run (or those named by ``--runs``), one after the other."""
    scratch = ROOT / "runs" / ("quick/ablation" if args.quick else "ablation")
    for run, (config, radius, seed) in run_names().items():
        if args.runs and run not in args.runs:
            continue
        settings = TrainSettings(epochs=args.epochs, lr=args.lr, momentum=0.9,
                                 lr_drops=(args.epochs - 1,) if args.epochs > 2 else (),
                                 warmup_epochs=1, clip_radius=None if radius is None else 0.1,
                                 clip_layer_radii={"features.0": radius}
                                 if radius not in (None, 0.1) else None, seed=seed)
        log = train_ablation_run(config, settings, scratch / run, checkpoints / run,
                                 args.train_images, args.test_images,
                                 extra={"command": command})
        last = log["history"][-1] if log["history"] else {}
        print(f"{run}: {log['train_seconds']} s, test acc {last.get('test_accuracy')}, "
              f"clipped per epoch {[r['filters_clipped_by_layer'] for r in log['history']]}, "
              f"diverged {log['diverged']}", flush=True)


def layer1_statistics(loaded, raw: torch.Tensor, transform) -> dict:
    """Dead, weak, dominant, distinct and aliasing statistics of layers 1-2 over uint8 ``raw``."""
    conv = loaded.model.features[0]
    grey = conv.weight.detach().sum(dim=1)  # the filter a grey image sees
    n_maps = conv.out_channels
    nonzero_images = torch.zeros(n_maps, dtype=torch.float64)
    energy = torch.zeros(n_maps, dtype=torch.float64)
    shift_change = {"right": [], "down": []}
    with torch.no_grad():
        for start in range(0, len(raw), 250):
            x = transform(raw[start:start + 250])
            a1 = loaded.model.features[:2](x).double()
            nonzero_images += (a1.flatten(2) > 0).any(dim=2).double().sum(0)
            energy += a1.pow(2).sum(dim=(0, 2, 3))
            a2 = loaded.model.features[:6](x).double()
            for name, dims in (("right", 3), ("down", 2)):
                moved = torch.roll(x, 1, dims=dims)  # the images' borders are background
                b2 = loaded.model.features[:6](moved).double()
                change = (b2 - a2).flatten(1).norm(dim=1) / a2.flatten(1).norm(dim=1).clamp_min(
                    1e-12)
                shift_change[name].append(change)
    zero_fraction = 1 - nonzero_images / len(raw)
    flat = grey.flatten(1).double()
    unit = F.normalize(flat, dim=1)
    cos = unit @ unit.T
    pairs = cos[~torch.eye(len(cos), dtype=torch.bool)].abs()
    rms = filter_rms(conv.weight)
    weak = dead_filters(conv.weight)
    stride = conv.stride[0]
    spectrum = radial_spectrum(grey)
    change = torch.cat([torch.cat(v) for v in shift_change.values()])
    return {
        "filters": n_maps, "kernel": list(conv.kernel_size), "stride": list(conv.stride),
        "dead_maps": int((zero_fraction >= 1).sum()),
        "mostly_dead_maps": int((zero_fraction >= 0.99).sum()),
        "dead_fraction": float((zero_fraction >= 0.99).double().mean()),
        "weak_filters": weak["weak"],
        "rms_max": float(rms.max()), "rms_median": float(rms.median()),
        "rms_max_over_median": float(rms.max() / rms.median()),
        "top_map_energy_share": float(energy.max() / energy.sum()),
        "mean_abs_cosine_between_filters": float(pairs.mean()),
        "layer2_change_1px_shift": float(change.mean()),
        "energy_above_stride_nyquist": aliased_energy(grey, stride),
        "radial_spectrum": spectrum,
    }


def _power(grey: torch.Tensor, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power spectra of filters ``[F, k, k]`` zero-padded to ``size`` and frequency grids."""
    power = torch.fft.fftshift(torch.fft.fft2(grey.double(), s=(size, size)).abs().pow(2),
                               dim=(-2, -1))
    freq = torch.fft.fftshift(torch.fft.fftfreq(size, dtype=torch.float64))
    fy, fx = torch.meshgrid(freq, freq, indexing="ij")
    return power, fy, fx


def aliased_energy(grey: torch.Tensor, stride: int) -> float:
    """Mean share of a filter's spectral energy above the stride's Nyquist, 1 / (2 stride)
    cycles per pixel along x or y (what a stride-``stride`` sampling folds onto lower ones)."""
    power, fy, fx = _power(grey)
    above = (fy.abs() > 0.5 / stride) | (fx.abs() > 0.5 / stride)
    share = power[:, above].sum(dim=1) / power.flatten(1).sum(dim=1).clamp_min(1e-30)
    return float(share.mean())


def radial_spectrum(grey: torch.Tensor, bins: int = 16) -> dict:
    """Mean over filters of the power spectrum, each filter normalised to total 1, averaged
    over rings of radius ``sqrt(fx^2 + fy^2)`` (cycles per pixel, 0 to 0.5)."""
    power, fy, fx = _power(grey)
    power = power / power.flatten(1).sum(dim=1).clamp_min(1e-30).view(-1, 1, 1)
    radius = (fx ** 2 + fy ** 2).sqrt()
    edges = torch.linspace(0, 0.5, bins + 1, dtype=torch.float64)
    mean = power.mean(dim=0)
    values = []
    for low, high in zip(edges[:-1], edges[1:]):
        ring = (radius >= low) & (radius < high)
        values.append(float(mean[ring].mean()) if ring.any() else 0.0)
    return {"frequency": [round(float(v), 4) for v in (edges[:-1] + edges[1:]) / 2],
            "power": values}


def analyse(args, checkpoints: Path) -> dict:
    """Statistics, verdicts and figures of the trained runs (those present)."""
    start = time.perf_counter()
    raw = load_fashion_mnist("test").tensors[0][:args.images]
    runs, models, logs = {}, {}, {}
    for run in run_names():
        dest = checkpoints / run
        if not (dest / "weights.pt").is_file():
            print(f"{run}: not trained, skipped (train with --retrain)")
            continue
        loaded, by_epoch, log = load_ablation_run(dest)
        _, eval_tf = ablation_transforms(loaded)
        stats = layer1_statistics(loaded, raw, eval_tf)
        history = log["history"]
        stats.update(
            config=log["config"], clip_radius=conv1_radius(log["settings"]),
            seed=log["settings"]["seed"],
            test_accuracy=history[-1]["test_accuracy"] if history else None,
            conv1_clipped_per_epoch=[r["filters_clipped_by_layer"]["features.0"]
                                     for r in history],
            all_clipped_per_epoch=[r["filters_clipped"] for r in history],
            conv1_clipping_acted=None if not log["settings"]["clip_radius"] else
            sum(r["filters_clipped_by_layer"]["features.0"] for r in history) > 0,
            conv1_rms_max_per_epoch=[max(r["filter_rms"]["features.0"]) for r in history],
            train_seconds=log["train_seconds"], diverged=log["diverged"])
        runs[run], models[run], logs[run] = stats, (loaded, by_epoch), log
        print(run, {k: v for k, v in stats.items() if k != "radial_spectrum"}, flush=True)
    first = next(iter(logs.values()), {})
    record = {"runs": runs, "train_images": first.get("train_images"),
              "test_images_per_epoch": first.get("test_images"),
              "statistics_images": args.images, "settings": first.get("settings"),
              "input": first.get("input"), "conv1_init": first.get("conv1_init"),
              "other_layers_init": first.get("other_layers_init"),
              "command": first.get("command"),
              "paper_init_probe": json.loads((checkpoints / "paper_init_probe.json").read_text())
              if (checkpoints / "paper_init_probe.json").is_file() else None,
              "note": "means over the seeds; radius 0.03 chosen because 0.1 does not act "
                      "in every run in 3 epochs (module docstring)"}
    if runs:
        record["claims"] = _claims(runs)
        suffix = "_quick" if args.quick else ""
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _draw_filters(models, runs, out / f"ablation_filters{suffix}.png")
        _draw_training(logs, runs, out / f"ablation_training{suffix}.png")
        record["seconds"] = round(time.perf_counter() - start, 1)
        (out / f"ablation{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record["claims"], indent=1))
    return record


#: A run under this final test accuracy collapsed and is left out of the means.
LEARNED = 0.5


def _learned(run: dict) -> bool:
    return run["test_accuracy"] is not None and run["test_accuracy"] >= LEARNED


def _seed_learned(runs: dict, arch: str, seed: int) -> bool:
    """Every run of ``arch`` with ``seed`` that is present learned."""
    return all(_learned(r) for name, r in runs.items()
               if name.startswith(f"{arch}-") and r["seed"] == seed)


def _mean(runs: dict, arch: str, radius: float | None, key: str) -> float | None:
    values = [r[key] for name, r in runs.items()
              if name.startswith(f"{arch}-{setting(radius)}-")
              and _seed_learned(runs, arch, r["seed"])]
    return round(float(np.mean(values)), 4) if values else None


def _claims(runs: dict) -> dict:
    """One verdict per claim of the paper (and per clipping radius), from the means over seeds."""
    def both(key):
        return {f"{arch}-{setting(radius)}": _mean(runs, arch, radius, key)
                for arch in ARCHS for radius in RADII}

    def less(values, a, b):
        return None if values[a] is None or values[b] is None else values[a] < values[b]

    def per_radius(values, first: str, second: str) -> dict:
        """``first`` below ``second`` at each setting (``{}`` fills in the setting)."""
        return {setting(r): less(values, first.format(setting(r)), second.format(setting(r)))
                for r in RADII}

    dead, cos = both("dead_fraction"), both("mean_abs_cosine_between_filters")
    share, spread = both("top_map_energy_share"), both("rms_max_over_median")
    shift, alias = both("layer2_change_1px_shift"), both("energy_above_stride_nyquist")
    clipped = {name: r["conv1_clipped_per_epoch"] for name, r in runs.items()
               if r["clip_radius"]}
    acted = {setting(r): {n: runs[n]["conv1_clipping_acted"] for n in runs
                          if runs[n]["clip_radius"] == r} for r in RADII if r}
    dominance = {}
    for r in RADII[1:]:
        for arch in ARCHS:
            paired = {}  # per seed: unclipped minus clipped (positive: dominance without)
            for key in ("top_map_energy_share", "rms_max_over_median"):
                paired[key] = [round(runs[f"{arch}-noclip-s{seed}"][key]
                                     - runs[f"{arch}-{setting(r)}-s{seed}"][key], 4)
                               for seed in SEEDS if _seed_learned(runs, arch, seed)
                               and f"{arch}-noclip-s{seed}" in runs
                               and f"{arch}-{setting(r)}-s{seed}" in runs]
            dominance[f"{arch}_{setting(r)}"] = {
                "unclipped_minus_clipped_per_seed": paired,
                # holds only when every seed agrees (a mean difference can be one seed's)
                "holds_energy_share": bool(paired["top_map_energy_share"]) and all(
                    d > 0 for d in paired["top_map_energy_share"]),
                "holds_rms_max_over_median": bool(paired["rms_max_over_median"]) and all(
                    d > 0 for d in paired["rms_max_over_median"])}
    return {
        "excluded": {name: r["test_accuracy"] for name, r in runs.items()
                     if not _seed_learned(runs, name.split("-")[0], r["seed"])},
        "seeds_in_means": {arch: [seed for seed in SEEDS if _seed_learned(runs, arch, seed)]
                           for arch in ARCHS},
        "conv1 clipping acted (some conv1 filter rescaled) in the run": acted,
        "7x7/2 has fewer dead layer-1 features (mostly dead fraction)": {
            "values": dead, "holds": per_radius(dead, "zf-{}", "alexnet-{}")},
        "7x7/2 has more distinctive layer-1 features (lower mean |cos| between filters)": {
            "values": cos, "holds": per_radius(cos, "zf-{}", "alexnet-{}")},
        "without clipping one feature dominates (top map's energy share; max/median RMS)": {
            "energy_share": share, "rms_max_over_median": spread, **dominance,
            "conv1_filters_clipped_per_epoch": clipped},
        "11x11/4 aliases (layer-2 change under a 1 px shift; energy above the stride's Nyquist)": {
            "layer2_change_1px_shift": shift, "energy_above_stride_nyquist": alias,
            "holds_shift": per_radius(shift, "zf-{}", "alexnet-{}"),
            "holds_spectrum": per_radius(alias, "zf-{}", "alexnet-{}")},
    }


def _draw_filters(models: dict, runs: dict, path: Path) -> None:
    """Final layer-1 filters of every run on ONE symmetric grey scale (shared colour bar); one
    row per architecture and seed, one column per clipping setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    greys = {run: loaded.model.features[0].weight.detach().sum(dim=1)
             for run, (loaded, _) in models.items()}
    # one scale for all: that of the runs in the means (a collapsed run is clipped to it)
    kept = [g for run, g in greys.items()
            if _seed_learned(runs, run.split("-")[0], runs[run]["seed"])]
    kept = kept or list(greys.values())
    scale = max(float(g.abs().max()) for g in kept)
    rows = [(arch, seed) for seed in SEEDS for arch in ARCHS]
    fig, axes = plt.subplots(len(rows), len(RADII), figsize=(3.4 * len(RADII), 2.45 * len(rows)),
                             squeeze=False, layout="constrained")
    image = None
    for (arch, seed), line in zip(rows, axes):
        for radius, ax in zip(RADII, line):
            ax.axis("off")
            run = f"{arch}-{setting(radius)}-s{seed}"
            if run not in greys:
                ax.set_title(f"{run}: not trained", fontsize=7)
                continue
            grey = greys[run]
            tiles = (grey / scale * 0.5 + 0.5).clamp(0, 1).unsqueeze(1).expand(-1, 3, -1, -1)
            grid = tile_images(tiles, 8, gap=1)[..., 0]
            image = ax.imshow(grid * 2 * scale - scale, cmap="gray", vmin=-scale, vmax=scale,
                              interpolation="nearest")
            r = runs[run]
            clipped = "no clipping" if radius is None else \
                f"conv1 rescaled {sum(r['conv1_clipped_per_epoch'])}x"
            collapsed = "" if _learned(r) else " (collapsed)"
            ax.set_title(f"{run} ({r['kernel'][0]}x{r['kernel'][0]}/{r['stride'][0]})\n"
                         f"{clipped}, test acc {r['test_accuracy']:.3f}{collapsed}\n"
                         f"dead {r['mostly_dead_maps']}/{r['filters']}, top share "
                         f"{r['top_map_energy_share']:.2f}, RMS max/med "
                         f"{r['rms_max_over_median']:.1f}, |cos| "
                         f"{r['mean_abs_cosine_between_filters']:.2f}", fontsize=6.5)
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.025, pad=0.01,
                     label="weight summed over the 3 grey input channels (one scale for all "
                           "runs; collapsed runs clipped to it)")
    fig.suptitle("Fig. 6 ablation: final layer-1 filters on one scale\ncolumns: no clipping, "
                 "the paper's radius 0.1, radius 0.03 on conv1", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


_STYLES = {None: "--", 0.1: "-", 0.03: ":"}


def _draw_training(logs: dict, runs: dict, path: Path) -> None:
    """conv1 RMS during training (one panel per architecture), filters clipped per epoch,
    radial spectra. Colour: architecture and seed; line style: clipping setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 5.4))
    colours = {(arch, seed): plt.get_cmap("tab10")(i) for i, (arch, seed) in
               enumerate((a, s) for a in ARCHS for s in SEEDS)}
    for run, log in logs.items():
        s = runs[run]
        arch, seed = run.split("-")[0], s["seed"]
        colour, style = colours[(arch, seed)], _STYLES.get(s["clip_radius"], "-.")
        ax = axes[list(ARCHS).index(arch)]
        trace = log["conv1_rms_trace"]
        steps_per_epoch = max(t["step"] for t in trace) + 1 if trace else 1
        x = [(t["epoch"] - 1) + t["step"] / steps_per_epoch for t in trace]
        ax.plot(x, [max(t["rms"]) for t in trace], style, color=colour, label=run)
        ax.plot(x, [float(np.median(t["rms"])) for t in trace], style, color=colour,
                alpha=0.35, lw=0.8)
        spectrum = s["radial_spectrum"]
        axes[3].plot(spectrum["frequency"], spectrum["power"], style, color=colour, label=run,
                     lw=1)
        if s["clip_radius"]:
            epochs = np.arange(1, len(s["conv1_clipped_per_epoch"]) + 1)
            axes[2].plot(epochs, s["conv1_clipped_per_epoch"], style, marker="o", color=colour,
                         label=run)
    for ax, arch in zip(axes[:2], ARCHS):
        for radius in RADII[1:]:
            ax.axhline(radius, color="k", ls=_STYLES[radius], lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("conv1 filter RMS (largest: bold; median: faint)")
        ax.set_title(f"{arch} conv1 per-filter RMS; radii 0.1 and 0.03 in black", fontsize=9)
    axes[1].sharey(axes[0])
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("conv1 filter rescalings in the epoch")
    axes[2].set_title("clipping acting: conv1 filters rescaled per epoch", fontsize=9)
    axes[2].set_yscale("symlog")
    axes[2].set_xticks(range(1, 1 + max((len(r["conv1_clipped_per_epoch"])
                                         for r in runs.values()), default=1)))
    for stride, ls in ((2, (0, (1, 4))), (4, "-.")):
        axes[3].axvline(0.5 / stride, color="grey", ls=ls, lw=1,
                        label=f"Nyquist of stride {stride}")
    axes[3].set_yscale("log")
    axes[3].set_xlabel("spatial frequency (cycles / pixel)")
    axes[3].set_ylabel("mean normalised power")
    axes[3].set_title("radial spectrum of the final layer-1 filters", fontsize=9)
    axes[3].legend(*[h[-2:] for h in axes[3].get_legend_handles_labels()], fontsize=7)
    handles, labels = axes[3].get_legend_handles_labels()
    fig.legend(handles[:-2], labels[:-2], loc="lower center", ncol=9, fontsize=7)
    fig.suptitle("Fig. 6 ablation: training (dashed: no clipping, solid: clipping at RMS 0.1, "
                 "dotted: conv1 at 0.03; colour: architecture and seed)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Train (if asked) and analyse the eight runs; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-images", type=int, default=None,
                        help="the first this many training images (default: all 60,000)")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--images", type=int, default=2000, help="test images for statistics")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS))
    parser.add_argument("--retrain", action="store_true", help="train the 18 runs again")
    parser.add_argument("--runs", nargs="+", choices=sorted(run_names()), default=None,
                        help="with --retrain: train only these runs (e.g. two processes)")
    parser.add_argument("--train-only", action="store_true", help="with --retrain: no analysis")
    parser.add_argument("--probe", action="store_true",
                        help="(re)run only the all-layers paper-init probe before the analysis")
    parser.add_argument("--out", default=str(ROOT / "results" / "fig6_ablation"))
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch on 512 images into runs/quick, 200 test images; outputs "
                             "go to results/quick/fig6_ablation with a _quick suffix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoints = Path(args.checkpoints)
    if args.quick:
        args.epochs, args.train_images, args.test_images, args.images = 1, 512, 256, 200
        checkpoints = ROOT / "runs" / "quick" / "ablation_export"
        args.out = str(ROOT / "results" / "quick" / "fig6_ablation")
    given = sys.argv[1:] if argv is None else argv
    command = "python experiments/fig6_ablation.py " + shlex.join(given)
    if args.retrain or args.quick:
        train_all(args, checkpoints, command)
    if (args.retrain and not args.runs) or args.quick or args.probe:
        steps = 10 if args.quick else 40
        probe = {"paper init in every layer": paper_init_probe("fashion", steps)}
        for run, (config, radius, seed) in run_names().items():
            if seed == SEEDS[0] and radius != RADII[2]:
                probe[f"{run}: first {steps} steps"] = paper_init_probe(
                    config, steps, all_layers=False, clip_radius=radius)
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / "paper_init_probe.json").write_text(json.dumps(probe, indent=1) + "\n")
        print("paper init in every layer:", probe, flush=True)
    if args.train_only:
        return {}
    return analyse(args, checkpoints)


if __name__ == "__main__":
    main()
