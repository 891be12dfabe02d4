"""Exact incremental occlusion on any traced graph: residual, branching and depthwise CNNs.

The chain engine (:mod:`deconv.occlusion.incremental`) covers conv/pool chains. This one follows
an occluder's changed region through a ``torch.fx`` graph (:mod:`deconv.occlusion.graph_plan`):
pointwise nodes keep it, convolutions and pools grow it by their kernel span and shrink it by
their stride, residual adds, multiplies and channel concatenations take the bounding box of
their inputs' regions. The model runs once on the unoccluded image; each convolution or pool
keeps a pre-padded copy of its input and each merge a copy of its inputs. For a batch of
occluder positions every such node recomputes only one window per position (the same size for
the whole batch, covering each position's changed region): it gathers the window it reads from
the cached copy, pastes in the part its input changed, and runs on it with padding 0. A node
that reads a whole map (a global pool, a squeeze-excitation gate, ``flatten``) and everything
after it run on whole tensors (the cached map with the changed window pasted): still exact.
The result is the model's output on the occluded images, to floating-point rounding (float64:
~1e-15 against the naive sweep).

Interface (the engine interface of :mod:`deconv.occlusion.engines`, registered as ``"graph"``)::

    with GraphOcclusion(model, image, fill, layer="layer3") as engine:
        result = engine.outputs(boxes)  # boxes: long [P, 4] (y0, y1, x0, x1), end exclusive
        result.output, result.captured  # [P, ...] and [P, C] (reduce="sum") or None
        engine.reference                # the same for the unoccluded image
        engine.work                     # per convolution: outputs computed and changed
    # leaving the block releases the caches

A model ``torch.fx`` cannot trace falls back, with a warning naming the cause, to the batched
naive forward (the same numbers). Approximate modes: ``max_fraction`` (Krypton's projective-field
threshold: a region wider than that fraction of a map's side is cut to a centred window of that
size, values outside it taken from the unoccluded image) and ``compute_dtype`` (e.g.
``torch.bfloat16``: the whole network runs in that dtype on a private copy of the model).
"""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv._deprecation import deprecated_names
from deconv.errors import InvalidArgumentError
from deconv.layers import module_of, resolve_layer
from deconv.occlusion.engine_base import OcclusionEngine
from deconv.occlusion.graph_plan import GraphPlan, NodeRule, plan_graph
from deconv.occlusion.incremental_plan import IncrementalPlanError, affected_range
from deconv.occlusion.outputs import OcclusionOutputs
from deconv.occlusion.windows import flat_nhwc, occluded_window, paste_window

__all__ = ["GraphOcclusion", "supports_graph"]

Region = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # r0, r1, c0, c1 [N]


def supports_graph(model) -> tuple[bool, str]:
    """Whether :class:`GraphOcclusion` can trace ``model`` (it then runs it exactly).

    Args:
        model (nn.Module | LoadedModel): the network.

    Returns:
        tuple[bool, str]: ``(True, "")`` or ``(False, the reason, naming the node or layer)``.
    """
    from deconv.occlusion.graph_plan import trace_graph

    module = module_of(model)
    training = [name or "the model" for name, m in module.named_modules() if m.training]
    if training:
        return False, f"{training[0]} is in training mode; call model.eval()"
    try:
        graph = trace_graph(module).graph
    except IncrementalPlanError as exc:
        return False, str(exc)
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return False, f"the model takes {len(inputs)} inputs, not 1"
    return True, ""


@dataclass
class _Win:
    """A node's values on one window per position (everything outside is unchanged)."""

    values: torch.Tensor  # [P, n_r, n_c, C], channels last, contiguous
    top: torch.Tensor  # [P] first row of the window (cpu, long)
    left: torch.Tensor  # [P] first column

    def same_place(self, other: _Win) -> bool:
        return (self.values.shape[1:3] == other.values.shape[1:3]
                and torch.equal(self.top, other.top) and torch.equal(self.left, other.left))


@dataclass
class _Store:
    """A cached unoccluded map, padded, channels last and flattened to ``[rows * width, C]``."""

    flat: torch.Tensor
    width: int
    pad_top: int
    pad_left: int


