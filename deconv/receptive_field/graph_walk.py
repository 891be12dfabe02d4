"""Walking a model's graph: ``torch.fx`` tracing and the propagation of fields along it.

The model is traced with ``torch.fx.symbolic_trace`` semantics, keeping the target layer and
every module with a rule as one call. Submodules fx cannot trace (Python code on shapes, such
as TF-"same" padding computed from ``x.shape``) stay opaque calls whose geometry is read from
``make_fx`` (ATen operations) at the actual input shape. Values are computed node by node
(on fake tensors, see :mod:`deconv.receptive_field.compute`) next to the fields.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from deconv.receptive_field.field import (
    ReceptiveFieldError,
    _cannot,
    _Context,
    _Field,
    _image_field,
)
from deconv.receptive_field.rule_table import _apply, _is_rule_leaf


class _Tracer(fx.Tracer):
    """An fx tracer that keeps the target layer ``leaf`` and the ``opaque`` modules as calls."""

    def __init__(self, leaf: str | None = None, opaque: frozenset[str] = frozenset()):
        super().__init__()
        self.leaf, self.opaque = leaf, opaque

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (qualname == self.leaf or qualname in self.opaque
                or super().is_leaf_module(m, qualname))


class _NotInGraph(Exception):
    """The layer is not a node of the traced graph (it is inside an opaque module)."""


def _trace(module: nn.Module, leaf: str | None = None,
           opaque: frozenset[str] = frozenset()) -> fx.GraphModule:
    tracer = _Tracer(leaf, opaque)
    graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph)


def _untraceable_modules(module: nn.Module, leaf: str) -> frozenset[str]:
    """Names of the submodules fx cannot trace (children first), to keep as opaque calls.

    Their geometry is then read from ``make_fx`` at the actual input shape (see
    :func:`_propagate_submodule`); shape-dependent code such as TF-"same" padding traces there.
    """
    opaque: set[str] = set()
    for name, sub in reversed(list(module.named_modules())):
        if not name or _is_rule_leaf(sub):
            continue
        inner = frozenset(n[len(name) + 1:] for n in opaque if n.startswith(name + "."))
        try:
            _trace(sub, opaque=inner)
        except Exception:
            opaque.add(name)
    return frozenset(opaque)


def _propagate_root(gm: fx.GraphModule, name: str, ctx: _Context) -> tuple[_Field, Any]:
    targets = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == name]
    if not targets:  # it runs inside a module that could only be traced as a whole
        raise _NotInGraph(name)
    placeholders = _placeholders(gm)
    image = _example_input(gm, ctx.image)
    inputs = {placeholders[0]: (image, _image_field(ctx.image))}
    results = _propagate_graph(gm, inputs, ctx, stop=targets)
    fields = [results[t] for t in targets]
    if len({f for f, _ in fields}) > 1:
        warnings.warn(f"module {name!r} runs {len(targets)} times with different receptive "
                      f"fields; using its last call", stacklevel=3)
    return fields[-1]


def _propagate_graph(gm: fx.GraphModule, inputs: dict[fx.Node, tuple[Any, _Field | None]],
                     ctx: _Context, stop: list[fx.Node]) -> dict[fx.Node, tuple[Any, Any]]:
    """Propagate values and fields to the nodes ``stop``, visiting only their ancestors."""
    needed: set[fx.Node] = set()
    pending = list(stop)
    while pending:
        node = pending.pop()
        if node not in needed:
            needed.add(node)
            pending.extend(node.all_input_nodes)
    interpreter = fx.Interpreter(gm)
    values: dict[fx.Node, Any] = {}
    fields: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node not in needed:
            continue
        if node.op == "placeholder":
            value, field = inputs.get(node, (_default_of(node), None))
            values[node], fields[node] = value, field
            continue
        interpreter.env = values
        args, kwargs = interpreter.fetch_args_kwargs_from_env(node)
        fargs = fx.node.map_arg(node.args, lambda n: fields[n])
        fkwargs = fx.node.map_arg(node.kwargs, lambda n: fields[n])
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "get_attr":
            values[node], fields[node] = interpreter.run_node(node), None
            continue
        out = interpreter.run_node(node)
        if node.op == "call_module" and not _is_rule_leaf(module):
            field = _propagate_submodule(module, args, kwargs, fargs, fkwargs, ctx)
        else:
            field = _apply(node.op, node.target, module, args, kwargs, fargs, fkwargs, out, ctx)
            if isinstance(out, (tuple, list)) and isinstance(field, _Field):
                field = tuple(field for _ in out)
        values[node], fields[node] = out, field
    return {node: (fields[node], values[node]) for node in stop}


def _propagate_submodule(module: nn.Module, args: tuple, kwargs: dict, fargs: tuple,
                         fkwargs: dict, ctx: _Context) -> _Field:
    """Field of a module's output (a Sequential, a residual block, a custom layer).

    The module is traced on its own with ``torch.fx``; if that fails (Python code that depends
    on shapes), with ``make_fx`` at the actual input shapes, which records ATen operations.
    """
    inputs: dict[fx.Node, tuple[Any, Any]] = {}
    try:
        gm = _trace(module)
    except Exception:
        from torch.fx.experimental.proxy_tensor import make_fx

        try:
            gm = make_fx(module)(*args, **kwargs)
        except Exception as exc:
            raise _cannot(type(module).__name__, f"neither torch.fx nor make_fx can trace it "
                          f"({type(exc).__name__}: {exc})") from exc
        placeholders = _placeholders(gm)
        pairs = [(v, f) for v, f in zip((*args, *kwargs.values()), (*fargs, *fkwargs.values()))
                 if isinstance(v, torch.Tensor)]
        if len(pairs) != len(placeholders):
            raise ReceptiveFieldError(f"cannot match the inputs of {type(module).__name__} to "
                                      f"its traced graph; give it tensor arguments only") from None
        inputs = dict(zip(placeholders, pairs))
    else:
        for i, node in enumerate(_placeholders(gm)):
            if i < len(args):
                inputs[node] = (args[i], fargs[i])
            elif node.target in kwargs:
                inputs[node] = (kwargs[node.target], fkwargs[node.target])
    output = next(n for n in gm.graph.nodes if n.op == "output")
    sources = [n for n in output.all_input_nodes]
    results = _propagate_graph(gm, inputs, ctx, stop=sources)
    for node in sources:
        field, _ = results[node]
        field = field[0] if isinstance(field, tuple) else field
        if isinstance(field, _Field):
            return field
    raise ReceptiveFieldError(f"the output of {type(module).__name__} does not depend on the "
                              f"image")


def _placeholders(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "placeholder"]


def _default_of(node: fx.Node) -> Any:
    return node.args[0] if node.args else None


def _example_input(module: nn.Module, image: tuple[int, int]) -> torch.Tensor:
    """A zero image [1, C, H, W] with the channels, dtype and device of the first convolution."""
    channels, dtype, device = 3, torch.float32, torch.device("cpu")
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            channels, dtype, device = m.in_channels, m.weight.dtype, m.weight.device
            break
    return torch.zeros(1, channels, *image, dtype=dtype, device=device)
