"""The explicit deconvnet of Zeiler & Fergus (2014), Sec. 2.1, with recorded switches.

Going up, every max-pool records its *switches* (the argmax location of each window). Going
down from one unit (every other activation of the layer set to zero), each operation of the path
is undone in reverse order:

* ``MaxPool2d``: unpool, i.e. add each value at its switch; where overlapping windows (3x3
  stride 2) share a location the values are **summed** (the adjoint of max-pooling, equal to
  autograd; ``nn.MaxUnpool2d`` would keep only one of them).
* ``ReLU`` (module, ``F.relu``, ``torch.relu``, ``Tensor.relu``): ReLU of the reconstruction.
* ``Conv2d``: ``conv_transpose2d`` with the layer's own weights and no bias, sized so that the
  output matches the layer's input exactly (any stride, padding, dilation, groups).
* ``LocalResponseNorm``, ``BatchNorm``: identity: the paper skips contrast normalization on the
  way down. ``Dropout`` and ``Identity``: identity (inference semantics).
* ``Flatten`` / ``torch.flatten`` / ``view`` / ``reshape``: reshape back.
* ``Linear``: the transposed weight matrix, no bias.
* ``AdaptiveAvgPool2d`` / ``AvgPool2d``: their adjoint (each input gets its share of the windows
  it was averaged into).

The forward pass applies the model's own operations with inference semantics (dropout off,
batch norm with its running statistics) and never in place, so ``ReLU(inplace=True)`` cannot
corrupt what is recorded and the model is not touched (no hooks, no state change).

Speed: a unit is seeded in a 1x1 window at its position and the window grows, layer by layer,
only as far as the unit's receptive field reaches (clipped to each map), so low-layer units cost
a small fraction of a full backward pass; many units go down together in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv.deconvnet.base import ProjectionEngine, ProjectionRun, Seeds
from deconv.deconvnet.path import Step, UnsupportedModuleError, trace_path

__all__ = ["Deconvnet", "UnsupportedModuleError"]


class Deconvnet(ProjectionEngine):
    """The paper's deconvnet for chains of conv / ReLU / max-pool (and the modules listed above).

    Example:
        >>> loaded = deconv.load_model("zfnet")
        >>> dn = Deconvnet(loaded)
        >>> top = dn.top_units(images, layer=5, k=9)
        >>> pixels = dn.project(images, 5, top.units)   # [9, 3, 224, 224]

    Args:
        model (nn.Module | LoadedModel): the network; never modified. Its path to each layer
            must be a chain of supported operations (see :data:`deconv.deconvnet.path.
            SUPPORTED_MODULES`), otherwise :class:`UnsupportedModuleError` names the culprit;
            use :class:`~deconv.deconvnet.GenericDeconvnet` for other architectures.
    """

    def __init__(self, model):
        super().__init__(model)
        self._paths: dict[str, tuple[fx.Graph, list[Step]]] = {}

    def path(self, layer: str | int) -> list[Step]:
        """The operations that produce ``layer``, input first (traced once, then cached).

        Raises:
            UnsupportedModuleError: the path is not a chain of supported operations.
        """
        name = self.resolve(layer)
        if name not in self._paths:
            self._paths[name] = trace_path(self.module, name)
        _refuse_forward_hooks(self.module, self._paths[name][1])
        return self._paths[name][1]

    def _run(self, images: torch.Tensor, layer: str) -> _ExplicitRun:
        self.path(layer)
        graph, steps = self._paths[layer]
        return _ExplicitRun(self.module, graph, steps, images)


def _refuse_forward_hooks(model: nn.Module, steps: list[Step]) -> None:
    """Raise if a forward (pre-)hook could change what the layer computes.

    The explicit engine evaluates the path itself, so hooks registered on the model or on a
    module of the path would not run and its activations would differ from ``model(x)``.

    Raises:
        UnsupportedModuleError: names the hooked module; :class:`GenericDeconvnet` runs the
            model's own forward (hooks included), and ``engine="auto"`` falls back to it.
    """
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        raise UnsupportedModuleError(
            "global forward hooks are registered (nn.modules.module.register_module_forward_"
            "hook): the explicit Deconvnet evaluates the layers itself and would skip them; "
            "remove them or use GenericDeconvnet, which runs the model's own forward")
    names = {id(m): n for n, m in model.named_modules()}
    on_path = [names[id(s.module)] for s in steps if s.module is not None and id(s.module) in names]
    for name, module in model.named_modules():
        count = len(module._forward_hooks) + len(module._forward_pre_hooks)
        if count and (not name or any(p == name or p.startswith(name + ".") for p in on_path)):
            where = name or "the model itself"
            raise UnsupportedModuleError(
                f"{where!r} ({type(module).__name__}) has {count} forward hook(s): the "
                f"explicit Deconvnet evaluates the layers itself and would skip them, so its "
                f"activations would differ from model(x). Remove the hooks, or use "
                f"GenericDeconvnet, which runs the model's own forward (hooks included)")


@dataclass
class _Record:
    """What the way down needs from the way up for one step."""

    in_shape: torch.Size
    out_shape: torch.Size
    switches: torch.Tensor | None = None  # max-pool: flat argmax indices [N, C, Hp, Wp]
    extra: dict = field(default_factory=dict)


class _ExplicitRun(ProjectionRun):
    """The forward pass of one call (switches recorded once) and the way down per chunk."""

    def __init__(self, model: nn.Module, graph: fx.Graph, steps: list[Step],
                 images: torch.Tensor):
        self.model = model
        self.steps = steps
        with torch.no_grad():
            self.records, self.output = _forward(model, graph, steps, images)
        self.layer_shape = torch.Size((1, *self.output.shape[1:]))
        self.input_shape = images.shape

    def __exit__(self, *exc) -> None:
        self.records = {}
        return None

    def activation(self, image: torch.Tensor) -> torch.Tensor:
        return self.output[image]

    @torch.no_grad()
    def project(self, seeds: Seeds) -> torch.Tensor:
        signal = _initial_window(seeds, self.output)
        for step in reversed(self.steps):
            signal = _DOWN[step.kind](signal, step, self.records[step.node], seeds.image)
        if signal.tensor.dim() == 4:
            signal = signal.reframe_full(self.input_shape[-2:])
        return signal.tensor.contiguous()


# ----------------------------------------------------------------------------------------------
# Forward


def _forward(model: nn.Module, graph: fx.Graph, steps: list[Step],
             images: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Evaluate the ancestors of the layer, recording what the way down needs."""
    by_node = {s.node: s for s in steps}
    target = steps[-1].node
    needed = _ancestors(target)
    values: dict[fx.Node, object] = {}
    records: dict[fx.Node, _Record] = {}
    for node in graph.nodes:
        if node not in needed:
            continue
        if node.op == "placeholder":
            values[node] = images
            continue
        if node.op == "get_attr":
            values[node] = _fetch_attr(model, node.target)
            continue
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        step = by_node.get(node)
        if step is None:  # a shape computation such as x.size(0)
            values[node] = _call(model, node, args, kwargs)
            continue
        x = args[0]
        out, record = _FORWARD[step.kind](step, x, args, kwargs, model)
        records[node] = record
        values[node] = out
    return records, values[target]


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _fetch_attr(model: nn.Module, target: str):
    obj = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _call(model: nn.Module, node: fx.Node, args, kwargs):
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return model.get_submodule(node.target)(*args, **kwargs)


