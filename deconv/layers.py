"""Layer addressing: one rule for every API that takes a ``layer`` argument.

A layer is named exactly as ``model.named_modules()`` names it (``"features.11"``), and the
tensor it refers to is **that module's output**. So ``"features.11"`` on torchvision's VGG16 is
the output of a ``ReLU`` (the rectified feature maps ``a``), while ``"features.10"`` is the
output of the ``Conv2d`` before it (the pre-activation ``z``). A paper layer number (an ``int``
1..N) is accepted for models from the zoo: the :class:`~deconv.zoo.LoadedModel`'s ``layers``
maps each number to a module name, and :func:`deconv.load_model` also records that map for the
bare module in a registry keyed (weakly) by the module, so ``loaded.model`` understands the
numbers too without any attribute being added to it. Your own model can join with
:func:`register_paper_layers`. On a model with paper layers a digit string that is a paper
layer number means that layer, and ``"module:NAME"`` names a module whatever it looks like
(:func:`resolve_layer`).
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Mapping

import torch
from torch import nn

from deconv.errors import (
    InvalidTypeError,
    LayerNotRunError,
    ReusedModuleError,
    ScriptedModelError,
    UnknownLayerError,
)
from deconv.model_state import eval_mode, registered_hooks

__all__ = ["UnknownLayerError", "ReusedModuleError", "module_of", "layer_names", "resolve_layer",
           "get_layer", "paper_layers_of", "register_paper_layers", "capture_outputs",
           "MODULE_PREFIX", "LAYER_RULE", "ModuleName", "check_tapped"]

# module -> {paper layer number: module name}; weak, so a registered module can still be freed.
_PAPER_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[int, str]] = weakref.WeakKeyDictionary()


def module_of(model) -> nn.Module:
    """Return the ``nn.Module`` of a model or of a :class:`~deconv.zoo.LoadedModel`.

    Raises:
        ScriptedModelError: a TorchScript model (``torch.jit.script``/``trace``): deconv needs
            the eager module (Python forward hooks, module names).
        InvalidTypeError: neither a module nor a LoadedModel.
    """
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(model, nn.Module):
        model = inner
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise ScriptedModelError(
            "TorchScript models are not supported: deconv needs the eager nn.Module (forward "
            "hooks, module names). Pass the model before torch.jit.script/trace")
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(
            f"expected a torch.nn.Module or a deconv LoadedModel, got {type(model).__name__}"
        )
    return model


def register_paper_layers(module: nn.Module, layers: Mapping[int, str]) -> None:
    """Let ``module`` be addressed by paper layer numbers (``layer=5``) everywhere.

    The map is kept outside the module (nothing is set on it) and forgotten when the module is
    freed; a copy of the module (``copy.deepcopy``) is a new module and is not registered.

    Args:
        module (nn.Module): the network.
        layers (Mapping[int, str]): paper layer number -> ``named_modules()`` name.

    Raises:
        UnknownLayerError: a name that is not a module of ``module``.
    """
    names = set(layer_names(module))
    unknown = {n: name for n, name in layers.items() if name not in names}
    if unknown:
        raise UnknownLayerError(f"paper layers {unknown} name no module of this model; valid "
                                f"names: {_short_list(sorted(names))}")
    _PAPER_LAYERS[module_of(module)] = {int(n): name for n, name in layers.items()}


def paper_layers_of(model) -> dict[int, str]:
    """Return the paper-layer map ``{1: "features.1", ...}`` of a model (empty if it has none).

    Args:
        model (nn.Module | LoadedModel): the model: a LoadedModel's ``layers``, or the map
            registered for the module (:func:`register_paper_layers`, done by
            :func:`deconv.load_model`).
    """
    layers = getattr(model, "layers", None)
    if not (isinstance(layers, dict) and not isinstance(model, nn.Module)):
        layers = _PAPER_LAYERS.get(module_of(model), {})
    return {number: ModuleName(name) for number, name in layers.items()}


def layer_names(model) -> list[str]:
    """Return every addressable layer name of ``model`` (``named_modules()`` order, root excluded).

    Args:
        model (nn.Module | LoadedModel): the model.
    """
    return [ModuleName(name) for name, _ in module_of(model).named_modules() if name]


#: Prefix that forces a module name (``"module:3"``): the way to reach a module whose name is
#: made of digits on a model that has paper layer numbers.
MODULE_PREFIX = "module:"

#: The layer rule, as the CLI's ``--help`` states it.
LAYER_RULE = ("a module name as model.named_modules() names it (e.g. features.11), or a paper "
              "layer number (e.g. 5) on models that define paper layers; there digits mean the "
              "paper layer when it exists, and module:N names the module called N")


class ModuleName(str):
    """A module name that :func:`resolve_layer` returned: resolving it again gives itself
    (so ``"3"`` reached as ``"module:3"`` stays module ``"3"`` when passed on)."""


def resolve_layer(model, layer: str | int) -> str:
    """Turn a layer name or paper layer number into a ``named_modules()`` name.

    The one rule, for the API and every CLI command alike:

    - an ``int`` is a paper layer number, and so is a string of digits (``"3"``) that is one
      of the model's paper layer numbers;
    - ``"module:NAME"`` is the module ``NAME`` whatever it looks like (``"module:3"`` reaches a
      module named ``"3"`` on a model whose paper layer 3 is another module);
    - any other string is a module name (digits too, when they are not a paper layer number).

    The returned name is a :class:`ModuleName`, which resolves to itself.

    Args:
        model (nn.Module | LoadedModel): the model.
        layer (str | int): as above.

    Returns:
        str: the module name.

    Raises:
        UnknownLayerError: the name or number does not exist; the message lists valid choices.
        InvalidTypeError: ``layer`` is neither a str nor an int.
    """
    if isinstance(layer, bool) or not isinstance(layer, (str, int)):
        raise InvalidTypeError(f"layer must be a module name (str) or a paper layer number "
                               f"(int), got {type(layer).__name__}")
    names = layer_names(model)
    if isinstance(layer, ModuleName) and layer in names:
        return layer
    paper = paper_layers_of(model)
    if isinstance(layer, str) and layer.startswith(MODULE_PREFIX):
        name = layer[len(MODULE_PREFIX):]
        if name in names:
            return ModuleName(name)
        return _unknown_name(name, names, paper)
    is_number = isinstance(layer, int) or (
        layer.isdigit() and (int(layer) in paper or layer not in names))
    if is_number:
        number = int(layer)
        if number in paper:
            return ModuleName(paper[number])
        hint = (f"paper layers of this model: {sorted(paper)}" if paper else
                "this model defines no paper layer numbers; use a module name")
        if str(layer) in names:
            hint += f" (for the module named {str(layer)!r} write {MODULE_PREFIX}{layer})"
        raise UnknownLayerError(f"unknown paper layer {number}: {hint}. Module names: "
                                f"{_short_list(names)}")
    if layer in names:
        return ModuleName(layer)
    return _unknown_name(layer, names, paper)


def _unknown_name(layer: str, names: list[str], paper: dict[int, str]):
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise UnknownLayerError(
        f"unknown layer {layer!r}.{hint} Valid names (from model.named_modules()): "
        f"{_short_list(names)}" + (f"; paper layers: {paper}" if paper else "")
    )


def get_layer(model, layer: str | int) -> nn.Module:
    """Return the submodule that ``layer`` names (see :func:`resolve_layer`)."""
    return module_of(model).get_submodule(resolve_layer(model, layer))


def check_tapped(name: str, module: nn.Module, value, seen: bool, what: str = "output"
                 ) -> torch.Tensor:
    """The one check of what a hook reads from a layer: the module ran once, gave one tensor.

    Every hook that reads a layer (activation capture, mining taps, optimization taps, the
    occlusion sweep's feature layer) calls this first, so "its output" always means the same.

    Args:
        name (str): the module's name.
        module (nn.Module): the module the hook sits on.
        value: what the hook got (the module's output, or its input for an input tap).
        seen (bool): whether this forward already read the module once.
        what (str): ``"output"`` or ``"input"``, for the messages.

    Returns:
        torch.Tensor: ``value``.

    Raises:
        ReusedModuleError: the module runs a second time in one forward (a shared ReLU).
        InvalidTypeError: ``value`` is not a tensor.
    """
    if seen:
        raise ReusedModuleError(
            f"module {name!r} ({type(module).__name__}) runs more than once per forward pass, "
            f"so its {what} is ambiguous; use a module that runs once (e.g. the block that "
            f"contains it)")
    if not isinstance(value, torch.Tensor):
        raise InvalidTypeError(f"the {what} of layer {name!r} is {type(value).__name__}, not a "
                               f"tensor; choose a module whose {what} is one tensor")
    return value


@torch.no_grad()
def capture_outputs(model, images: torch.Tensor, layers, flatten: bool = True
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Run ``model`` once (in eval mode) and copy the outputs of ``layers``; no hook is left.

    Args:
        model (nn.Module | LoadedModel): the network (not modified).
        images (torch.Tensor): model inputs ``[N, C, H, W]``.
        layers (Sequence[str | int]): module names or paper layer numbers.
        flatten (bool): return each layer as ``[N, D]`` instead of its own shape.

    Returns:
        tuple[dict[str, torch.Tensor], torch.Tensor | None]: module name -> a copy of its output
        (safe from later inplace ops), and the model's output (None if it is not a tensor).

    Raises:
        UnknownLayerError: a bad layer. ReusedModuleError: a layer runs more than once.
        RuntimeError: a layer is not run by the forward pass.
    """
    from deconv.validation import check_images

    module = module_of(model)
    check_images(images, model)
    names = [resolve_layer(model, layer) for layer in layers]
    store: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, _inputs, output):
            out = check_tapped(name, module, output, name in store).detach()
            store[name] = (out.reshape(out.shape[0], -1) if flatten else out).clone()
        return hook

    with eval_mode(module), registered_hooks(
            module.get_submodule(name).register_forward_hook(hook_for(name))
            for name in dict.fromkeys(names)):
        output = module(images)
    missing = [n for n in names if n not in store]
    if missing:
        raise LayerNotRunError(f"layers {missing} were not run by the model's forward")
    return {name: store[name] for name in names}, (output if isinstance(output, torch.Tensor)
                                                   else None)


def _short_list(names: list[str], limit: int = 60) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names) - limit} more)"
