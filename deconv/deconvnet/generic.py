"""The deconvnet (and guided backprop, and plain gradients) for any architecture, by autograd.

On a chain of conv / ReLU / max-pool, the deconvnet equals back-propagation except at the
ReLUs, where the backward signal itself is rectified (Simonyan et al. 2013); max-pool's autograd
backward is exactly unpooling with the switches (summed where windows overlap) and a conv's is
the transposed convolution. So for residual networks, EfficientNets and user models the same
projection is autograd with the ReLU backward replaced, which :class:`GenericDeconvnet` does
with :class:`~deconv.deconvnet.relu_rules.RectifierRules`: every rectifier call is intercepted,
whether it is an ``nn.ReLU`` (inplace or not, reused or not), ``F.relu``, ``torch.relu``,
``clamp(min=0)``, ``nn.ReLU6`` or ``hardtanh(0, 6)``.

Speed: one forward pass per distinct image, then the projections of all that image's units by
backward passes on the retained graph, so a unit costs one backward pass where a per-unit method
(captum's neuron attributions) pays a forward and a backward. The backward passes are batched
(``torch.autograd.grad(..., is_grads_batched=True)``, ``chunk_size`` units at a time) off the
CPU; on the CPU one unit at a time is faster (a batch of full-size gradients leaves the caches;
``batched_backward`` chooses). Units whose receptive field is small against the image go
another way, exact too: each unit's input is cropped to its receptive-field box (aligned to the
layer's stride, so every map of the crop lies on the full image's grid) and forward and backward
run on the crops, many units in one batch. This needs a prefix of the network whose units form a
regular grid over the input (:func:`deconv.receptive_field.receptive_field` says so; global
pools, norms over space or attention refuse it) and is checked once per layer and input size
against the full image's activations; otherwise the full image is used. For the deconvnet rule
on a layer reached by a chain the explicit engine supports, the projection goes down that
engine's way instead (same numbers; each unit only through its receptive-field window), unless
``windowed=False``. The forward stops at the layer.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from deconv._deprecation import deprecated_names
from deconv.deconvnet.base import ProjectionEngine, ProjectionRun, Seeds, _check_images
from deconv.deconvnet.explicit import Deconvnet
from deconv.deconvnet.path import UnsupportedModuleError
from deconv.deconvnet.relu_rules import RULES, RectifierRules, check_model
from deconv.errors import InvalidArgumentError
from deconv.model_state import StopForward, eval_mode

#: Crop a unit's input to its receptive-field box when the box is at most this fraction of the
#: image (forward + backward on the crop against one backward on the full image).
CROP_AREA_FRACTION = 0.4

__all__ = ["GenericDeconvnet", "RULES"]

__getattr__ = deprecated_names(__name__, {
    "model_in_eval_mode": ("use deconv.model_state.eval_mode", "deconv.model_state:eval_mode"),
})


@contextmanager
def _capture(module: nn.Module, stop: bool = True):
    """Record ``module``'s output (and its number of calls); optionally stop the forward there."""
    box: dict = {"calls": 0}

    def hook(_module, _inputs, output):
        box["calls"] += 1
        if box["calls"] == 1:
            box["output"] = output
        if stop:
            raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield box
    except StopForward:
        pass
    finally:
        handle.remove()


