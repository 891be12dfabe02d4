"""The deconvnet (and guided backprop, and plain gradients) for any architecture, by autograd.

On a chain of conv / ReLU / max-pool, the deconvnet equals back-propagation except at the
ReLUs, where the backward signal itself is rectified (Simonyan et al. 2013); max-pool's autograd
backward is exactly unpooling with the switches (summed where windows overlap) and a conv's is
the transposed convolution. So for residual networks, EfficientNets and user models the same
projection is autograd with the ReLU backward replaced, which :class:`GenericDeconvnet` does
with :class:`~deconv.deconvnet.relu_rules.RectifierRules`: every rectifier call is intercepted,
whether it is an ``nn.ReLU`` (inplace or not, reused or not), ``F.relu``, ``torch.relu``,
``clamp(min=0)``, ``nn.ReLU6`` or ``hardtanh(0, 6)``.

Each unit is its own sample: the image of each unit is repeated once per unit in a chunk and a
single backward pass gives all the projections of the chunk. The forward stops at the layer.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from deconv._deprecation import deprecated_names
from deconv.deconvnet.base import ProjectionEngine, ProjectionRun, Seeds, _check_images
from deconv.deconvnet.relu_rules import RULES, RectifierRules, check_model
from deconv.model_state import StopForward, eval_mode

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

    Limitations: a layer must be a module that runs once per forward pass (a reused ReLU module
    is refused: name the block instead); other nonlinearities (SiLU, GELU, ...) keep their plain
    gradient, with a warning.
    """

    def __init__(self, model, rule: str = "deconvnet", skip_normalization: bool | None = None):
        super().__init__(model)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        check_model(self.module)
        self.rule = rule
        self.skip_normalization = (rule == "deconvnet") if skip_normalization is None \
            else bool(skip_normalization)
        self._checked: dict[tuple, torch.Size] = {}

    def _run(self, images: torch.Tensor, layer: str) -> _GenericRun:
        return _GenericRun(self, images, layer)

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
        images = _check_images(images)
        n = images.shape[0]
        target = torch.as_tensor(target, dtype=torch.long, device=images.device).reshape(-1)
        if target.numel() == 1:
            target = target.expand(n)
        if target.numel() != n:
            raise ValueError(f"target must be one class index or one per image ({n}), got "
                             f"{target.numel()}")
        index = torch.arange(n, device=images.device)
        seeds = Seeds(index, target, None, None, "unit")
        run = _GenericRun(self, images, None)
        with run:
            return torch.cat([run.project(chunk) for chunk in seeds.chunks(chunk_size)])


class _GenericRun(ProjectionRun):
    """State of one call: eval mode on, the layer's output shape checked once."""

    def __init__(self, engine: GenericDeconvnet, images: torch.Tensor, layer: str | None):
        self.engine = engine
        self.model = engine.module
        self.images = images
        self.layer = layer
        self.target = self.model if layer is None else self.model.get_submodule(layer)
        self._state = ExitStack()

    def __enter__(self) -> _GenericRun:
        with ExitStack() as stack:
            stack.enter_context(eval_mode(self.model))
            self.layer_shape = self._probe()
            self._state = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._state.close()
        return None

    def _probe(self) -> torch.Size:
        """Run one image through the whole model: the layer must run exactly once."""
        key = (self.layer, tuple(self.images.shape[1:]), self.images.dtype)
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
            raise ValueError(
                f"module {self.layer!r} runs {box['calls']} times in one forward pass, so 'its "
                f"output' is ambiguous (a reused module such as ResNet's block ReLU); choose a "
                f"module that runs once, e.g. the enclosing block")
        output = box["output"]
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"module {self.layer!r} returns {type(output).__name__}, not a "
                             f"tensor; choose a module whose output is one tensor")
        shape = torch.Size((1, *output.shape[1:]))
        self.engine._checked[key] = shape
        return shape

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(x)
        with _capture(self.target) as box:
            self.model(x)
        return box["output"]

    def activation(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._forward(self.images[image]).detach()

    def project(self, seeds: Seeds) -> torch.Tensor:
        x = self.images[seeds.image].clone().requires_grad_(True)
        rules = RectifierRules(self.engine.rule, self.engine.skip_normalization)
        with torch.enable_grad(), rules:
            out = self._forward(x)
            seed = seeds.dense(out.detach())
            (grad,) = torch.autograd.grad(out, x, seed)
        return grad.detach()
