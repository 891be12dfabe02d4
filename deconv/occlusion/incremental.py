"""Exact incremental occlusion inference (Krypton, Nakandala et al., SIGMOD 2019).

An occluder changes only a small region of each layer: its *projective field*, which grows by
the kernel span and shrinks by the stride at every convolution or pooling. So we run the model
once on the unoccluded image and keep every layer's input; then, for a batch of occluder
windows, each layer recomputes only each position's changed region: it gathers the input window
that region needs (the changed region mapped back through kernel/stride/padding/dilation) from
the cached tensor, overwrites the part the previous layer changed with its new values, and runs
the layer on the window with padding 0 (the layer's own padding is already in the cached,
pre-padded tensor: zeros for convolutions, -inf for max-pools). All positions of a batch share
one window size, so each layer is one batched call. The large early layers keep only a band
of rows around the current occluder row (:mod:`deconv.occlusion.incremental_cache`). At the
first non-spatial node (flatten, linear, a global pool) the full tensors are rebuilt (cache +
pasted region) and the rest of the network runs normally. The result is the model's output on
the occluded images, to floating-point rounding (float64: ~1e-15).

Interface (the occlusion sweep's ``engine="incremental"``; see :mod:`deconv.occlusion.engines`)::

    with IncrementalOcclusion(model, image, fill, layer="features.29") as engine:
        result = engine.outputs(boxes)  # boxes: long [P, 4] (y0, y1, x0, x1), end exclusive
        result.output     # model(occluded images): [P, ...] (logits; last map for conv stacks)
        result.captured   # the layer's output per feature map summed over space [P, C]
                          # (reduce="sum"), or the full output [P, C, H, W] (reduce=None)
        engine.reference  # the same for the unoccluded image ([1, ...])
    # leaving the block releases the caches
    supported, reason = supports(model)

It covers models whose forward is a chain of ``Conv2d`` / ``MaxPool2d`` (any padding, dilation,
``ceil_mode``) / ``AvgPool2d`` / pointwise layers (activations, eval-mode ``BatchNorm2d`` and
``Dropout``, ``LocalResponseNorm``, adaptive pools that keep the size) followed by any head
(see :mod:`deconv.occlusion.incremental_plan`): torchvision AlexNet and VGG, ZFNet, hed-vgg16.
Other models (residual blocks, branches, unknown layers) fall back, with a warning naming the
culprit, to the batched naive forward of the occluded images, which gives the same numbers.

Approximate mode (``max_fraction``): Krypton's projective-field threshold. A changed region that
would exceed ``max_fraction`` of a layer's side is cut to a centred window of that size; values
outside it are taken from the unoccluded image. Exact when ``None`` (default).

The engine is registered as ``"incremental"`` in :mod:`deconv.occlusion.engines`; the caller
builds one per image and sweep, and nothing is kept after it is closed.
"""

from __future__ import annotations

import dataclasses
import math
from copy import deepcopy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv._deprecation import deprecated_names
from deconv.errors import InvalidArgumentError
from deconv.layers import module_of
from deconv.occlusion.engine_base import OcclusionEngine
from deconv.occlusion.fills import make_fill
from deconv.occlusion.incremental_cache import SpatialCache, band_update, source_rows
from deconv.occlusion.incremental_plan import (
    ChainPlan,
    IncrementalPlanError,
    SpatialGeometry,
    Stage,
    affected_range,
    plan_chain,
)
from deconv.occlusion.naive import layer_name
from deconv.occlusion.outputs import OcclusionOutputs, reduce_capture
from deconv.occlusion.windows import flat_nhwc, occluded_window, paste_window

_SIZES_PER_AXIS = 4  # low-memory mode: window lengths per layer and axis

__all__ = ["IncrementalOcclusion", "supports"]


def supports(model) -> tuple[bool, str]:
    """Whether :class:`IncrementalOcclusion` can run ``model`` incrementally.

    Args:
        model (nn.Module | LoadedModel): the network.

    Returns:
        tuple[bool, str]: ``(True, "")`` or ``(False, reason naming the unsupported node)``.
    """
    _, reason = _plan_or_reason(module_of(model))
    return not reason, reason