class GenericDeconvnet(ProjectionEngine):
    """Project units to pixels by autograd with a ReLU backward rule; any architecture.

    Args:
        model (nn.Module | LoadedModel): the network; never modified (it is run in eval mode
            during a call and each module's own mode is restored afterwards).
        rule (str): ``"deconvnet"`` (Zeiler & Fergus 2014: rectify the backward signal),
            ``"guided"`` (Springenberg et al. 2014: also mask by the forward input) or
            ``"gradient"`` (plain autograd, the saliency of Simonyan et al. 2013).
        skip_normalization (bool | None): identity backward through LRN and batch norm, as the
            paper's deconvnet does; default: True for ``"deconvnet"``, False otherwise (so
            ``"guided"`` equals captum's GuidedBackprop and ``"gradient"`` plain autograd).
        compute_dtype (torch.dtype | None): None (default) computes in the images' dtype,
            exactly. ``torch.bfloat16`` (or ``torch.float16``) runs forward and backward under
            ``torch.autocast``: faster where the hardware has bf16 units, but **approximate**
            (ReLU masks and max-pool switches can flip, the signal is rounded to 8 bits of
            mantissa); ``experiments/bench_projection.py`` measures the error. The result is
            returned in the images' dtype.
        crop (bool): allow the receptive-field crop (see the module docstring); False always
            uses the full image (for tests and comparisons; both are exact).
        batched_backward (bool | None): the backward passes of one image's units batched with
            ``is_grads_batched`` (True) or one at a time (False) on the retained graph; None
            (default): batched except on the CPU. Both are exact.
        windowed (bool): with ``rule="deconvnet"``, normalization skipped, no
            ``compute_dtype`` and a layer reached by a chain of the modules the explicit engine
            supports, go down the explicit engine's way (:class:`~deconv.deconvnet.Deconvnet`:
            the same projection, each unit only through its receptive-field window, faster
            than the crop at middle depths); False always uses autograd.

    Limitations: a layer must be a module that runs once per forward pass (a reused ReLU module
    is refused: name the block instead); other nonlinearities (SiLU, GELU, ...) keep their plain
    gradient, with a warning.
    """

    def __init__(self, model, rule: str = "deconvnet", skip_normalization: bool | None = None,
                 compute_dtype: torch.dtype | None = None, crop: bool = True,
                 batched_backward: bool | None = None, windowed: bool = True):
        super().__init__(model)
        if rule not in RULES:
            raise InvalidArgumentError(f"rule must be one of {RULES}, got {rule!r}")
        if compute_dtype is not None and (not isinstance(compute_dtype, torch.dtype)
                                          or not compute_dtype.is_floating_point):
            raise InvalidArgumentError(
                f"compute_dtype must be None or a floating torch.dtype such as "
                f"torch.bfloat16, got {compute_dtype!r}")
        check_model(self.module)
        self.rule = rule
        self.skip_normalization = (rule == "deconvnet") if skip_normalization is None \
            else bool(skip_normalization)
        self.compute_dtype = compute_dtype
        self.crop = bool(crop)
        self.batched_backward = batched_backward
        self.windowed = bool(windowed)
        self._checked: dict[tuple, tuple[torch.Size, _CropPlan | None]] = {}
        self._explicit: Deconvnet | None = None
        self._chains: dict[str, bool] = {}

    def _run(self, images: torch.Tensor, layer: str) -> ProjectionRun:
        if self.uses_explicit_path(layer):
            return self._explicit._run(images, layer)
        return _GenericRun(self, images, layer)

    def uses_explicit_path(self, layer: str | int) -> bool:
        """Whether ``layer`` goes down the explicit engine's way (see ``windowed``)."""
        if not self.windowed or self.rule != "deconvnet" or not self.skip_normalization \
                or self.compute_dtype is not None:
            return False
        name = self.resolve(layer)
        if self._chains.get(name) is False:  # not a chain: known from an earlier trace
            return False
        if self._explicit is None:
            self._explicit = Deconvnet(self.model)
        try:  # the trace is cached by the explicit engine; user hooks are checked every call
            self._explicit.path(name)
        except UnsupportedModuleError:
            if name not in self._explicit._paths:  # the trace failed: remember it
                self._chains[name] = False
            return False  # else a forward hook on the path (added later): autograd copes
        self._chains[name] = True
        return True

    def attribute(self, images: torch.Tensor, target, chunk_size: int = 32) -> torch.Tensor:
        """Project each image's class logit ``target`` to pixels (seeded with 1).

        The common ``(model, images, target) -> map`` call of attribution methods.

        Args:
            images (torch.Tensor): model inputs [N, C, H, W].
            target (int | Sequence[int] | torch.Tensor): class index for all images or per image.
            chunk_size (int): images per backward pass.

        Returns:
            torch.Tensor: [N, C, H, W].
        """
        images = _check_images(images, self.model)
        n = images.shape[0]
        target = torch.as_tensor(target, dtype=torch.long, device=images.device).reshape(-1)
        if target.numel() == 1:
            target = target.expand(n)
        if target.numel() != n:
            raise InvalidArgumentError(
                f"target must be one class index or one per image ({n}), got "
                f"{target.numel()}")
        index = torch.arange(n, device=images.device)
        seeds = Seeds(index, target, None, None, "unit")
        run = _GenericRun(self, images, None)
        with run:
            return torch.cat([run.project(chunk) for chunk in seeds.chunks(chunk_size)])


