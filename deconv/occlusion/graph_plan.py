"""The plan of incremental occlusion on any graph: what each node does to a changed region.

:func:`plan_graph` traces a model with ``torch.fx``, runs it once on the unoccluded image and
gives every node a :class:`NodeRule`, the rule by which an occluder's changed region passes
through it:

* ``"input"``: the image; its changed region is the occluder's box.
* ``"pointwise"``: each output pixel reads only the same pixel of its input (activations,
  eval-mode ``BatchNorm2d``/``Dropout``, ``LocalResponseNorm``, 1x1 stride-1 convolutions,
  arithmetic with numbers or per-channel constants): the region is kept.
* ``"spatial"``: each output pixel reads a kernel window of its input (``Conv2d`` with any
  stride, dilation, groups or padding, ``"same"`` included; ``MaxPool2d``/``AvgPool2d``, also as
  functions; constant ``F.pad`` and TensorFlow's ``SAME`` padding,
  :class:`deconv.same_padding.SamePad2d`): the region grows by the kernel span and shrinks
  by the stride (:func:`~deconv.occlusion.incremental_plan.affected_range`).
* channels-last blocks: between ``permute(0, 2, 3, 1)`` and its inverse, ``LayerNorm`` over
  channels, ``Linear`` and element-wise ops are pointwise too (ConvNeXt);
* ``"merge"``: element-wise ops of several tensors of the same size (a residual ``add``, a
  ``mul``) and ``torch.cat`` along channels: the region is the bounding box of the inputs'.
* ``"full"``: anything else (a global or adaptive pool, a squeeze-excitation gate's broadcast
  ``mul``, ``flatten``, ``Linear``, a reshape, an unknown layer): it is run on whole tensors, and
  every node that reads it is then changed everywhere (run in full too: still exact).
* ``"const"``: nodes that do not depend on the image (parameters read with ``get_attr``).

A model that ``torch.fx`` cannot trace, or that is in training mode, raises
:class:`~deconv.occlusion.incremental_plan.IncrementalPlanError` naming the cause.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv.occlusion.incremental_plan import (
    IncrementalPlanError,
    SpatialGeometry,
    _conv_geometry,
    _pool_geometry,
)
from deconv.same_padding import SamePad2d

__all__ = ["NodeRule", "SpatialOp", "GraphPlan", "plan_graph", "trace_graph"]

_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.PReLU, nn.Softplus,
    nn.Identity, nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.hardtanh, F.hardswish, F.hardsigmoid, F.silu, F.gelu,
    F.sigmoid, torch.sigmoid, torch.tanh, F.tanh, F.leaky_relu, F.elu, F.mish, torch.clamp,
    F.dropout, operator.neg, torch.neg,
}
_ARITHMETIC_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.truediv, torch.add,
                         torch.mul, torch.sub, torch.div, torch.maximum, torch.minimum}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp",
                      "clamp_", "contiguous", "clone", "neg", "add", "add_", "mul", "mul_",
                      "sub", "sub_", "div", "div_"}


@dataclass(frozen=True)
class SpatialOp:
    """A node whose output pixel reads a kernel window of its input.

    Attributes:
        op (str): ``"conv"``, ``"max"``, ``"avg"`` or ``"pad"``.
        module (nn.Module | None): the ``Conv2d``/``MaxPool2d``/``AvgPool2d`` (an equivalent
            module for the functional pools); None for a pad.
        geometry (tuple[SpatialGeometry, SpatialGeometry]): rows and columns geometry
            (``pad`` is the padding before the first input row/column).
        pad_value (float): value of the implicit padding (0; -inf for max-pool; the pad's).
        in_size (tuple[int, int]): input ``(H, W)``.
        out_size (tuple[int, int]): output ``(Ho, Wo)``.
    """

    op: str
    module: nn.Module | None
    geometry: tuple[SpatialGeometry, SpatialGeometry]
    pad_value: float
    in_size: tuple[int, int]
    out_size: tuple[int, int]

    def padding(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` that makes the input exactly what the windows read."""
        gr, gc = self.geometry
        need_r = (self.out_size[0] - 1) * gr.stride + gr.span
        need_c = (self.out_size[1] - 1) * gc.stride + gc.span
        return (gc.pad, need_c - self.in_size[1] - gc.pad, gr.pad,
                need_r - self.in_size[0] - gr.pad)


@dataclass
class NodeRule:
    """How one fx node passes a changed region on (see the module docstring).

    Attributes:
        node (fx.Node): the node.
        kind (str): ``"input"``, ``"const"``, ``"pointwise"``, ``"spatial"``, ``"merge"`` or
            ``"full"``.
        sources (list[fx.Node]): the image-dependent nodes it reads.
        call (Callable): ``call(args, kwargs)`` runs the node (never in place on its inputs).
        spatial (SpatialOp | None): kernel geometry of a spatial node.
        identity (bool): the node is the identity on its changed windows (an adaptive pool
            that keeps the size).
        shape (tuple[int, ...] | None): shape of the unoccluded output (a tensor's).
        reason (str): why a ``"full"`` node is run in full.
        layout (str): ``"nchw"``, or ``"nhwc"`` between ``permute(0, 2, 3, 1)`` and its inverse
            (ConvNeXt's channels-last ``LayerNorm`` and ``Linear`` blocks).
    """

    node: fx.Node
    kind: str
    sources: list[fx.Node]
    call: Callable
    spatial: SpatialOp | None = None
    identity: bool = False
    shape: tuple[int, ...] | None = None
    reason: str = ""
    layout: str = "nchw"

    @property
    def spatial_size(self) -> tuple[int, int]:
        """``(H, W)`` of the output (dims 2, 3; dims 1, 2 in the ``"nhwc"`` layout)."""
        return tuple(self.shape[1:3]) if self.layout == "nhwc" else tuple(self.shape[-2:])

    @property
    def channels(self) -> int:
        """Channels of the output."""
        return self.shape[-1] if self.layout == "nhwc" else self.shape[1]


@dataclass
class GraphPlan:
    """A traced model with a rule per node and the unoccluded image's values.

    Attributes:
        graph_module (fx.GraphModule): the traced model (shares the model's parameters).
        rules (dict[str, NodeRule]): node name -> rule, in execution order.
        clean (dict[str, object]): node name -> its value on the unoccluded image.
        windowed (set[str]): nodes computed on changed windows (the others run in full).
        output_node (fx.Node): the graph's output node.
    """

    graph_module: fx.GraphModule
    rules: dict[str, NodeRule]
    clean: dict[str, object]
    windowed: set[str] = field(default_factory=set)
    output_node: fx.Node | None = None

    def first_full(self) -> NodeRule | None:
        """The first image-dependent node run in full (where the changed region ends)."""
        for rule in self.rules.values():
            if rule.kind not in ("const",) and rule.node.name not in self.windowed:
                return rule
        return None


class _Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps ``SamePad2d`` (shape-dependent) as one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SamePad2d) or super().is_leaf_module(m, module_qualified_name)


