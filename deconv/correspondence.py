"""Correspondence analysis (Zeiler & Fergus 2014, Sec. 5.1, Table 1 and Fig. 8).

Does a network relate the same object part across different images? Occlude the same part
(right eye, left eye, nose) in several face images and compare how the features change:
``eps_i = x_i - x~_i`` (features of the original minus features of the occluded image) at a
layer ``l``, then

    Delta_l = mean over pairs i != j of H(sign(eps_i), sign(eps_j)),

with ``H`` the normalized Hamming distance (the fraction of entries whose signs differ;
``sign(0) = 0`` counts as its own value). A lower ``Delta`` means the part is treated more
consistently. The paper compares with occluding random parts of the same size.

Landmark boxes for the offline sample photos are in ``deconv/data/face_landmarks.json``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deconv.errors import InvalidArgumentError, UnknownNameError
from deconv.layers import capture_outputs

__all__ = ["PARTS", "FaceImage", "DeltaStats", "LANDMARKS_PATH", "load_face_landmarks",
           "face_images", "sign_hamming", "pairwise_sign_hamming", "correspondence_delta",
           "occlude_boxes", "random_boxes", "shared_random_boxes", "bootstrap_delta",
           "layer_features", "feature_differences"]

#: The object parts the paper occludes.
PARTS = ("right_eye", "left_eye", "nose")
LANDMARKS_PATH = Path(__file__).resolve().parent / "data" / "face_landmarks.json"

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), end exclusive


@dataclass(frozen=True)
class FaceImage:
    """A face crop with its part boxes.

    Attributes:
        name (str): e.g. ``"astronaut"`` or ``"astronaut_mirror"``.
        pixels (torch.Tensor): ``[3, S, S]`` float32 in [0, 1].
        boxes (dict[str, tuple[int, int, int, int]]): part -> ``(x0, y0, x1, y1)`` in crop
            pixels, end exclusive.
        description (str): how the crop was made.
    """

    name: str
    pixels: torch.Tensor
    boxes: dict[str, Box]
    description: str


@dataclass(frozen=True)
class DeltaStats:
    """``Delta`` of a set of sign vectors.

    Attributes:
        mean (float): mean normalized Hamming distance over the pairs ``i != j`` (the paper's
            ``Delta_l``).
        std (float): standard deviation over those pairs (population std).
        pairs (list[float]): the distance of each unordered pair ``i < j``.
    """

    mean: float
    std: float
    pairs: list[float]


def load_face_landmarks(path: str | Path | None = None) -> dict:
    """The landmark JSON (see its ``note`` for how the boxes were made)."""
    return json.loads(Path(path or LANDMARKS_PATH).read_text())


def face_images(size: int = 224, names: Sequence[str] | None = None,
                path: str | Path | None = None) -> list[FaceImage]:
    """Cropped, resized face images with their part boxes in crop pixels.

    Args:
        size (int): side of the square output.
        names (Sequence[str] | None): which images (``images`` and ``variants`` of the JSON);
            all by default, originals first.
        path (str | Path | None): another landmark JSON of the same format.

    Returns:
        list[FaceImage]: one per name.
    """
    from PIL import Image

    from deconv.samples import sample_images

    data = load_face_landmarks(path)
    entries = {name: dict(entry, mirror=False) for name, entry in data["images"].items()}
    for name, variant in data.get("variants", {}).items():
        base = data["images"][variant["of"]]
        entries[name] = dict(base, face_crop=variant["face_crop"], mirror=variant["mirror"])
    if names is None:
        names = list(entries)
    out = []
    for name in names:
        if name not in entries:
            raise UnknownNameError(f"unknown face image {name!r}; available: {list(entries)}")
        entry = entries[name]
        photo = sample_images([entry["sample"]])[0].image
        if list(photo.size) != list(entry["size"]):
            raise InvalidArgumentError(f"{name}: photo is {photo.size}, landmarks were made on "
                                                           f"{entry['size']}; re-annotate")
        crop = entry["face_crop"]
        side = crop[2] - crop[0]
        if crop[3] - crop[1] != side:
            raise InvalidArgumentError(f"{name}: face_crop {crop} is not square")
        picture = photo.crop(tuple(crop)).resize((size, size), Image.BILINEAR)
        if entry["mirror"]:
            picture = picture.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)
        boxes = {part: transform_box(entry["boxes"][part], crop, size, entry["mirror"])
                 for part in PARTS}
        if entry["mirror"]:  # the mirrored subject's right eye is the original left eye
            boxes["right_eye"], boxes["left_eye"] = boxes["left_eye"], boxes["right_eye"]
        description = f"{entry['sample']} crop {crop} -> {size}px" + (
            ", mirrored" if entry["mirror"] else "")
        out.append(FaceImage(name, pixels.contiguous(), boxes, description))
    return out


def transform_box(box: Sequence[int], crop: Sequence[int], size: int, mirror: bool) -> Box:
    """Map a box of the original photo into a square crop resized to ``size`` (and mirrored).

    The box is grown to whole output pixels (floor of the start, ceil of the end) and clipped.
    """
    scale = size / (crop[2] - crop[0])
    x0 = math.floor((box[0] - crop[0]) * scale)
    x1 = math.ceil((box[2] - crop[0]) * scale)
    y0 = math.floor((box[1] - crop[1]) * scale)
    y1 = math.ceil((box[3] - crop[1]) * scale)
    if mirror:
        x0, x1 = size - x1, size - x0
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(size, x1), min(size, y1)
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgumentError(f"box {list(box)} lies outside the crop {list(crop)}")
    return (x0, y0, x1, y1)


def sign_hamming(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalized Hamming distance between ``sign(a)`` and ``sign(b)`` (fraction that differ).

    Args:
        a (torch.Tensor): any shape.
        b (torch.Tensor): same number of elements.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() != b.numel() or a.numel() == 0:
        raise InvalidArgumentError(
            f"need two non-empty vectors of equal length, got {a.numel()} and "
            f"{b.numel()}")
    return float((torch.sign(a) != torch.sign(b)).double().mean())


def pairwise_sign_hamming(eps: torch.Tensor) -> torch.Tensor:
    """All pairwise normalized Hamming distances of the sign vectors of ``eps`` ``[N, D]``.

    Returns:
        torch.Tensor: float64 ``[N, N]`` (zero diagonal).
    """
    if eps.ndim < 2 or eps.shape[0] < 2:
        raise InvalidArgumentError(f"need at least two difference vectors [N, ...], got shape "
                                                       f"{list(eps.shape)}")
    signs = torch.sign(eps.reshape(eps.shape[0], -1))
    n = signs.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64)
    for i, j in itertools.combinations(range(n), 2):
        out[i, j] = out[j, i] = (signs[i] != signs[j]).double().mean()
    return out


def correspondence_delta(eps: torch.Tensor) -> DeltaStats:
    """The paper's ``Delta`` of difference vectors ``eps`` ``[N, D]`` (one row per image).

    The mean over ordered pairs ``i != j`` equals the mean over unordered pairs ``i < j``
    (``H`` is symmetric); ``std`` is over the unordered pairs.
    """
    distances = pairwise_sign_hamming(eps)
    n = distances.shape[0]
    pairs = [float(distances[i, j]) for i, j in itertools.combinations(range(n), 2)]
    return DeltaStats(float(np.mean(pairs)), float(np.std(pairs)), pairs)


def occlude_boxes(images: torch.Tensor, boxes: Sequence[Box], fill: float | torch.Tensor = 0.0
                  ) -> torch.Tensor:
    """Copies of ``images`` ``[N, C, H, W]`` with box ``i`` of image ``i`` set to ``fill``.

    Args:
        images (torch.Tensor): ``[N, C, H, W]``.
        boxes (Sequence[tuple[int, int, int, int]]): one ``(x0, y0, x1, y1)`` per image.
        fill (float | torch.Tensor): a number or a per-channel tensor ``[C]`` (0 = the mean
            pixel of a normalized model input).
    """
    if len(boxes) != images.shape[0]:
        raise InvalidArgumentError(
            f"need one box per image: {len(boxes)} boxes for {images.shape[0]} "
            "images")
    out = images.clone()
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if value.ndim == 1:
        value = value.view(-1, 1, 1)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        out[i, :, y0:y1, x0:x1] = value
    return out


def random_boxes(sizes: Sequence[tuple[int, int]], image_size: int,
                 generator: torch.Generator) -> list[Box]:
    """One box per ``(width, height)`` in ``sizes`` at a uniformly random place in the image."""
    out = []
    for width, height in sizes:
        x0 = int(torch.randint(0, image_size - width + 1, (1,), generator=generator))
        y0 = int(torch.randint(0, image_size - height + 1, (1,), generator=generator))
        out.append((x0, y0, x0 + width, y0 + height))
    return out


def shared_random_boxes(sizes: Sequence[tuple[int, int]], image_size: int,
                        generator: torch.Generator) -> list[Box]:
    """One box per ``(width, height)`` in ``sizes``, all centred on ONE random point.

    The centre is uniform over the points where every box fits inside the image, so the boxes
    sit at the same place in every image (as the part boxes of aligned faces nearly do): a
    control for how much of a low ``Delta`` comes from occluding the same *position*.
    """
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    if max(widths) > image_size or max(heights) > image_size:
        raise InvalidArgumentError(
            f"a box of {max(widths)}x{max(heights)} does not fit a {image_size} px "
            "image")
    # the centre cx must satisfy cx - w // 2 >= 0 and cx - w // 2 + w <= image_size for all
    low_x = max(w // 2 for w in widths)
    high_x = min(image_size - w + w // 2 for w in widths)
    low_y = max(h // 2 for h in heights)
    high_y = min(image_size - h + h // 2 for h in heights)
    if high_x < low_x or high_y < low_y:
        raise InvalidArgumentError("the boxes have no common centre inside the image")
    cx = int(torch.randint(low_x, high_x + 1, (1,), generator=generator))
    cy = int(torch.randint(low_y, high_y + 1, (1,), generator=generator))
    return [(cx - w // 2, cy - h // 2, cx - w // 2 + w, cy - h // 2 + h) for w, h in sizes]


def bootstrap_delta(distances: torch.Tensor, reference: torch.Tensor | None = None,
                    draws: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap interval of ``Delta`` over the images (and of a paired difference).

    Each bootstrap sample draws ``N`` image indices with replacement; ``Delta`` of the sample is
    the mean distance over its pairs of *different* images (a pair of an image with its own copy
    has no meaning: its distance is 0 by construction). Several random-box draws
    (``[D, N, N]``) are averaged per sample.

    Args:
        distances (torch.Tensor): pairwise sign distances ``[N, N]`` or ``[D, N, N]``
            (:func:`pairwise_sign_hamming`).
        reference (torch.Tensor | None): a second set (``[N, N]`` or ``[D', N, N]``, same images);
            then the interval of ``Delta(reference) - Delta(distances)`` is also given, from
            the same resampled images (paired).
        draws (int): bootstrap samples.
        seed (int): seed of the resampling.
        level (float): the interval's coverage.

    Returns:
        dict: ``{"mean", "low", "high"}`` and, with ``reference``, ``{"difference": {"mean",
        "low", "high"}}`` (reference minus this).

    Raises:
        ValueError: fewer than 3 images, or shapes that do not match.
    """
    def as_sets(d: torch.Tensor) -> torch.Tensor:
        d = d.double()
        return d.unsqueeze(0) if d.ndim == 2 else d

    sets = as_sets(distances)
    n = sets.shape[-1]
    if sets.ndim != 3 or sets.shape[-2] != n or n < 3:
        raise InvalidArgumentError(f"need distances [N, N] or [D, N, N] with N >= 3, got "
                                   f"{list(distances.shape)}")
    ref = as_sets(reference) if reference is not None else None
    if ref is not None and ref.shape[-1] != n:
        raise InvalidArgumentError(f"reference has {ref.shape[-1]} images, distances {n}")
    generator = torch.Generator().manual_seed(seed)

    def delta(d: torch.Tensor, index: torch.Tensor) -> float:
        sub = d[:, index][:, :, index]
        valid = index.view(-1, 1) != index.view(1, -1)
        return float(sub[:, valid].mean())

    everything = torch.arange(n)
    samples, differences = [], []
    for _ in range(draws):
        index = torch.randint(0, n, (n,), generator=generator)
        if bool((index == index[0]).all()):
            continue  # one image only: no pair
        samples.append(delta(sets, index))
        if ref is not None:
            differences.append(delta(ref, index) - samples[-1])
    tail = (1 - level) / 2 * 100

    def interval(values: list[float], mean: float) -> dict:
        return {"mean": mean, "low": float(np.percentile(values, tail)),
                "high": float(np.percentile(values, 100 - tail))}

    out = interval(samples, delta(sets, everything))
    if ref is not None:
        out["difference"] = interval(differences, delta(ref, everything) - out["mean"])
    return out


@torch.no_grad()
def layer_features(model, images: torch.Tensor, layers: Sequence[str | int]
                   ) -> dict[str, torch.Tensor]:
    """Outputs of several layers for a batch, flattened to ``[N, D]``; no hook is left behind.

    Args:
        model (nn.Module | LoadedModel): the network (not modified).
        images (torch.Tensor): model inputs ``[N, C, H, W]``.
        layers (Sequence[str | int]): module names or paper layer numbers.

    Returns:
        dict[str, torch.Tensor]: module name -> ``[N, D]`` copy of its output.
    """
    return capture_outputs(model, images, layers)[0]


def feature_differences(model, images: torch.Tensor, occluded: torch.Tensor,
                        layers: Sequence[str | int]) -> dict[str, torch.Tensor]:
    """``eps = features(images) - features(occluded)`` at each layer, ``[N, D]`` per layer."""
    before = layer_features(model, images, layers)
    after = layer_features(model, occluded, layers)
    return {name: before[name] - after[name] for name in before}
