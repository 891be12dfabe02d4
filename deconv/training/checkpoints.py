"""Exporting a training run's checkpoints for the repository, and finding them again.

A run directory (see :func:`deconv.training.train`) holds float32 ``epoch_NNN.pt`` files with
the optimizer-free model state and a full ``last.pt`` for resuming. :func:`export_run` copies
the epoch checkpoints as plain state dicts (float16 by default: half the size, loads with
``torch.load(weights_only=True)`` and casts back to float32 in ``load_state_dict``) with the
training log and a ``manifest.json`` that records the command, the settings and which file is
the final model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from deconv.errors import MissingFileError

__all__ = ["export_run", "read_manifest", "final_checkpoint", "epoch_checkpoints"]

MANIFEST = "manifest.json"


def export_run(run_dir: str | Path, dest: str | Path, command: str, model_config: str,
               dtype: torch.dtype | None = torch.float16, extra: dict | None = None) -> Path:
    """Copy a run's ``epoch_NNN.pt`` files (cast to ``dtype``) and log into ``dest``.

    Args:
        run_dir (str | Path): the training run directory.
        dest (str | Path): where the exported files go (old ``epoch_*.pt`` there are removed).
        command (str): the command line that produced the run (recorded in the manifest).
        model_config (str): the ZFNet config name (``load_model("zfnet", config=...)``).
        dtype (torch.dtype | None): cast floating tensors to this (None: keep float32).
        extra (dict | None): more JSON-able facts for the manifest (e.g. test accuracy).

    Returns:
        Path: the final (last epoch) checkpoint in ``dest``.

    Raises:
        FileNotFoundError: the run has no epoch checkpoints.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    files = sorted(run_dir.glob("epoch_*.pt"))
    if not files:
        raise MissingFileError(f"no epoch_*.pt checkpoints in {run_dir}; train first")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("epoch_*.pt"):
        old.unlink()
    epochs = []
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = state["model"] if "model" in state else state
        if dtype is not None:
            weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
        torch.save(weights, dest / path.name)
        epochs.append(int(path.stem.split("_")[1]))
    if (run_dir / "log.json").is_file():
        shutil.copyfile(run_dir / "log.json", dest / "log.json")
    manifest = {"final": files[-1].name, "epochs": epochs, "model": "zfnet",
                "config": model_config, "command": command,
                "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
                **(extra or {})}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return dest / files[-1].name


def read_manifest(dest: str | Path) -> dict:
    """The ``manifest.json`` of an exported run.

    Raises:
        FileNotFoundError: no manifest (the message says how to make one).
    """
    path = Path(dest) / MANIFEST
    if not path.is_file():
        raise MissingFileError(f"{path} not found: train and export with "
                                f"`python experiments/train_zfnet.py --retrain`")
    return json.loads(path.read_text())


def final_checkpoint(dest: str | Path) -> Path:
    """Path of the final checkpoint of an exported run (from its manifest)."""
    path = Path(dest) / read_manifest(dest)["final"]
    if not path.is_file():
        raise MissingFileError(f"{path} is named in the manifest but missing; retrain")
    return path


def epoch_checkpoints(dest: str | Path) -> dict[int, Path]:
    """``{epoch: path}`` of every exported epoch checkpoint, in epoch order."""
    return {int(p.stem.split("_")[1]): p for p in sorted(Path(dest).glob("epoch_*.pt"))}
