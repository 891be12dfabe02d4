"""Training loop for the ZFNet family: SGD with momentum, feature-scale clipping, checkpoints.

The paper (Sec. 3): SGD, batch 128, learning rate 1e-2 divided by 10 on plateaus, momentum 0.9,
feature-scale clipping of conv filters at RMS 0.1. Here the drops happen at fixed epochs
(``lr_drops``), an optional linear warm-up covers the first epochs, and everything random is
seeded per epoch from ``seed`` (the shuffling generator and torch's global generator, which
drives dropout and augmentation, inside :func:`torch.random.fork_rng` so the caller's generator
is untouched). Resuming from ``last.pt`` after epoch ``e`` therefore gives bit-for-bit the same
run as not stopping (on CPU; ``torch.use_deterministic_algorithms`` is on during training).

Files in ``run_dir``: ``last.pt`` (model, optimizer, epoch, history, settings; rewritten after
every epoch), ``epoch_NNN.pt`` (model state dict at each of ``checkpoint_epochs``) and
``log.json`` (settings and one row per epoch: lr, train/test loss and accuracy, seconds, filters
clipped in total and per conv layer, and every conv filter's RMS at the end of the epoch).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deconv.errors import InvalidArgumentError, ResumeMismatchError
from deconv.training.clipping import feature_scale_clip_by_layer, filter_rms
from deconv.validation import read_checkpoint

__all__ = ["TrainSettings", "PAPER_CHECKPOINT_EPOCHS", "scaled_checkpoint_epochs",
           "learning_rate", "evaluate", "train", "save_weights", "iterate_batches",
           "ResumeMismatchError"]

#: Epochs of the paper's Fig. 4 columns (of a 70-epoch run; the last column is epoch 64).
PAPER_CHECKPOINT_EPOCHS: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 40, 64)

BatchTransform = Callable[[torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, nn.Module], None]



@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run.

    Attributes:
        epochs (int): number of passes over the training set.
        batch_size (int): images per SGD step (128 in the paper).
        lr (float): base learning rate (1e-2 in the paper).
        momentum (float): SGD momentum (0.9).
        weight_decay (float): L2 penalty (the paper does not state one; 0 by default).
        lr_drops (tuple[int, ...]): the rate is divided by 10 after each of these epochs.
        warmup_epochs (int): linear warm-up of the rate over the first epochs' steps (0: none).
        clip_radius (float | None): feature-scale clipping radius after every step (0.1 in the
            paper); None turns clipping off.
        clip_layer_radii (dict[str, float] | None): a different radius for these conv modules
            (by name), e.g. ``{"features.0": 0.03}``; needs ``clip_radius``.
        checkpoint_epochs (tuple[int, ...]): epochs after which ``epoch_NNN.pt`` is saved.
        seed (int): seeds shuffling, dropout and augmentation.
        eval_batch_size (int): batch size of evaluation.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_drops: tuple[int, ...] = ()
    warmup_epochs: int = 0
    clip_radius: float | None = 0.1
    clip_layer_radii: dict[str, float] | None = None
    checkpoint_epochs: tuple[int, ...] = field(default=())
    seed: int = 0
    eval_batch_size: int = 512

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise InvalidArgumentError("epochs, batch_size and eval_batch_size must be >= 1")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise InvalidArgumentError("lr must be > 0, momentum and weight_decay >= 0")
        if self.clip_radius is not None and not self.clip_radius > 0:
            raise InvalidArgumentError(
                f"clip_radius must be positive or None, got {self.clip_radius}")
        if self.clip_layer_radii and (self.clip_radius is None or not all(
                isinstance(r, (int, float)) and r > 0 for r in self.clip_layer_radii.values())):
            raise InvalidArgumentError(
                f"clip_layer_radii needs clip_radius set and positive radii, got "
                f"{self.clip_layer_radii} with clip_radius {self.clip_radius}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise InvalidArgumentError(
                f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        bad = [e for e in self.checkpoint_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise InvalidArgumentError(f"checkpoint_epochs {bad} are outside 1..{self.epochs}")

    def to_json(self) -> dict:
        """The settings as a JSON-able dict (tuples become lists; ``clip_layer_radii`` only
        when set, so runs written before it existed still resume)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if out["clip_layer_radii"] is None:
            del out["clip_layer_radii"]
        return out


