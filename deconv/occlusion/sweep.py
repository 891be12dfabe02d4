"""``occlusion_sweep``: slide a square over an image and watch a feature map and the classifier.

Zeiler & Fergus (2014), Section 4.2 and Fig. 7: a grey square is moved over the image; for
each position we record the probability of the correct class, the most probable label and the
total activation of one feature map (the strongest one in the unoccluded image). If the model
really uses the object, the probability drops where the object is hidden.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from deconv._deprecation import warn_deprecated
from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import resolve_layer
from deconv.model_state import eval_mode
from deconv.occlusion.engines import build_engine, occlusion_engines, resolve_engine
from deconv.occlusion.fills import make_fill
from deconv.occlusion.grid import occluder_boxes, window_average
from deconv.occlusion.naive import capture_layer_output
from deconv.occlusion.result import ClassScores, FeatureTotals, OcclusionGrid, OcclusionResult

__all__ = ["OcclusionResult", "WrappedModel", "occlusion_sweep"]


@runtime_checkable
class WrappedModel(Protocol):
    """A network with its preprocessing, as the sweep reads it (``LoadedModel`` is one).

    Only ``model`` is required; the others are read where present: ``preprocess(picture)``
    (a PIL image or array -> model input), ``normalize(pixels)`` (pixels in [0, 1] -> model
    input, for ``fill="black"``), ``mean`` / ``std`` (to show the same picture to two models),
    ``categories`` (class names; None: no classifier head) and ``name``.
    """

    model: nn.Module


def _in_eval_mode(sweep: Callable[..., OcclusionResult]) -> Callable[..., OcclusionResult]:
    """Run ``sweep`` with its model (and feature model) in eval mode, restored afterwards."""

    @functools.wraps(sweep)
    def wrapper(model, image, **options) -> OcclusionResult:
        feature_model = options.get("feature_model")
        modules = [_unwrap(m, what)[0] for m, what in ((model, "model"),
                                                       (feature_model, "feature_model"))
                   if m is not None]
        if any(m.training for m in modules):
            warnings.warn("the model is in training mode: the sweep runs it in eval mode "
                          "(no dropout, batch-norm running statistics) and puts it back; call "
                          "model.eval() to silence this", stacklevel=2)
        with ExitStack() as stack:
            for m in modules:
                stack.enter_context(eval_mode(m))
            return sweep(model, image, **options)

    return wrapper


@_in_eval_mode
def occlusion_sweep(model: nn.Module | WrappedModel,
                    image: torch.Tensor | Image.Image | np.ndarray, *,
                    patch: int | tuple[int, int], stride: int | tuple[int, int],
                    fill: str | float | torch.Tensor = "mean", target: int | str | None = None,
                    layer: str | int | None = None, channel: int | str = "strongest",
                    feature_model: nn.Module | WrappedModel | None = None, batch_size: int = 32,
                    engine: str = "auto", progress: bool = True,
                    feature: tuple[str | int, int | str] | None = None,
                    method: str | None = None) -> OcclusionResult:
    """Slide an occluder over ``image`` and record the classifier and a feature map per position.

    Zeiler & Fergus (2014), Fig. 7. Positions follow captum's ``Occlusion`` grid (see
    :mod:`deconv.occlusion.grid`): starts ``0, s, ..., k*s`` with ``k = ceil((H - p) / s)``,
    the last window clipped at the border.

    Args:
        model (nn.Module | WrappedModel): the classifier (logits ``[B, K]``; probabilities are
            their softmax), bare or with its preprocessing (a ``LoadedModel``, or anything with
            ``.model``, see :class:`WrappedModel`). A model without a head (``categories`` None
            or a non-2-D output) gives no probabilities; then ``layer`` is required.
        image (torch.Tensor | PIL.Image.Image | np.ndarray): a model input ``[C, H, W]`` or
            ``[1, C, H, W]`` already normalized, or a picture (needs a wrapped model, whose
            ``preprocess`` is applied).
        patch (int | tuple[int, int]): occluder side(s) in input pixels.
        stride (int | tuple[int, int]): step between positions.
        fill (str | float | torch.Tensor): ``"mean"`` (the model's mean pixel: the paper's grey),
            ``"image_mean"``, ``"zero"``, ``"black"``, ``"blur"``, a number or a tensor; see
            :func:`deconv.occlusion.fills.make_fill`.
        target (int | str | None): class index or name; the top class of the unoccluded image
            by default.
        layer (str | int | None): a layer of the feature model (module name or paper layer
            number) whose feature map ``channel`` is totalled per position; None: no feature map.
        channel (int | str): the feature map of ``layer``; ``"strongest"`` (default) picks the
            map holding the largest activation of the layer in the unoccluded image.
        feature_model (nn.Module | WrappedModel | None): take the feature map from this model
            instead (e.g. probabilities from ``efficientnet-lite0``, maps from ``hed-vgg16``). The
            same occluded picture is shown to both: when both carry ``mean`` / ``std`` the input
            is converted between their normalizations; otherwise both must take the same input.
        batch_size (int): occluder positions per forward pass.
        engine (str): occlusion engine (:func:`deconv.occlusion.occlusion_engines`), or
            ``"auto"`` (default): the exact incremental engine (Krypton-style; same numbers,
            several times faster) for each model it supports, else the batched ``"naive"`` one.
            One engine object is built per model for this sweep and released at its end.
        progress (bool): show a progress bar (tqdm) over positions.
        feature (tuple | None): deprecated spelling of ``layer=..., channel=...`` as one pair
            ``(layer, channel)``; it still works, with a ``DeprecationWarning``.
        method (str | None): deprecated name of ``engine`` ("method" names an entry of
            :func:`deconv.methods.attribute`).

    Returns:
        OcclusionResult: the grid of positions, the class scores (``classifier``), the feature
        map's totals (``feature``) and the per-pixel drop map.

    Raises:
        ValueError: patch larger than the image, stride or patch < 1, unknown class, layer,
            channel, fill or engine, or an image with NaN / inf.
        TypeError: wrong argument types, an integer image, or an image dtype that differs
            from the model's parameters.
    """
    argument = "engine"
    if method is not None:
        warn_deprecated("occlusion_sweep(method=...)", "use engine=")
        engine, argument = method, "method"
    module, wrapper = _unwrap(model, "model")
    if engine != "auto" and engine not in occlusion_engines():
        resolve_engine(engine, module, argument=argument)  # raises the unknown-engine error
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
    x = _as_input(image, module, wrapper)
    height, width = x.shape[1:]
    patch_hw = _pair(patch, "patch")
    stride_hw = _pair(stride, "stride")
    if patch_hw[0] > height or patch_hw[1] > width:
        raise InvalidArgumentError(
            f"patch {patch_hw} is larger than the image {(height, width)}; use a "
            "patch no larger than the image")
    fill_image, fill_text = make_fill(fill, x, patch=patch_hw,
                                      normalize=getattr(wrapper, "normalize", None))
    boxes, rows, cols = occluder_boxes(height, width, patch_hw, stride_hw)

    same_model = feature_model is None or feature_model is model
    f_module, f_wrapper = (module, wrapper) if same_model else _unwrap(feature_model,
                                                                       "feature_model")
    m_engine = resolve_engine(engine, module)
    f_engine = m_engine if same_model else resolve_engine(engine, f_module)
    if feature is not None:
        warn_deprecated("occlusion_sweep(feature=(layer, channel))",
                        "pass layer=... and channel=... instead")
        if layer is not None:
            raise InvalidTypeError(
                "give either layer= (and channel=) or the old feature=, not both")
        layer, channel = _parse_feature(feature)
    if layer is not None:
        layer, channel = _check_feature(layer, channel, model if same_model else feature_model)
    fx, f_fill = (x, fill_image) if same_model else (
        _convert_input(x, wrapper, f_wrapper, f_module),
        _convert_input(fill_image, wrapper, f_wrapper, f_module))

    # The unoccluded image: classifier output, and the full feature layer to pick the map.
    if same_model and layer is not None:
        base_out, base_layer = capture_layer_output(module, x.unsqueeze(0), layer)
    else:
        base_out, _ = capture_layer_output(module, x.unsqueeze(0), None)
        base_layer = None
        if layer is not None:
            _, base_layer = capture_layer_output(f_module, fx.unsqueeze(0), layer)
    categories = getattr(wrapper, "categories", None)
    has_head = (base_out is not None and base_out.ndim == 2
                and not (wrapper is not None and categories is None))
    if not has_head and layer is None:
        raise InvalidArgumentError(
            "this model has no classifier head (its output is not [B, classes]); "
            "pass layer= (and channel=) to sweep a feature map instead")
    if not has_head and target is not None:
        raise InvalidArgumentError("target was given but the model has no classifier head")
    if has_head:
        base_prob = torch.softmax(base_out, dim=1)[0]
        target = _resolve_target(target, base_prob, categories)
    if layer is not None:
        channel = _resolve_channel(channel, base_layer, layer)

    probs, labels, label_probs, totals = [], [], [], []
    with ExitStack() as stack, tqdm(total=len(boxes), desc="occlusion", unit="pos",
                                    disable=not progress) as bar:
        main = side = None
        if has_head or same_model:
            main = stack.enter_context(build_engine(
                m_engine, module, x, fill_image, layer=layer if same_model else None,
                batch_size=batch_size, need_output=has_head))
        if layer is not None and not same_model:
            side = stack.enter_context(build_engine(
                f_engine, f_module, fx, f_fill, layer=layer, batch_size=batch_size,
                need_output=False))
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start:start + batch_size]
            out = main.outputs(chunk) if main is not None else None
            if has_head:
                p = torch.softmax(out.output, dim=1)
                probs.append(p[:, target])
                top = p.max(dim=1)
                labels.append(top.indices)
                label_probs.append(top.values)
            if layer is not None:
                totals.append((out if side is None else side.outputs(chunk)).captured[:, channel])
            bar.update(len(chunk))

    classifier = feature_part = None
    if has_head:
        probability = torch.cat(probs).view(rows, cols).cpu()
        base_probability = float(base_prob[target])
        classifier = ClassScores(
            target=target, target_name=categories[target] if categories else None,
            base_probability=base_probability, base_label=int(base_prob.argmax()),
            probability=probability, label=torch.cat(labels).view(rows, cols).cpu(),
            label_probability=torch.cat(label_probs).view(rows, cols).cpu(),
            drop_map=window_average((base_probability - probability.double()).reshape(-1),
                                    boxes, height, width),
            categories=categories)
    if layer is not None:
        base_map = base_layer[0, channel]
        peak = None
        if base_map.ndim == 2:
            flat = int(base_map.argmax())
            peak = (flat // base_map.shape[1], flat % base_map.shape[1])
        feature_part = FeatureTotals(layer=layer, channel=channel,
                                     total=torch.cat(totals).view(rows, cols).cpu(),
                                     base_total=float(base_map.sum()), peak=peak,
                                     model_name=_name(model if same_model else feature_model))
    return OcclusionResult(
        grid=OcclusionGrid(boxes, (rows, cols), (height, width), patch_hw, stride_hw),
        fill=fill_text,
        engine=m_engine if same_model or f_engine == m_engine
        else f"{m_engine} (model), {f_engine} (feature model)",
        model_name=_name(model), classifier=classifier, feature=feature_part)


def _unwrap(model, what: str) -> tuple[nn.Module, WrappedModel | None]:
    """``(module, wrapper or None)``: a bare module, or an object carrying one in ``.model``."""
    if isinstance(model, nn.Module):
        return model, None
    if isinstance(getattr(model, "model", None), nn.Module):
        return model.model, model
    raise InvalidTypeError(
        f"{what} must be a torch.nn.Module or a model with its preprocessing (a "
        f"deconv LoadedModel, or any object with .model), got {type(model).__name__}")


def _name(model) -> str:
    if not isinstance(model, nn.Module) and getattr(model, "name", None):
        return model.name
    return type(model).__name__


def _parameter_like(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters(), None)
    if p is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return p.dtype, p.device


def _as_input(image, module: nn.Module, wrapper: WrappedModel | None) -> torch.Tensor:
    """Validate ``image`` and return the model input ``[C, H, W]`` on the model's device."""
    if isinstance(image, (Image.Image, np.ndarray)):
        if getattr(wrapper, "preprocess", None) is None:
            raise InvalidTypeError("a picture (PIL image / array) needs a deconv LoadedModel to "
                                   "preprocess it; with a bare nn.Module pass a normalized tensor")
        image = wrapper.preprocess(image)
    if not isinstance(image, torch.Tensor):
        raise InvalidTypeError(f"image must be a tensor [C, H, W] or a picture, got "
                               f"{type(image).__name__}")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise InvalidArgumentError(f"image must be one image [C, H, W] or [1, C, H, W], got shape "
                                   f"{list(image.shape)}; sweep a batch one image at a time")
    if not image.is_floating_point():
        raise InvalidTypeError(f"image must be a float tensor (normalized model input), got "
                               f"{image.dtype}; use LoadedModel.preprocess or convert it")
    dtype, device = _parameter_like(module)
    if image.dtype != dtype:
        raise InvalidTypeError(f"image dtype {image.dtype} differs from the model's parameters "
                               f"({dtype}); convert one of them (e.g. image.to({dtype}))")
    if not torch.isfinite(image).all():
        raise InvalidArgumentError("image contains NaN or inf; clean it before the sweep")
    return image.detach().to(device)


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)):
        raise InvalidTypeError(f"{what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise InvalidArgumentError(f"{what} must be at least 1 pixel, got {value!r}")
    return int(pair[0]), int(pair[1])


def _parse_feature(feature) -> tuple[str | int, int | str]:
    if not isinstance(feature, (tuple, list)) or len(feature) != 2:
        raise InvalidTypeError(
            f"feature must be a pair (layer, channel | 'strongest'), got {feature!r}")
    return feature[0], feature[1]


def _check_feature(layer, channel, model) -> tuple[str, int | str]:
    name = resolve_layer(model, layer)
    if channel != "strongest" and (isinstance(channel, bool)
                                   or not isinstance(channel, numbers.Integral)):
        raise InvalidTypeError(f"channel must be an int or 'strongest', got {channel!r}")
    return name, channel


def _resolve_channel(channel, base_layer: torch.Tensor, layer: str) -> int:
    if base_layer is None or base_layer.ndim < 2:
        raise InvalidArgumentError(
            f"layer {layer!r} gives no [B, C, ...] tensor to take a feature map of")
    channels = base_layer.shape[1]
    if channel == "strongest":
        return int(base_layer[0].reshape(channels, -1).max(dim=1).values.argmax())
    if not 0 <= channel < channels:
        raise InvalidArgumentError(
            f"channel {channel} out of range: layer {layer!r} has {channels} "
            f"feature maps (0..{channels - 1})")
    return int(channel)


def _resolve_target(target, base_prob: torch.Tensor, categories: list[str] | None) -> int:
    classes = base_prob.numel()
    if target is None:
        return int(base_prob.argmax())
    if isinstance(target, str):
        if not categories:
            raise InvalidArgumentError(
                f"target {target!r} is a name but the model has no categories; "
                "pass a class index")
        if target not in categories:
            import difflib

            close = difflib.get_close_matches(target, categories, n=3)
            raise InvalidArgumentError(
                f"unknown class {target!r}" +
                (f"; did you mean {close}?" if close else "; see .categories"))
        return categories.index(target)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise InvalidTypeError(
            f"target must be a class index, a class name or None, got {target!r}")
    if not 0 <= target < classes:
        raise InvalidArgumentError(f"target {target} out of range: the model has {classes} classes")
    return int(target)


def _convert_input(x: torch.Tensor, src: WrappedModel | None, dst: WrappedModel | None,
                   dst_module: nn.Module) -> torch.Tensor:
    """Map a model input of ``src`` to the input of ``dst`` (same picture, other normalization)."""
    dtype, device = _parameter_like(dst_module)
    if all(getattr(m, key, None) is not None for m in (src, dst) for key in ("mean", "std")):
        pixels = _affine(x, src.std, src.mean, inverse=False)
        return _affine(pixels, dst.std, dst.mean, inverse=True).to(device=device, dtype=dtype)
    return x.to(device=device, dtype=dtype)


def _affine(x: torch.Tensor, std, mean, inverse: bool) -> torch.Tensor:
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s if inverse else x * s + m
