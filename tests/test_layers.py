"""Layer addressing: names, paper numbers and the errors for bad ones."""

import pytest
import torch
from torch import nn

import deconv
from deconv.layers import UnknownLayerError, get_layer, layer_names, resolve_layer


@pytest.fixture(scope="module")
def zfnet():
    return deconv.load_model("zfnet")


def test_module_names_resolve_to_themselves(zfnet):
    for name in layer_names(zfnet):
        assert resolve_layer(zfnet, name) == name


def test_paper_numbers_map_to_rectified_outputs(zfnet):
    for number in range(1, 8):
        name = resolve_layer(zfnet, number)
        assert isinstance(get_layer(zfnet, number), nn.ReLU), name
        assert resolve_layer(zfnet.model, number) == name  # the nn.Module knows them too
        assert resolve_layer(zfnet, str(number)) == name


def test_unknown_name_lists_valid_names_and_suggests(zfnet):
    with pytest.raises(UnknownLayerError) as info:
        resolve_layer(zfnet, "features.99")
    message = str(info.value)
    assert "features.9" in message and "Did you mean" in message and "classifier.6" in message


def test_unknown_paper_number(zfnet):
    with pytest.raises(UnknownLayerError, match="paper layers of this model"):
        resolve_layer(zfnet, 9)


def test_plain_model_without_paper_layers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert resolve_layer(model, "1") == "1"  # a digit string that is a module name stays a name
    with pytest.raises(UnknownLayerError, match="defines no paper layer numbers"):
        resolve_layer(model, 5)


def test_bad_types():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        resolve_layer("not a model", "x")
    with pytest.raises(TypeError, match="layer must be"):
        resolve_layer(nn.Linear(2, 2), 1.5)


def test_tensor_is_module_output(zfnet):
    """The docs promise: a layer name refers to that module's output."""
    seen = {}
    handle = get_layer(zfnet, 1).register_forward_hook(lambda m, i, o: seen.update(out=o))
    try:
        x = torch.randn(1, 3, 224, 224)
        zfnet.model(x)
    finally:
        handle.remove()
    expected = torch.relu(zfnet.model.features[0](x))
    torch.testing.assert_close(seen["out"], expected)


def test_capture_outputs_copies_outputs_and_leaves_no_hooks(model_guard):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    guard = model_guard(model)
    x = torch.randn(2, 3, 8, 8)
    feats, out = deconv.layers.capture_outputs(model, x, ["0", "1"], flatten=False)
    # the conv output is copied before the inplace ReLU overwrites it
    torch.testing.assert_close(feats["0"], conv(x))
    torch.testing.assert_close(feats["1"], torch.relu(conv(x)))
    torch.testing.assert_close(out, model(x))
    assert deconv.layers.capture_outputs(model, x, ["1"])[0]["1"].shape == (2, 4 * 6 * 6)
    relu = nn.ReLU()
    reused = nn.Sequential(nn.Conv2d(3, 3, 1), relu, nn.Conv2d(3, 3, 1), relu)
    reused_guard = model_guard(reused)
    with pytest.raises(deconv.layers.ReusedModuleError, match="more than once"):
        deconv.layers.capture_outputs(reused, x, ["1"])
    guard.check()
    reused_guard.check()


def test_register_paper_layers_checks_names_and_is_weak():
    import gc
    import weakref

    from deconv.layers import _PAPER_LAYERS, register_paper_layers

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(UnknownLayerError, match="name no module"):
        register_paper_layers(net, {1: "2"})
    register_paper_layers(net, {1: "1"})
    assert resolve_layer(net, 1) == "1" and not hasattr(net, "paper_layers")
    assert net in _PAPER_LAYERS
    alive = weakref.ref(net)
    del net
    gc.collect()
    assert alive() is None  # the registry does not keep the module alive


def test_every_hook_reads_a_layer_through_one_check(model_guard):
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    model = nn.Sequential(nn.Conv2d(3, 2, 1), Pair())
    guard = model_guard(model)
    with pytest.raises(TypeError, match="'1' is tuple, not a tensor"):
        deconv.layers.capture_outputs(model, torch.zeros(1, 3, 4, 4), ["1"])
    from deconv.mining import mine_top_k

    with pytest.raises(TypeError, match="'1' is tuple, not a tensor"):
        mine_top_k(model, torch.zeros(2, 3, 4, 4), ["1"], k=1, progress=False)
    guard.check()


def test_names_the_library_hands_out_resolve_to_themselves():
    """hed-vgg16's paper layer 1 is the module "3": names taken from ``LoadedModel.layers``,
    ``layer_names`` or ``paper_layers_of`` must stay those modules when passed back in, while a
    user's plain "3" means paper layer 3 (the layer rule)."""
    import deconv
    from deconv.layers import layer_names, paper_layers_of, resolve_layer

    loaded = deconv.load_model("hed-vgg16")
    assert loaded.layers[1] == "3"
    for number, name in loaded.layers.items():
        assert resolve_layer(loaded, name) == name
        assert resolve_layer(loaded.model, paper_layers_of(loaded.model)[number]) == name
    for name in layer_names(loaded.model):
        assert resolve_layer(loaded, name) == name
    assert resolve_layer(loaded, "3") == "15"
    assert resolve_layer(loaded, "module:3") == "3"
