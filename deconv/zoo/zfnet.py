"""ZFNet (Zeiler & Fergus 2014, Fig. 3) built from a config, so variants share one code path.

Padding is not stated in the paper. We choose conv1 padding 1, conv2 padding 0, conv3-5
padding 1 and max-pools 3x3/2 with ``ceil_mode=True`` (Caffe's rounding), which gives the
paper's sizes for a 224 px input: conv1 110, pool1 55, conv2 26, pool2 13, conv3-5 13, pool5 6.
"Contrast normalization" is ``nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`` across
feature maps, after pooling as in the paper.

Scaled configs for small grey images (``fashion``, ``fashion-alexnet-conv1``) keep the same layer
types and order with fewer filters (32-64-96-96-64, fc 256) and a 64 px input: Fashion-MNIST's
28 px images are upsampled bilinearly to 64 px and the grey channel is repeated three times
(:func:`deconv.datasets.fashion_batch_transform`), so the model takes the same ``[N, 3, H, W]``
input as every model of the zoo and ``LoadedModel.preprocess`` works on any picture. conv2 gets
padding 2 so that 64 px gives conv1 30, pool1 15, conv2 8, pool2 4, conv3-5 4, pool5 2.
They use He (Kaiming) initialization: the paper's N(0, 0.01) makes an 8-layer net start with
activations ~1e-6 of the input and trains too slowly for a 15-minute CPU budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from deconv.errors import InvalidArgumentError, UnknownNameError
from deconv.zoo.registry import LoadedModel, imagenet_categories, load_checkpoint, register_model

__all__ = ["ZFNet", "ZFNetConfig", "ZFNET_CONFIGS"]


@dataclass(frozen=True)
class ZFNetConfig:
    """Hyper-parameters of a ZFNet-family network.

    Attributes:
        input_size (int): side of the square input.
        in_channels (int): input colour channels.
        num_classes (int): outputs of the last linear layer.
        widths (tuple[int, ...]): filters of conv1..conv5.
        conv1 (tuple[int, int, int]): (kernel, stride, padding) of conv1; (7, 2, 1) in the paper,
            (11, 4, 2) for the AlexNet-style ablation.
        conv2 (tuple[int, int, int]): (kernel, stride, padding) of conv2.
        fc (int): width of fc6 and fc7.
        dropout (float): dropout probability before fc7 and the classifier.
        lrn (bool): use local response (contrast) normalization after pool1 and pool2.
        init (str): ``"paper"`` (weights N(0, 0.01^2), biases 0) or ``"kaiming"`` (He normal
            for ReLU layers, biases 0).
        mean (tuple[float, float, float]): per-channel input mean (pixels in [0, 1]).
        std (tuple[float, float, float]): per-channel input std.
        classes (str): name of the label set: ``"imagenet"``, ``"fashion-mnist"`` or ``"none"``.
    """

    input_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    widths: tuple[int, ...] = (96, 256, 384, 384, 256)
    conv1: tuple[int, int, int] = (7, 2, 1)
    conv2: tuple[int, int, int] = (5, 2, 0)
    fc: int = 4096
    dropout: float = 0.5
    lrn: bool = True
    init: str = "paper"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    classes: str = "imagenet"

    def __post_init__(self):
        if self.init not in ("paper", "kaiming"):
            raise InvalidArgumentError(f"init must be 'paper' or 'kaiming', got {self.init!r}")
        if self.classes not in ("imagenet", "fashion-mnist", "none"):
            raise InvalidArgumentError(f"classes must be 'imagenet', 'fashion-mnist' or 'none', "
                                                 f"got {self.classes!r}")
        if len(self.widths) != 5:
            raise InvalidArgumentError(
                f"widths must give the 5 conv layers' filters, got {self.widths}")


#: Fashion-MNIST statistics of the training images (pixels in [0, 1]), repeated over RGB.
_FASHION_MEAN, _FASHION_STD = (0.2860,) * 3, (0.3530,) * 3

_FASHION = ZFNetConfig(input_size=64, num_classes=10, widths=(32, 64, 96, 96, 64),
                       conv1=(7, 2, 1), conv2=(5, 2, 2), fc=256, init="kaiming",
                       mean=_FASHION_MEAN, std=_FASHION_STD, classes="fashion-mnist")

ZFNET_CONFIGS: dict[str, ZFNetConfig] = {
    "paper": ZFNetConfig(),
    "paper-alexnet-conv1": replace(ZFNetConfig(), conv1=(11, 4, 2)),
    "fashion": _FASHION,
    "fashion-alexnet-conv1": replace(_FASHION, conv1=(11, 4, 2)),
}


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class ZFNet(nn.Module):
    """ZFNet: ``features`` (conv/ReLU/pool/LRN), ``flatten``, ``classifier`` (fc6, fc7, fc8).

    Module names: ``features.0`` conv1, ``.1`` ReLU1, ``.2`` pool1, ``.3`` norm1, ``.4`` conv2,
    ``.5`` ReLU2, ``.6`` pool2, ``.7`` norm2, ``.8``/``.9`` conv3/ReLU3, ``.10``/``.11``
    conv4/ReLU4, ``.12``/``.13`` conv5/ReLU5, ``.14`` pool5; ``classifier.0``/``.1`` fc6/ReLU6,
    ``.2`` dropout, ``.3``/``.4`` fc7/ReLU7, ``.5`` dropout, ``.6`` fc8 (logits).

    Args:
        config (ZFNetConfig): the architecture.
    """

    paper_layer_modules = {1: "features.1", 2: "features.5", 3: "features.9", 4: "features.11",
                           5: "features.13", 6: "classifier.1", 7: "classifier.4"}

    def __init__(self, config: ZFNetConfig = ZFNetConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        k1, s1, p1 = config.conv1
        k2, s2, p2 = config.conv2

        def norm() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if config.lrn \
                else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(config.in_channels, w[0], k1, s1, p1), nn.ReLU(), _pool(), norm(),
            nn.Conv2d(w[0], w[1], k2, s2, p2), nn.ReLU(), _pool(), norm(),
            nn.Conv2d(w[1], w[2], 3, 1, 1), nn.ReLU(),
            nn.Conv2d(w[2], w[3], 3, 1, 1), nn.ReLU(),
            nn.Conv2d(w[3], w[4], 3, 1, 1), nn.ReLU(), _pool(),
        )
        with torch.no_grad():
            side = self.features(torch.zeros(1, config.in_channels, config.input_size,
                                             config.input_size)).shape[-1]
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(w[4] * side * side, config.fc), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.fc, config.fc), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.fc, config.num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize weights per ``config.init`` (paper: N(0, 0.01^2); or He normal), biases 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.config.init == "paper":
                    nn.init.normal_(m.weight, 0.0, 1e-2)
                else:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, num_classes] of images [N, in_channels, input_size, input_size]."""
        return self.classifier(self.flatten(self.features(x)))


