"""The checks every public function and CLI command runs on what a user passes in.

One function per kind of input, each raising a :mod:`deconv.errors` error whose message says
what was wrong and what to do. The API calls them at its entry points and the command line
calls the same ones, so an input is refused the same way wherever it comes in.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import torch
from torch import nn

from deconv.errors import (
    CheckpointError,
    DeviceMismatchError,
    DtypeMismatchError,
    InvalidArgumentError,
    InvalidImageError,
    InvalidTypeError,
    MissingFileError,
    OutOfRangeError,
    OutputPathError,
)

__all__ = ["check_positive_int", "check_nonnegative_int", "check_index", "check_channel",
           "check_class_target", "check_images", "check_finite", "check_eager_model",
           "model_dtype_device", "check_checkpoint_file", "read_checkpoint", "check_output_dir",
           "is_inside"]


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (bools refused), else raise.

    Args:
        name (str): the argument's name as the user wrote it (``"k"``, ``"--size"``).
        value: the value given.
        minimum (int): the smallest allowed value.

    Raises:
        InvalidTypeError: not an int. InvalidArgumentError: smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an int >= {minimum}, got {value!r} "
                                      f"({type(value).__name__})")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_nonnegative_int(name: str, value) -> int:
    """Return ``value`` if it is an int ``>= 0`` (see :func:`check_positive_int`)."""
    return check_positive_int(name, value, minimum=0)


def check_index(name: str, value, size: int, what: str) -> int:
    """Return ``value`` if it is an int in ``[0, size)``; negative indices are refused.

    Args:
        name (str): the argument's name.
        value: the index given.
        size (int): how many there are.
        what (str): what is counted, for the message (``"channels of layer 'features.3'"``).

    Raises:
        InvalidTypeError: not an int. OutOfRangeError: outside ``[0, size)``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an int index, got {value!r} "
                                      f"({type(value).__name__})")
    if not 0 <= value < size:
        raise OutOfRangeError(f"{name} {value} is out of range: there are {size} {what}, "
                                   f"indexed 0..{size - 1} (negative indices are not accepted)")
    return int(value)


def check_channel(channel, channels: int, layer: str = "") -> int:
    """Return ``channel`` if it indexes one of ``channels`` feature maps (:func:`check_index`)."""
    where = f" of layer {layer!r}" if layer else ""
    return check_index("channel", channel, channels, f"channels{where}")


