"""torchvision's ImageNet AlexNet and VGG16, with weights from the torch hub cache or a download.

Offline and uncached, loading fails fast with :class:`WeightsUnavailableError` saying where to
put the file; it never hangs (the download is tried only after a 3 s reachability check, and
not at all when ``DECONV_OFFLINE=1``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from deconv.validation import read_checkpoint
from deconv.zoo.registry import (
    LoadedModel,
    WeightsUnavailableError,
    imagenet_categories,
    load_checkpoint,
    register_model,
)

_SPECS = {
    "alexnet": (torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
                {1: "features.1", 2: "features.4", 3: "features.7", 4: "features.9",
                 5: "features.11", 6: "classifier.2", 7: "classifier.5"}),
    "vgg16": (torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1,
              {1: "features.3", 2: "features.8", 3: "features.15", 4: "features.22",
               5: "features.29", 6: "classifier.1", 7: "classifier.4"}),
}


def cached_weights_path(name: str) -> Path:
    """Where torch hub keeps (or would keep) the ImageNet weights of ``name``."""
    url = _SPECS[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def resolve_host(host: str, port: int, timeout: float) -> list | None:
    """``socket.getaddrinfo`` with a deadline: None if it fails or takes over ``timeout`` s.

    The lookup runs in a daemon thread, so a stalled resolver (which ``socket``'s own timeouts
    do not cover) cannot make the caller wait longer than ``timeout``.
    """
    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError:
            found.append(None)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    return found[0] if found else None


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection on 443 within ``timeout`` seconds in
    all (name resolution included)."""
    if os.environ.get("DECONV_OFFLINE", "") not in ("", "0"):
        return False
    deadline = time.monotonic() + timeout
    addresses = resolve_host(urlparse(url).hostname, 443, timeout)
    for family, kind, proto, _, address in addresses or []:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            with socket.socket(family, kind, proto) as connection:
                connection.settimeout(left)
                connection.connect(address)
                return True
        except OSError:
            continue
    return False


def _weights_state(name: str) -> dict:
    weights = _SPECS[name][1]
    path = cached_weights_path(name)
    if path.is_file():
        return read_checkpoint(path, f"cached ImageNet weights of {name!r}")
    if not _reachable(weights.url):
        raise WeightsUnavailableError(
            f"ImageNet weights for {name!r} are not cached at {path} and "
            f"{urlparse(weights.url).hostname} cannot be reached (offline?). Either run once "
            f"with internet access, or download {weights.url} elsewhere and copy it to {path}. "
            f"Offline alternatives in this toolkit: 'hed-vgg16', 'efficientnet-lite0'.")
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu",
                                                  progress=True, check_hash=True)
    except Exception as exc:  # network errors of many kinds
        raise WeightsUnavailableError(
            f"downloading the ImageNet weights for {name!r} from {weights.url} failed ({exc}); "
            f"copy the file to {path} by hand") from exc


def _build(name: str, weights: str | None) -> LoadedModel:
    constructor, default_weights, layers = _SPECS[name]
    model: nn.Module = constructor(weights=None)
    if weights == "default":
        model.load_state_dict(_weights_state(name), strict=True)
        source = f"torchvision {name} ({default_weights}, BSD-3-Clause code; ImageNet weights)"
    elif weights is None:
        source = f"torchvision {name} (random init)"
    else:
        load_checkpoint(model, weights)
        source = f"torchvision {name} (checkpoint {weights})"
    return LoadedModel(model=model, name=name, source=source, layers=dict(layers),
                       categories=imagenet_categories(), input_size=224,
                       licence="BSD-3-Clause (torchvision); ImageNet weights: non-commercial")


@register_model("alexnet", source="torchvision AlexNet, ImageNet-1k weights (download)",
                licence="BSD-3-Clause; weights trained on ImageNet (research use)", offline=False,
                available=lambda: cached_weights_path("alexnet").is_file())
def build_alexnet(weights: str | None = "default") -> LoadedModel:
    """torchvision AlexNet; ImageNet weights from the hub cache or a download."""
    return _build("alexnet", weights)


@register_model("vgg16", source="torchvision VGG16, ImageNet-1k weights (download)",
                licence="BSD-3-Clause; weights trained on ImageNet (research use)", offline=False,
                available=lambda: cached_weights_path("vgg16").is_file())
def build_vgg16(weights: str | None = "default") -> LoadedModel:
    """torchvision VGG16; ImageNet weights from the hub cache or a download."""
    return _build("vgg16", weights)