def _fw_conv(step, x, args, kwargs, model):
    m = step.module
    out = F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
    return out, _Record(x.shape, out.shape)


def _fw_relu(step, x, args, kwargs, model):
    out = torch.relu(x)  # never in place, whatever the module says
    return out, _Record(x.shape, out.shape)


def _fw_maxpool(step, x, args, kwargs, model):
    m = step.module
    out, switches = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                 ceil_mode=m.ceil_mode, return_indices=True)
    return out, _Record(x.shape, out.shape, switches)


def _fw_identity(step, x, args, kwargs, model):
    m = step.module
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        use_batch = m.running_mean is None
        out = F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias,
                           training=use_batch, momentum=0.0, eps=m.eps)
    elif isinstance(m, nn.LocalResponseNorm):
        out = m(x)
    else:  # dropout (inference semantics) and identity
        out = x
    return out, _Record(x.shape, out.shape)


def _fw_call(step, x, args, kwargs, model):
    out = _call(model, step.node, args, kwargs)
    return out, _Record(x.shape, out.shape)


def _fw_linear(step, x, args, kwargs, model):
    m = step.module
    out = F.linear(x, m.weight, m.bias)
    return out, _Record(x.shape, out.shape)


_FORWARD = {"conv": _fw_conv, "relu": _fw_relu, "maxpool": _fw_maxpool,
            "identity": _fw_identity, "reshape": _fw_call, "linear": _fw_linear,
            "avgpool": _fw_call}


# ----------------------------------------------------------------------------------------------
# Way down


