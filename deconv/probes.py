"""Linear probes: how linearly separable the classes are in each layer's features (Table 7).

Zeiler & Fergus (2014, Sec. 5.2, Table 7) train linear classifiers (SVM / softmax) on the
features of each layer of their ImageNet network and find that accuracy rises with depth
(Caltech-101: layer 1 44.8% ... layer 5 86.2%). Here a probe is multinomial logistic regression
with an L2 penalty, fitted full-batch with L-BFGS in torch, on each layer's output pooled to a
small grid (adaptive average pooling to ``grid x grid`` cells for conv feature maps, so every
layer gives a vector of ``channels * grid**2`` numbers; fc outputs are used as they are),
standardized with the training features' mean and std.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import get_layer, resolve_layer
from deconv.model_state import eval_mode, registered_hooks
from deconv.training.loop import iterate_batches

__all__ = ["LinearProbe", "layer_features", "fit_linear_probe", "probe_layers"]


@dataclass
class LinearProbe:
    """A fitted multinomial logistic regression on standardized features.

    Attributes:
        weight (torch.Tensor): ``[classes, dims]``.
        bias (torch.Tensor): ``[classes]``.
        mean (torch.Tensor): ``[dims]`` feature mean subtracted before the linear map.
        std (torch.Tensor): ``[dims]`` feature std divided after.
        train_loss (float): final penalized training loss.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    train_loss: float

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, classes]`` of raw features ``[N, dims]``."""
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of ``x`` whose arg-max class equals ``y``."""
        return float((self.logits(x).argmax(1) == y).double().mean())


@torch.no_grad()
def layer_features(model: nn.Module, data: Dataset | torch.Tensor, layers: Sequence[str | int],
                   batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   grid: int = 2, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                torch.Tensor | None]:
    """Pooled outputs of several layers for every item of ``data``, in one pass.

    Args:
        model (nn.Module | LoadedModel): the network (put in eval mode; its mode is restored).
        data (Dataset | torch.Tensor): items ``(input, label)`` or a tensor of inputs.
        layers (Sequence[str | int]): module names or paper layer numbers (see
            :func:`deconv.layers.resolve_layer`); each means that module's output.
        batch_transform (Callable | None): applied to each input batch on ``device``.
        grid (int): conv outputs ``[N, C, H, W]`` are average-pooled to ``[N, C, grid, grid]``
            (maps smaller than the grid keep their size).
        batch_size (int): images per forward pass.
        device (str | torch.device): where to compute.

    Returns:
        tuple[dict[str, torch.Tensor], torch.Tensor | None]: features ``[N, dims]`` (float32, CPU)
        per module name, and the labels (None when ``data`` is a tensor).
    """
    if grid < 1:
        raise InvalidArgumentError(f"grid must be >= 1, got {grid}")
    net = getattr(model, "model", model)
    names = [resolve_layer(model, layer) for layer in layers]
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    labels: list[torch.Tensor] = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            out = output.detach()
            if out.dim() == 4:
                out = F.adaptive_avg_pool2d(out, (min(grid, out.shape[2]), min(grid, out.shape[3])))
            chunks[name].append(out.flatten(1).float().cpu())  # a copy: safe from inplace ops
        return hook

    with ExitStack() as stack:
        stack.enter_context(eval_mode(net))
        stack.enter_context(registered_hooks(
            get_layer(model, name).register_forward_hook(hook_for(name))
            for name in dict.fromkeys(names)))
        if isinstance(data, torch.Tensor):
            batches = ((data[i:i + batch_size], None) for i in range(0, len(data), batch_size))
        else:
            batches = iterate_batches(data, batch_size, None)
        for x, y in batches:
            x = x.to(device)
            if batch_transform is not None:
                x = batch_transform(x)
            net(x)
            if y is not None:
                labels.append(torch.as_tensor(y))
    features = {n: torch.cat(chunks[n]) for n in names}
    return features, (torch.cat(labels) if labels else None)


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                     l2: float = 1e-3, max_iter: int = 300) -> LinearProbe:
    """Fit multinomial logistic regression: mean cross-entropy + ``l2/2 * ||W||^2`` (not b).

    Features are standardized first (constant features get std 1). Full-batch L-BFGS with a
    strong-Wolfe line search, in float64.

    Args:
        x (torch.Tensor): features ``[N, dims]``.
        y (torch.Tensor): integer labels ``[N]``.
        num_classes (int | None): number of classes (``max(y) + 1`` by default).
        l2 (float): penalty on the weights (of standardized features).
        max_iter (int): L-BFGS iterations.

    Returns:
        LinearProbe: the fitted probe (float32 tensors).
    """
    if x.dim() != 2 or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InvalidArgumentError(f"expected features [N, dims] and labels [N] with N > 0, "
                                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if l2 < 0:
        raise InvalidArgumentError(f"l2 must be >= 0, got {l2}")
    classes = int(y.max()) + 1 if num_classes is None else num_classes
    x64 = x.double()
    mean = x64.mean(0)
    std = x64.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    z = (x64 - mean) / std
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter,
                                  tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")
    target = y.long()

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, target) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        final = float(objective().detach())
    return LinearProbe(weight.detach().float(), bias.detach().float(), mean.float(),
                       std.float(), final)


def probe_layers(model: nn.Module, train_data: Dataset, test_data: Dataset,
                 layers: Sequence[str | int],
                 batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 grid: int = 2, l2: float = 1e-3, max_iter: int = 300,
                 device: str | torch.device = "cpu") -> dict[str, dict[str, float]]:
    """Train a linear probe on each layer's pooled features; report train and test accuracy.

    Args:
        model (nn.Module | LoadedModel): the network.
        train_data (Dataset): labelled items to fit the probes on.
        test_data (Dataset): labelled items to score them on.
        layers (Sequence[str | int]): module names or paper layer numbers.
        batch_transform (Callable | None): applied to each input batch.
        grid (int): pooling grid of conv outputs (see :func:`layer_features`).
        l2 (float): weight penalty of the probes.
        max_iter (int): L-BFGS iterations per probe.
        device (str | torch.device): where the network runs.

    Returns:
        dict[str, dict[str, float]]: per layer as given (``str(layer)``): ``module``,
        ``dims``, ``train_accuracy``, ``test_accuracy``.
    """
    train_x, train_y = layer_features(model, train_data, layers, batch_transform, grid,
                                      device=device)
    test_x, test_y = layer_features(model, test_data, layers, batch_transform, grid,
                                    device=device)
    if train_y is None or test_y is None:
        raise InvalidTypeError("train_data and test_data must yield (input, label) pairs")
    classes = int(max(train_y.max(), test_y.max())) + 1
    out = {}
    for layer in layers:
        name = resolve_layer(model, layer)
        probe = fit_linear_probe(train_x[name], train_y, classes, l2, max_iter)
        out[str(layer)] = {"module": name, "dims": int(train_x[name].shape[1]),
                           "train_accuracy": probe.accuracy(train_x[name], train_y),
                           "test_accuracy": probe.accuracy(test_x[name], test_y)}
    return out