@register_model("zfnet", source="ZFNet architecture (Zeiler & Fergus 2014, Fig. 3), built here: "
                "RANDOM INIT (untrained) unless weights=<checkpoint path>",
                licence="MIT (this repository)", offline=True,
                description="random init (N(0, 0.01)) unless a checkpoint path is given")
def build_zfnet(weights: str | None = "default", config: str | ZFNetConfig = "paper",
                seed: int = 0) -> LoadedModel:
    """ZFNet with the paper's random init (seeded) or a checkpoint (``weights=<path>``)."""
    if isinstance(config, str) and config not in ZFNET_CONFIGS:
        raise UnknownNameError(
            f"unknown ZFNet config {config!r}; choose one of {list(ZFNET_CONFIGS)}")
    cfg = ZFNET_CONFIGS[config] if isinstance(config, str) else config
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ZFNet(cfg)
    trained = weights not in (None, "default")
    if trained:
        load_checkpoint(model, weights)
    categories = None
    if cfg.classes == "imagenet" and cfg.num_classes == 1000:
        categories = imagenet_categories()
    elif cfg.classes == "fashion-mnist":
        from deconv.datasets import FASHION_MNIST_CLASSES

        categories = list(FASHION_MNIST_CLASSES)
    origin = f"checkpoint {weights}" if trained else f"random init, seed {seed}"
    return LoadedModel(
        model=model, name="zfnet", source=f"ZFNet ({origin})",
        layers=dict(ZFNet.paper_layer_modules), categories=categories,
        input_size=cfg.input_size, mean=cfg.mean, std=cfg.std, licence="MIT (this repository)",
    )


FASHION_WEIGHTS = "data/weights/zfnet_fashion_epoch15.pt"
"""Package-relative path of the trained Fashion-MNIST ZFNet (float16 state dict, 15 epochs)."""


def fashion_weights_path() -> str:
    """Path of the packaged ``zfnet-fashion`` checkpoint (shipped as package data)."""
    return str(Path(__file__).resolve().parent.parent / FASHION_WEIGHTS)


@register_model("zfnet-fashion",
                source="ZFNet (fashion config) trained here on Fashion-MNIST, 15 epochs, "
                "91.55% test accuracy (experiments/train_zfnet.py)",
                licence="MIT (this repository)", offline=True,
                available=lambda: Path(fashion_weights_path()).is_file(),
                description="the trained max-pool classifier of the paper's figures")
def build_zfnet_fashion(weights: str | None = "default", seed: int = 0) -> LoadedModel:
    """The committed Fashion-MNIST ZFNet (``config="fashion"``, 64 px grey-as-RGB input).

    Args:
        weights (str | None): ``"default"`` (the packaged 15-epoch checkpoint), ``None`` (He
            init, seeded) or another checkpoint path of the same config.
        seed (int): seed of the initialization (only matters for ``weights=None``).

    Returns:
        LoadedModel: named ``"zfnet-fashion"``, with the ten Fashion-MNIST class names.
    """
    path = fashion_weights_path() if weights == "default" else weights
    loaded = build_zfnet(weights=path, config="fashion", seed=seed)
    loaded.name = "zfnet-fashion"
    if weights == "default":
        loaded.source = "ZFNet trained on Fashion-MNIST (packaged checkpoint, 91.55% test accuracy)"
    return loaded
