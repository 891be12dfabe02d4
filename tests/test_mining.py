"""Top-k mining: exact agreement with brute force, merge/save/load/resume, bad files, hooks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from integer_models import LAYERS, IntNet
from PIL import Image
from torch import nn

from deconv.mining import (
    ReusedModuleError,
    SampleCrops,
    TopKResult,
    merge_top_k,
    mine_top_k,
)
from deconv.samples import ImageFiles, collate_skip_bad


def int_images(n: int = 23, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 3, (n, 3, 8, 8), generator=g).float()
    images[5] = images[2]  # exact duplicates: equal values in two images
    images[n - 1] = images[2]
    images[9] = 0  # an all-zero image: ties at every position
    return images


def brute_force(model: nn.Module, images: torch.Tensor, layer: str, k: int, per_image: int = 1,
                id_offset: int = 0) -> list[list[tuple[float, int, int]]]:
    """All activations, one image at a time in float64, sorted by (value desc, id, position)."""
    model = copy.deepcopy(model).double()
    captured = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda m, i, o: captured.append(o.detach().clone()))
    with torch.no_grad():
        for image in images:
            model(image[None].double())
    handle.remove()
    maps = torch.cat(captured).numpy()
    maps = maps.reshape(maps.shape[0], maps.shape[1], -1)
    out = []
    for c in range(maps.shape[1]):
        candidates = []
        for i in range(maps.shape[0]):
            flat = maps[i, c]
            ranked = sorted(range(flat.size), key=lambda p, f=flat: (-f[p], p))[:per_image]
            candidates += [(float(flat[p]), i + id_offset, p) for p in ranked]
        out.append(sorted(candidates, key=lambda t: (-t[0], t[1], t[2]))[:k])
    return out


def as_lists(result: TopKResult, layer: str) -> list[list[tuple[float, int, int]]]:
    rows = []
    for c in range(result.channels(layer)):
        rows.append([(float(v), int(i), int(p)) for v, i, p in zip(
            result.values[layer][c], result.image_ids[layer][c], result.positions[layer][c])
            if i >= 0])
    return rows


@pytest.mark.parametrize("batch_size", [1, 4, 7, 64])
@pytest.mark.parametrize("k", [3, 9, 40])
def test_mining_equals_brute_force_with_ties(batch_size, k, model_guard):
    model, images = IntNet(), int_images()
    guard = model_guard(model)
    result = mine_top_k(model, images, LAYERS, k=k, batch_size=batch_size, progress=False)
    assert result.images_seen == len(images)
    for layer in LAYERS:
        expected = brute_force(model, images, layer, k)
        assert as_lists(result, layer) == expected, layer
        n_valid = min(k, len(images))
        assert (result.image_ids[layer] >= 0).sum(1).tolist() == [n_valid] * len(expected)
        if k > len(images):  # padding: empty slots last, -inf / -1
            assert torch.isinf(result.values[layer][:, n_valid:]).all()
            assert (result.positions[layer][:, n_valid:] == -1).all()
    guard.check()


def test_ties_really_occur_and_k_distinct_images():
    model, images = IntNet(), int_images()
    result = mine_top_k(model, images, ["relu2"], k=9, batch_size=5, progress=False)
    values = result.values["relu2"]
    assert bool((values[:, 1:] == values[:, :-1]).any()), "test data should produce ties"
    for row in result.image_ids["relu2"]:
        assert len(set(row.tolist())) == len(row)  # k distinct images
    assert result.map_sizes == {"relu2": (2, 2)}
    entry = result.top("relu2", 0)[0]
    assert entry.y * 2 + entry.x == int(result.positions["relu2"][0, 0])


@pytest.mark.parametrize("per_image", [2, 5])
def test_several_per_image_equals_brute_force(per_image):
    model, images = IntNet(), int_images(11)
    for batch_size in (3, 11):
        result = mine_top_k(model, images, ["conv1", "conv2"], k=12, per_image=per_image,
                            batch_size=batch_size, progress=False)
        for layer in ("conv1", "conv2"):
            assert as_lists(result, layer) == brute_force(model, images, layer, 12, per_image)


def test_float_model_matches_float64_reference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.Conv2d(8, 6, 3, 2))
    images = torch.randn(20, 3, 12, 12)
    result = mine_top_k(model, images, ["1", "2"], k=5, batch_size=6, progress=False)
    for layer in ("1", "2"):
        expected = brute_force(model, images, layer, 5)
        got = as_lists(result, layer)
        assert [[(i, p) for _, i, p in row] for row in got] == \
            [[(i, p) for _, i, p in row] for row in expected]
        np.testing.assert_allclose([[v for v, _, _ in r] for r in got],
                                   [[v for v, _, _ in r] for r in expected], rtol=1e-5)


def test_merge_of_shards_equals_one_run_and_rejects_shared_ids():
    model, images = IntNet(), int_images()
    whole = mine_top_k(model, images, LAYERS, k=6, batch_size=4, progress=False)
    a = mine_top_k(model, images[:10], LAYERS, k=6, batch_size=3, progress=False)
    b = mine_top_k(model, images[10:16], LAYERS, k=6, id_offset=10, progress=False)
    c = mine_top_k(model, images[16:], LAYERS, k=6, id_offset=16, progress=False)
    assert merge_top_k(a, b, c) == whole
    assert a.merge(b).merge(c) == whole
    assert c.merge(a).merge(b) == whole  # order does not matter
    with pytest.raises(ValueError, match="id_offset"):
        a.merge(mine_top_k(model, images[:10], LAYERS, k=6, progress=False))
    with pytest.raises(ValueError, match="same settings"):
        a.merge(mine_top_k(model, images[10:], LAYERS, k=5, id_offset=10, progress=False))


def test_save_load_round_trip_is_exact(tmp_path):
    model, images = IntNet(), int_images()
    result = mine_top_k(model, images, LAYERS, k=4, per_image=2, progress=False)
    path = result.save(tmp_path / "topk.pt")
    loaded = TopKResult.load(path)
    assert loaded == result and loaded.meta == result.meta
    raw = torch.load(path, weights_only=True)  # plain tensors + JSON: safe to load
    assert set(raw) == {"header", "tensors"}
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a deconv top-k"):
        TopKResult.load(tmp_path / "other.pt")


class FlakyImages(torch.utils.data.Dataset):
    """Raises (like a crash or Ctrl-C) at item ``fail_at`` while ``fail`` is set."""

    def __init__(self, images: torch.Tensor, fail_at: int):
        self.images, self.fail_at, self.fail = images, fail_at, True

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.fail and i == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return self.images[i]


@pytest.mark.parametrize("as_loader", [False, True])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, as_loader, model_guard):
    model, images = IntNet(), int_images()
    model.train()  # the miner evaluates in eval mode and must restore train mode
    guard = model_guard(model)
    whole = mine_top_k(model, images, LAYERS, k=5, batch_size=4, progress=False)
    flaky = FlakyImages(images, fail_at=13)
    data = torch.utils.data.DataLoader(flaky, batch_size=4) if as_loader else flaky
    state = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        mine_top_k(model, data, LAYERS, k=5, batch_size=4, checkpoint=state,
                   checkpoint_every=1, progress=False)
    guard.check()
    assert all(m.training for m in model.modules())
    partial = TopKResult.load(state)
    assert partial.meta["progress"]["complete"] is False
    assert partial.images_seen == 12
    flaky.fail = False
    resumed = mine_top_k(model, data, LAYERS, k=5, batch_size=4, checkpoint=state,
                         checkpoint_every=1, progress=False)
    assert resumed == whole
    again = mine_top_k(model, data, LAYERS, k=5, checkpoint=state, progress=False)
    assert again == whole  # a finished checkpoint is returned as is
    with pytest.raises(ValueError, match="another run"):
        mine_top_k(model, data, LAYERS, k=4, checkpoint=state, progress=False)
    guard.check()
    assert all(m.training for m in model.modules())


def _image_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b", "d"):
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return tmp_path


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def test_corrupt_file_is_skipped_and_counted(tmp_path):
    folder = _image_folder(tmp_path)
    model = IntNet()
    with pytest.warns(UserWarning, match="c.png"):
        result = mine_top_k(model, folder, ["conv2"], k=9, batch_size=2, preprocess=_to_tensor,
                            progress=False)
    assert result.skipped_ids == [2] and result.skipped == 1  # files sorted: a, b, c, d
    assert result.images_seen == 3
    assert sorted(result.image_ids["conv2"][0, :3].tolist()) == [0, 1, 3]
    loader = torch.utils.data.DataLoader(ImageFiles(folder, _to_tensor), batch_size=3,
                                         collate_fn=collate_skip_bad)
    with pytest.warns(UserWarning, match="c.png"):
        from_loader = mine_top_k(model, loader, ["conv2"], k=9, progress=False)
    assert from_loader.skipped_ids == [2] and from_loader.images_seen == 3
    assert torch.equal(from_loader.image_ids["conv2"], result.image_ids["conv2"])


def test_hooks_removed_and_model_unchanged_after_errors(model_guard):
    model = IntNet()
    guard = model_guard(model)
    with pytest.raises(ValueError, match="shape"):  # a 3-d output cannot be mined
        mine_top_k(nn.Sequential(nn.Flatten(2)), torch.zeros(2, 3, 4, 4), ["0"], progress=False)
    shared = nn.ReLU()
    reused = nn.Sequential(nn.Conv2d(3, 3, 1), shared, nn.Conv2d(3, 3, 1))
    reused.add_module("again", shared)
    reused_guard = model_guard(reused)
    with pytest.raises(ReusedModuleError):
        mine_top_k(reused, torch.zeros(2, 3, 4, 4), ["1"], progress=False)
    reused_guard.check()
    guard.check()
    with pytest.raises(ValueError, match="positive"):
        mine_top_k(model, int_images(), ["conv1"], k=0)


def test_stop_early_gives_the_same_result():
    model, images = IntNet(), int_images()
    fast = mine_top_k(model, images, ["conv1", "pool"], k=4, progress=False)
    full = mine_top_k(model, images, ["conv1", "pool"], k=4, stop_early=False, progress=False)
    assert fast == full


def test_sample_crops_are_documented_and_deterministic():
    crops = SampleCrops(_to_tensor, names=["coffee"], scales=(1.0, 0.5), size=32)
    # coffee is 400 x 600: scale 1 -> side 400, x in {0, 200}; scale 0.5 -> 200, step 100
    assert len(crops) == 2 + 3 * 5
    assert crops.describe(0) == {"photo": "coffee", "scale": 1.0, "box_ltrb": [0, 0, 400, 400]}
    assert crops.describe(len(crops) - 1)["box_ltrb"] == [400, 200, 600, 400]
    assert crops[3].shape == (3, 32, 32)


# --------------------------------------------------------------------------- Fig. 2 crops


def square_images() -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Black images, each with one bright 3 x 3 square at a random place."""
    g = torch.Generator().manual_seed(3)
    images, corners = torch.zeros(6, 3, 32, 32), []
    for i in range(6):
        top, left = torch.randint(0, 29, (2,), generator=g).tolist()
        images[i, :, top:top + 3, left:left + 3] = 1.0 + 0.1 * i
        corners.append((top, left))
    return images, corners


