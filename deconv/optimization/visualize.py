"""``visualize_feature``: optimize an input image for an objective (Olah et al., Distill 2017).

Start from a small random image in a chosen parametrization, and for ``steps`` steps: build
the pixels, apply random transforms (robustness), normalize as the model expects, run the
model up to the deepest tapped layer, and take an Adam step that increases the objective.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from deconv._deprecation import deprecated_names
from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import module_of
from deconv.model_state import eval_mode
from deconv.optimization.objectives import ActivationCapture, Objective, evaluate, per_image
from deconv.optimization.parametrizations import make_image
from deconv.optimization.transforms import Compose, standard_transforms

__all__ = ["FeatureVisualization", "visualize_feature"]


def _preserved_model_state():
    from functools import partial

    return partial(eval_mode, requires_grad=False)


__getattr__ = deprecated_names(__name__, {
    "preserved_model_state": ("use deconv.model_state.eval_mode(model, requires_grad=False)",
                              _preserved_model_state),
})


@dataclass
class FeatureVisualization:
    """The result of :func:`visualize_feature`.

    Attributes:
        images (torch.Tensor): ``[B, 3, H, W]`` pixels in [0, 1] (CPU, detached).
        values (torch.Tensor): ``[B]`` objective on the final images, without transforms.
        initial_values (torch.Tensor): ``[B]`` objective on the random start.
        history (list[float]): per step, the batch mean of the objective being optimized (on
            the transformed images; for ``negative=True`` the objective itself, which falls).
        seconds (float): wall time of the optimization.
        settings (dict): JSON-able record of the arguments.
    """

    images: torch.Tensor
    values: torch.Tensor
    initial_values: torch.Tensor
    history: list[float]
    seconds: float
    settings: dict = field(default_factory=dict)


def _normalizer(model, normalize: Callable | None) -> Callable:
    if normalize is not None:
        return normalize
    method = getattr(model, "normalize", None)
    if callable(method) and not isinstance(model, nn.Module):
        return method
    return lambda x: x


def visualize_feature(model, objective: Objective | Sequence[Objective], *,
                      negative: bool = False, size: int | tuple[int, int] = 128,
                      batch: int | None = None, steps: int = 128, lr: float = 0.05,
                      parametrization: str = "fourier", decorrelate: bool = True,
                      transforms: Callable | Sequence[Callable] | str | None = "standard",
                      seed: int = 0, normalize: Callable | None = None,
                      device: str | torch.device | None = None,
                      progress: bool = False, shared_start: bool = False
                      ) -> FeatureVisualization:
    """Optimize images that maximize (or, ``negative``, minimize) ``objective``.

    Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017. Their figures use
    Adam with lr 0.05 for 2560 steps on larger images; the defaults here (128 px, 128 steps,
    Fourier + decorrelated colour, pad/jitter/scale 0.95-1.05/rotate +-5 degrees) give clean
    images of ``hed-vgg16`` and ``efficientnet-lite0`` features within seconds to a minute
    per image on a CPU. Without regularization (``parametrization="pixel"``,
    ``decorrelate=False``, ``transforms=None``) the optimum is high-frequency noise.

    Args:
        model (nn.Module | LoadedModel): the network; never changed (its ``training`` flags and
            parameters' ``requires_grad`` are restored; hooks are removed).
        objective (Objective | Sequence[Objective]): what to maximize; a sequence gives one
            objective per image (see :func:`~deconv.optimization.objectives.per_image`).
        negative (bool): minimize instead (the negative optimum). The reported ``values``
            are still those of ``objective``.
        size (int | tuple[int, int]): image side or ``(height, width)`` before transforms.
        batch (int | None): images optimized together (default: 1, or the number of
            objectives); add ``- w * diversity(layer)`` to the objective to make them differ.
        steps (int): Adam steps.
        lr (float): Adam learning rate.
        parametrization (str): ``"fourier"`` (1/f scaled spectrum) or ``"pixel"``.
        decorrelate (bool): optimize in the decorrelated colour space.
        transforms: ``"standard"`` (:func:`~deconv.optimization.transforms.standard_transforms`),
            None (no robustness), a callable ``f(images, generator)``, or a list of them.
        seed (int): seeds the random start and every transform draw.
        normalize (Callable | None): pixels in [0, 1] -> model input; default
            ``LoadedModel.normalize`` for a zoo model, identity for a bare module.
        device (str | torch.device | None): default: where the model's parameters are.
        progress (bool): a progress bar over the steps, with the objective.
        shared_start (bool): every image of the batch starts from the same random draw, the
            one a ``batch=1`` run with this ``seed`` starts from. The transforms draw the same
            numbers too (one draw per step for the whole batch), so with one objective per
            image, image ``i`` is the optimum a one-image run of objective ``i`` gives (see
            :func:`~deconv.optimization.batched.optimize_channels`).

    Returns:
        FeatureVisualization: images, objective values before/after, per-step history.

    Raises:
        ValueError: bad sizes, steps or objective/batch mismatch. TypeError: not an Objective.
    """
    if isinstance(objective, Sequence) and not isinstance(objective, Objective):
        if batch not in (None, len(objective)):
            raise InvalidArgumentError(
                f"{len(objective)} objectives but batch={batch}; give one "
                                    f"objective per image or a single objective")
        batch = len(objective)
        objective = per_image(objective)
    if not isinstance(objective, Objective):
        raise InvalidTypeError(f"objective must be an Objective (e.g. channel(layer, c)), got "
                                             f"{type(objective).__name__}")
    batch = 1 if batch is None else int(batch)
    if steps < 0 or lr <= 0 or batch < 1:
        raise InvalidArgumentError(
            f"need steps >= 0, lr > 0 and batch >= 1; got steps={steps}, lr={lr}, "
            f"batch={batch}")
    transform = _transform(transforms)
    module = module_of(model)
    norm = _normalizer(model, normalize)
    if device is None:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    image = make_image(size, 1 if shared_start else batch, parametrization, decorrelate,
                       generator=generator)
    if shared_start and batch > 1:
        image = _repeated(image, batch, parametrization, decorrelate, size)
    image = image.to(device)
    sign = -1.0 if negative else 1.0
    history: list[float] = []
    start = time.perf_counter()
    with eval_mode(module, requires_grad=False), torch.enable_grad(), \
            ActivationCapture(model, objective.taps) as capture:
        with torch.no_grad():
            capture.run(norm(image()), full=True)  # finds reused modules once
        initial = objective(capture.tensors).detach().cpu()
        optimizer = torch.optim.Adam(image.parameters(), lr=lr)
        bar = tqdm(total=steps, desc="optimizing", unit="step", disable=not progress)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            pixels = transform(image(), generator)
            values = objective(capture.run(norm(pixels)))
            (-sign * values.sum()).backward()
            optimizer.step()
            history.append(float(values.detach().mean()))
            bar.update(1)
            bar.set_postfix(objective=f"{history[-1]:.4g}", refresh=False)
        bar.close()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        pixels = image().detach()
    final = evaluate(model, objective, norm(pixels)).cpu()
    settings = {"objective": objective.name, "negative": negative, "size": size,
                "batch": batch, "steps": steps, "lr": lr, "parametrization": parametrization,
                "decorrelate": decorrelate,
                "transforms": "none" if transform is _identity else repr(transform),
                "seed": seed, "shared_start": shared_start}
    return FeatureVisualization(pixels.cpu().float(), final, initial, history, seconds, settings)


def _repeated(image: torch.nn.Module, batch: int, parametrization: str, decorrelate: bool,
              size: int | tuple[int, int]) -> torch.nn.Module:
    """A ``batch``-image parametrization whose every image starts as the one of ``image``."""
    out = make_image(size, batch, parametrization, decorrelate, sd=0.0,
                     generator=torch.Generator())  # overwritten below; global RNG untouched
    for mine, theirs in zip(out.parameters(), image.parameters()):
        mine.data.copy_(theirs.data.expand_as(mine))
    return out


def _identity(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return images


def _transform(transforms) -> Callable:
    if transforms is None:
        return _identity
    if isinstance(transforms, str):
        if transforms != "standard":
            raise InvalidArgumentError(
                f"transforms must be 'standard', None, a callable or a list of "
                f"callables; got {transforms!r}")
        return standard_transforms()
    if callable(transforms):
        return transforms
    if isinstance(transforms, Sequence) and all(callable(t) for t in transforms):
        return Compose(transforms)
    raise InvalidTypeError(
        f"transforms must be 'standard', None, a callable or a list of callables; "
        f"got {type(transforms).__name__}")