def scaled_checkpoint_epochs(epochs: int, paper: Sequence[int] = PAPER_CHECKPOINT_EPOCHS,
                             paper_epochs: int = 64) -> tuple[int, ...]:
    """The paper's checkpoint epochs scaled to a run of ``epochs`` epochs (deduplicated).

    ``max(1, round(e * epochs / paper_epochs))`` for each paper epoch ``e``, so the last one is
    always ``epochs``. E.g. 12 epochs -> (1, 2, 4, 6, 8, 12).
    """
    if epochs < 1:
        raise InvalidArgumentError(f"epochs must be >= 1, got {epochs}")
    return tuple(sorted({max(1, min(epochs, round(e * epochs / paper_epochs))) for e in paper}))


def learning_rate(settings: TrainSettings, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Rate of step ``step`` (0-based) of epoch ``epoch`` (1-based): warm-up, then drops."""
    rate = settings.lr * 0.1 ** sum(epoch > d for d in settings.lr_drops)
    if epoch <= settings.warmup_epochs:
        done = (epoch - 1) * steps_per_epoch + step + 1
        rate *= done / (settings.warmup_epochs * steps_per_epoch)
    return rate


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def iterate_batches(data: Dataset, batch_size: int, generator: torch.Generator | None,
             num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``(inputs, labels)``; shuffled when a generator is given.

    In-memory :class:`TensorDataset` s are sliced directly (no per-item collation); anything
    else goes through a :class:`DataLoader` with the same generator.
    """
    if isinstance(data, TensorDataset):
        x, y = data.tensors[0], data.tensors[1]
        n = x.shape[0]
        order = torch.randperm(n, generator=generator) if generator is not None else None
        for start in range(0, n, batch_size):
            if order is None:
                yield x[start:start + batch_size], y[start:start + batch_size]
            else:
                index = order[start:start + batch_size]
                yield x[index], y[index]
        return
    loader = DataLoader(data, batch_size=batch_size, shuffle=generator is not None,
                        generator=generator, num_workers=num_workers)
    yield from loader


def _num_batches(data: Dataset, batch_size: int) -> int:
    return math.ceil(len(data) / batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_transform: BatchTransform | None = None,
             batch_size: int = 512, device: str | torch.device = "cpu",
             num_workers: int = 0) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (in eval mode; mode restored).

    Args:
        model (nn.Module): a classifier returning logits.
        data (Dataset): items ``(input, label)``.
        batch_transform (Callable | None): applied to each input batch on ``device``.
        batch_size (int): images per forward pass.
        device (str | torch.device): where to compute.
        num_workers (int): DataLoader workers for datasets that are not in memory.

    Returns:
        dict[str, float]: ``{"loss": ..., "accuracy": ..., "count": ...}``.
    """
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in iterate_batches(data, batch_size, None, num_workers):
            x, y = x.to(device), y.to(device)
            if batch_transform is not None:
                x = batch_transform(x)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise InvalidArgumentError("cannot evaluate on an empty dataset")
    return {"loss": total_loss / count, "accuracy": correct / count, "count": count}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_weights(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save ``model.state_dict()`` (optionally cast, e.g. to float16 to halve committed files).

    Floating-point tensors are cast to ``dtype``; integer buffers are kept. The file loads with
    ``torch.load(path, weights_only=True)`` and ``load_state_dict`` casts back to the model's
    dtype.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to("cpu", dtype) if dtype is not None and v.is_floating_point()
                 else v.detach().cpu()).clone() for k, v in model.state_dict().items()}
    _atomic_save(state, path)
    return path


def _write_log(run_dir: Path, settings: TrainSettings, history: list[dict]) -> None:
    text = json.dumps({"settings": settings.to_json(), "history": history}, indent=1)
    tmp = run_dir / "log.json.tmp"
    tmp.write_text(text + "\n")
    os.replace(tmp, run_dir / "log.json")


def train(model: nn.Module, train_data: Dataset, settings: TrainSettings,
          run_dir: str | Path, test_data: Dataset | None = None,
          batch_transform: BatchTransform | None = None,
          eval_transform: BatchTransform | None = None, device: str | torch.device = "cpu",
          resume: bool = True, stop_after: int | None = None, progress: bool = True,
          num_workers: int = 0, on_step: StepCallback | None = None) -> list[dict]:
    """Train ``model`` in place with SGD + momentum and feature-scale clipping.

    Args:
        model (nn.Module): the network (left in eval mode at the end).
        train_data (Dataset): items ``(input, label)``; a :class:`TensorDataset` is sliced
            directly (fast), anything else (e.g. an ImageFolder) goes through a DataLoader.
        settings (TrainSettings): hyper-parameters.
        run_dir (str | Path): where checkpoints and ``log.json`` go (created).
        test_data (Dataset | None): evaluated after every epoch when given.
        batch_transform (Callable | None): applied to each training batch on ``device`` (e.g.
            upsampling and augmentation, :func:`deconv.datasets.fashion_batch_transform`).
        eval_transform (Callable | None): same for evaluation (defaults to ``batch_transform``).
        device (str | torch.device): where to train (``"cuda"`` works for the paper config).
        resume (bool): continue from ``run_dir/last.pt`` when it exists.
        stop_after (int | None): stop after this epoch (simulates an interruption; tests).
        progress (bool): show a tqdm bar.
        num_workers (int): DataLoader workers for datasets that are not in memory.
        on_step (Callable | None): called as ``on_step(epoch, step, model)`` after every
            optimizer step and clipping (e.g. to trace filter RMS within an epoch); it must not
            change the model.

    Returns:
        list[dict]: one row per finished epoch (also in ``run_dir/log.json``).

    Raises:
        ResumeMismatchError: ``last.pt`` exists but was written with other settings.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_transform = eval_transform or batch_transform
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    history: list[dict] = []
    start_epoch = 1
    last = run_dir / "last.pt"
    if resume and last.is_file():
        state = read_checkpoint(last, "training state", map_location=device)
        if state["settings"] != settings.to_json():
            raise ResumeMismatchError(
                f"{last} was written with settings {state['settings']}, not {settings.to_json()};"
                f" use another run directory or resume=False (--no-resume) to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
    steps = _num_batches(train_data, settings.batch_size)
    final = settings.epochs if stop_after is None else min(stop_after, settings.epochs)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng_devices = [device] if device.type == "cuda" else []
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.random.fork_rng(devices=rng_devices):
            for epoch in range(start_epoch, final + 1):
                torch.manual_seed(_epoch_seed(settings.seed, epoch) + 1)
                shuffle = torch.Generator().manual_seed(_epoch_seed(settings.seed, epoch))
                row = _train_epoch(model, optimizer, train_data, settings, epoch, steps, shuffle,
                                   batch_transform, device, progress, num_workers, tqdm,
                                   on_step)
                if test_data is not None:
                    result = evaluate(model, test_data, eval_transform, settings.eval_batch_size,
                                      device, num_workers)
                    row.update(test_loss=result["loss"], test_accuracy=result["accuracy"])
                history.append(row)
                if epoch in settings.checkpoint_epochs:
                    _atomic_save({"model": model.state_dict(), "epoch": epoch},
                                 run_dir / f"epoch_{epoch:03d}.pt")
                _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "epoch": epoch, "history": history,
                              "settings": settings.to_json()}, last)
                _write_log(run_dir, settings, history)
                if progress:
                    tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()
                                        if not isinstance(v, (dict, list))))
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        model.eval()
    return history