def _plan_or_reason(module) -> tuple[ChainPlan | None, str]:
    """The model's chain plan, or None and why there is none (one trace)."""
    if module.training:
        return None, "the model is in training mode; call model.eval()"
    try:
        return plan_chain(module), ""
    except IncrementalPlanError as exc:
        return None, str(exc)


@dataclass
class _Layer:
    """Cached tensors of one layer (a stage's output, or the input image)."""

    shape: tuple[int, int, int]  # C, H, W
    flat: torch.Tensor | None = None  # [H*W, C] (kept for the capture and the prefix output)
    total: torch.Tensor | None = None  # float64 [C] spatial sum (capture only)


@dataclass(frozen=True)
class _Window:
    """Where one layer's changed windows sit for a batch (rows and columns)."""

    n_r: int  # common window height
    top: torch.Tensor  # [P] window row start
    r0: torch.Tensor  # [P] changed region rows [r0, r1)
    r1: torch.Tensor
    n_c: int
    left: torch.Tensor
    c0: torch.Tensor
    c1: torch.Tensor


@dataclass
class _State:
    """Per-position changed windows of one layer: values and where they sit."""

    values: torch.Tensor  # [P, n_r, n_c, C] (channels last)
    top: torch.Tensor  # [P] window row start
    left: torch.Tensor  # [P]
    region: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # r0, r1, c0, c1


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _in_dtype(run, dtype: torch.dtype):
    """``run`` computed in ``dtype``, its result cast back to the input's dtype."""

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        return run(x.to(dtype)).to(x.dtype)

    return wrapped


def _avgpool_divisor(pool: nn.AvgPool2d, size_in: tuple[int, int], size_out: tuple[int, int],
                     geometry: tuple[SpatialGeometry, SpatialGeometry], dtype, device
                     ) -> torch.Tensor:
    """PyTorch's avg-pool divisor for each output pixel (padding and ceil_mode included)."""
    if pool.divisor_override:
        return torch.full((size_out[0] * size_out[1],), float(pool.divisor_override),
                          dtype=dtype, device=device)
    factors = []
    for n_in, n_out, g in zip(size_in, size_out, geometry):
        start = torch.arange(n_out, device=device) * g.stride - g.pad
        end = torch.clamp(start + g.kernel, max=n_in + g.pad)
        if not pool.count_include_pad:
            start, end = start.clamp(min=0), end.clamp(max=n_in)
        factors.append((end - start).to(dtype))
    return (factors[0][:, None] * factors[1][None, :]).reshape(-1)


