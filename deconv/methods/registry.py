"""The method registry: every attribution method behind one call, ``attribute(method, ...)``.

A method is a function ``f(model, images, target, **options) -> attributions`` registered with
:func:`register_method`. The contract, shared by every entry:

* ``model``: an ``nn.Module`` (or a :class:`~deconv.zoo.LoadedModel`) mapping normalized images
  ``[N, 3, H, W]`` to class scores ``[N, classes]`` (logits);
* ``images``: the normalized model input ``[N, 3, H, W]``;
* ``target``: one class id per image (an int is broadcast);
* the result of the registered function: attributions ``[N, C, H, W]`` of the input's size
  (``C`` is 3 for pixel-space methods, 1 for maps that are already one channel).

:func:`attribute` then reduces the colour channels to one map ``[N, H, W]`` with the method's
documented rule (see :data:`REDUCTIONS`), so every method can be scored by the same metrics.

While a method runs the model is put in eval mode and every ``inplace`` flag is switched off;
both are restored afterwards, even when the method raises (see :mod:`deconv.model_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from deconv.errors import InvalidArgumentError, InvalidTypeError, OutOfRangeError, UnknownNameError
from deconv.layers import module_of
from deconv.model_state import eval_mode
from deconv.validation import check_images

__all__ = ["MethodInfo", "REDUCTIONS", "register_method", "list_methods", "method_info",
           "attribute", "reduce_channels", "as_target"]

#: Channel reductions: name -> what it computes on attributions ``[N, C, H, W]``.
REDUCTIONS = {
    "abs_max": "max over channels of |a| (Simonyan et al. 2013's rule for saliency maps); >= 0",
    "abs_sum": "sum over channels of |a|; >= 0",
    "sum": "sum over channels, signed (keeps completeness: IG maps sum to f(x) - f(baseline))",
    "mean": "mean over channels (for one-channel maps, or maps equal in every channel)",
    "none": "no reduction: [N, C, H, W] is returned",
}


@dataclass(frozen=True)
class MethodInfo:
    """Registry entry of one method.

    Attributes:
        name (str): registry name (``"deconvnet"``, ``"captum-saliency"``).
        function (Callable): ``f(model, images, target, **options) -> [N, C, H, W]``.
        family (str): ``"ours"`` or ``"captum"``.
        reduction (str): the default channel reduction, a key of :data:`REDUCTIONS`.
        signed (bool): whether the reduced map can be negative (diverging colormap for display).
        description (str): one line for listings and figure captions.
    """

    name: str
    function: Callable[..., torch.Tensor]
    family: str
    reduction: str
    signed: bool
    description: str


_METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, *, family: str, reduction: str, signed: bool = False,
                    description: str = "") -> Callable:
    """Decorator adding an attribution function to the registry.

    Args:
        name (str): registry name; must be new.
        family (str): ``"ours"`` or ``"captum"``.
        reduction (str): default channel reduction, one of :data:`REDUCTIONS` except ``"none"``.
        signed (bool): whether the reduced map can be negative.
        description (str): one line saying what the method computes.

    Returns:
        Callable: the decorator (it returns the function unchanged).

    Raises:
        ValueError: the name is taken or the reduction is unknown.
    """
    if name in _METHODS:
        raise InvalidArgumentError(f"method {name!r} is already registered; pick another name")
    if reduction not in REDUCTIONS or reduction == "none":
        raise InvalidArgumentError(
            f"reduction must be one of {sorted(set(REDUCTIONS) - {'none'})}, "
            f"got {reduction!r}")

    def wrap(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        _METHODS[name] = MethodInfo(name, function, family, reduction, signed, description)
        return function

    return wrap


def list_methods(family: str | None = None) -> list[str]:
    """Names of every registered method (captum's, then ours: registration order), or one family's.

    Args:
        family (str | None): ``"ours"``, ``"captum"`` or None for all.
    """
    return [n for n, info in _METHODS.items() if family is None or info.family == family]


def method_info(name: str) -> MethodInfo:
    """The registry entry of ``name``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    if name not in _METHODS:
        raise UnknownNameError(f"unknown method {name!r}; choose one of {list_methods()}")
    return _METHODS[name]


def as_target(target: int | Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    """Turn an int, a sequence or a tensor of class ids into a long tensor ``[n]``.

    Raises:
        ValueError: wrong number of ids. TypeError: not integers.
    """
    if isinstance(target, bool):
        raise InvalidTypeError("target must be class ids (int), not a bool")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long)
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise InvalidTypeError(f"target must hold integer class ids, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise InvalidArgumentError(
            f"target has {t.numel()} class ids for {n} images; give one per image "
            f"or a single int")
    return t


def reduce_channels(attributions: torch.Tensor, rule: str) -> torch.Tensor:
    """Reduce attributions ``[N, C, H, W]`` to maps ``[N, H, W]`` with a rule of :data:`REDUCTIONS`.

    Raises:
        ValueError: unknown rule or a tensor that is not 4-D.
    """
    if attributions.dim() != 4:
        raise InvalidArgumentError(f"attributions must be [N, C, H, W], got shape "
                                                       f"{tuple(attributions.shape)}")
    if rule == "abs_max":
        return attributions.abs().amax(dim=1)
    if rule == "abs_sum":
        return attributions.abs().sum(dim=1)
    if rule == "sum":
        return attributions.sum(dim=1)
    if rule == "mean":
        return attributions.mean(dim=1)
    if rule == "none":
        return attributions
    raise InvalidArgumentError(f"unknown reduction {rule!r}; choose one of {list(REDUCTIONS)}")


def attribute(method: str, model, images: torch.Tensor,
              target: int | Sequence[int] | torch.Tensor, *, reduction: str | None = None,
              **options) -> torch.Tensor:
    """Run a registered method and return one map per image, of the image's size.

    Args:
        method (str): a name from :func:`list_methods`.
        model (nn.Module | LoadedModel): the classifier (normalized images -> logits).
        images (torch.Tensor): normalized images ``[N, 3, H, W]`` (a single ``[3, H, W]`` is
            accepted and treated as ``N = 1``).
        target (int | Sequence[int] | torch.Tensor): class id(s) to explain, one per image.
        reduction (str | None): channel reduction (:data:`REDUCTIONS`); None uses the method's
            documented default (:attr:`MethodInfo.reduction`); ``"none"`` keeps ``[N, C, H, W]``.
        **options: method-specific options (e.g. ``n_steps`` for integrated gradients,
            ``patch``/``stride`` for occlusion, ``layer`` for Grad-CAM).

    Returns:
        torch.Tensor: maps ``[N, H, W]`` (the method's dtype, normally the images'), detached
        (``[N, C, H, W]`` with ``reduction="none"``).

    Raises:
        KeyError: unknown method. ValueError / TypeError: bad images or targets.
    """
    info = method_info(method)
    module = module_of(model)
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        images = images.unsqueeze(0)
    check_images(images, model)
    target = as_target(target, images.shape[0]).to(images.device)
    if bool((target < 0).any()):
        raise OutOfRangeError(f"target {target.tolist()} holds a negative class id; give class "
                              f"ids in 0..C-1 (negative ids would silently mean classes from "
                              f"the end)")
    with eval_mode(module, inplace=False):
        try:
            raw = info.function(module, images.detach().clone(), target, **options)
        except (IndexError, RuntimeError):
            _check_target_range(module, images, target)
            raise
    raw = raw.detach()
    if raw.dim() == 3:
        raw = raw.unsqueeze(1)
    if raw.shape[0] != images.shape[0] or raw.shape[-2:] != images.shape[-2:]:
        raise RuntimeError(f"method {method!r} returned shape {tuple(raw.shape)} for images "
                           f"{tuple(images.shape)}; this is a bug in the method")
    return reduce_channels(raw, reduction or info.reduction)


def _check_target_range(module, images: torch.Tensor, target: torch.Tensor) -> None:
    """After a method failed: raise :class:`OutOfRangeError` if a target is not a class of the
    model's output (the usual cause), else return so the original error propagates."""
    with torch.no_grad():
        logits = module(images[:1])
    classes = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.dim() == 2 else None
    if classes is not None and bool((target >= classes).any()):
        raise OutOfRangeError(f"target {target.tolist()} is out of range: the model has "
                              f"{classes} classes, indexed 0..{classes - 1}") from None
