"""Every error ``deconv`` raises for a bad input: one base class, :class:`DeconvError`.

Each error also subclasses the built-in exception that fits (``ValueError`` for a bad value,
``TypeError`` for a wrong type, ``FileNotFoundError`` for a missing file, ``KeyError`` for an
unknown name), so ``except ValueError`` keeps working. The message says what was wrong and
what to do. Two more live beside the code that raises them and derive from
:class:`DeconvError` too: :class:`deconv.UnsupportedModuleError` (the explicit deconvnet meets
a module it cannot go down) and :class:`deconv.occlusion.incremental_plan.IncrementalPlanError`.
The command line prints a :class:`DeconvError` as one line and exits with status 2; any other
exception is a bug in ``deconv`` and shows its traceback.

Example::

    try:
        deconv.Deconvnet(loaded).project(x, "features.99", units)
    except deconv.DeconvError as exc:  # UnknownLayerError here, also a ValueError
        print(exc)
"""

from __future__ import annotations

__all__ = [
    "DeconvError", "InvalidArgumentError", "InvalidTypeError", "UnknownNameError",
    "MissingFileError", "OutOfRangeError", "LayerNotRunError", "InvalidImageError",
    "DeviceMismatchError", "DtypeMismatchError",
    "UnknownLayerError", "ReusedModuleError",
    "ScriptedModelError", "WeightsUnavailableError", "ReceptiveFieldError", "CorruptImageError",
    "CheckpointError", "WeightsMismatchError", "CheckpointMismatchError", "ResumeMismatchError",
    "OutputPathError",
    "FashionMNISTNotFoundError", "UsageError",
]


class DeconvError(Exception):
    """Base class of every error ``deconv`` raises for a bad input or an unusable file."""


class InvalidArgumentError(DeconvError, ValueError):
    """An argument has the right type but a bad value (out of range, empty, inconsistent)."""


class InvalidTypeError(DeconvError, TypeError):
    """An argument has a type ``deconv`` cannot use."""


class UnknownNameError(DeconvError, KeyError):
    """A name (sample photo, method, model, class) that does not exist; lists the choices."""

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return str(self.args[0]) if self.args else ""


class OutOfRangeError(InvalidArgumentError, IndexError):
    """An index (channel, class, unit position) outside the valid range; says the range."""


class LayerNotRunError(DeconvError, RuntimeError):
    """A layer that the model's ``forward`` does not run, so it has no output to read."""


class MissingFileError(DeconvError, FileNotFoundError):
    """A file or folder that should exist does not (or is of the wrong kind)."""


class InvalidImageError(InvalidArgumentError):
    """An image or batch that cannot be used: wrong shape, empty, NaN/Inf values."""


class DeviceMismatchError(InvalidArgumentError):
    """Inputs on a different device than the model's parameters."""


class DtypeMismatchError(InvalidArgumentError):
    """Inputs of another floating dtype than the model's parameters."""


class UnknownLayerError(DeconvError, ValueError):
    """Raised when a layer name or paper layer number does not exist in a model."""


class ReusedModuleError(DeconvError, RuntimeError):
    """Raised when a tapped module runs more than once per forward (e.g. ResNet's shared relu),
    so "its output" is ambiguous: tap a module that runs once."""


class ScriptedModelError(DeconvError, TypeError):
    """A TorchScript (``torch.jit``) model: hooks and module surgery need an eager module."""


class WeightsUnavailableError(DeconvError, RuntimeError):
    """Raised when a model's pretrained weights are neither on disk nor downloadable."""


class ReceptiveFieldError(DeconvError, ValueError):
    """Raised when a layer's receptive field cannot be expressed as a regular grid of boxes."""


class CorruptImageError(DeconvError, ValueError):
    """Raised when a file cannot be decoded as an image; the message names the file."""


class CheckpointError(DeconvError, ValueError):
    """A checkpoint or result file that is corrupt, truncated or not of the expected kind."""


class WeightsMismatchError(CheckpointError, RuntimeError):
    """Weights of another architecture (missing, unexpected or differently shaped tensors);
    a ``RuntimeError`` too, as torch's ``load_state_dict`` raises."""


class CheckpointMismatchError(DeconvError, ValueError):
    """A saved state belongs to another run (other weights, data, size, layers or k)."""


class ResumeMismatchError(CheckpointMismatchError):
    """Raised when ``run_dir/last.pt`` was written with other settings than the ones given."""


class OutputPathError(DeconvError, ValueError):
    """An output folder that cannot be used: it is a file, or it lies inside the input data."""


class FashionMNISTNotFoundError(MissingFileError):
    """Raised when no Fashion-MNIST idx files are found; the message says how to get them."""


class UsageError(DeconvError, ValueError):
    """A command-line usage error (unknown option, missing or malformed argument)."""