def trace_graph(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with ``torch.fx`` (the model is not changed).

    Raises:
        IncrementalPlanError: the model cannot be traced (the message says why).
    """
    try:
        tracer = _Tracer()
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many kinds of errors on dynamic code
        raise IncrementalPlanError(f"torch.fx cannot trace the model: "
                                    f"{type(exc).__name__}: {exc}") from exc
    graph_module = fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    _functionalize(graph_module)
    return graph_module


_VIEW_METHODS = {"view", "reshape", "narrow", "select", "permute", "transpose", "expand",
                 "chunk", "split", "unbind", "squeeze", "unsqueeze", "flatten", "t", "as_strided",
                 "view_as", "expand_as", "unflatten", "movedim", "diagonal", "unfold"}


def _is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace", False)) or (
            name.endswith("_") and not name.endswith("__")) or name.startswith("__i")
    if node.op == "call_method":
        name = str(node.target)
        return (name.endswith("_") and not name.endswith("__")) or name.startswith("__i")
    return False


def _functionalize(graph_module: fx.GraphModule) -> None:
    """Make in-place ops explicit: nodes after ``y = x.op_()`` that read ``x`` read ``y``.

    The engine runs every node out of place (its inputs are cached), so a later reader of an
    overwritten tensor must read the overwriting node instead.

    Raises:
        IncrementalPlanError: an in-place op writes into a view (a slice, a reshape) of a
            tensor that is read again later (it would change that tensor too).
    """
    modules = dict(graph_module.named_modules())
    nodes = list(graph_module.graph.nodes)
    order = {node: i for i, node in enumerate(nodes)}
    for node in nodes:
        if not _is_inplace(node, modules) or not node.args or not isinstance(node.args[0],
                                                                             fx.Node):
            continue
        written = node.args[0]
        is_view = (written.op == "call_function" and written.target is operator.getitem) or (
            written.op in ("call_method", "call_function")
            and getattr(written.target, "__name__", str(written.target)) in _VIEW_METHODS)
        base = written.args[0] if is_view and written.args else None
        if isinstance(base, fx.Node) and any(order[u] > order[node] for u in base.users
                                             if u is not written):
            raise IncrementalPlanError(f"node {node.name} writes in place into {written.name}, "
                                        f"a view of {base.name}, which is read again later")
        for user in list(written.users):
            if order[user] > order[node]:
                user.replace_input_with(written, node)
    graph_module.recompile()


def _not_inplace(module: nn.Module) -> nn.Module:
    """A shallow copy of an in-place activation that writes a new tensor (same parameters)."""
    if getattr(module, "inplace", False):
        module = copy.copy(module)
        module.inplace = False
    return module


def _node_call(node: fx.Node, modules: dict[str, nn.Module]) -> Callable:
    """``call(args, kwargs)`` running ``node``, never overwriting its inputs."""
    if node.op == "call_module":
        module = _not_inplace(modules[node.target])
        return lambda args, kwargs: module(*args, **kwargs)
    if node.op == "call_function":
        target = node.target
        if "inplace" in node.kwargs:
            return lambda args, kwargs: target(*args, **dict(kwargs, inplace=False))
        return lambda args, kwargs: target(*args, **kwargs)
    if node.op == "call_method":
        name = str(node.target)
        if name.endswith("_") and not name.endswith("__"):  # x.add_(y): on a copy of x
            return lambda args, kwargs: getattr(args[0].clone(), name)(*args[1:], **kwargs)
        return lambda args, kwargs: getattr(args[0], name)(*args[1:], **kwargs)
    raise IncrementalPlanError(f"node {node.name} has op {node.op!r}")


def _conv_spatial(conv: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> SpatialOp | str:
    if conv.padding_mode != "zeros":
        return f"pads with {conv.padding_mode!r}, not zeros"
    # "same": PyTorch puts the odd pixel after (bottom/right), the geometry's leading pad
    return SpatialOp("conv", conv, _conv_geometry(conv), 0.0, tuple(x.shape[-2:]),
                     tuple(y.shape[-2:]))


def _pool_spatial(pool: nn.Module, x: torch.Tensor, y: torch.Tensor) -> SpatialOp | str:
    if getattr(pool, "return_indices", False):
        return "returns indices"
    op = "max" if isinstance(pool, nn.MaxPool2d) else "avg"
    return SpatialOp(op, pool, _pool_geometry(pool), -float("inf") if op == "max" else 0.0,
                     tuple(x.shape[-2:]), tuple(y.shape[-2:]))


def _pad_spatial(pads: tuple[int, ...], value: float, x: torch.Tensor,
                 y: torch.Tensor) -> SpatialOp | str:
    if len(pads) != 4:
        return "pads more than the two spatial dimensions"
    geometry = (SpatialGeometry(1, 1, int(pads[2]), 1), SpatialGeometry(1, 1, int(pads[0]), 1))
    return SpatialOp("pad", None, geometry, float(value), tuple(x.shape[-2:]),
                     tuple(y.shape[-2:]))


_MAX_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override")


def _function_pool(node: fx.Node, args: tuple, kwargs: dict) -> nn.Module | None:
    """The module equivalent to a functional ``F.max_pool2d``/``F.avg_pool2d`` call."""
    if node.target is F.max_pool2d:
        names, cls = _MAX_POOL_ARGS, nn.MaxPool2d
    elif node.target is F.avg_pool2d:
        names, cls = _AVG_POOL_ARGS, nn.AvgPool2d
    else:
        return None
    bound = dict(zip(names, args[1:]))
    bound.update(kwargs)
    return cls(**bound)


def _permutation(node: fx.Node) -> tuple[int, ...] | None:
    """The dims of a ``permute`` node (method, function or ``Permute`` module), else None."""
    if node.op == "call_method" and node.target == "permute":
        dims = node.args[1:] if len(node.args) > 2 or not isinstance(
            node.args[1] if len(node.args) > 1 else None, (tuple, list)) else node.args[1]
        dims = dims or node.kwargs.get("dims", ())
    elif node.op == "call_function" and node.target is torch.permute:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dims", ())
    else:
        return None
    if not all(isinstance(d, int) for d in dims):
        return None
    return tuple(d % 4 for d in dims) if len(dims) == 4 else None


def _is_tensor(value) -> bool:
    return isinstance(value, torch.Tensor)


def _broadcasts_per_channel(value) -> bool:
    """A constant that broadcasts the same way over a window as over the whole map."""
    if not _is_tensor(value):
        return True
    return value.ndim == 0 or (3 <= value.ndim <= 4 and value.shape[-2:] == (1, 1))


class _Classifier:
    """Decides each node's rule from its target and the unoccluded values."""

    def __init__(self, modules: dict[str, nn.Module], clean: dict[str, object],
                 dependent: set[str], layouts: dict[str, str]):
        self.modules, self.clean, self.dependent = modules, clean, dependent
        self.layouts = layouts  # windowed node -> its layout

    def rule(self, node: fx.Node, call: Callable) -> NodeRule:
        sources = [n for n in node.all_input_nodes if n.name in self.dependent]
        y = self.clean[node.name]
        shape = tuple(y.shape) if _is_tensor(y) else None
        if node.op == "placeholder":
            return NodeRule(node, "input", [], call, shape=shape)
        if not sources:
            return NodeRule(node, "const", [], call, shape=shape)
        rule = NodeRule(node, "full", sources, call, shape=shape)
        layouts = {self.layouts.get(n.name, "nchw") for n in sources}
        if len(layouts) > 1:
            rule.reason = f"node {node.name} ({self._what(node)}) mixes layouts"
            return rule
        kind, extra = (self._nhwc_kind(node, sources, y) if layouts == {"nhwc"}
                       else self._kind(node, sources, y))
        if extra == "nhwc" or extra == "nchw":  # a permute: the identity, another layout
            rule.kind, rule.identity, rule.layout = kind, True, extra
            return rule
        rule.layout = layouts.pop()
        if isinstance(extra, str):
            rule.reason = f"node {node.name} ({self._what(node)}) {extra}"
            return rule
        rule.kind = kind
        if isinstance(extra, SpatialOp):
            rule.spatial = extra
        elif extra is True:
            rule.identity = True
        return rule

    def _what(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"{node.target}: {type(self.modules[node.target]).__name__}"
        return getattr(node.target, "__name__", str(node.target))

    def _kind(self, node: fx.Node, sources: list[fx.Node], y) -> tuple[str, object]:
        """(kind, SpatialOp | True (identity) | None | a reason string for "full")."""
        if not _is_tensor(y) or y.ndim != 4:
            return "full", "does not output a [B, C, H, W] tensor"
        inputs = [self.clean[n.name] for n in sources]
        if any(not _is_tensor(x) or x.ndim != 4 for x in inputs):
            return "full", "reads a non-image tensor"
        if node.op == "call_module":
            return self._module_kind(self.modules[node.target], inputs, y)
        if _permutation(node) == (0, 2, 3, 1):
            return "pointwise", "nhwc"
        args = fx.node.map_arg(node.args, lambda n: self.clean[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.clean[n.name])
        constants = [self.clean[n.name] for n in node.all_input_nodes
                     if n.name not in self.dependent]
        if not all(_broadcasts_per_channel(c) for c in constants):
            return "full", "reads a constant tensor with a spatial extent"
        same_size = all(x.shape[-2:] == y.shape[-2:] for x in inputs)
        if node.op == "call_function":
            pool = _function_pool(node, args, kwargs)
            if pool is not None:
                return "spatial", _pool_spatial(pool, inputs[0], y)
            if node.target in (F.pad, torch._C._nn.pad):
                mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
                if mode != "constant":
                    return "full", f"pads in mode {mode!r}"
                value = kwargs.get("value", args[3] if len(args) > 3 else None)
                return "spatial", _pad_spatial(tuple(args[1]), value or 0.0, inputs[0], y)
            if node.target is torch.cat:
                dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
                items = node.args[0] if node.args else node.kwargs.get("tensors")
                if dim not in (1, -3) or not same_size:
                    return "full", "concatenates along a dimension other than channels"
                if any(not isinstance(n, fx.Node) or n.name not in self.dependent
                       for n in items):
                    return "full", "concatenates constants"
                return "merge", None
            if getattr(node.target, "__name__", "") == "stochastic_depth":
                training = kwargs.get("training", args[3] if len(args) > 3 else True)
                if training:
                    return "full", "is stochastic depth in training mode"
                return "pointwise", None
            if node.target in _POINTWISE_FUNCTIONS and len(sources) == 1 and same_size:
                if node.target is F.dropout and kwargs.get(
                        "training", args[2] if len(args) > 2 else True):
                    return "full", "is dropout in training mode"
                return "pointwise", None
            if node.target in _ARITHMETIC_FUNCTIONS and same_size:
                if any(x.shape != y.shape for x in inputs) and len(sources) > 1:
                    return "full", "broadcasts image tensors of different shapes"
                return ("pointwise" if len(sources) == 1 else "merge"), None
            return "full", "is not a known spatially local operation"
        if node.op == "call_method" and node.target in _POINTWISE_METHODS and same_size:
            if len(sources) > 1 and any(x.shape != y.shape for x in inputs):
                return "full", "broadcasts image tensors of different shapes"
            if node.args[0] not in sources:
                return "full", "is a method of a constant"
            return ("pointwise" if len(sources) == 1 else "merge"), None
        return "full", "is not a known spatially local operation"

    def _nhwc_kind(self, node: fx.Node, sources: list[fx.Node], y) -> tuple[str, object]:
        """The rule of a node reading channels-last windows (``[B, H, W, C]``)."""
        if not _is_tensor(y) or y.ndim != 4:
            return "full", "does not output a [B, H, W, C] tensor"
        inputs = [self.clean[n.name] for n in sources]
        if _permutation(node) == (0, 3, 1, 2):
            return "pointwise", "nchw"
        if any(x.shape[1:3] != y.shape[1:3] for x in inputs):
            return "full", "changes the spatial size"
        constants = [self.clean[n.name] for n in node.all_input_nodes
                     if n.name not in self.dependent]
        if any(_is_tensor(c) and c.ndim > 1 for c in constants):
            return "full", "reads a constant tensor that is not per channel"
        if node.op == "call_module":
            module = self.modules[node.target]
            if len(sources) != 1:
                return "full", "reads several image tensors"
            if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
                return "pointwise", None
            if isinstance(module, (nn.Linear, *_POINTWISE_MODULES)) and not isinstance(
                    module, nn.LocalResponseNorm):
                return "pointwise", None
            return "full", "is not a per-pixel layer in the channels-last layout"
        if node.op == "call_function":
            if node.target is F.layer_norm:
                shape = node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
                if len(shape) == 1 and len(sources) == 1:
                    return "pointwise", None
            elif getattr(node.target, "__name__", "") == "stochastic_depth":
                return self._kind(node, sources, y)
            elif node.target in _POINTWISE_FUNCTIONS | _ARITHMETIC_FUNCTIONS or (
                    node.target is F.linear):
                if len(sources) > 1 and any(x.shape != y.shape for x in inputs):
                    return "full", "broadcasts image tensors of different shapes"
                return ("pointwise" if len(sources) == 1 else "merge"), None
        if node.op == "call_method" and node.target in _POINTWISE_METHODS:
            if len(sources) > 1 and any(x.shape != y.shape for x in inputs):
                return "full", "broadcasts image tensors of different shapes"
            if node.args[0] in sources:
                return ("pointwise" if len(sources) == 1 else "merge"), None
        return "full", "is not a per-pixel operation in the channels-last layout"

    @staticmethod
    def _module_kind(module: nn.Module, inputs: list[torch.Tensor], y: torch.Tensor
                     ) -> tuple[str, object]:
        x = inputs[0]
        if len(inputs) != 1:
            return "full", "reads several image tensors"
        if isinstance(module, nn.Conv2d):
            spatial = _conv_spatial(module, x, y)
            if isinstance(spatial, str):
                return "full", spatial
            gr, gc = spatial.geometry
            if all(g.kernel == 1 and g.stride == 1 and g.pad == 0 for g in (gr, gc)):
                return "pointwise", None
            return "spatial", spatial
        if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            spatial = _pool_spatial(module, x, y)
            return ("full", spatial) if isinstance(spatial, str) else ("spatial", spatial)
        if isinstance(module, SamePad2d):  # TF "SAME": the odd pixel goes bottom/right
            pads = (*module.pads(x.shape[-1]), *module.pads(x.shape[-2]))  # (l, r, t, b)
            return "spatial", _pad_spatial(pads, 0.0, x, y)
        if isinstance(module, nn.BatchNorm2d):
            if module.training or module.running_mean is None:
                return "full", "uses batch statistics (training mode or no running stats)"
            return "pointwise", None
        if x.shape[-2:] != y.shape[-2:]:
            return "full", "changes the spatial size"
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            return "pointwise", True  # keeps the size: the identity
        if isinstance(module, _POINTWISE_MODULES):
            if module.training and isinstance(module, nn.Dropout | nn.Dropout2d) and module.p:
                return "full", "is dropout in training mode"
            return "pointwise", None
        return "full", "is not a known spatially local layer"


@torch.no_grad()
def plan_graph(model: nn.Module, image: torch.Tensor) -> GraphPlan:
    """Trace ``model``, run it on ``image`` and give each node its rule (module docstring).

    Args:
        model (nn.Module): the network, in eval mode (not changed).
        image (torch.Tensor): the unoccluded model input ``[C, H, W]``.

    Returns:
        GraphPlan: rules, unoccluded values and the nodes computed on changed windows.

    Raises:
        IncrementalPlanError: the model cannot be traced, is in training mode, takes more
            than one input or returns no tensor.
    """
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        raise IncrementalPlanError(f"{training[0]} is in training mode; call model.eval()")
    graph_module = trace_graph(model)
    nodes = list(graph_module.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise IncrementalPlanError(f"the model takes {len(placeholders)} inputs, not 1")
    modules = dict(graph_module.named_modules())
    clean: dict[str, object] = {}
    dependent: set[str] = set()
    layouts: dict[str, str] = {}
    classify = _Classifier(modules, clean, dependent, layouts)
    rules: dict[str, NodeRule] = {}
    windowed: set[str] = set()
    output_node = None
    for node in nodes:
        if node.op == "output":
            output_node = node
            continue
        if node.op == "placeholder":
            clean[node.name] = image.unsqueeze(0)
            dependent.add(node.name)
            call = None
        elif node.op == "get_attr":
            clean[node.name] = _fetch_attr(graph_module, str(node.target))
            call = None
        else:
            call = _node_call(node, modules)
            args = fx.node.map_arg(node.args, lambda n: clean[n.name])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: clean[n.name])
            clean[node.name] = call(args, kwargs)
            if any(n.name in dependent for n in node.all_input_nodes):
                dependent.add(node.name)
        rule = classify.rule(node, call)
        rules[node.name] = rule
        if rule.kind == "input" or (rule.kind in ("pointwise", "spatial", "merge")
                                    and all(n.name in windowed for n in rule.sources)):
            windowed.add(node.name)
            layouts[node.name] = rule.layout
    result = fx.node.map_arg(output_node.args[0], lambda n: clean[n.name])
    if not isinstance(result, torch.Tensor):
        raise IncrementalPlanError(f"the model must return one tensor, not "
                                    f"{type(result).__name__}")
    return GraphPlan(graph_module, rules, clean, windowed, output_node)


def _fetch_attr(module: nn.Module, target: str):
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value