def positive_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(3, 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(2, 2, 3), nn.ReLU())
    torch.manual_seed(0)
    with torch.no_grad():
        for conv in (net[0], net[3]):
            conv.weight.uniform_(0.0, 1.0)
            conv.bias.fill_(-0.5)
    return net


def test_patch_and_projection_crops_line_up_on_a_bright_square(tmp_path):
    from deconv.deconvnet.explicit import Deconvnet
    from deconv.plots.topk_grids import crop, render_top_k_figure, top_k_panels, unit_window
    from deconv.receptive_field import receptive_field

    net, (images, corners) = positive_net(), square_images()
    result = mine_top_k(net, images, ["4"], k=3, progress=False)
    field = receptive_field(net, "4", 32)
    assert field.size == (10, 10) and field.jump == (2, 2)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for entry in result.top("4", 0):
        top, left = corners[entry.image_id]
        window = unit_window(field, entry.y, entry.x)
        wt, wl, wb, wr = window
        assert wt <= top and top + 3 <= wb and wl <= left and left + 3 <= wr  # square inside
        projection = Deconvnet(net).project(images[[entry.image_id]], "4",
                                            torch.tensor([[0, 0, entry.y, entry.x]]))[0]
        energy = projection.abs().sum(0)
        assert float(crop(energy, window).sum()) == pytest.approx(float(energy.sum()))
        cy, cx = float((energy * ys).sum() / energy.sum()), float((energy * xs).sum() /
                                                                  energy.sum())
        assert top - 1 <= cy <= top + 3 and left - 1 <= cx <= left + 3  # centred on the square
    panels = top_k_panels(net, result, lambda i: images[i], "4", [0, 1], lambda x: x, tile=20)
    assert [p.channel for p in panels] == [0, 1]
    assert panels[0].patches.shape == panels[0].projections.shape == (3, 3, 20, 20)
    assert panels[0].image_ids == [e.image_id for e in result.top("4", 0)]
    png = render_top_k_figure(panels, tmp_path / "grid.png", title="layer 4")
    assert png.stat().st_size > 0