@dataclass
class _Signal:
    """A batch of reconstructions, each held in a window of its map.

    For a 4-D signal, row ``i`` of ``tensor`` [k, C, h, w] covers rows ``oy[i] .. oy[i]+h`` and
    columns ``ox[i] .. ox[i]+w`` of the full map; everything outside the window is zero. A 2-D
    signal (below a fully connected layer) has no window.
    """

    tensor: torch.Tensor
    oy: torch.Tensor | None = None
    ox: torch.Tensor | None = None

    def reframe(self, oy_new: torch.Tensor, ox_new: torch.Tensor, h_new: int,
                w_new: int) -> _Signal:
        """Move each row's window to a new origin and size (cropping or zero-padding).

        One shift for all rows is one ``F.pad``; otherwise each row's overlap with its new
        window is copied by slicing (plain copies: no index arithmetic over the elements).
        """
        t = self.tensor
        k, c, h, w = t.shape
        dy, dx = (oy_new - self.oy).tolist(), (ox_new - self.ox).tolist()
        if k == 0:
            return _Signal(t.new_zeros((0, c, h_new, w_new)), oy_new, ox_new)
        if len(set(dy)) == 1 and len(set(dx)) == 1:
            sy, sx = dy[0], dx[0]
            if (sy, sx, h_new, w_new) == (0, 0, h, w):
                return _Signal(t, oy_new, ox_new)
            out = F.pad(t, (-sx, sx + w_new - w, -sy, sy + h_new - h))
            return _Signal(out, oy_new, ox_new)
        out = t.new_zeros((k, c, h_new, w_new))
        for i, (sy, sx) in enumerate(zip(dy, dx)):
            y0, y1 = max(0, sy), min(h, sy + h_new)
            x0, x1 = max(0, sx), min(w, sx + w_new)
            if y1 > y0 and x1 > x0:
                out[i, :, y0 - sy:y1 - sy, x0 - sx:x1 - sx] = t[i, :, y0:y1, x0:x1]
        return _Signal(out, oy_new, ox_new)

    def reframe_inside(self, oy: torch.Tensor, ox: torch.Tensor, map_hw) -> _Signal:
        """Reframe a window with origin (oy, ox) into the tightest frame inside the map."""
        h, w = self.tensor.shape[-2:]
        big_h, big_w = map_hw
        h_new, w_new = min(h, big_h), min(w, big_w)
        placed = _Signal(self.tensor, oy, ox)
        return placed.reframe(oy.clamp(0, big_h - h_new), ox.clamp(0, big_w - w_new),
                              h_new, w_new)

    def reframe_full(self, map_hw) -> _Signal:
        """The whole map (origin 0)."""
        zero = torch.zeros_like(self.oy)
        return self.reframe(zero, zero.clone(), int(map_hw[0]), int(map_hw[1]))


