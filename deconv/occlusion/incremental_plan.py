"""The plan of incremental occlusion: a model as a chain of spatially local stages plus a tail.

:func:`plan_chain` traces a model with ``torch.fx`` and splits its graph into

* a **prefix**: a chain (each node reads only the previous one) of *spatial* stages
  (``Conv2d``, ``MaxPool2d``, ``AvgPool2d``: each output pixel reads a ``kernel`` window of its
  input) and *pointwise* stages (activations, eval-mode ``BatchNorm2d``/``Dropout``,
  cross-channel ``LocalResponseNorm``, an adaptive pool whose output size equals its input size);
* a **tail**: everything from the first non-spatial node on (``flatten``, ``Linear``, a real
  adaptive/global pool), run normally on full tensors. The tail may be any graph that reads
  only the prefix's last output.

Anything else before the tail (a residual ``add``, an unknown module, a training-mode batch
norm, a non-zero padding mode) makes the model unsupported, with a reason naming the node.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv._deprecation import deprecated_names
from deconv.errors import DeconvError

__all__ = ["SpatialGeometry", "Stage", "ChainPlan", "IncrementalPlanError", "plan_chain",
           "affected_range"]


class IncrementalPlanError(DeconvError, ValueError):
    """The incremental occlusion engine cannot plan this *model* (the message names the culprit).

    Raised while planning (:func:`plan_chain`): the model is not a chain of conv / pool /
    pointwise layers before its head (e.g. a residual add). :class:`IncrementalOcclusion` and the
    occlusion sweep catch it and fall back to the naive engine with a warning, so users see it
    only when they call :func:`plan_chain` themselves. Not to be confused with
    :class:`deconv.UnsupportedModuleError`: the explicit *deconvnet* meets a module it has no way
    down for. Formerly ``UnsupportedModelError`` (that name still works, with a warning).
    """


__getattr__ = deprecated_names(__name__, {
    "UnsupportedModelError": ("use IncrementalPlanError (same class)",
                              lambda: IncrementalPlanError),
})


_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.PReLU, nn.Softplus,
    nn.Identity, nn.LocalResponseNorm,
)
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_POINTWISE_FUNCTIONS = (F.relu, torch.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu,
                        F.leaky_relu, F.hardswish, F.relu6)
# Nodes that read a whole spatial map: the prefix ends at the first of these.
_TAIL_MODULES = (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Softmax,
                 nn.LogSoftmax)
_TAIL_FUNCTIONS = (torch.flatten, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.mean,
                   torch.sum, torch.amax, F.linear, torch.softmax, F.softmax)
_TAIL_METHODS = ("view", "reshape", "flatten", "mean", "sum", "amax", "size", "squeeze")


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class SpatialGeometry:
    """Kernel geometry of one spatial stage along one axis.

    Attributes:
        kernel (int): kernel size.
        stride (int): stride.
        pad (int): padding before the first input (the stage's own ``padding``).
        dilation (int): dilation.
    """

    kernel: int
    stride: int
    pad: int
    dilation: int

    @property
    def span(self) -> int:
        """int: input extent read by one output, ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1


def affected_range(r0: torch.Tensor, r1: torch.Tensor, geometry: SpatialGeometry,
                   out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output range ``[o0, o1)`` whose windows touch the input range ``[r0, r1)`` (vectorized).

    Output ``o`` reads inputs ``o*stride - pad + [0, span)``. Empty inputs give empty outputs.

    Args:
        r0 (torch.Tensor): int64 starts of the changed input ranges.
        r1 (torch.Tensor): int64 ends (exclusive).
        geometry (SpatialGeometry): the stage's kernel along this axis.
        out_size (int): the stage's output size along this axis.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(o0, o1)``, clipped to ``[0, out_size]``.
    """
    g = geometry
    o0 = torch.div(r0 + g.pad - g.span + 1 + g.stride - 1, g.stride, rounding_mode="floor")
    o1 = torch.div(r1 - 1 + g.pad, g.stride, rounding_mode="floor") + 1
    o0, o1 = o0.clamp(0, out_size), o1.clamp(0, out_size)
    empty = (r1 <= r0) | (o1 <= o0)
    return torch.where(empty, 0, o0), torch.where(empty, 0, o1)


@dataclass
class Stage:
    """One node of the prefix.

    Attributes:
        node (str): fx node name.
        target (str): module name (``named_modules()``) or function name.
        kind (str): ``"spatial"`` or ``"pointwise"``.
        run (Callable[[torch.Tensor], torch.Tensor]): the node's own computation (full tensors).
        inplace (bool): ``run`` overwrites its input.
        module (nn.Module | None): the module called, if any.
        geometry (tuple[SpatialGeometry, SpatialGeometry] | None): rows and columns geometry
            of a spatial stage.
        pad_value (float): value of the stage's implicit padding (0, or -inf for max-pool).
    """

    node: str
    target: str
    kind: str
    run: Callable[[torch.Tensor], torch.Tensor]
    inplace: bool = False
    module: nn.Module | None = None
    geometry: tuple[SpatialGeometry, SpatialGeometry] | None = None
    pad_value: float = 0.0


@dataclass
class ChainPlan:
    """A model split into a spatial prefix and a tail (see the module docstring).

    Attributes:
        graph_module (fx.GraphModule): the traced model (shares the model's parameters).
        stages (list[Stage]): the prefix, in execution order.
        tail_nodes (list[fx.Node]): the nodes after the prefix, excluding placeholder/output.
        output_node (fx.Node): the graph's output node.
        adaptive_candidates (dict[str, nn.Module]): node name -> adaptive pool that is the
            identity when its output size equals its input size (decided per image).
    """

    graph_module: fx.GraphModule
    stages: list[Stage]
    tail_nodes: list[fx.Node]
    output_node: fx.Node
    adaptive_candidates: dict[str, nn.Module] = field(default_factory=dict)


def _conv_geometry(conv: nn.Conv2d) -> tuple[SpatialGeometry, SpatialGeometry]:
    k, s, d = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    if conv.padding == "valid":
        p = (0, 0)
    elif conv.padding == "same":
        p = tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    else:
        p = _pair(conv.padding)
    return tuple(SpatialGeometry(k[i], s[i], p[i], d[i]) for i in range(2))


def _pool_geometry(pool: nn.Module) -> tuple[SpatialGeometry, SpatialGeometry]:
    k = _pair(pool.kernel_size)
    s = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    p = _pair(pool.padding)
    d = _pair(getattr(pool, "dilation", 1))
    return tuple(SpatialGeometry(k[i], s[i], p[i], d[i]) for i in range(2))


def _module_stage(node: fx.Node, module: nn.Module) -> Stage | str | None:
    """A Stage, ``None`` if the node starts the tail, or a string saying why it is unsupported."""
    target = str(node.target)
    kind_name = type(module).__name__
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return f"{target} ({kind_name}) pads with {module.padding_mode!r}, not zeros"
        if module.padding == "same" and any(
                (d * (k - 1)) % 2 for k, d in zip(_pair(module.kernel_size),
                                                  _pair(module.dilation))):
            return f"{target} ({kind_name}) uses asymmetric 'same' padding"
        return Stage(node.name, target, "spatial", module, module=module,
                     geometry=_conv_geometry(module))
    if isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            return f"{target} ({kind_name}) returns indices"
        return Stage(node.name, target, "spatial", module, module=module,
                     geometry=_pool_geometry(module), pad_value=-math.inf)
    if isinstance(module, nn.AvgPool2d):
        return Stage(node.name, target, "spatial", module, module=module,
                     geometry=_pool_geometry(module))
    if isinstance(module, nn.BatchNorm2d):
        if module.training or not module.track_running_stats or module.running_mean is None:
            return (f"{target} ({kind_name}) uses batch statistics (training mode or no running "
                    f"stats); call model.eval()")
        return Stage(node.name, target, "pointwise", module, module=module)
    if isinstance(module, _DROPOUT_MODULES):
        if module.training and module.p > 0:
            return f"{target} ({kind_name}) is in training mode; call model.eval()"
        return Stage(node.name, target, "pointwise", module, module=module)
    if isinstance(module, _POINTWISE_MODULES):
        return Stage(node.name, target, "pointwise", module,
                     inplace=bool(getattr(module, "inplace", False)), module=module)
    if isinstance(module, _TAIL_MODULES):
        return None
    return f"{target} ({kind_name}) is not a known spatially local layer"


def _function_stage(node: fx.Node, previous: fx.Node) -> Stage | str | None:
    name = getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return None if node.target in _TAIL_METHODS else (
            f"method {name!r} (node {node.name}) is not supported")
    if node.target in _TAIL_FUNCTIONS:
        return None
    if node.target in _POINTWISE_FUNCTIONS:
        inplace = bool(node.kwargs.get("inplace", False))

        def run(x: torch.Tensor, _node=node, _prev=previous) -> torch.Tensor:
            args = fx.node.map_arg(_node.args, lambda n: x)
            kwargs = fx.node.map_arg(_node.kwargs, lambda n: x)
            return _node.target(*args, **kwargs)

        return Stage(node.name, name, "pointwise", run, inplace=inplace)
    if node.target in (operator.add, operator.mul, torch.add, torch.cat):
        return f"{name} (node {node.name}) combines several tensors (residual or branch)"
    return f"function {name!r} (node {node.name}) is not a known spatially local operation"


def _node_inputs(node: fx.Node) -> list[fx.Node]:
    return list(node.all_input_nodes)


def plan_chain(model: nn.Module) -> ChainPlan:
    """Split ``model`` into a spatial chain prefix and a tail (see the module docstring).

    Args:
        model (nn.Module): the network (eval mode).

    Returns:
        ChainPlan: the plan.

    Raises:
        IncrementalPlanError: the model cannot be traced, is not a chain before its first
            non-spatial node, or has a layer that is not spatially local; the message says which.
    """
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors on dynamic code
        raise IncrementalPlanError(f"torch.fx cannot trace the model: {exc}") from exc
    nodes = list(graph_module.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise IncrementalPlanError(f"the model takes {len(placeholders)} inputs, not 1")
    output_node = next(n for n in nodes if n.op == "output")
    modules = dict(graph_module.named_modules())
    stages: list[Stage] = []
    adaptive: dict[str, nn.Module] = {}
    previous = placeholders[0]
    body = [n for n in nodes if n.op not in ("placeholder", "output")]
    index = 0
    for index, node in enumerate(body):  # noqa: B007 - index is used after the loop
        if node.op == "get_attr":
            raise IncrementalPlanError(f"node {node.name} reads attribute {node.target!r}")
        if len(previous.users) != 1:
            raise IncrementalPlanError(
                f"the output of {previous.name} is read by {[n.name for n in previous.users]} "
                f"(a residual connection or branch; only chains are supported)")
        if _node_inputs(node) != [previous]:
            raise IncrementalPlanError(
                f"node {node.name} ({node.target}) reads "
                f"{[n.name for n in _node_inputs(node)]}, not just {previous.name} (residual "
                f"connections and branches are not supported)")
        if node.op == "call_module":
            module = modules[node.target]
            stage = _module_stage(node, module)
            if stage is None and isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                adaptive[node.name] = module
                stage = Stage(node.name, str(node.target), "pointwise", module, module=module)
        else:
            stage = _function_stage(node, previous)
        if isinstance(stage, str):
            raise IncrementalPlanError(stage)
        if stage is None:
            break
        stages.append(stage)
        previous = node
    else:
        index = len(body)
    tail = body[index:]
    prefix_names = {s.node for s in stages} | {placeholders[0].name}
    last = previous.name
    for node in tail + [output_node]:
        for source in _node_inputs(node):
            if source.name in prefix_names and source.name != last:
                raise IncrementalPlanError(
                    f"node {node.name} reads {source.name}, an earlier layer than the last "
                    f"spatial one ({last}): skip connections are not supported")
    return ChainPlan(graph_module, stages, tail, output_node, adaptive)
