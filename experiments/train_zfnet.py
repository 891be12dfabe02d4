"""Train a ZFNet from scratch (Fashion-MNIST by default, or any ImageFolder) and export it.

Default: the ``fashion`` config (ZFNet layers, widths 32-64-96-96-64, fc 256, 64 px input:
Fashion-MNIST upsampled from 28 px, grey repeated over RGB), 15 epochs of SGD (batch 128,
momentum 0.9, learning rate 0.02 after a 1-epoch linear warm-up, divided by 10 after epochs 10
and 13; the paper: 0.01, divided by 10 on plateaus), feature-scale clipping at RMS 0.1, random
horizontal flips, seed 0. Checkpoints at the paper's Fig. 4 epochs (1, 2, 5, 10, 20, 30, 40,
64) scaled to 15: 1, 2, 5, 7, 9, 15.

Without ``--retrain`` nothing is trained when the exported checkpoints exist
(``results/checkpoints/zfnet_fashion/``: float16 state dicts, ``manifest.json`` naming the final
one and the command, ``log.json``): the final checkpoint is evaluated on the test set and the
result written to ``<out>/train_zfnet.json``. With ``--retrain`` (or when they are missing) the
run goes to ``--run-dir`` (resumable: rerun the same command after an interruption), then is
exported. ``--data DIR`` trains on an ImageFolder tree ``DIR/train``, ``DIR/val`` instead (no
export unless ``--export`` is given), e.g. the ``paper`` config on ImageNet with ``--device
cuda``.

Usage: ``python experiments/train_zfnet.py [--quick] [--retrain] [--out results/train_zfnet]``
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import deconv
from deconv.training import TrainSettings, scaled_checkpoint_epochs, train
from deconv.training.checkpoints import export_run, final_checkpoint
from deconv.training.fashion_mnist import evaluate_fashion, train_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXPORT = ROOT / "results" / "checkpoints" / "zfnet_fashion"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fashion", help="ZFNet config (ZFNET_CONFIGS)")
    parser.add_argument("--data", default=None,
                        help="ImageFolder root with train/ and val/ (default: Fashion-MNIST)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--lr-drops", type=int, nargs="*", default=[10, 13],
                        help="divide the rate by 10 after these epochs")
    parser.add_argument("--clip-radius", type=float, default=0.1,
                        help="feature-scale clipping radius (0 turns clipping off)")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--run-dir", default=None, help="default: runs/zfnet_<config>")
    parser.add_argument("--export", default=None,
                        help=f"exported checkpoints (default for Fashion-MNIST: {DEFAULT_EXPORT})")
    parser.add_argument("--retrain", action="store_true", help="train even if exported")
    parser.add_argument("--no-resume", action="store_true", help="start the run over")
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N images only (timing runs)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="evaluate on the first N test images only")
    parser.add_argument("--out", default=str(ROOT / "results" / "train_zfnet"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 512 training / 256 test images, 2 epochs, in runs/quick "
                             "(the committed checkpoints are not touched)")
    return parser


def settings_from(args: argparse.Namespace) -> TrainSettings:
    """The run's settings from the parsed command line."""
    drops = tuple(d for d in args.lr_drops if d < args.epochs)
    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         momentum=args.momentum, weight_decay=args.weight_decay,
                         lr_drops=drops, warmup_epochs=min(args.warmup_epochs, args.epochs),
                         clip_radius=args.clip_radius or None,
                         checkpoint_epochs=scaled_checkpoint_epochs(args.epochs), seed=args.seed)


