"""The atlas's working state on disk: fingerprint checks, atomic JSON, per-channel records.

Layout under ``out/_work``: ``fingerprint.json`` (model + data + settings), the mining
checkpoint, and per layer ``<slug>/topk.pt``, ``<slug>/stats.json``,
``<slug>/projections/cNNNN.json`` and ``<slug>/optima/cNNNN.json``. A record is written (last,
atomically) only after the files it lists, so a record on disk means the channel is done.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from deconv.errors import CheckpointMismatchError

__all__ = ["AtlasMismatchError", "WorkDir", "slug", "write_json", "read_json"]

WORK = "_work"


class AtlasMismatchError(CheckpointMismatchError):
    """The output folder holds an atlas of another model, weights, data or settings."""


def slug(layer: str) -> str:
    """A file-name-safe form of a module name (``features.1`` -> ``features-1``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in layer)
    return safe or "input"


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then move it there in one step, so
    an interrupted build never leaves half a file behind; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_json(path: Path, data) -> Path:
    """Write ``data`` as JSON atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(
        json.dumps(data, indent=1, sort_keys=True) + "\n"))


def read_json(path: Path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


class WorkDir:
    """Paths and records of one atlas build in ``out``.

    Args:
        out (Path): the atlas folder.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.root = self.out / WORK

    def claim(self, fingerprint: dict, rebuild: bool) -> bool:
        """Check (or write) the fingerprint; return True when earlier work is reused.

        Raises:
            AtlasMismatchError: ``out`` holds another atlas (without ``rebuild``) or files
                that are not an atlas.
        """
        stored = self.root / "fingerprint.json"
        if stored.is_file():
            old = read_json(stored)
            if old == fingerprint:
                return True
            if not rebuild:
                changed = sorted(k for k in set(old) | set(fingerprint)
                                 if old.get(k) != fingerprint.get(k))
                raise AtlasMismatchError(
                    f"{self.out} holds an atlas built with a different {', '.join(changed)}; "
                    f"it is not mixed with this one: pass rebuild=True (CLI: --rebuild) to "
                    f"delete it and start over, or choose another output folder")
            self.clear()
        elif self.out.is_dir() and any(self.out.iterdir()):
            raise AtlasMismatchError(f"{self.out} exists and is not an atlas folder; choose an "
                                     f"empty or new folder for the atlas")
        write_json(stored, fingerprint)
        return False

    def clear(self) -> None:
        """Delete the atlas in ``out`` (only what an atlas build writes)."""
        for name in (WORK, "layers", "channels", "img"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in ("index.html", "atlas.json", "atlas.css", "atlas.js"):
            (self.out / name).unlink(missing_ok=True)

    def layer(self, layer: str) -> Path:
        """The work folder of one layer."""
        return self.root / slug(layer)

    def record(self, layer: str, stage: str, channel: int) -> Path:
        """The done-record of one channel in a stage (``projections`` or ``optima``)."""
        return self.layer(layer) / stage / f"c{channel:04d}.json"

    def records(self, layer: str, stage: str, channels: int) -> dict[int, dict]:
        """The done-records of a stage, by channel."""
        out = {}
        for c in range(channels):
            path = self.record(layer, stage, c)
            if path.is_file():
                out[c] = read_json(path)
        return out