def test_unit_window_stays_inside_the_image():
    from deconv.plots.topk_grids import unit_window
    from deconv.receptive_field import receptive_field

    net = positive_net()
    field = receptive_field(net, "4", 32)
    assert unit_window(field, 0, 0) == (0, 0, 10, 10)  # field (-2..8) shifted inside
    assert unit_window(field, 13, 5) == (22, 8, 32, 18)  # rows 24..34 -> 22..32
    big = receptive_field(net, "4", 12)  # field 10 of a 12 px image; output 4 x 4
    assert unit_window(big, 3, 3) == (2, 2, 12, 12)


def test_topk_command_on_a_folder(tmp_path):
    import argparse
    import json

    from deconv.cli import topk_command

    folder = _image_folder(tmp_path / "images")
    parser = argparse.ArgumentParser()
    topk_command.register(parser.add_subparsers())
    args = parser.parse_args(["topk", "--model", "hed-vgg16", "--data", str(folder), "--layer",
                              "1", "--out", str(tmp_path / "out"), "--k", "2", "--count", "2",
                              "--size", "16"])
    with pytest.warns(UserWarning, match="c.png"):
        assert args.func(args) == 0
    record = json.loads((tmp_path / "out" / "topk.json").read_text())
    assert record["images"] == 3 and record["skipped_ids"] == [2]
    layer = record["layers"]["3"]
    assert layer["paper_layer"] == 1 and len(layer["channels"]) == 2
    assert (tmp_path / "out" / "layer1_3.png").is_file()
    assert TopKResult.load(tmp_path / "out" / "topk.pt").k == 2


def test_layers_after_the_taps_may_not_fit_the_input_size(model_guard):
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    guard = model_guard(net)
    small = torch.randn(5, 3, 10, 10)  # the Linear layer expects 8 x 8 inputs
    result = mine_top_k(net, small, ["1"], k=2, progress=False)
    assert result.map_sizes["1"] == (8, 8) and result.images_seen == 5
    with pytest.raises(RuntimeError):
        mine_top_k(net, small, ["1"], k=2, stop_early=False, progress=False)
    guard.check()