def _nchw(values: torch.Tensor) -> torch.Tensor:
    return values.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def _empty(region: Region) -> torch.Tensor:
    r0, r1, c0, c1 = region
    return (r1 <= r0) | (c1 <= c0)


class GraphOcclusion(OcclusionEngine):
    """Model outputs on occluded copies of one image, recomputing only each node's changed region.

    See the module docstring. Construction runs the model once on the unoccluded image.

    Args:
        model (nn.Module | LoadedModel): the network, in eval mode (it is not modified).
        image (torch.Tensor): model input ``[C, H, W]`` (or ``[1, C, H, W]``) on the model's
            device and dtype.
        fill (float | torch.Tensor): what the occluder shows, in model-input space: a number,
            ``[C]`` or ``[C, H, W]``.
        layer (str | int | None): a layer (``named_modules()`` name of a leaf or a container
            such as ``"layer3"``, or a paper layer number) whose output to return too.
        reduce (str | None): ``"sum"``: the captured output summed over space ``[P, C]``; None:
            the whole captured output.
        batch_size (int): occluder positions processed together.
        max_fraction (float | None): approximate mode (projective-field threshold); None is
            exact.
        compute_dtype (torch.dtype | None): approximate mode: run the network in this dtype
            (a private copy); results in the image's dtype. None: exact.
        need_output (bool): False: :meth:`outputs` returns ``output=None`` (the layer only).

    Use it as a context manager (or call :meth:`close`): leaving releases the caches.

    Raises:
        ValueError: bad image/fill shapes, unknown capture layer, bad settings.
    """

    def __init__(self, model, image: torch.Tensor, fill=0.0, *, layer: str | int | None = None,
                 reduce: str | None = "sum", batch_size: int = 32,
                 max_fraction: float | None = None, compute_dtype: torch.dtype | None = None,
                 need_output: bool = True):
        layer = resolve_layer(model, layer) if layer is not None else None
        self._setup(model, image, fill, layer=layer, reduce=reduce, batch_size=batch_size,
                    need_output=need_output, max_fraction=max_fraction)
        image = self.image
        self.work: dict[str, dict] = {}
        network, work_image = self.module, self.image
        if compute_dtype is not None and compute_dtype != image.dtype:
            network, work_image = deepcopy(self.module).to(compute_dtype), image.to(compute_dtype)
        try:
            plan = plan_graph(network, work_image)
        except IncrementalPlanError as exc:
            self._fall_back("graph incremental occlusion cannot run this model", str(exc))
            return
        self.incremental, self.reason = True, ""
        self.image, self.fill = work_image, self.fill.to(work_image.dtype)
        with torch.no_grad():
            self._build(plan)

    supports = staticmethod(supports_graph)

    # ------------------------------------------------------------------ one clean forward
    def _build(self, plan: GraphPlan) -> None:
        self.plan, self.rules, self.windowed = plan, plan.rules, plan.windowed
        clean = plan.clean
        self.consts = {name: clean[name] for name, rule in self.rules.items()
                       if rule.kind == "const"}
        self._capture_node = self._capture_name()
        stores: dict[tuple, _Store] = {}
        self._store_of: dict[tuple[str, str], tuple] = {}  # (user, source) -> store key

        def store(user: str, source: str, pads=(0, 0, 0, 0), value=0.0) -> None:
            key = (source, tuple(pads), value)
            if key not in stores:
                x = clean[source]
                if any(pads):
                    x = F.pad(x, pads, value=value)
                if self.rules[source].layout == "nhwc":  # [1, H, W, C] already
                    stores[key] = _Store(x[0].reshape(-1, x.shape[-1]), x.shape[2], 0, 0)
                else:
                    stores[key] = _Store(flat_nhwc(x), x.shape[-1], pads[2], pads[0])
            self._store_of[(user, source)] = key

        for name, rule in self.rules.items():
            windowed_sources = [n.name for n in rule.sources if n.name in self.windowed]
            if name in self.windowed and rule.kind == "spatial":
                store(name, rule.sources[0].name, rule.spatial.padding(), rule.spatial.pad_value)
            elif name in self.windowed and rule.kind == "merge" or name not in self.windowed:
                for source in windowed_sources:
                    store(name, source)
        for node in plan.output_node.all_input_nodes:
            if node.name in self.windowed:
                store("output", node.name)
        if self._capture_node in self.windowed:
            store("capture", self._capture_node)
            self._capture_total = clean[self._capture_node][0].to(torch.float64).sum((-2, -1))
        self.stores = stores
        self._divisors = {name: self._avg_divisor(rule) for name, rule in self.rules.items()
                          if name in self.windowed and rule.kind == "spatial"
                          and rule.spatial.op == "avg"}
        self._last_use = self._last_uses()
        output = fx.node.map_arg(plan.output_node.args[0], lambda n: clean[n.name])
        captured = None
        if self._capture_node is not None:
            captured = self._reduced(clean[self._capture_node])
        self.reference = OcclusionOutputs(output.to(self.out_dtype, copy=True), captured)
        modules = dict(plan.graph_module.named_modules())
        for name, rule in self.rules.items():
            node = rule.node
            if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
                m = modules[node.target]
                self.work[f"{name}:{node.target}"] = {
                    "module": "Conv2d", "windowed": name in self.windowed,
                    "macs_per_output": m.out_channels * (m.in_channels // m.groups)
                    * m.kernel_size[0] * m.kernel_size[1],
                    "full_outputs": math.prod(rule.spatial_size),
                    "window_outputs": 0, "region_outputs": 0, "positions": 0}
        plan.clean = {}  # the stores keep what the sweep needs

    def _capture_name(self) -> str | None:
        """The node whose output is the captured layer's (the last node inside a container)."""
        if self.layer is None:
            return None
        name = self.layer
        exact = [r.node.name for r in self.rules.values()
                 if r.node.op == "call_module" and r.node.target == name]
        if len(exact) > 1:
            raise InvalidArgumentError(f"layer {name!r} is called {len(exact)} times by the model; "
                                       f"capture a layer that is called once")
        if exact:
            return exact[0]
        inside = [r.node.name for r in self.rules.values()
                  if name in (r.node.meta.get("nn_module_stack") or {})
                  or any(path == name for path, _ in
                         (r.node.meta.get("nn_module_stack") or {}).values())]
        if not inside:
            raise InvalidArgumentError(
                f"layer {name!r} is not a module called by the model's forward")
        return inside[-1]

    def _last_uses(self) -> dict[str, int]:
        """Node name -> index of the last node that reads it (to free batch values early)."""
        order = {name: i for i, name in enumerate(self.rules)}
        last = {}
        for name, rule in self.rules.items():
            for source in rule.node.all_input_nodes:
                last[source.name] = order[name]
        for node in self.plan.output_node.all_input_nodes:
            last[node.name] = len(order)
        if self._capture_node is not None:
            last[self._capture_node] = len(order)
        return last

    def _avg_divisor(self, rule: NodeRule) -> torch.Tensor:
        """PyTorch's divisor of each output pixel of an average pool ``[Ho * Wo, 1]``."""
        op = rule.spatial
        c = self.image.shape[0]
        ones = self.image.new_ones(1, c, *op.in_size).double()
        pooled = F.avg_pool2d(ones, **_avg_args(op.module))
        counts = F.avg_pool2d(F.pad(ones, op.padding(), value=0.0), op.module.kernel_size,
                              op.module.stride, 0, divisor_override=1)
        divisor = (counts[0, 0] / pooled[0, 0]).round()
        return divisor.reshape(-1, 1).to(self.image.dtype)

    # ------------------------------------------------------------------ regions
    def _regions(self, boxes: torch.Tensor) -> dict[str, Region]:
        """Each windowed node's changed region for every box (cut in approximate mode)."""
        regions: dict[str, Region] = {}
        _, h, w = self.image.shape
        for name in self.rules:
            if name not in self.windowed:
                continue
            rule = self.rules[name]
            if rule.kind == "input":
                region = (boxes[:, 0].clamp(0, h), boxes[:, 1].clamp(0, h),
                          boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, w))
                empty = _empty(region)
                region = tuple(torch.where(empty, 0, v) for v in region)
            elif rule.kind == "pointwise":
                region = regions[rule.sources[0].name]
            elif rule.kind == "spatial":
                r0, r1, c0, c1 = regions[rule.sources[0].name]
                gr, gc = rule.spatial.geometry
                ho, wo = rule.spatial.out_size
                o_r0, o_r1 = affected_range(r0, r1, gr, ho)
                o_c0, o_c1 = affected_range(c0, c1, gc, wo)
                empty = (o_r1 <= o_r0) | (o_c1 <= o_c0)
                region = tuple(torch.where(empty, 0, v) for v in (o_r0, o_r1, o_c0, o_c1))
                region = self._cut(region, ho, wo)
            else:  # merge: the bounding box of the non-empty inputs
                parts = [regions[n.name] for n in rule.sources]
                big = 1 << 40
                bounds = []
                for k in range(4):
                    values = torch.stack([torch.where(_empty(p), big if k % 2 == 0 else -1, p[k])
                                          for p in parts])
                    bounds.append(values.min(0).values if k % 2 == 0 else values.max(0).values)
                empty = torch.stack([_empty(p) for p in parts]).all(0)
                region = tuple(torch.where(empty, 0, v) for v in bounds)
                region = self._cut(region, *rule.spatial_size)
            regions[name] = region
        return regions

    def _cut(self, region: Region, height: int, width: int) -> Region:
        """Approximate mode: a region wider than ``max_fraction`` of a side, centred and cut."""
        if self.max_fraction is None:
            return region
        out = []
        for (a, b), size in zip((region[:2], region[2:]), (height, width)):
            cap = max(1, math.ceil(self.max_fraction * size))
            start = torch.clamp(torch.div(a + b, 2, rounding_mode="floor") - cap // 2, 0,
                                max(size - cap, 0))
            cut = (b - a) > cap
            out += [torch.where(cut, start, a), torch.where(cut, start + cap, b)]
        return tuple(out)

    @staticmethod
    def _window(a: torch.Tensor, b: torch.Tensor, size: int) -> tuple[int, torch.Tensor]:
        """One window length for the batch and each position's start, covering ``[a, b)``."""
        n = min(int((b - a).max().clamp(min=1)), size)
        return n, torch.clamp(torch.minimum(a, torch.full_like(a, size - n)), min=0)

    # ------------------------------------------------------------------ batches
    def _outputs(self, boxes: torch.Tensor) -> OcclusionOutputs:
        """:meth:`OcclusionEngine.outputs` for a model this engine runs incrementally."""
        regions = self._regions(boxes)
        order = self._order(regions, len(boxes))
        outs, caps = [], []
        with torch.no_grad():
            for start in range(0, len(boxes), self.batch_size):
                index = order[start:start + self.batch_size]
                output, captured = self._batch({k: tuple(v[index] for v in r)
                                                for k, r in regions.items()})
                if output is not None:
                    outs.append(output.to(self.out_dtype))
                caps.append(captured)
        output = torch.cat(outs) if outs else None
        captured = torch.cat(caps) if caps[0] is not None else None
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        inverse = inverse.to((output if output is not None else captured).device)
        return OcclusionOutputs(output[inverse].contiguous() if self.need_output else None,
                                captured[inverse].contiguous() if captured is not None else None)

    def _order(self, regions: dict[str, Region], count: int) -> torch.Tensor:
        """Positions sorted by their regions' sizes, so that a batch shares its window sizes."""
        keys = [r[1] - r[0] for name, r in regions.items()
                if self.rules[name].kind == "spatial"]
        keys += [r[3] - r[2] for name, r in regions.items()
                 if self.rules[name].kind == "spatial"]
        if not keys:
            return torch.arange(count)
        rows = torch.stack(keys, 1).tolist()
        return torch.tensor(sorted(range(count), key=rows.__getitem__), dtype=torch.long)

    def _batch(self, regions: dict[str, Region]
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        env: dict[str, object] = {}
        captured = None
        count = len(next(iter(regions.values()))[0])
        for i, (name, rule) in enumerate(self.rules.items()):
            if rule.kind == "const":
                continue
            if name in self.windowed:
                value = self._windowed(rule, env, regions[name])
            else:
                value = self._full_node(rule, env, count)
            env[name] = value
            if name == self._capture_node:
                captured = self._captured(value)
                if not self.need_output:  # the layer is all that is asked for: stop here
                    return None, captured
            for source in rule.node.all_input_nodes:
                if self._last_use.get(source.name) == i:
                    env.pop(source.name, None)
        output = fx.node.map_arg(self.plan.output_node.args[0],
                                 lambda n: self._materialize(n.name, env[n.name], "output"))
        return output, captured

    def _arg(self, env: dict, user: str, mapping=None):
        """Argument lookup for fx.map_arg: constants, windows (``mapping``) or whole tensors."""

        def look(n: fx.Node):
            if n.name in self.consts:
                return self.consts[n.name]
            value = env[n.name]
            if isinstance(value, _Win):
                return mapping(n) if mapping is not None else self._materialize(n.name, value,
                                                                                user)
            return value

        return look

    def _windowed(self, rule: NodeRule, env: dict, region: Region) -> _Win:
        name = rule.node.name
        h, w = rule.spatial_size
        n_r, top = self._window(region[0], region[1], h)
        n_c, left = self._window(region[2], region[3], w)
        self._count(name, region, len(top), n_r * n_c)
        if rule.kind == "input":
            return self._input_window(region, n_r, top, n_c, left)
        if rule.kind == "pointwise":
            source = env[rule.sources[0].name]
            if rule.identity:
                return source
            look = self._arg(env, name, lambda n: self._logical(n.name, env[n.name].values))
            y = rule.call(fx.node.map_arg(rule.node.args, look),
                          fx.node.map_arg(rule.node.kwargs, look))
            return _Win(self._stored(rule, y), source.top, source.left)
        if rule.kind == "spatial":
            source_name = rule.sources[0].name
            op = rule.spatial
            gr, gc = op.geometry
            x = self._gather(self._store_of[(name, source_name)], env[source_name],
                             top * gr.stride, (n_r - 1) * gr.stride + gr.span,
                             left * gc.stride, (n_c - 1) * gc.stride + gc.span)
            return _Win(_nhwc(self._run_spatial(rule, x, top, n_r, left, n_c)), top, left)
        # merge: every input on the merged window
        here = _Win(torch.empty(len(top), n_r, n_c, 0), top, left)
        gathered = {}
        for source in rule.sources:
            value = env[source.name]
            if value.same_place(here):
                gathered[source.name] = value.values
            elif source.name not in gathered:
                gathered[source.name] = self._gather(self._store_of[(name, source.name)],
                                                     value, top, n_r, left, n_c)
        look = self._arg(env, name, lambda n: self._logical(n.name, gathered[n.name]))
        y = rule.call(fx.node.map_arg(rule.node.args, look),
                      fx.node.map_arg(rule.node.kwargs, look))
        return _Win(self._stored(rule, y), top, left)

    def _logical(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """Stored windows ``[P, h, w, C]`` as the node's tensor (``[P, C, h, w]`` in NCHW)."""
        return values if self.rules[name].layout == "nhwc" else _nchw(values)

    @staticmethod
    def _stored(rule: NodeRule, y: torch.Tensor) -> torch.Tensor:
        """A node's windowed output as stored: ``[P, h, w, C]`` contiguous."""
        return y.contiguous() if rule.layout == "nhwc" else _nhwc(y)

    def _count(self, name: str, region: Region, positions: int, window: int) -> None:
        work = self.work.get(f"{name}:{self.rules[name].node.target}")
        if work is not None:
            work["window_outputs"] += positions * window
            r0, r1, c0, c1 = region
            work["region_outputs"] += int(((r1 - r0) * (c1 - c0)).sum())
            work["positions"] += positions

    def _input_window(self, region: Region, n_r: int, top: torch.Tensor, n_c: int,
                      left: torch.Tensor) -> _Win:
        return _Win(occluded_window(self.image, self.fill, top, n_r, left, n_c, region),
                    top, left)

    def _gather(self, key: tuple, source: _Win, rows0: torch.Tensor, n_rows: int,
                cols0: torch.Tensor, n_cols: int) -> torch.Tensor:
        """``[P, n_rows, n_cols, C]`` of a store from ``(rows0, cols0)`` (padded coordinates),
        with the source's changed window pasted in."""
        store = self.stores[key]
        return paste_window(store.flat, store.width, 0, store.pad_top, store.pad_left,
                            rows0[:, None] + torch.arange(n_rows),
                            cols0[:, None] + torch.arange(n_cols), source.values, source.top,
                            source.left)

    def _run_spatial(self, rule: NodeRule, x: torch.Tensor, top: torch.Tensor, n_r: int,
                     left: torch.Tensor, n_c: int) -> torch.Tensor:
        """The node on its padded input windows ``x`` ``[P, h, w, C]`` (padding 0)."""
        op, m = rule.spatial, rule.spatial.module
        x = _nchw(x)
        if op.op == "pad":
            return x
        if op.op == "conv":
            return F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        if op.op == "max":
            return F.max_pool2d(x, m.kernel_size, m.stride, 0, m.dilation, ceil_mode=False)
        total = F.avg_pool2d(x, m.kernel_size, m.stride, 0, ceil_mode=False,
                             count_include_pad=True, divisor_override=1)
        wo = op.out_size[1]
        rows = top[:, None] + torch.arange(n_r)
        cols = left[:, None] + torch.arange(n_c)
        index = (rows[:, :, None] * wo + cols[:, None, :]).reshape(-1).to(x.device)
        divisor = self._divisors[rule.node.name].index_select(0, index)
        return total / _nchw(divisor.view(len(top), n_r, n_c, 1))

    def _materialize(self, name: str, value, user: str):
        """A windowed value as whole tensors ``[P, C, H, W]`` (cached map, window pasted)."""
        if not isinstance(value, _Win):
            return value
        h, w = self.rules[name].spatial_size
        zeros = torch.zeros(len(value.top), dtype=torch.long)
        return self._logical(name, self._gather(self._store_of[(user, name)], value, zeros, h,
                                                zeros, w))

    def _full_node(self, rule: NodeRule, env: dict, count: int):
        name = rule.node.name
        look = self._arg(env, name)
        value = rule.call(fx.node.map_arg(rule.node.args, look),
                          fx.node.map_arg(rule.node.kwargs, look))
        work = self.work.get(f"{name}:{rule.node.target}")
        if work is not None:
            work["window_outputs"] += count * work["full_outputs"]
            work["region_outputs"] += count * work["full_outputs"]
            work["positions"] += count
        return value

    def _captured(self, value) -> torch.Tensor:
        if not isinstance(value, _Win):
            return self._reduced(value)
        if self.reduce is None or self.rules[self._capture_node].layout == "nhwc":
            return self._reduced(self._materialize(self._capture_node, value, "capture"))
        store = self.stores[self._store_of[("capture", self._capture_node)]]
        p, m_r, m_c, c = value.values.shape
        w = store.width
        rows = value.top[:, None] + torch.arange(m_r)
        cols = value.left[:, None] + torch.arange(m_c)
        index = (rows[:, :, None] * w + cols[:, None, :]).reshape(-1).to(store.flat.device)
        old = store.flat.index_select(0, index).view(p, -1, c).to(torch.float64).sum(1)
        new = value.values.reshape(p, -1, c).to(torch.float64).sum(1)
        return (self._capture_total.unsqueeze(0) - old + new).to(self.out_dtype)

    def _reduced(self, value) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.ndim < 2:
            raise InvalidArgumentError(f"layer {self.layer!r} must output a tensor [B, C, ...]")
        if self.reduce is None:
            return value.to(self.out_dtype, copy=True).contiguous()
        reduced = value.flatten(2).sum(2) if value.ndim > 2 else value.clone()
        return reduced.to(self.out_dtype)


def _avg_args(pool: nn.AvgPool2d) -> dict:
    return {"kernel_size": pool.kernel_size, "stride": pool.stride, "padding": pool.padding,
            "ceil_mode": pool.ceil_mode, "count_include_pad": pool.count_include_pad,
            "divisor_override": pool.divisor_override}


# Choosing between the incremental engines is the registry's decision (deconv.occlusion.engines).
__getattr__ = deprecated_names(__name__, {
    "make_incremental_engine": ("import it from deconv.occlusion.engines",
                                "deconv.occlusion.engines:make_incremental_engine"),
})