@dataclass(frozen=True)
class _CropPlan:
    """Where each unit's crop lies: the layer's field grid and the (fixed) crop size.

    Unit ``(y, x)`` reads input rows from ``start[0] + y * jump[0]`` over ``size[0]`` rows; its
    crop starts at that row rounded down to a multiple of ``jump[0]`` (clipped at 0) and spans
    ``size[0] + jump[0] - 1`` rows (clipped at the image), so it holds the whole field and the
    crop's maps sit on the full maps' grid shifted by a whole number of units.
    """

    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]
    extent: tuple[int, int]

    def origins(self, y: torch.Tensor, x: torch.Tensor, hw) -> tuple[torch.Tensor, ...]:
        """Crop ``(top, left, bottom, right)`` per unit, long tensors."""
        out = []
        for axis, pos in ((0, y), (1, x)):
            jump = self.jump[axis]
            first = (self.start[axis] + pos * jump).clamp(min=0)
            origin = torch.div(first, jump, rounding_mode="floor") * jump
            out.append((origin, (origin + self.extent[axis]).clamp(max=int(hw[axis]))))
        (top, bottom), (left, right) = out
        return top, left, bottom, right


class _GenericRun(ProjectionRun):
    """State of one call: eval mode on, the layer's output shape (and crop plan) checked once."""

    def __init__(self, engine: GenericDeconvnet, images: torch.Tensor, layer: str | None):
        self.engine = engine
        self.model = engine.module
        self.images = images
        self.layer = layer
        self.target = self.model if layer is None else self.model.get_submodule(layer)
        self._state = ExitStack()
        self.crop_plan: _CropPlan | None = None

    def __enter__(self) -> _GenericRun:
        with ExitStack() as stack:
            stack.enter_context(eval_mode(self.model))
            self.layer_shape, self.crop_plan = self._probe()
            self._state = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._state.close()
        return None

    def _probe(self) -> tuple[torch.Size, _CropPlan | None]:
        """Run one image through the whole model: the layer must run exactly once."""
        key = (self.layer, tuple(self.images.shape[1:]), self.images.dtype, self.engine.crop)
        if key in self.engine._checked:
            return self.engine._checked[key]
        with torch.no_grad(), _capture(self.target, stop=False) as box:
            try:
                self.model(self.images[:1])
            except Exception:
                # The rest of the model may not accept this input size (a classifier head
                # sized for 224 px); the layer itself ran, which is all a projection needs.
                if box["calls"] == 0:
                    raise
        if box["calls"] != 1:
            raise InvalidArgumentError(
                f"module {self.layer!r} runs {box['calls']} times in one forward pass, so 'its "
                f"output' is ambiguous (a reused module such as ResNet's block ReLU); choose a "
                f"module that runs once, e.g. the enclosing block")
        output = box["output"]
        if not isinstance(output, torch.Tensor):
            raise InvalidArgumentError(
                f"module {self.layer!r} returns {type(output).__name__}, not a "
                f"tensor; choose a module whose output is one tensor")
        shape = torch.Size((1, *output.shape[1:]))
        plan = self._crop_plan(output) if self.engine.crop else None
        self.engine._checked[key] = (shape, plan)
        return shape, plan

    def _crop_plan(self, full: torch.Tensor) -> _CropPlan | None:
        """The crop geometry if cropping pays and is exact here (checked on ``full``), else None."""
        if self.layer is None or full.dim() != 4:
            return None
        from deconv.receptive_field import receptive_field

        height, width = self.images.shape[-2:]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                field = receptive_field(self.model, self.layer, (height, width))
        except Exception:  # any operation without a regular grid: use the full image
            return None
        if field.is_global or min(field.jump) < 1 or field.valid_box is not None \
                or field.live_units is not None or tuple(field.output_size) != full.shape[-2:]:
            return None
        extent = (min(field.size[0] + field.jump[0] - 1, height),
                  min(field.size[1] + field.jump[1] - 1, width))
        if extent[0] * extent[1] > CROP_AREA_FRACTION * height * width:
            return None
        plan = _CropPlan(tuple(field.jump), tuple(field.start), tuple(field.size), extent)
        return plan if self._crop_is_exact(plan, full) else None

    def _crop_is_exact(self, plan: _CropPlan, full: torch.Tensor) -> bool:
        """Forward the crops of a corner, a central and an opposite-corner unit of image 0 and
        compare every unit whose field lies inside the crop with the full image's output."""
        h_out, w_out = full.shape[-2:]
        ys = torch.tensor([0, h_out // 2, h_out - 1], device=full.device)
        xs = torch.tensor([0, w_out // 2, w_out - 1], device=full.device)
        top, left, bottom, right = plan.origins(ys, xs, self.images.shape[-2:])
        scale = full.abs().max().clamp_min(1e-30)
        for t, lft, b, r in zip(top.tolist(), left.tolist(), bottom.tolist(), right.tolist()):
            with torch.no_grad():
                out = self._forward(self.images[:1, :, t:b, lft:r])
            uy, ux = t // plan.jump[0], lft // plan.jump[1]
            # units of the crop whose (clipped) field lies inside it
            rows = [i for i in range(out.shape[-2]) if self._inside(plan, 0, uy + i, t, b)]
            cols = [j for j in range(out.shape[-1]) if self._inside(plan, 1, ux + j, lft, r)]
            if not rows or not cols or uy + rows[-1] >= h_out or ux + cols[-1] >= w_out:
                return False
            got = out[0][:, rows][:, :, cols]
            want = full[0][:, [uy + i for i in rows]][:, :, [ux + j for j in cols]]
            tolerance = 1e-4 if full.dtype in (torch.float32, torch.float16, torch.bfloat16) \
                else 1e-10
            if ((got - want).abs().max() / scale).item() > tolerance:
                return False
        return True

    def _inside(self, plan: _CropPlan, axis: int, unit: int, lo: int, hi: int) -> bool:
        size = self.images.shape[-2 + axis]
        first = plan.start[axis] + unit * plan.jump[axis]
        return max(first, 0) >= lo and min(first + plan.size[axis], size) <= hi

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(x)
        with _capture(self.target) as box:
            self.model(x)
        return box["output"]

    def _autocast(self):
        dtype = self.engine.compute_dtype
        if dtype is None or dtype == self.images.dtype:
            return nullcontext()
        return torch.autocast(self.images.device.type, dtype=dtype)

    def _rules(self) -> RectifierRules:
        return RectifierRules(self.engine.rule, self.engine.skip_normalization)

    def activation(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._forward(self.images[image]).detach()

    def project(self, seeds: Seeds) -> torch.Tensor:
        """One chunk, each row its own sample (one forward and one backward for the chunk)."""
        x = self.images[seeds.image].clone().requires_grad_(True)
        with torch.enable_grad(), self._rules(), self._autocast():
            out = self._forward(x)
            seed = seeds.dense(out.detach())
            (grad,) = torch.autograd.grad(out, x, seed)
        return grad.detach().to(self.images.dtype)

    def project_all(self, seeds: Seeds, chunk_size: int) -> torch.Tensor:
        """Every seed: cropped where the plan allows, else one forward per distinct image."""
        result = self.images.new_zeros((len(seeds), *self.images.shape[1:]))
        if self.crop_plan is not None and not seeds.whole_map:
            self._project_cropped(seeds, result, chunk_size)
            return result
        images = seeds.image
        distinct = torch.unique(images)
        if distinct.numel() == len(seeds):  # one seed per image: a batch of distinct images
            for start in range(0, len(seeds), chunk_size):
                rows = torch.arange(start, min(start + chunk_size, len(seeds)),
                                    device=images.device)
                result[rows] = self.project(seeds.select(rows))
            return result
        for image in distinct.tolist():
            rows = torch.nonzero(images == image).flatten()
            self._project_one_image(image, seeds.select(rows), rows, result, chunk_size)
        return result

    def _project_one_image(self, image: int, seeds: Seeds, rows: torch.Tensor,
                           result: torch.Tensor, chunk_size: int) -> None:
        """One forward pass, then batched backward passes on the retained graph."""
        x = self.images[image:image + 1].clone().requires_grad_(True)
        with torch.enable_grad(), self._rules(), self._autocast():
            out = self._forward(x)
            act = out.detach()
            batched = self.engine.batched_backward
            if batched is None:
                batched = x.device.type != "cpu"
            step = chunk_size if batched else 1
            for start in range(0, len(seeds), step):
                part = slice(start, start + step)
                chunk = seeds.select(torch.arange(len(seeds), device=rows.device)[part])
                local = Seeds(torch.zeros_like(chunk.image), chunk.channel, chunk.y, chunk.x,
                              chunk.mode)
                seed = local.dense(act.expand(len(chunk), *act.shape[1:]))
                if batched:
                    (grad,) = torch.autograd.grad(out, x, seed.unsqueeze(1), retain_graph=True,
                                                  is_grads_batched=True)
                    grad = grad[:, 0]
                else:
                    (grad,) = torch.autograd.grad(out, x, seed, retain_graph=True)
                result[rows[part]] = grad.to(result.dtype)

    def _project_cropped(self, seeds: Seeds, result: torch.Tensor, chunk_size: int) -> None:
        """Each unit on the crop of its receptive field; crops of one size go down together."""
        plan = self.crop_plan
        height, width = self.images.shape[-2:]
        top, left, bottom, right = plan.origins(seeds.y, seeds.x, (height, width))
        shapes = torch.stack([bottom - top, right - left], dim=1)
        # crops are small: up to 4 x chunk_size of them together (at most the memory of
        # chunk_size full images; the forward activations of a crop batch are kept for its
        # backward)
        ratio = (height * width) // (plan.extent[0] * plan.extent[1])
        per_batch = chunk_size * max(1, min(4, ratio))
        for shape in torch.unique(shapes, dim=0):
            rows = torch.nonzero((shapes == shape).all(dim=1)).flatten()
            for start in range(0, len(rows), per_batch):
                part = rows[start:start + per_batch]
                boxes = list(zip(seeds.image[part].tolist(), top[part].tolist(),
                                 bottom[part].tolist(), left[part].tolist(),
                                 right[part].tolist()))
                x = torch.stack([self.images[i, :, t:b, lft:r] for i, t, b, lft, r in boxes])
                x.requires_grad_(True)
                chunk = seeds.select(part)
                local = Seeds(torch.arange(len(part), device=part.device), chunk.channel,
                              chunk.y - torch.div(top[part], plan.jump[0], rounding_mode="floor"),
                              chunk.x - torch.div(left[part], plan.jump[1],
                                                  rounding_mode="floor"),
                              chunk.mode)
                with torch.enable_grad(), self._rules(), self._autocast():
                    out = self._forward(x)
                    (grad,) = torch.autograd.grad(out, x, local.dense(out.detach()))
                for j, (row, (_, t, b, lft, r)) in enumerate(zip(part.tolist(), boxes)):
                    result[row, :, t:b, lft:r] = grad[j].to(result.dtype)
