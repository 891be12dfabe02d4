"""Objectives for feature visualization by optimization (Olah, Mordvintsev & Schubert, 2017).

An :class:`Objective` is a function of some layers' tensors that returns **one number per
image** of the batch (``[B]``); :func:`deconv.visualize_feature` changes the image to make it
large. Objectives combine like numbers: ``channel("3", 5) - 100 * diversity("3")``,
``-channel("3", 5)`` (the negative optimum), ``0.5 * a + b``.

Each objective names the tensors it reads as :class:`Tap` s: a layer (a ``named_modules()``
name or a paper layer number, see :func:`deconv.resolve_layer`) and ``where``: ``"output"``
(the module's output, the toolkit's rule) or ``"input"`` (what goes *into* the module: for a
ReLU, the pre-activation ``z``; the value whose sign "negative optimum" refers to). The layer
``None`` means the model's own output (the class logits). Tensors are captured by
:class:`ActivationCapture`, whose hooks clone what they read, so a later ``ReLU(inplace=True)``
cannot change it, and are always removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from deconv.errors import InvalidArgumentError, InvalidTypeError, LayerNotRunError
from deconv.layers import ReusedModuleError, check_tapped, module_of, resolve_layer
from deconv.model_state import StopForward, eval_mode, registered_hooks

__all__ = ["Objective", "Tap", "ActivationCapture", "ReusedModuleError", "neuron", "channel",
           "layer_activation", "class_logit", "diversity", "per_image", "evaluate",
           "is_activation_layer", "optima_objectives", "redirected_relu"]

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
               nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Mish, nn.PReLU, nn.SELU, nn.Softplus)

Where = str  # "output" | "input"


@dataclass(frozen=True)
class Tap:
    """A tensor an objective reads: ``layer`` (name, paper number, or None for the model's
    output) and ``where`` (``"output"`` of the module, or its ``"input"``)."""

    layer: str | int | None
    where: Where = "output"

    def __post_init__(self):
        if self.where not in ("output", "input"):
            raise InvalidArgumentError(f"where must be 'output' or 'input', got {self.where!r}")
        if self.layer is None and self.where != "output":
            raise InvalidArgumentError("the model's own output (layer=None) has no 'input' tap")


class Objective:
    """A differentiable score per image: ``fn(tensors) -> [B]``, tensors keyed by :class:`Tap`.

    Args:
        taps (Sequence[Tap]): the tensors ``fn`` reads.
        fn (Callable[[dict[Tap, torch.Tensor]], torch.Tensor]): returns ``[B]`` values.
        name (str): a readable description (used in figure captions and JSON).
    """

    def __init__(self, taps: Sequence[Tap], fn: Callable[[dict], torch.Tensor], name: str):
        self.taps = tuple(dict.fromkeys(taps))
        self.fn = fn
        self.name = name

    def __call__(self, tensors: dict[Tap, torch.Tensor]) -> torch.Tensor:
        value = self.fn(tensors)
        if value.dim() != 1:
            raise InvalidArgumentError(
                f"objective {self.name!r} must return one value per image ([B]), "
                f"got shape {tuple(value.shape)}")
        return value

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(self.taps, lambda t: self(t) + other, f"{self.name} + {other}")
        _check_objective(other)
        return Objective(self.taps + other.taps, lambda t: self(t) + other(t),
                         f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(self.taps, lambda t: -self(t), f"-({self.name})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, weight: float) -> Objective:
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise InvalidTypeError(f"an objective can only be scaled by a number, got "
                                          f"{type(weight).__name__}")
        return Objective(self.taps, lambda t: weight * self(t), f"{weight:g} * ({self.name})")

    __rmul__ = __mul__


def is_activation_layer(model, layer: str | int) -> bool:
    """True if ``layer`` names an element-wise activation module (ReLU, ReLU6, GELU, ...).

    For such a layer the feature map's *pre-activation* (the module's input) is what a
    negative optimum should minimize: a ReLU output cannot go below zero, so minimizing it
    stops as soon as the map is switched off. Pass ``pre_activation=is_activation_layer(...)``.
    """
    return isinstance(module_of(model).get_submodule(resolve_layer(model, layer)), ACTIVATIONS)


def optima_objectives(model, layer: str | int, channel_index: int,
                      post_activation: bool = False) -> tuple[Objective, Objective]:
    """The (positive, negative) objectives of a feature map, as the figures and CLI use them.

    For an activation layer (a ReLU, as the paper's layers are): positive = mean of the
    rectified map (``relu(z)``, with the redirected gradient), negative = minus the mean of the
    pre-activation ``z`` (a rectified map cannot go below zero). For any other layer (or with
    ``post_activation``): plus and minus the mean of the module's output.
    """
    if not post_activation and is_activation_layer(model, layer):
        return (channel(layer, channel_index, pre_activation=True, rectify=True),
                -channel(layer, channel_index, pre_activation=True))
    base = channel(layer, channel_index)
    return base, -base


def _check_objective(value) -> None:
    if not isinstance(value, Objective):
        raise InvalidTypeError(
            f"expected an Objective (e.g. deconv.optimization.channel(layer, c)), "
            f"got {type(value).__name__}")


def _channel_of(tensor: torch.Tensor, index: int, what: str) -> torch.Tensor:
    if tensor.dim() < 2:
        raise InvalidArgumentError(f"{what}: the tensor has shape {tuple(tensor.shape)}; "
                                             f"expected [B, C, ...]")
    if not -tensor.shape[1] <= index < tensor.shape[1]:
        raise InvalidArgumentError(
            f"{what}: channel {index} out of range; the layer has "
                      f"{tensor.shape[1]} channels (0..{tensor.shape[1] - 1})")
    return tensor[:, index]


def neuron(layer: str | int, channel_index: int, y: int | None = None, x: int | None = None, *,
           pre_activation: bool = False) -> Objective:
    """One unit of a feature map: the activation at ``(y, x)`` of channel ``channel_index``.

    ``y``/``x`` default to the centre of the map (``H // 2``, ``W // 2``), which follows the
    map's size when transforms change the image size, as in Lucid.

    Args:
        layer (str | int): module name or paper layer number.
        channel_index (int): the channel.
        y (int | None): row in the feature map (centre by default).
        x (int | None): column in the feature map (centre by default).
        pre_activation (bool): read the module's input (for a ReLU: the pre-activation).
    """
    tap = Tap(layer, "input" if pre_activation else "output")

    def fn(t: dict) -> torch.Tensor:
        fmap = _channel_of(t[tap], channel_index, f"neuron({layer!r})")
        if fmap.dim() != 3:
            raise InvalidArgumentError(f"neuron({layer!r}) needs a [B, C, H, W] tensor, got "
                                                 f"{tuple(t[tap].shape)}")
        h, w = fmap.shape[-2:]
        yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise InvalidArgumentError(
                f"neuron({layer!r}): position ({yy}, {xx}) outside the {h}x{w} "
                f"feature map")
        return fmap[:, yy, xx]

    return Objective([tap], fn, f"neuron {layer}:{channel_index} @({y},{x})"
                     + (" pre-act" if pre_activation else ""))


def channel(layer: str | int, channel_index: int, *, pre_activation: bool = False,
            rectify: bool = False) -> Objective:
    """A whole feature map: the mean over positions of channel ``channel_index``.

    Args:
        layer (str | int): module name or paper layer number.
        channel_index (int): the channel.
        pre_activation (bool): read the module's input (for a ReLU: the pre-activation, which
            can be negative, so a negative optimum is meaningful).
        rectify (bool): average the positive part ``relu(x)`` instead of ``x``, with Lucid's
            redirected gradient (:func:`redirected_relu`) so a map that is off everywhere can
            still be switched on. With ``pre_activation=True`` on a ReLU layer this is the
            rectified feature map itself: the quantity the top-9 images are ranked by. (The
            plain mean of the pre-activation rewards being "less negative" everywhere, which
            for a thin-bar detector with an inhibitory surround stays near zero.)
    """
    tap = Tap(layer, "input" if pre_activation else "output")

    def fn(t: dict) -> torch.Tensor:
        fmap = _channel_of(t[tap], channel_index, f"channel({layer!r})")
        if rectify:
            fmap = redirected_relu(fmap)
        return fmap.reshape(fmap.shape[0], -1).mean(1)

    return Objective([tap], fn, f"channel {layer}:{channel_index}"
                     + (" pre-act" if pre_activation else "") + (" rectified" if rectify else ""))


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
        # at negative inputs, keep only the gradient that would push the input up (a descent
        # step on the loss moves x by -lr * grad, so grad < 0 raises x)
        redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
        alive = relu_grad.reshape(x.shape[0], -1).abs().amax(1) > 0
        return torch.where(alive.view(-1, *([1] * (x.dim() - 1))), relu_grad, redirected)


def redirected_relu(x: torch.Tensor) -> torch.Tensor:
    """``relu(x)`` whose gradient is redirected for images on which it is zero everywhere.

    Lucid's ``redirected_relu_grad`` (Olah et al. 2017): per image, if the ordinary ReLU
    gradient is all zero (the unit is off at every position, so plain gradient ascent is
    stuck), pass the gradient at negative inputs where it pushes them up; otherwise the
    ordinary ReLU gradient. The forward value is exactly ``relu(x)``. ``x`` is ``[B, ...]``.
    """
    return _RedirectedReLU.apply(x)


def layer_activation(layer: str | int, *, pre_activation: bool = False) -> Objective:
    """DeepDream (Mordvintsev et al. 2015): the mean squared activation of a whole layer."""
    tap = Tap(layer, "input" if pre_activation else "output")

    def fn(t: dict) -> torch.Tensor:
        a = t[tap]
        return a.reshape(a.shape[0], -1).pow(2).mean(1)

    return Objective([tap], fn, f"deepdream {layer}" + (" pre-act" if pre_activation else ""))


def class_logit(class_index: int, layer: str | int | None = None) -> Objective:
    """A class logit: entry ``class_index`` of the model's output (or of ``layer``'s ``[B, K]``
    output). Optimize logits, not probabilities: a softmax can grow by pushing other classes
    down."""
    tap = Tap(layer, "output")

    def fn(t: dict) -> torch.Tensor:
        out = t[tap]
        if out.dim() != 2:
            raise InvalidArgumentError(
                f"class_logit needs a [B, K] output, got {tuple(out.shape)}; "
                f"name the classifier layer")
        return _channel_of(out, class_index, "class_logit")

    return Objective([tap], fn, f"logit {class_index}" + (f" of {layer}" if layer else ""))


def diversity(layer: str | int, *, pre_activation: bool = False) -> Objective:
    """Diversity term of the Distill article: similarity of the images' Gram matrices.

    For image ``i`` the value is ``sum_{j != i} <G_i, G_j> / B`` with ``G`` the channel Gram
    matrix of ``layer``, L2-normalized; it is large when images share style, so subtract it:
    ``channel(l, c) - 100 * diversity(l)`` gives a batch of distinct optima (as Lucid's
    ``objectives.diversity``). Zero for a batch of one.
    """
    tap = Tap(layer, "input" if pre_activation else "output")

    def fn(t: dict) -> torch.Tensor:
        a = t[tap]
        b, c = a.shape[:2]
        flat = a.reshape(b, c, -1)
        grams = flat @ flat.transpose(1, 2)
        grams = grams.reshape(b, -1)
        grams = grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)
        sim = grams @ grams.T
        return (sim.sum(1) - sim.diagonal()) / b

    return Objective([tap], fn, f"diversity {layer}")


def per_image(objectives: Sequence[Objective]) -> Objective:
    """One objective per image of the batch: image ``i`` is scored by ``objectives[i]``.

    E.g. ``per_image([channel(l, c), -channel(l, c)])`` optimizes the positive and the negative
    optimum together (one forward/backward per step for both).
    """
    objectives = list(objectives)
    if not objectives:
        raise InvalidArgumentError("per_image needs at least one objective")
    for o in objectives:
        _check_objective(o)
    taps = [tap for o in objectives for tap in o.taps]

    def fn(t: dict) -> torch.Tensor:
        batch = next(iter(t.values())).shape[0]
        if batch != len(objectives):
            raise InvalidArgumentError(
                f"per_image has {len(objectives)} objectives but the batch has "
                f"{batch} images; use batch={len(objectives)}")
        values = []
        for i, o in enumerate(objectives):
            one = {tap: tensor[i:i + 1] for tap, tensor in t.items()}
            values.append(o(one))
        return torch.cat(values)

    return Objective(taps, fn, "[" + "; ".join(o.name for o in objectives) + "]")


class ActivationCapture:
    """Context manager that records the tensors of ``taps`` during a forward pass.

    Forward hooks (``"output"``) and forward pre-hooks (``"input"``) store a clone of the
    tensor, so an inplace op later in the network cannot change what was read, and gradients
    flow back through it to the image. When no tap needs the model's output, the forward stops
    as soon as every tap has fired (the rest of the network is not computed). Hooks are removed
    on leaving, also after an exception.

    Args:
        model (nn.Module | LoadedModel): the network.
        taps (Sequence[Tap]): what to record.
    """

    def __init__(self, model, taps: Sequence[Tap]):
        self.module: nn.Module = module_of(model)
        self.taps = tuple(dict.fromkeys(taps))
        self.names = {tap: None if tap.layer is None else resolve_layer(model, tap.layer)
                      for tap in self.taps}
        self.module_taps = [tap for tap in self.taps if tap.layer is not None]
        self.stop_early = all(tap.layer is not None for tap in self.taps)
        self.tensors: dict[Tap, torch.Tensor] = {}
        self._handles: list = []
        self._state = ExitStack()

    def __enter__(self) -> ActivationCapture:
        with ExitStack() as stack:
            self._handles = stack.enter_context(
                registered_hooks(self._register(tap) for tap in self.module_taps))
            self._state = stack.pop_all()
        return self

    def _register(self, tap: Tap):
        sub = self.module.get_submodule(self.names[tap])
        if tap.where == "output":
            return sub.register_forward_hook(self._output_hook(tap))
        return sub.register_forward_pre_hook(self._input_hook(tap))

    def __exit__(self, *exc) -> None:
        self._state.close()

    def _store(self, tap: Tap, module: nn.Module, tensor) -> None:
        check_tapped(self.names[tap], module, tensor, tap in self.tensors, tap.where)
        self.tensors[tap] = tensor.clone()
        if self.stop_early and len(self.tensors) == len(self.module_taps):
            raise StopForward

    def _output_hook(self, tap: Tap):
        def hook(module, inputs, output):
            self._store(tap, module, output)

        return hook

    def _input_hook(self, tap: Tap):
        def hook(module, args):
            if len(args) != 1:
                raise InvalidArgumentError(
                    f"the input tap of {self.names[tap]!r} needs a module called "
                    f"with one tensor, it got {len(args)} arguments")
            self._store(tap, module, args[0])

        return hook

    def run(self, images: torch.Tensor, full: bool = False) -> dict[Tap, torch.Tensor]:
        """Forward ``images`` and return the recorded tensors.

        Args:
            images (torch.Tensor): the model's input batch.
            full (bool): run the whole network even after the last tap (to find reused modules);
                an error raised after every tap has fired is then ignored.
        """
        if not self._handles and self.module_taps:
            raise RuntimeError("ActivationCapture.run() must be called inside its `with` block")
        self.tensors = {}
        stop, self.stop_early = self.stop_early, self.stop_early and not full
        try:
            output = self.module(images)
            for tap in self.taps:
                if tap.layer is None:
                    self.tensors[tap] = output
        except StopForward:
            pass
        except ReusedModuleError:
            raise
        except Exception:
            if not full or len(self.tensors) < len(self.module_taps):
                raise
        finally:
            self.stop_early = stop
        missing = [self.names[t] for t in self.module_taps if t not in self.tensors]
        if missing:
            raise LayerNotRunError(f"layers {missing} did not run during forward(); they are not "
                                       f"used by the model's forward pass")
        return self.tensors


def evaluate(model, objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """The objective's ``[B]`` values on a batch of model inputs (no gradient).

    The model is put in eval mode for the call and its ``training`` flags restored after.
    """
    _check_objective(objective)
    with eval_mode(module_of(model)), torch.no_grad(), \
            ActivationCapture(model, objective.taps) as capture:
        return objective(capture.run(images)).detach()