def _train_epoch(model, optimizer, data, settings, epoch, steps, shuffle, batch_transform,
                 device, progress, num_workers, tqdm, on_step=None) -> dict:
    model.train()
    start = time.perf_counter()
    total_loss, correct, count = 0.0, 0, 0
    clipped = {name: 0 for name, m in model.named_modules()
               if isinstance(m, nn.modules.conv._ConvNd)}
    bar = tqdm(iterate_batches(data, settings.batch_size, shuffle, num_workers), total=steps,
               desc=f"epoch {epoch}/{settings.epochs}", disable=not progress, leave=False)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device), y.to(device)
        if batch_transform is not None:
            x = batch_transform(x)
        rate = learning_rate(settings, epoch, step, steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch}, step {step}; "
                                     f"lower the learning rate or turn clipping on")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if settings.clip_radius is not None:
            for name, n in feature_scale_clip_by_layer(model, settings.clip_radius,
                                                       settings.clip_layer_radii).items():
                clipped[name] += n
        if on_step is not None:
            on_step(epoch, step, model)
        total_loss += float(loss.detach()) * y.numel()
        correct += int((logits.detach().argmax(1) == y).sum())
        count += y.numel()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{total_loss / count:.3f}", lr=f"{rate:.2g}")
    return {"epoch": epoch, "lr": rate, "train_loss": total_loss / count,
            "train_accuracy": correct / count, "seconds": round(time.perf_counter() - start, 2),
            "filters_clipped": sum(clipped.values()), "filters_clipped_by_layer": clipped,
            "filter_rms": {name: [round(float(r), 6) for r in filter_rms(m.weight)]
                           for name, m in model.named_modules()
                           if isinstance(m, nn.modules.conv._ConvNd)}}