def _initial_window(seeds: Seeds, output: torch.Tensor) -> _Signal:
    """The seeds: a 1x1 window at each unit, or the whole map; only the seeded values are read."""
    k, device = len(seeds), output.device
    rows = torch.arange(k, device=device)
    if output.dim() != 4 or seeds.whole_map:
        picked = output[seeds.image, seeds.channel]  # [k] or [k, H, W]
        signal = output.new_zeros((k, *output.shape[1:]))
        signal[rows, seeds.channel] = picked if seeds.mode == "activation" \
            else torch.ones_like(picked)
        if output.dim() != 4:
            return _Signal(signal)
        zero = torch.zeros(k, dtype=torch.long, device=device)
        return _Signal(signal, zero, zero.clone())
    value = output[seeds.image, seeds.channel, seeds.y, seeds.x]
    if seeds.mode == "unit":
        value = torch.ones_like(value)
    window = output.new_zeros((k, output.shape[1], 1, 1))
    window[rows, seeds.channel, 0, 0] = value
    return _Signal(window, seeds.y.clone(), seeds.x.clone())


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_left_padding(m: nn.Conv2d) -> tuple[int, int]:
    if m.padding == "valid":
        return 0, 0
    if m.padding == "same":  # torch pads total d*(k-1), the smaller half first
        return tuple((d * (k - 1)) // 2 for d, k in zip(m.dilation, m.kernel_size))
    return _pair(m.padding)


def _down_conv(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    m = step.module
    signal = _spatial(signal, record)
    (sy, sx), (py, px) = _pair(m.stride), _conv_left_padding(m)
    if (sy, sx) == (1, 1):
        # the same transposed convolution as a "full" convolution with the flipped filters
        # (channels swapped within each group): the faster kernel on CPU
        dy, dx = _pair(m.dilation)
        pad = (dy * (m.weight.shape[-2] - 1), dx * (m.weight.shape[-1] - 1))
        out = F.conv2d(signal.tensor, _flipped_filters(record, m), None, 1, pad, m.dilation,
                       m.groups)
    else:
        out = F.conv_transpose2d(signal.tensor, m.weight, None, m.stride, 0, 0, m.groups,
                                 m.dilation)
    return _Signal(out).reframe_inside(signal.oy * sy - py, signal.ox * sx - px,
                                       record.in_shape[-2:])


def _flipped_filters(record: _Record, m: nn.Conv2d) -> torch.Tensor:
    """Filters of the transposed convolution as a convolution, computed once per call."""
    if "flipped" not in record.extra:
        w = m.weight.detach()
        out_c, in_per_group, kh, kw = w.shape
        g = m.groups
        w = w.reshape(g, out_c // g, in_per_group, kh, kw).transpose(1, 2)
        record.extra["flipped"] = w.reshape(g * in_per_group, out_c // g, kh, kw) \
            .flip(2, 3).contiguous()
    return record.extra["flipped"]


def _down_maxpool(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    m = step.module
    signal = _spatial(signal, record)
    (ky, kx), (dy, dx) = _pair(m.kernel_size), _pair(m.dilation)
    (sy, sx), (py, px) = _pair(m.stride if m.stride is not None else m.kernel_size), \
        _pair(m.padding)
    t = signal.tensor
    k, c, h, w = t.shape
    h_up, w_up = (h - 1) * sy + dy * (ky - 1) + 1, (w - 1) * sx + dx * (kx - 1) + 1
    oy, ox = signal.oy * sy - py, signal.ox * sx - px
    if "switch_rows" not in record.extra:  # switch coordinates, split once per call
        width_in = record.in_shape[-1]
        record.extra["switch_rows"] = torch.div(record.switches, width_in,
                                                rounding_mode="floor")
        record.extra["switch_cols"] = record.switches - record.extra["switch_rows"] * width_in
    rows_all, cols_all = record.extra["switch_rows"], record.extra["switch_cols"]
    origins = list(zip(image.tolist(), signal.oy.tolist(), signal.ox.tolist()))
    if len(set(origins)) == 1:  # every row has the same window of the same image
        i, y0, x0 = origins[0]
        rows = rows_all[i:i + 1, :, y0:y0 + h, x0:x0 + w].expand(k, -1, -1, -1)
        cols = cols_all[i:i + 1, :, y0:y0 + h, x0:x0 + w].expand(k, -1, -1, -1)
    else:
        rows = torch.stack([rows_all[i, :, y0:y0 + h, x0:x0 + w] for i, y0, x0 in origins])
        cols = torch.stack([cols_all[i, :, y0:y0 + h, x0:x0 + w] for i, y0, x0 in origins])
    local = (rows - oy[:, None, None, None]) * w_up + (cols - ox[:, None, None, None])
    out = t.new_zeros((k, c, h_up * w_up))
    out.scatter_add_(2, local.reshape(k, c, -1), t.reshape(k, c, -1))
    return _Signal(out.reshape(k, c, h_up, w_up)).reframe_inside(oy, ox, record.in_shape[-2:])


def _down_relu(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    return _Signal(torch.relu(signal.tensor), signal.oy, signal.ox)


def _down_identity(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    return signal


def _down_reshape(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    return _from_dense(_dense(signal, record).reshape(-1, *record.in_shape[1:]))


def _down_linear(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    return _from_dense(_dense(signal, record) @ step.module.weight)


def _down_avgpool(signal: _Signal, step: Step, record: _Record, image) -> _Signal:
    dense = _dense(signal, record)
    with torch.enable_grad():  # the adjoint of a linear map is its vector-Jacobian product
        probe = dense.new_zeros((dense.shape[0], *record.in_shape[1:]), requires_grad=True)
        (adjoint,) = torch.autograd.grad(step.module(probe), probe, dense)
    return _from_dense(adjoint)


def _spatial(signal: _Signal, record: _Record) -> _Signal:
    if signal.tensor.dim() != 4:
        raise UnsupportedModuleError(f"expected a 4-D signal below a {len(record.out_shape)}-D "
                                     f"output; the path is not a conv stack")
    return signal


def _dense(signal: _Signal, record: _Record) -> torch.Tensor:
    if signal.tensor.dim() == 4 and signal.oy is not None:
        return signal.reframe_full(record.out_shape[-2:]).tensor
    return signal.tensor


def _from_dense(t: torch.Tensor) -> _Signal:
    if t.dim() != 4:
        return _Signal(t)
    zero = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
    return _Signal(t, zero, zero.clone())


_DOWN = {"conv": _down_conv, "relu": _down_relu, "maxpool": _down_maxpool,
         "identity": _down_identity, "reshape": _down_reshape, "linear": _down_linear,
         "avgpool": _down_avgpool}