def main(argv: list[str] | None = None) -> dict:
    """Train (or reuse) and evaluate; returns the JSON record."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.epochs, args.lr_drops = 2, [1]
    settings = settings_from(args)
    run_dir = Path(args.run_dir or ROOT / "runs" / f"zfnet_{args.config}")
    if args.quick:  # scratch space, never the committed checkpoints
        run_dir, export = ROOT / "runs" / "quick" / "train", ROOT / "runs" / "quick" / "export"
        args.no_resume = True
    elif args.export:
        export = Path(args.export)
    else:
        export = DEFAULT_EXPORT if args.data is None else None
    record = {"config": args.config, "settings": settings.to_json(),
              "device": str(args.device), "threads": torch.get_num_threads()}

    if args.data is not None:  # any ImageFolder: train (resumable), no Fashion-MNIST parts
        record.update(_train_image_folder(args, settings, run_dir, export))
    elif export is not None and not args.quick and not args.retrain and \
            (export / "manifest.json").is_file():
        path = final_checkpoint(export)
        loaded = deconv.load_model("zfnet", config=args.config, weights=str(path))
        start = time.perf_counter()
        result = evaluate_fashion(loaded, device=args.device)
        record.update(trained=False, checkpoint=str(path.relative_to(ROOT)),
                      test_accuracy=result["accuracy"], test_loss=result["loss"],
                      eval_seconds=round(time.perf_counter() - start, 1),
                      manifest=json.loads((export / "manifest.json").read_text()))
        if (export / "log.json").is_file():
            record["training_log"] = json.loads((export / "log.json").read_text())["history"]
        print(f"{path}: test accuracy {result['accuracy']:.4f} (no training; --retrain to train)")
    else:
        limits = (512, 256) if args.quick else (args.train_images, args.test_images)
        start = time.perf_counter()
        loaded, history = train_fashion_mnist(args.config, settings, run_dir, *limits,
                                              device=args.device, resume=not args.no_resume,
                                              flip=not args.no_flip)
        seconds = time.perf_counter() - start
        given = sys.argv[1:] if argv is None else argv
        command = "python experiments/train_zfnet.py " + shlex.join(given)
        final = export_run(run_dir, export, command, args.config)
        exported = deconv.load_model("zfnet", config=args.config, weights=str(final))
        result = evaluate_fashion(exported, test_limit=limits[1], device=args.device)
        manifest_path = export / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest.update(test_accuracy=result["accuracy"],
                        train_seconds=sum(r["seconds"] for r in history),
                        threads=torch.get_num_threads())
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        record.update(trained=True, checkpoint=str(final), history=history,
                      wall_seconds=round(seconds, 1),
                      epoch_seconds=[r["seconds"] for r in history],
                      test_accuracy=result["accuracy"], test_loss=result["loss"],
                      test_accuracy_float32=history[-1].get("test_accuracy"))
        print(f"trained {len(history)} epochs in {seconds:.0f} s; exported {final}; "
              f"test accuracy (float16 export) {result['accuracy']:.4f}")
    name = "train_zfnet_quick.json" if args.quick else "train_zfnet.json"
    (out / name).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _train_image_folder(args, settings, run_dir, export) -> dict:
    """Train a config on ``args.data/train``, evaluate on ``args.data/val`` (or ``test``)."""
    from deconv.datasets import image_folder_dataset
    from deconv.zoo import ZFNET_CONFIGS

    root = Path(args.data)
    val = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or val is None:
        raise FileNotFoundError(f"{root} must hold train/ and val/ (or test/) class folders")
    base = ZFNET_CONFIGS[args.config]
    train_set = image_folder_dataset(root / "train", base.input_size, base.mean, base.std, True)
    val_set = image_folder_dataset(val, base.input_size, base.mean, base.std, False)
    config = replace(base, num_classes=len(train_set.classes), classes="none")
    loaded = deconv.load_model("zfnet", config=config, weights=None, seed=settings.seed)
    history = train(loaded.model, train_set, settings, run_dir, test_data=val_set,
                    device=args.device, resume=not args.no_resume, num_workers=2)
    record = {"data": str(root), "classes": train_set.classes, "history": history,
              "run_dir": str(run_dir)}
    if export is not None:
        record["checkpoint"] = str(export_run(run_dir, export, shlex.join(sys.argv),
                                              args.config, extra={"classes": train_set.classes}))
    return record


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