class IncrementalOcclusion(OcclusionEngine):
    """Model outputs on occluded copies of one image, recomputing only what each occluder changes.

    See the module docstring for the method and the interface. Construction runs the model once
    on the unoccluded image and keeps each spatial layer's (padded) input. With ``bands`` (the
    default) the large early layers (input at least half the image's height) keep only a band
    of rows around the current occluder row instead (see
    :mod:`deconv.occlusion.incremental_cache`): the same numbers in less memory, as long as
    positions come roughly top to bottom (the engine sorts them).

    Args:
        model (nn.Module | LoadedModel): the network, in eval mode (it is not modified).
        image (torch.Tensor): model input ``[C, H, W]`` (or ``[1, C, H, W]``), on the model's
            device and dtype.
        fill (float | torch.Tensor): what the occluder shows, in model-input space: a number, one
            value per channel ``[C]`` (0 = mean grey for a mean-subtracted input), or an image
            ``[C, H, W]`` (e.g. a blurred copy).
        layer (str | int | None): a layer (module name or paper layer number) whose output to
            return too (``captured``); its name is kept in :attr:`layer`.
        reduce (str | None): ``"sum"``: the captured output summed over space per feature map
            ``[P, C]``; None: the whole captured output.
        batch_size (int): occluder positions processed together.
        max_fraction (float | None): approximate mode (projective-field threshold), see the
            module docstring; None is exact.
        bands (bool): keep row bands of the large early layers rather than whole tensors.
        low_memory (bool): also run each sweep with a few window shapes per layer (oneDNN
            keeps a compiled kernel per shape) and convolutions with over 3 MB of weights in
            slices of output channels: less peak memory, somewhat slower. Same numbers.
        compute_dtype (torch.dtype | None): approximate mode: run the spatial layers in this
            dtype (e.g. ``torch.bfloat16``: about 2x faster on CPUs with AVX512-BF16 or AMX)
            on private copies of their modules; the head and the results stay in the image's
            dtype. None: the image's dtype (exact). The naive fall-back ignores it.
        need_output (bool): False: :meth:`outputs` returns ``output=None`` (the layer only;
            the engine interface of :mod:`deconv.occlusion.engines`).
        capture (str | None): deprecated name of ``layer``.

    Use it as a context manager (or call :meth:`close`): leaving releases the caches.

    Raises:
        ValueError: bad image/fill shapes, unknown layer, bad ``max_fraction``.
    """

    def __init__(self, model, image: torch.Tensor, fill=0.0, *, layer: str | int | None = None,
                 reduce: str | None = "sum", batch_size: int = 32,
                 max_fraction: float | None = None, bands: bool = True,
                 low_memory: bool = False, compute_dtype: torch.dtype | None = None,
                 need_output: bool = True, capture: str | None = None):
        self._setup(model, image, fill, layer=layer_name(model, layer, capture), reduce=reduce,
                    batch_size=batch_size, need_output=need_output, max_fraction=max_fraction)
        image = self.image
        self.bands, self.low_memory = bands, low_memory
        self._split_bytes = 3 << 20
        self.work: dict[str, dict] = {}
        plan, reason = _plan_or_reason(self.module)  # traced once
        self.reason = reason
        if plan is None:
            self._fall_back("incremental occlusion does not support this model", reason)
            return
        if compute_dtype is not None:
            self.image, self.fill = image.to(compute_dtype), self.fill.to(compute_dtype)
        with torch.no_grad():
            self._build(plan)

    # ------------------------------------------------------------------ cache (one forward)
    def _capture_index(self, plan: ChainPlan) -> tuple[str, str | int] | None:
        """Where the captured layer is: ("prefix", stage index) or ("tail", node name)."""
        if self.layer is None:
            return None
        name = self.layer
        hits = [("prefix", i, s.target) for i, s in enumerate(plan.stages)]
        hits += [("tail", n.name, str(n.target)) for n in plan.tail_nodes
                 if n.op == "call_module"]
        exact = [h for h in hits if h[2] == name]
        inside = [h for h in hits if h[2].startswith(name + ".")]
        chosen = exact or inside[-1:]
        if len(exact) > 1:
            raise InvalidArgumentError(f"layer {name!r} is called {len(exact)} times by the model; "
                                       f"capture a layer that is called once")
        if not chosen:
            raise InvalidArgumentError(
                f"layer {name!r} is not a module called by the model's forward")
        return chosen[0][0], chosen[0][1]

    def _build(self, plan: ChainPlan) -> None:
        where = self._capture_index(plan)
        originals = list(plan.stages)  # the head (tail stages) runs the model's own modules
        if self.image.dtype != self.out_dtype:  # compute_dtype: private low-precision copies
            for k, stage in enumerate(plan.stages):
                if stage.module is not None and stage.run is stage.module:
                    copy = deepcopy(stage.module).to(self.image.dtype)
                    plan.stages[k] = dataclasses.replace(stage, module=copy, run=copy)
        x = self.image.unsqueeze(0)
        stages: list[Stage] = []
        tail_stages: list[Stage] = []
        shapes = [tuple(x.shape[1:])]
        self._spatial: dict[int, SpatialCache] = {}
        self.layers = [_Layer(shapes[0])]
        for i, stage in enumerate(plan.stages):
            if not tail_stages:
                try:
                    y = stage.run(x.clone() if stage.inplace else x)
                except (NotImplementedError, RuntimeError):
                    if self.image.dtype == self.out_dtype or stage.kind != "pointwise":
                        raise
                    # compute_dtype lacks this layer (e.g. LocalResponseNorm in bfloat16)
                    stage = dataclasses.replace(stage, run=_in_dtype(originals[i].run,
                                                                     self.out_dtype),
                                                inplace=False)
                    y = stage.run(x)
                if stage.node in plan.adaptive_candidates:
                    if y.shape[-2:] != x.shape[-2:]:
                        tail_stages.append(originals[i])  # a pool that resizes: the head
                        continue
                    # Same size: the identity (it must not resize the changed windows).
                    stage = dataclasses.replace(stage, run=_identity, inplace=False)
            else:
                tail_stages.append(originals[i])
                continue
            if y.ndim != 4:
                raise IncrementalPlanError(f"{stage.target} outputs {y.ndim}-d tensors")
            if stage.kind == "spatial":
                banded = (self.bands and 2 * x.shape[-2] >= self.image.shape[-2]
                          and all(c.banded for c in self._spatial.values()))
                self._spatial[i] = self._spatial_cache(stage, x, y, banded)
            layer = _Layer(tuple(y.shape[1:]))
            if where == ("prefix", i):
                layer.flat, layer.total = flat_nhwc(y), y[0].to(torch.float64).sum((1, 2))
            stages.append(stage)
            self.layers.append(layer)
            shapes.append(layer.shape)
            x = y
        if where is not None and where[0] == "prefix" and where[1] >= len(stages):
            where = ("tail_stage", where[1] - len(stages))
        self._capture_where = where
        self.plan, self.stages, self.tail_stages = plan, stages, tail_stages
        self.prefix_output = flat_nhwc(x)
        self.reference = self._tail(x.to(self.out_dtype, copy=True), self.reference_capture())
        for i, stage in enumerate(stages):
            if stage.kind == "spatial":
                self.work[f"{i}:{stage.target}"] = {
                    "module": type(stage.module).__name__,
                    "macs_per_output": self._macs_per_output(stage, shapes[i]),
                    "full_outputs": shapes[i + 1][1] * shapes[i + 1][2],
                    "window_outputs": 0, "region_outputs": 0, "positions": 0}

    def reference_capture(self) -> torch.Tensor | None:
        """The captured value of the unoccluded image when the capture is in the prefix."""
        if self._capture_where is None or self._capture_where[0] != "prefix":
            return None
        layer = self.layers[self._capture_where[1] + 1]
        if self.reduce == "sum":
            return layer.total.to(self.out_dtype).unsqueeze(0)
        c, h, w = layer.shape
        return layer.flat.view(1, h, w, c).permute(0, 3, 1, 2).to(self.out_dtype).contiguous()

    @staticmethod
    def _macs_per_output(stage: Stage, in_shape) -> int:
        if isinstance(stage.module, nn.Conv2d):
            m = stage.module
            return m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] * \
                m.kernel_size[1]
        g = stage.geometry
        return in_shape[0] * g[0].kernel * g[1].kernel

    @staticmethod
    def _spatial_cache(stage: Stage, x: torch.Tensor, out: torch.Tensor,
                       banded: bool) -> SpatialCache:
        gr, gc = stage.geometry
        ho, wo = out.shape[-2:]
        h, w = x.shape[-2:]
        need_r = (ho - 1) * gr.stride + gr.span
        need_c = (wo - 1) * gc.stride + gc.span
        divisor = None
        if isinstance(stage.module, nn.AvgPool2d):
            divisor = _avgpool_divisor(stage.module, (h, w), (ho, wo), stage.geometry,
                                       x.dtype, x.device)
        if banded:  # rows are computed when a batch needs them
            padded = x.new_empty((0, x.shape[1]))
        else:
            padded = flat_nhwc(F.pad(x, (gc.pad, need_c - w - gc.pad, gr.pad, need_r - h - gr.pad),
                                 value=stage.pad_value))
        return SpatialCache(padded, need_c, gr.pad, gc.pad, (h, w), (ho, wo), divisor,
                            banded=banded)

    def _padded_rows(self, i: int, a: int, b: int) -> torch.Tensor:
        """Padded rows ``[a, b)`` of spatial stage ``i``'s input ``[(b - a) * width, C]``.

        Computed from the previous spatial stage's band (which must hold the rows
        :func:`source_rows` names) or from the image, through the pointwise stages between.
        """
        cache, stage = self._spatial[i], self.stages[i]
        h, w = cache.in_size
        channels = self.layers[i].shape[0]
        out = self.image.new_full((b - a, cache.padded_width, channels), stage.pad_value)
        v0, v1 = max(a - cache.pad_top, 0), min(b - cache.pad_top, h)
        if v1 > v0:
            j = max((k for k in self._spatial if k < i), default=None)
            if j is None:
                y, first = self.image[None, :, v0:v1].clone(), 0
            else:
                src, geometry = self._spatial[j], self.stages[j].geometry[0]
                s0, s1 = v0 * geometry.stride, (v1 - 1) * geometry.stride + geometry.span
                width = src.padded_width
                x = src.padded[(s0 - src.lo) * width:(s1 - src.lo) * width]
                x = x.view(1, s1 - s0, width, -1).permute(0, 3, 1, 2)
                y = self._run_window(self.stages[j], src, x, torch.tensor([v0]),
                                     torch.tensor([0]), (v1 - v0, src.out_size[1]))
                first = j + 1
            for k in range(first, i):
                y = self.stages[k].run(y)
            top = v0 + cache.pad_top - a
            cols = min(w, cache.padded_width - cache.pad_left)  # a stage may skip the last ones
            out[top:top + v1 - v0, cache.pad_left:cache.pad_left + cols] = \
                y[0, :, :, :cols].permute(1, 2, 0)
        return out.view(-1, channels)

    def _update_bands(self, windows: dict[int, _Window]) -> None:
        """Move the row bands down to what this batch (and the next band below) needs."""
        banded = [i for i, c in self._spatial.items() if c.banded]
        need: dict[int, tuple[int, int]] = {}
        below = None
        for i in reversed(banded):
            geometry, win = self.stages[i].geometry[0], windows[i]
            h_in = (win.n_r - 1) * geometry.stride + geometry.span
            lo = int(win.top.min()) * geometry.stride
            hi = int(win.top.max()) * geometry.stride + h_in
            if below is not None:  # rows the band below will compute from this one
                _, new_lo, new_hi = band_update(self._spatial[below], *need[below])
                if new_hi > new_lo:
                    src_lo, src_hi = source_rows(new_lo, new_hi, self._spatial[below], geometry)
                    if src_hi > src_lo:
                        lo, hi = min(lo, src_lo), max(hi, src_hi)
            need[i] = (lo, hi)
            below = i
        for i in banded:
            cache = self._spatial[i]
            keep_from, new_lo, new_hi = band_update(cache, *need[i])
            if new_hi > new_lo:
                kept = cache.padded[(keep_from - cache.lo) * cache.padded_width:]
                fresh = self._padded_rows(i, new_lo, new_hi)
                cache.padded = torch.cat([kept, fresh]) if len(kept) else fresh
                cache.lo = keep_from if len(kept) else new_lo

    # ------------------------------------------------------------------ batches
    def _outputs(self, boxes: torch.Tensor) -> OcclusionOutputs:
        """:meth:`OcclusionEngine.outputs` for a model this engine runs incrementally."""
        order = self._order(boxes) if len(boxes) > self.batch_size else None
        ordered = boxes if order is None else boxes[order]
        outs, caps, pending = [], [], []
        head_batch = self._head_batch()
        least = None
        if self.low_memory:  # few distinct shapes: oneDNN caches a kernel per shape
            least = {k: (w.n_r, w.n_c) for k, w in self._windows(boxes).items()}
        with torch.no_grad():
            for start in range(0, len(boxes), self.batch_size):
                pending.append(self._prefix(ordered[start:start + self.batch_size], least))
                last = start + self.batch_size >= len(boxes)
                if last or sum(len(x) for x, _ in pending) >= head_batch:
                    # The head runs on several prefix batches at once: a fully connected
                    # layer reads all its weights per call, whatever the batch.
                    cap = [c for _, c in pending]
                    result = self._tail(torch.cat([x for x, _ in pending]).to(self.out_dtype),
                                        torch.cat(cap) if cap[0] is not None else None)
                    outs.append(result.output)
                    caps.append(result.captured)
                    pending = []
        output = torch.cat(outs)
        captured = torch.cat(caps) if caps[0] is not None else None
        if order is not None:  # back to the caller's order
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order))
            inverse = inverse.to(output.device)
            output = output[inverse]
            captured = captured[inverse] if captured is not None else None
        return OcclusionOutputs(output if self.need_output else None, captured)

    def _order(self, boxes: torch.Tensor) -> torch.Tensor:
        """Order of positions that batches those with the same window sizes together.

        A position near a border has a smaller changed region in some layers; batched with
        interior positions it would be padded to their window size. Sorting by the region sizes
        through the spatial stages (all rows, then all columns) groups equal windows. With row
        bands the occluder's top row comes first (bands move down once), then the column sizes.
        """
        _, h, w = self.layers[0].shape
        r0, r1 = boxes[:, 0].clamp(0, h), boxes[:, 1].clamp(0, h)
        c0, c1 = boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, w)
        keys = []
        for i, stage in enumerate(self.stages):
            if stage.kind != "spatial":
                continue
            ho, wo = self._spatial[i].out_size
            r0, r1 = affected_range(r0, r1, stage.geometry[0], ho)
            c0, c1 = affected_range(c0, c1, stage.geometry[1], wo)
            keys.append((r1 - r0, c1 - c0))
        if not keys:
            return torch.arange(len(boxes))
        sizes = [k[0] for k in keys] + [k[1] for k in keys]
        if any(c.banded for c in self._spatial.values()):
            sizes = [boxes[:, 0].clamp(0, h)] + [k[1] for k in keys] + [k[0] for k in keys]
        rows = torch.stack(sizes, 1).tolist()
        return torch.tensor(sorted(range(len(rows)), key=rows.__getitem__))

    def _window(self, r0: torch.Tensor, r1: torch.Tensor, size: int, least: int = 0
                ) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Common window length ``n`` and starts covering ``[r0, r1)`` (maybe capped).

        With ``least`` (the largest length of the sweep), ``n`` is rounded up to one of a few
        sizes, so that the sweep runs few distinct shapes.
        """
        n = int((r1 - r0).max().clamp(min=1))
        if least:  # one of _SIZES_PER_AXIS sizes: q, 2q, ..., >= the sweep's largest
            q = -(-least // _SIZES_PER_AXIS)
            n = min(-(-n // q) * q, size)
        if self.max_fraction is not None:
            cap = max(1, math.ceil(self.max_fraction * size))
            if n > cap:
                n = cap
                centre = torch.div(r0 + r1, 2, rounding_mode="floor")
                cut = (r1 - r0) > n
                new0 = torch.clamp(centre - n // 2, min=0, max=size - n)
                r0 = torch.where(cut, new0, r0)
                r1 = torch.where(cut, new0 + n, r1)
        n = min(n, size)
        start = torch.clamp(torch.minimum(r0, torch.full_like(r0, size - n)), min=0)
        return n, start, r0, r1

    def _windows(self, boxes: torch.Tensor, least: dict | None = None
                 ) -> dict[int | str, _Window]:
        """Changed windows of the input (key ``"input"``) and of each spatial stage's output.

        ``least`` maps the same keys to the sweep's largest ``(rows, cols)`` (low-memory mode:
        window sizes are rounded up to a few per layer, see :meth:`_window`).
        """
        least = least or {}
        c, h, w = self.layers[0].shape
        r0, r1 = boxes[:, 0].clamp(0, h), boxes[:, 1].clamp(0, h)
        c0, c1 = boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, w)
        empty_r, empty_c = r1 <= r0, c1 <= c0
        r0, r1 = torch.where(empty_r, 0, r0), torch.where(empty_r, 0, r1)
        c0, c1 = torch.where(empty_c, 0, c0), torch.where(empty_c, 0, c1)
        at_least = least.get("input", (0, 0))
        nr, top, _, _ = self._window(r0, r1, h, at_least[0])
        nc, left, _, _ = self._window(c0, c1, w, at_least[1])
        windows: dict[int | str, _Window] = {"input": _Window(nr, top, r0, r1, nc, left, c0, c1)}
        for i, cache in self._spatial.items():
            gr, gc = self.stages[i].geometry
            ho, wo = cache.out_size
            o_r0, o_r1 = affected_range(r0, r1, gr, ho)
            o_c0, o_c1 = affected_range(c0, c1, gc, wo)
            at_least = least.get(i, (0, 0))
            n_r, top, r0, r1 = self._window(o_r0, o_r1, ho, at_least[0])
            n_c, left, c0, c1 = self._window(o_c0, o_c1, wo, at_least[1])
            windows[i] = _Window(n_r, top, r0, r1, n_c, left, c0, c1)
        return windows

    def _input_state(self, win: _Window) -> _State:
        box = (win.r0, win.r1, win.c0, win.c1)
        values = occluded_window(self.image, self.fill, win.top, win.n_r, win.left, win.n_c,
                                 box)
        return _State(values, win.top, win.left, box)

    def _gather(self, cache: SpatialCache, state: _State, stage: Stage, top: torch.Tensor,
                left: torch.Tensor, n_out: tuple[int, int]) -> torch.Tensor:
        """Input windows ``[P, C, h, w]`` of a spatial stage: cache with the changed part pasted."""
        gr, gc = stage.geometry
        h_in = (n_out[0] - 1) * gr.stride + gr.span
        w_in = (n_out[1] - 1) * gc.stride + gc.span
        rows = top[:, None] * gr.stride + torch.arange(h_in)  # padded coordinates
        cols = left[:, None] * gc.stride + torch.arange(w_in)
        window = paste_window(cache.padded, cache.padded_width, cache.lo, cache.pad_top,
                              cache.pad_left, rows, cols, state.values, state.top, state.left)
        return window.permute(0, 3, 1, 2)

    def _run_window(self, stage: Stage, cache: SpatialCache, x: torch.Tensor, top, left,
                    n_out) -> torch.Tensor:
        m = stage.module
        if isinstance(m, nn.Conv2d):
            weight_bytes = m.weight.numel() * m.weight.element_size()
            if self.low_memory and m.groups == 1 and weight_bytes > self._split_bytes:
                # In slices of output channels: each call converts only its slice of the
                # weights (channels-last copy, oneDNN reorder), not all of them at once.
                n = max(1, self._split_bytes * m.out_channels // weight_bytes)
                biases = m.bias.split(n) if m.bias is not None else [None] * len(
                    m.weight.split(n))
                return torch.cat([F.conv2d(x, w, b, m.stride, 0, m.dilation)
                                  for w, b in zip(m.weight.split(n), biases)], 1)
            return F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(x, m.kernel_size, m.stride, 0, m.dilation, ceil_mode=False)
        total = F.avg_pool2d(x, m.kernel_size, m.stride, 0, ceil_mode=False,
                             count_include_pad=True, divisor_override=1)
        wo = cache.out_size[1]
        rows = top[:, None] + torch.arange(n_out[0])
        cols = left[:, None] + torch.arange(n_out[1])
        index = (rows[:, :, None] * wo + cols[:, None, :]).to(x.device)
        return total / cache.divisor[index].unsqueeze(1)

    def _spatial_step(self, i: int, stage: Stage, state: _State, win: _Window) -> _State:
        cache = self._spatial[i]
        n_r, top, o_r0, o_r1 = win.n_r, win.top, win.r0, win.r1
        n_c, left, o_c0, o_c1 = win.n_c, win.left, win.c0, win.c1
        x = self._gather(cache, state, stage, top, left, (n_r, n_c))
        y = self._run_window(stage, cache, x, top, left, (n_r, n_c))
        work = self.work[f"{i}:{stage.target}"]
        work["window_outputs"] += len(top) * n_r * n_c
        work["region_outputs"] += int(((o_r1 - o_r0) * (o_c1 - o_c0)).sum())
        work["positions"] += len(top)
        return _State(y.permute(0, 2, 3, 1).contiguous(), top, left, (o_r0, o_r1, o_c0, o_c1))

    def _full(self, flat: torch.Tensor, shape, state: _State) -> torch.Tensor:
        """Full tensors ``[P, C, H, W]``: the cached layer with each changed window pasted."""
        c, h, w = shape
        p, m_r, m_c, _ = state.values.shape
        dev = state.values.device
        out = flat.unsqueeze(0).repeat(p, 1, 1).view(-1, c)
        rows = state.top[:, None] + torch.arange(m_r)
        cols = state.left[:, None] + torch.arange(m_c)
        dst = (torch.arange(p)[:, None, None] * (h * w) + rows[:, :, None] * w
               + cols[:, None, :])
        out.index_copy_(0, dst.reshape(-1).to(dev), state.values.reshape(-1, c))
        return out.view(p, h, w, c).permute(0, 3, 1, 2)

    def _captured_prefix(self, layer: _Layer, state: _State) -> torch.Tensor:
        if self.reduce is None:
            return self._full(layer.flat, layer.shape, state).to(self.out_dtype).contiguous()
        c, h, w = layer.shape
        p, m_r, m_c, _ = state.values.shape
        rows = state.top[:, None] + torch.arange(m_r)
        cols = state.left[:, None] + torch.arange(m_c)
        index = (rows[:, :, None] * w + cols[:, None, :]).reshape(-1).to(layer.flat.device)
        old = layer.flat.index_select(0, index).view(p, -1, c).to(torch.float64).sum(1)
        new = state.values.reshape(p, -1, c).to(torch.float64).sum(1)
        return (layer.total.unsqueeze(0) - old + new).to(self.out_dtype)

    def _head_batch(self) -> int:
        """Positions per head call: at least a prefix batch, up to 64 (about 8 MB of input)."""
        c, h, w = self.layers[-1].shape
        per_position = c * h * w * self.image.element_size()
        return max(self.batch_size, min(64, (8 << 20) // max(per_position, 1)))

    def _prefix(self, boxes: torch.Tensor, least: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last spatial layer's full output ``[P, C, H, W]`` (and a prefix capture)."""
        windows = self._windows(boxes, least)
        self._update_bands(windows)
        state = self._input_state(windows["input"])
        captured = None
        where = self._capture_where
        for i, stage in enumerate(self.stages):
            if stage.kind == "spatial":
                state = self._spatial_step(i, stage, state, windows[i])
            else:
                y = stage.run(state.values.permute(0, 3, 1, 2))
                state = _State(y.permute(0, 2, 3, 1).contiguous(), state.top, state.left,
                               state.region)
            if where is not None and where[0] == "prefix" and where[1] == i:
                captured = self._captured_prefix(self.layers[i + 1], state)
        return self._full(self.prefix_output, self.layers[-1].shape, state), captured

    # ------------------------------------------------------------------ the head
    def _tail(self, x: torch.Tensor, captured: torch.Tensor | None) -> OcclusionOutputs:
        """Run the tail stages and nodes on full tensors ``x``."""
        where = self._capture_where
        for j, stage in enumerate(self.tail_stages):
            x = stage.run(x)
            if where is not None and where[0] == "tail_stage" and where[1] == j:
                captured = reduce_capture(x, self.reduce)
        env: dict[str, torch.Tensor] = {self._prefix_last_node(): x}
        modules = dict(self.plan.graph_module.named_modules())
        for node in self.plan.tail_nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n.name])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
            if node.op == "call_module":
                value = modules[node.target](*args, **kwargs)
            elif node.op == "call_function":
                value = node.target(*args, **kwargs)
            elif node.op == "call_method":
                value = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                raise IncrementalPlanError(f"node {node.name} ({node.op}) in the head")
            env[node.name] = value
            if where is not None and where[0] == "tail" and where[1] == node.name:
                captured = reduce_capture(value, self.reduce)
        output = fx.node.map_arg(self.plan.output_node.args[0], lambda n: env[n.name])
        if not isinstance(output, torch.Tensor):
            raise IncrementalPlanError("the model must return one tensor")
        return OcclusionOutputs(output.contiguous(), captured)

    def _prefix_last_node(self) -> str:
        all_stages = self.stages + self.tail_stages
        if all_stages:
            return all_stages[-1].node
        return next(n.name for n in self.plan.graph_module.graph.nodes if n.op == "placeholder")


# Supports for the engine registry (see deconv.occlusion.engines).
IncrementalOcclusion.supports = staticmethod(supports)

__getattr__ = deprecated_names(__name__, {
    "OcclusionOutputs": ("import it from deconv.occlusion",
                         "deconv.occlusion.outputs:OcclusionOutputs"),
    "as_fill_image": ("use deconv.occlusion.make_fill(fill, image)[0]",
                      lambda: lambda fill, image: make_fill(fill, image)[0]),
    "occlude_images": ("import it from deconv.occlusion.fills",
                       "deconv.occlusion.fills:occlude_images"),
})
