"""The execution path of a chain-shaped network, found with ``torch.fx``.

The explicit deconvnet needs the operations that produce a layer, in forward order, and needs
them to form a *chain*: each operation's only tensor input is the previous operation's output.
:func:`trace_path` traces the model symbolically (the model itself is not changed; the traced
graph only refers to its submodules), walks back from the layer to the input and classifies each
operation. Anything it cannot invert faithfully raises :class:`UnsupportedModuleError`, which
names the operation and points to :class:`~deconv.deconvnet.GenericDeconvnet`.
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv.errors import DeconvError

__all__ = ["Step", "UnsupportedModuleError", "trace_path", "SUPPORTED_MODULES"]

GENERIC_HINT = ("use deconv.deconvnet.GenericDeconvnet(model, rule='deconvnet'), which handles "
                "any architecture by autograd with the deconvnet ReLU rule")

_IDENTITY = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Identity,
             nn.LocalResponseNorm, nn.BatchNorm1d, nn.BatchNorm2d)
_LINEAR_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_RELU_FUNCTIONS = {F.relu, torch.relu}

#: Module types the explicit engine can send a signal down through, and what each does there.
SUPPORTED_MODULES = {
    "Conv2d": "transposed convolution with the same weights, no bias (any stride, padding, "
              "dilation, groups; 'zeros' padding mode)",
    "ReLU": "ReLU applied to the reconstruction (the backward signal is rectified)",
    "MaxPool2d": "unpooling with the recorded switches, summing where windows overlap",
    "LocalResponseNorm / BatchNorm1d / BatchNorm2d": "identity (the paper skips normalization "
                                                     "on the way down)",
    "Dropout / Identity": "identity (inference semantics)",
    "Flatten / torch.flatten / view / reshape": "reshape back to the input shape",
    "Linear": "multiplication by the transposed weight matrix, no bias",
    "AdaptiveAvgPool2d / AvgPool2d": "the adjoint of the (linear) average pooling",
}


class UnsupportedModuleError(DeconvError, ValueError):
    """The explicit :class:`~deconv.Deconvnet` meets a *module* (or operation) it cannot go down.

    Raised on the path from the image to the layer: a module outside :data:`SUPPORTED_MODULES`,
    a graph that is not a chain, or a module called twice. The message names the module and
    points to :class:`~deconv.GenericDeconvnet`, which handles any architecture. Not to be
    confused with :class:`deconv.occlusion.incremental_plan.IncrementalPlanError`, which is
    about the incremental *occlusion* engine and is caught by it.
    """


@dataclass
class Step:
    """One operation of the path, in forward order.

    Attributes:
        node (fx.Node): the traced operation.
        kind (str): ``"conv"``, ``"relu"``, ``"maxpool"``, ``"identity"``, ``"reshape"``,
            ``"linear"`` or ``"avgpool"``.
        module (nn.Module | None): the module it calls (None for a function or method).
        label (str): a readable name for messages.
    """

    node: fx.Node
    kind: str
    module: nn.Module | None
    label: str


def trace_path(model: nn.Module, layer: str) -> tuple[fx.Graph, list[Step]]:
    """Trace ``model`` and return its graph and the chain of steps that produce ``layer``.

    Args:
        model (nn.Module): the network (not changed).
        layer (str): a ``named_modules()`` name; a container (``"features"``) means the output
            of the last operation inside it.

    Returns:
        tuple[fx.Graph, list[Step]]: the graph and the steps, input first, ``layer`` last.

    Raises:
        UnsupportedModuleError: the model cannot be traced, the layer is not reached by a chain,
            is called more than once, or an operation on the path is not supported.
    """
    try:
        graph = fx.Tracer().trace(model)
    except Exception as exc:  # fx raises many kinds of errors on dynamic control flow
        raise UnsupportedModuleError(
            f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}); the "
            f"explicit deconvnet needs a traceable chain of modules; {GENERIC_HINT}") from exc
    target = _layer_node(graph, layer)
    chain: list[fx.Node] = []
    node = target
    while node.op != "placeholder":
        chain.append(node)
        inputs = [a for a in node.all_input_nodes if not _is_side_value(a)]
        if len(inputs) != 1:
            raise UnsupportedModuleError(
                f"the path to layer {layer!r} is not a chain: {_label(model, node)} takes "
                f"{len(inputs)} tensor inputs ({', '.join(a.name for a in inputs)}); "
                f"{GENERIC_HINT}")
        node = inputs[0]
    chain.reverse()
    return graph, [_classify(model, n) for n in chain]


def _layer_node(graph: fx.Graph, layer: str) -> fx.Node:
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) > 1:
        raise UnsupportedModuleError(
            f"module {layer!r} is called {len(calls)} times in forward, so 'its output' is "
            f"ambiguous; {GENERIC_HINT} on a module that runs once")
    if calls:
        return calls[0]
    inside = [n for n in graph.nodes if n.op == "call_module"
              and str(n.target).startswith(layer + ".")]
    if not inside:
        raise UnsupportedModuleError(f"module {layer!r} is never called in forward")
    return inside[-1]


def _is_side_value(node: fx.Node) -> bool:
    """True for values derived from shapes or attributes (``x.size(0)``), not from activations."""
    if node.op == "get_attr":
        return True
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function":
        if node.target is builtins.getattr:
            return node.args[1] in ("shape", "ndim")
        if node.target in (operator.getitem, operator.mul, operator.add, operator.floordiv,
                           operator.sub):
            return all(_is_side_value(a) for a in node.all_input_nodes)
    return False


def _label(model: nn.Module, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(model.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", str(node.target))
    return f"operation {node.name!r} ({node.op} {target})"


def _classify(model: nn.Module, node: fx.Node) -> Step:
    label = _label(model, node)
    if node.op == "call_module":
        module = model.get_submodule(node.target)
        kind = _module_kind(module)
        if kind is None:
            raise UnsupportedModuleError(
                f"{label} is on the path but the explicit deconvnet cannot go down through it "
                f"(supported: {', '.join(SUPPORTED_MODULES)}); {GENERIC_HINT}")
        return Step(node, kind, module, label)
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return Step(node, "relu", None, label)
    if node.op == "call_function" and node.target in _RESHAPE_FUNCTIONS:
        return Step(node, "reshape", None, label)
    if node.op == "call_method" and node.target in _RESHAPE_METHODS:
        return Step(node, "reshape", None, label)
    if node.op == "call_method" and node.target == "relu":
        return Step(node, "relu", None, label)
    raise UnsupportedModuleError(
        f"{label} is on the path but the explicit deconvnet cannot go down through it; "
        f"{GENERIC_HINT}")


def _module_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "conv" if module.padding_mode == "zeros" else None
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.MaxPool2d):
        return None if module.return_indices else "maxpool"
    if isinstance(module, _IDENTITY):
        return "identity"
    if isinstance(module, nn.Flatten):
        return "reshape"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _LINEAR_POOLS):
        return "avgpool"
    return None