def check_class_target(target, num_classes: int, categories=None) -> int:
    """Return a class index in ``[0, num_classes)`` from an int or an exact class name.

    Args:
        target (int | str): class index or (with ``categories``) class name.
        num_classes (int): size of the model's output.
        categories (Sequence[str] | None): class names, to accept names.

    Raises:
        OutOfRangeError: an index outside the model's classes (``-1`` too).
        InvalidArgumentError: an unknown class name.
    """
    if isinstance(target, str):
        if target.lstrip("-").isdigit():
            target = int(target)
        elif categories is not None and target in categories:
            return list(categories).index(target)
        else:
            hint = "an exact class name or " if categories is not None else ""
            raise InvalidArgumentError(f"unknown target class {target!r}: give {hint}a class "
                                                 f"index in 0..{num_classes - 1}")
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        target = int(target)
    return check_index("target", target, num_classes, "classes in the model's output")


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise :class:`InvalidImageError` if ``tensor`` holds NaN or Inf values (says how many)."""
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            count = int(bad.sum())
            raise InvalidImageError(
                f"{name} contains {count} NaN or Inf value(s) out of {tensor.numel()}; results "
                f"would be silently wrong. Clean the input (e.g. torch.nan_to_num) first")
    return tensor


def model_dtype_device(model) -> tuple[torch.dtype | None, torch.device | None]:
    """The floating dtype and the device of a model's first parameter or buffer (None, None
    for a model without any)."""
    from deconv.layers import module_of

    module = module_of(model)
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return None, None


def check_images(images, model=None, *, name: str = "images", batch: bool = True,
                 channels: int | None = None) -> torch.Tensor:
    """Check a batch (or one image) of model inputs; returns it unchanged.

    Refused: a non-tensor, a wrong number of dimensions, an empty batch or empty image, an
    integer tensor, NaN/Inf values and, when ``model`` is given, another floating dtype or
    another device than the model's parameters.

    Args:
        images: ``[N, C, H, W]`` (``batch=True``) or ``[C, H, W]``.
        model (nn.Module | LoadedModel | None): the model the images will go through.
        name (str): the argument's name, for messages.
        batch (bool): expect a batch ``[N, C, H, W]`` (else one image ``[C, H, W]``).
        channels (int | None): the number of input channels expected, if known.

    Raises:
        InvalidTypeError, InvalidImageError, DtypeMismatchError, DeviceMismatchError.
    """
    if not isinstance(images, torch.Tensor):
        raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}; "
                                      f"preprocess PIL images with loaded.preprocess(image)")
    want = 4 if batch else 3
    if images.dim() != want:
        shape = "[N, C, H, W]" if batch else "[C, H, W]"
        hint = ""
        if batch and images.dim() == 3:
            hint = "; add a batch dimension with images.unsqueeze(0)"
        elif not batch and images.dim() == 4 and images.shape[0] == 1:
            hint = "; pass images[0]"
        raise InvalidImageError(f"{name} must be {shape}, got shape {tuple(images.shape)}{hint}")
    if batch and images.shape[0] == 0:
        raise InvalidImageError(f"{name} is an empty batch (shape {tuple(images.shape)}); "
                                f"give at least one image")
    if any(s == 0 for s in images.shape):
        raise InvalidImageError(f"{name} has an empty dimension (shape {tuple(images.shape)})")
    if not images.is_floating_point():
        raise InvalidImageError(f"{name} must be a floating tensor, got {images.dtype}; "
                                f"preprocess images with loaded.preprocess (uint8 pixels are "
                                f"not model inputs)")
    if channels is not None and images.shape[-3] != channels:
        raise InvalidImageError(f"{name} has {images.shape[-3]} channels, the model expects "
                                f"{channels}")
    if model is not None:
        dtype, device = model_dtype_device(model)
        if dtype is not None and images.dtype != dtype:
            raise DtypeMismatchError(
                f"{name} are {images.dtype} but the model's parameters are {dtype}; convert "
                f"one to the other (images.to({dtype}) or model.to({images.dtype}))")
        if device is not None and images.device != device:
            raise DeviceMismatchError(
                f"{name} are on {images.device} but the model is on {device}; move them "
                f"with images.to('{device}')")
    if images.device.type != "meta":
        check_finite(name, images)
    return images


def check_eager_model(model) -> nn.Module:
    """Return the ``nn.Module`` of ``model``; refuse TorchScript and non-modules (this is
    :func:`deconv.layers.module_of`, which every entry point goes through).

    Raises:
        ScriptedModelError: a ``torch.jit`` scripted or traced model (no Python hooks).
        InvalidTypeError: not a module or a LoadedModel.
    """
    from deconv.layers import module_of

    return module_of(model)


def check_checkpoint_file(path, what: str = "checkpoint") -> Path:
    """Return ``path`` as a Path if it is an existing, non-empty file.

    Raises:
        MissingFileError: it does not exist or is a folder. CheckpointError: it is empty.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise MissingFileError(f"{what} {path} is not a file (a folder?); give the file path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} file {path} is empty (an interrupted write?); delete it "
                              f"and run again")
    return path


def read_checkpoint(path, what: str = "checkpoint", **kwargs):
    """``torch.load(path, weights_only=True)`` with every failure turned into a clear error.

    Args:
        path (str | Path): the file.
        what (str): what the file is, for messages.
        **kwargs: passed to :func:`torch.load` (``map_location``).

    Raises:
        MissingFileError, CheckpointError: missing, empty, truncated, corrupt or not a plain
        tensor file (``deconv`` never loads pickled code).
    """
    path = check_checkpoint_file(path, what)
    kwargs.setdefault("map_location", "cpu")
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read {what} file {path}: it is truncated, corrupt or not a tensor file "
            f"saved by torch.save ({type(exc).__name__}: {first[:160]}). Delete it and run "
            f"again, or give another file") from exc


def is_inside(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (after resolving links)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_output_dir(out, inputs=(), create: bool = True) -> Path:
    """Return the output folder ``out`` (created if ``create``); refuse unusable ones.

    Args:
        out (str | Path): the output folder.
        inputs (Sequence[str | Path]): input folders that outputs must not be written into
            (written figures would be read back as images on the next run).
        create (bool): create the folder.

    Raises:
        OutputPathError: ``out`` is an existing file, or lies inside one of ``inputs``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"output folder {out} is an existing file; give a folder path")
    for folder in inputs:
        if folder is not None and Path(folder).is_dir() and is_inside(out, folder):
            raise OutputPathError(
                f"output folder {out} is inside the input folder {folder}: its figures would "
                f"be read as images next time; write somewhere else")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputPathError(f"cannot create output folder {out}: {parent} is a file")
    if create:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise OutputPathError(f"output folder {out} is not writable")
    return out
