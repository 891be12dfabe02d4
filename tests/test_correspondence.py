"""Correspondence analysis: Delta on hand-made sign vectors, landmark boxes, feature taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.correspondence import (
    PARTS,
    correspondence_delta,
    face_images,
    feature_differences,
    layer_features,
    load_face_landmarks,
    occlude_boxes,
    pairwise_sign_hamming,
    random_boxes,
    sign_hamming,
    transform_box,
)


def test_sign_hamming_hand_cases():
    a = torch.tensor([1.0, -2.0, 0.0, 3.0])
    assert sign_hamming(a, a * 5) == 0.0
    assert sign_hamming(a, -a) == 0.75  # the zero keeps its sign
    assert sign_hamming(a, torch.tensor([2.0, 1.0, 0.0, -1.0])) == 0.5
    assert sign_hamming(torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 1.0])) == 0.5
    with pytest.raises(ValueError, match="equal length"):
        sign_hamming(a, a[:3])


def test_delta_of_hand_made_vectors():
    eps = torch.tensor([[1.0, 1.0, 1.0, 1.0],
                        [1.0, 1.0, 1.0, -1.0],
                        [-1.0, -1.0, 1.0, 1.0]])
    # pairs: (0,1) 1/4, (0,2) 2/4, (1,2) 3/4
    stats = correspondence_delta(eps)
    assert stats.pairs == [0.25, 0.5, 0.75]
    assert stats.mean == pytest.approx(0.5)
    assert stats.std == pytest.approx((2 * 0.25 ** 2 / 3) ** 0.5)
    distances = pairwise_sign_hamming(eps)
    assert torch.equal(distances, distances.T) and distances.diagonal().abs().sum() == 0
    # the mean over ordered pairs i != j equals the mean over unordered pairs
    n = eps.shape[0]
    assert distances.sum() / (n * (n - 1)) == pytest.approx(stats.mean)
    assert correspondence_delta(eps.repeat(1, 3) * 7).mean == pytest.approx(0.5)  # scale-free
    with pytest.raises(ValueError, match="at least two"):
        correspondence_delta(eps[:1])


def test_identical_changes_give_zero_delta():
    eps = torch.randn(1, 50).repeat(5, 1) * torch.arange(1.0, 6.0).view(5, 1)
    assert correspondence_delta(eps).mean == 0.0


def test_transform_box_crop_scale_mirror():
    assert transform_box((20, 30, 40, 50), (10, 10, 110, 110), 200, False) == (20, 40, 60, 80)
    assert transform_box((20, 30, 40, 50), (10, 10, 110, 110), 200, True) == (140, 40, 180, 80)
    with pytest.raises(ValueError, match="outside"):
        transform_box((0, 0, 5, 5), (10, 10, 110, 110), 200, False)


def test_face_images_and_landmarks():
    data = load_face_landmarks()
    assert "note" in data and set(data["images"]) >= {"astronaut", "grace_hopper", "chelsea"}
    faces = face_images(64)
    assert len(faces) == 5
    for face in faces:
        assert face.pixels.shape == (3, 64, 64) and 0 <= face.pixels.min() <= face.pixels.max() <= 1
        assert set(face.boxes) == set(PARTS)
        right, left, nose = (face.boxes[p] for p in PARTS)
        assert right[2] <= left[0] + 2  # the subject's right eye is on the image's left
        assert nose[1] >= min(right[1], left[1])  # the nose is below the eyes' tops
        for x0, y0, x1, y1 in face.boxes.values():
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    mirror = {f.name: f for f in faces}["astronaut_mirror"]
    assert "mirrored" in mirror.description
    with pytest.raises(KeyError, match="available"):
        face_images(64, names=["dog"])


def test_occlude_boxes_and_random_boxes():
    images = torch.ones(2, 3, 8, 8)
    out = occlude_boxes(images, [(0, 0, 2, 3), (4, 4, 8, 8)], fill=torch.tensor([5.0, 6, 7]))
    assert out[0, :, :3, :2].flatten(1).unique(dim=1).tolist() == [[5.0], [6.0], [7.0]]
    assert out[0, :, 3:, :].eq(1).all() and out[1, 1, 4:, 4:].eq(6).all()
    assert images.eq(1).all()  # input untouched
    with pytest.raises(ValueError, match="one box per image"):
        occlude_boxes(images, [(0, 0, 1, 1)])
    boxes = random_boxes([(3, 2)] * 50, 8, torch.Generator().manual_seed(0))
    assert all(x1 - x0 == 3 and y1 - y0 == 2 and x1 <= 8 and y1 <= 8 for x0, y0, x1, y1 in boxes)
    assert len(set(boxes)) > 5


def test_feature_differences_and_no_hooks(model_guard):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3),
                          nn.ReLU(inplace=True)).eval()
    guard = model_guard(model)
    images = torch.randn(3, 3, 9, 9)
    occluded = occlude_boxes(images, [(0, 0, 3, 3)] * 3)
    eps = feature_differences(model, images, occluded, ["0", "3"])
    with torch.no_grad():
        expected = (model(images) - model(occluded)).flatten(1)
        first = (model[0](images) - model[0](occluded)).flatten(1)
    torch.testing.assert_close(eps["3"], expected)
    torch.testing.assert_close(eps["0"], first)  # captured before the inplace ReLU ran
    guard.check()
    with pytest.raises(ValueError, match="unknown layer"):
        layer_features(model, images, ["conv9"])


def test_shared_random_boxes_share_a_centre_and_fit():
    import torch

    from deconv.correspondence import shared_random_boxes

    g = torch.Generator().manual_seed(0)
    sizes = [(10, 6), (13, 9), (4, 4)]
    for _ in range(50):
        boxes = shared_random_boxes(sizes, 32, g)
        centres = {(b[0] + (b[2] - b[0]) // 2, b[1] + (b[3] - b[1]) // 2) for b in boxes}
        assert len(centres) == 1
        for (w, h), (x0, y0, x1, y1) in zip(sizes, boxes):
            assert (x1 - x0, y1 - y0) == (w, h) and x0 >= 0 and y0 >= 0 and x1 <= 32 and y1 <= 32
    with pytest.raises(ValueError, match="does not fit"):
        shared_random_boxes([(40, 2)], 32, g)


def test_bootstrap_delta_brute_force_and_paired_difference():
    import itertools

    import torch

    from deconv.correspondence import bootstrap_delta

    g = torch.Generator().manual_seed(3)
    a = torch.rand(4, 4, generator=g, dtype=torch.float64)
    a = (a + a.T) / 2
    a.fill_diagonal_(0)
    out = bootstrap_delta(a, draws=400, seed=1)
    pairs = [float(a[i, j]) for i, j in itertools.combinations(range(4), 2)]
    assert out["mean"] == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)
    assert min(pairs) - 1e-12 <= out["low"] <= out["mean"] <= out["high"] <= max(pairs) + 1e-12
    # brute force of one resample: indices (0, 0, 1, 2) -> pairs of different images only
    index = torch.tensor([0, 0, 1, 2])
    expected = [float(a[index[i], index[j]]) for i in range(4) for j in range(4)
                if index[i] != index[j]]
    sub = a[index][:, index][index.view(-1, 1) != index.view(1, -1)]
    assert float(sub.mean()) == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    shifted = bootstrap_delta(a, reference=torch.stack([a + 0.1, a + 0.3]), draws=200)
    assert shifted["difference"]["low"] == pytest.approx(0.2, abs=1e-9)
    assert shifted["difference"]["high"] == pytest.approx(0.2, abs=1e-9)
    with pytest.raises(ValueError, match="N >= 3"):
        bootstrap_delta(torch.zeros(2, 2))
