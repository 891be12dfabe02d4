"""A tiny random CNN and labelled data for fast atlas tests (built in well under a second)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

#: the conv-2 channel a -100 bias switches off everywhere (a planted dead feature map).
DEAD_CHANNEL = 3


def tiny_model(seed: int = 0) -> nn.Sequential:
    """conv(3->6) ReLU pool conv(6->8) ReLU pool flatten linear(->4); layers "1" and "4"."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 5, stride=1, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        model[3].bias[DEAD_CHANNEL] = -100.0
    return model.eval()


def tiny_data(n: int = 40, seed: int = 0, classes: int = 4) -> TensorDataset:
    """``n`` random 24 x 24 images with labels in ``range(classes)``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 24, 24, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    return TensorDataset(images, labels)


def build_tiny(out, **kwargs):
    """Build the tiny atlas (layers "1" and "4", 2 optimisation steps) into ``out``."""
    from deconv.atlas import build_atlas

    options = dict(k=4, optima_steps=2, tile=24, batch_size=16, progress=False,
                   class_names=["a", "b", "c", "d"])
    options.update(kwargs)
    model = options.pop("model", None) or tiny_model()
    data = options.pop("data", None) or tiny_data()
    return build_atlas(model, data, ["1", "4"], out, **options)
