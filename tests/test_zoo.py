"""Model zoo: registry, ZFNet sizes, torchvision weights offline, checkpoints."""

import time

import pytest
import torch

import deconv
from deconv.layers import paper_layers_of
from deconv.zoo import WeightsUnavailableError, ZFNet, ZFNetConfig, model_info
from deconv.zoo import torchvision_models as tvm


def test_registry_lists_and_rejects():
    names = deconv.list_models()
    assert {"zfnet", "alexnet", "vgg16"} <= set(names)
    with pytest.raises(KeyError, match="choose one of"):
        deconv.load_model("resnet9000")


def test_zfnet_sizes_match_the_paper():
    model = ZFNet()
    x = torch.zeros(1, 3, 224, 224)
    sizes = []
    for module in model.features:
        x = module(x)
        sizes.append(x.shape[-1])
    # conv1 110, pool1 55, conv2 26, pool2 13, conv3-5 13, pool5 6 (REFERENCE.md, Fig. 3)
    assert sizes == [110, 110, 55, 55, 26, 26, 13, 13, 13, 13, 13, 13, 13, 13, 6]
    assert [model.features[i].out_channels for i in (0, 4, 8, 10, 12)] == [96, 256, 384, 384, 256]
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


def test_zfnet_loaded_is_eval_seeded_and_named():
    a, b = deconv.load_model("zfnet"), deconv.load_model("zfnet")
    assert not a.model.training
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert a.layers[5] == "features.13" and paper_layers_of(a.model) == a.layers
    assert "random init" in a.source and len(a.categories) == 1000


def test_load_model_sets_no_attribute_on_the_module():
    loaded = deconv.load_model("zfnet")
    assert "paper_layers" not in vars(loaded.model)
    assert deconv.resolve_layer(loaded.model, 5) == deconv.resolve_layer(loaded, 5) == "features.13"
    with pytest.raises(deconv.UnknownLayerError, match="no paper layer numbers"):
        deconv.resolve_layer(ZFNet(), 5)  # another module: the map is per module


def test_zfnet_checkpoint_round_trip(tmp_path):
    model = ZFNet(ZFNetConfig(num_classes=10))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    loaded = deconv.load_model("zfnet", weights=str(path), config=ZFNetConfig(num_classes=10))
    for p, q in zip(model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(p, q)
    assert loaded.categories is None and "checkpoint" in loaded.source


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save(ZFNet(ZFNetConfig(num_classes=10)).state_dict(), path)
    with pytest.raises(RuntimeError, match="size mismatch"):
        deconv.load_model("zfnet", weights=str(path))


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_torchvision_offline_uncached_fails_fast_and_clearly(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("DECONV_OFFLINE", "1")
    assert not model_info(name).available()
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        deconv.load_model(name)
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert str(tmp_path) in message and "download.pytorch.org" in message
    assert "hed-vgg16" in message  # points to an offline alternative


def test_torchvision_unreachable_host_fails_within_timeout(tmp_path, monkeypatch):
    """Without DECONV_OFFLINE the reachability check must still return quickly."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("DECONV_OFFLINE", raising=False)
    monkeypatch.setattr(tvm, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        deconv.load_model("alexnet")


def test_torchvision_cached_weights_are_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = deconv.load_model("alexnet", weights=None)
    path = tvm.cached_weights_path("alexnet")
    path.parent.mkdir(parents=True)
    torch.save(reference.model.state_dict(), path)
    assert model_info("alexnet").available()
    loaded = deconv.load_model("alexnet")
    assert torch.equal(loaded.model.features[0].weight, reference.model.features[0].weight)
    assert loaded.layers[5] == "features.11"


def test_preprocess_and_deprocess_invert():
    loaded = deconv.load_model("zfnet")
    pixels = torch.rand(3, 224, 224)
    torch.testing.assert_close(loaded.deprocess(loaded.normalize(pixels)), pixels)
    from deconv.samples import sample_images

    image = sample_images(["chelsea"])[0].image
    x = loaded.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert loaded.preprocess(image, size=96, crop=False).shape == (3, 96, 96)


def test_zfnet_fashion_loads_packaged_weights_and_classifies():
    """zfnet-fashion ships its checkpoint as package data and is the trained network."""
    import deconv
    from deconv.datasets import load_fashion_mnist
    from deconv.zoo.zfnet import fashion_weights_path

    loaded = deconv.load_model("zfnet-fashion")
    assert loaded.name == "zfnet-fashion"
    assert loaded.categories is not None and len(loaded.categories) == 10
    assert loaded.input_size == 64
    path = fashion_weights_path()
    assert path.startswith(str(__import__("pathlib").Path(deconv.__file__).parent))
    ref = deconv.load_model("zfnet", weights=path, config="fashion")
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(),
                                 ref.model.state_dict().items()):
        assert torch.equal(a, b), name
    random = deconv.load_model("zfnet-fashion", weights=None)
    w_trained = loaded.model.state_dict()["features.0.weight"]
    assert not torch.equal(random.model.state_dict()["features.0.weight"], w_trained)
    try:
        data = load_fashion_mnist("test")
    except Exception as exc:  # Debian dataset missing: the weights check above still ran
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    from deconv.datasets import fashion_batch_transform

    images, labels = data.tensors[0][:256], data.tensors[1][:256]
    with torch.no_grad():
        pred = loaded.model(fashion_batch_transform()(images)).argmax(1)
    assert (pred == labels).float().mean() > 0.85


def test_models_listing_says_zfnet_is_random_init():
    from deconv.zoo import model_info

    assert "random init" in model_info("zfnet").source.lower()
    assert "trained" in model_info("zfnet-fashion").source
