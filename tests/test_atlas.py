"""The atlas build: numbers against independent references, resume, fingerprint refusal.

References: direct forward passes over every image (maxima, dead maps via
:func:`deconv.dead_feature_maps`), entropies by hand and by numpy, filter-weight norms by
numpy; a build interrupted midway and continued against one built in a single run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from atlas_models import DEAD_CHANNEL, build_tiny, tiny_data, tiny_model
from PIL import Image

from deconv import dead_feature_maps
from deconv.atlas import AtlasMismatchError, label_entropy


def _layer(manifest: dict, name: str) -> dict:
    return next(layer for layer in manifest["layers"] if layer["name"] == name)


def test_label_entropy_hand_cases():
    assert label_entropy([2, 2, 2]) == 0.0
    assert label_entropy([0, 1]) == pytest.approx(1.0)
    assert label_entropy([0, 1, 2, 3]) == pytest.approx(2.0)
    assert label_entropy([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75)
                                                          + 0.25 * math.log2(0.25)))
    assert math.isnan(label_entropy([]))


def test_numbers_match_independent_references(tmp_path):
    model, data = tiny_model(), tiny_data()
    build = build_tiny(tmp_path / "atlas")
    manifest = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert manifest == json.loads(json.dumps(build.manifest))
    images, labels = data.tensors
    with torch.no_grad():
        relu1 = model[:2](images)
        relu2 = model[:5](images)
    for name, act in (("1", relu1), ("4", relu2)):
        layer = _layer(manifest, name)
        assert layer["channels"] == act.shape[1] and layer["output_shape"] == list(act.shape[1:])
        maxima = act.flatten(2).amax(2)  # [N, C]
        for record in layer["feature_maps"]:
            c = record["channel"]
            assert record["max_activation"] == pytest.approx(float(maxima[:, c].max()), abs=1e-5)
            assert record["mean_max"] == pytest.approx(float(maxima[:, c].mean()), abs=1e-5)
            dead = float((act[:, c].flatten(1).abs().amax(1) == 0).float().mean())
            assert record["dead_fraction"] == pytest.approx(dead)
            assert sum(record["histogram"]["counts"]) == len(images)
            order = torch.argsort(maxima[:, c], descending=True, stable=True)[:4]
            if maxima[order[-1], c] > 0:  # ties at zero are broken by id: same rule
                assert record["top_image_ids"] == order.tolist()
            top = labels[record["top_image_ids"]].numpy()
            p = np.bincount(top) / len(top)
            p = p[p > 0]
            assert record["label_entropy"] == pytest.approx(float(-(p * np.log2(p)).sum()),
                                                            abs=1e-6)
            assert record["label_counts"] == {
                "abcd"[v]: int((top == v).sum()) for v in sorted(set(top.tolist()))}
    stats = dead_feature_maps(model, images, ["4"], progress=False)["4"]
    layer = _layer(manifest, "4")
    assert DEAD_CHANNEL in stats.dead_ids
    assert [r["channel"] for r in layer["feature_maps"] if r["dead_fraction"] == 1.0] \
        == stats.dead_ids
    assert layer["dead_channels"] == stats.dead


def test_model_card_and_links(tmp_path):
    model = tiny_model()
    manifest = build_tiny(tmp_path / "atlas", optima=0).manifest
    first, second = manifest["layers"]
    assert (first["type"], first["receptive_field"], first["jump"]) == ("ReLU", [5, 5], [1, 1])
    assert (second["receptive_field"], second["jump"]) == ([10, 10], [2, 2])
    assert first["parameters"] == 3 * 6 * 25 + 6
    assert second["parameters"] == 6 * 8 * 9 + 8
    assert second["cumulative_parameters"] == first["parameters"] + second["parameters"]
    strength = model[3].weight.detach().abs().sum((2, 3)).numpy()  # [8, 6]
    for c, record in enumerate(second["feature_maps"]):
        expected = np.argsort(-strength[c], kind="stable")[:5].tolist()
        assert [j for j, _ in record["previous_links"]] == expected
    for c, record in enumerate(first["feature_maps"]):
        expected = np.argsort(-strength[:, c], kind="stable")[:5].tolist()
        assert [j for j, _ in record["next_links"]] == expected
    assert all("filter" in r["images"] for r in first["feature_maps"])
    assert not any("filter" in r["images"] for r in second["feature_maps"])
    assert all(r["optimum"] is None for r in first["feature_maps"])


def test_links_through_a_chain_of_convolutions(tmp_path):
    """VGG-style blocks: two convs between the atlas layers; the link strength of in -> out is
    the sum over every path of the |w| products (numpy, path by path), relative to the max."""
    from torch import nn

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(5, 6, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 12 * 12, 4)).eval()
    from deconv.atlas import build_atlas

    manifest = build_atlas(model, tiny_data(), ["1", "6"], tmp_path / "atlas", k=4, optima=0,
                           tile=24, progress=False).manifest
    first, second = manifest["layers"]
    a = model[3].weight.detach().abs().sum((2, 3)).double().numpy()  # [5, 4]
    b = model[5].weight.detach().abs().sum((2, 3)).double().numpy()  # [6, 5]
    paths = np.zeros((6, 4))
    for out in range(6):
        for mid in range(5):
            for inp in range(4):
                paths[out, inp] += b[out, mid] * a[mid, inp]
    paths /= paths.max()
    for c, record in enumerate(second["feature_maps"]):
        expected = np.argsort(-paths[c], kind="stable")[:5].tolist()
        assert [j for j, _ in record["previous_links"]] == expected
        assert [w for _, w in record["previous_links"]] == pytest.approx(
            paths[c][expected].tolist(), abs=1e-6)
    for c, record in enumerate(first["feature_maps"]):
        assert [j for j, _ in record["next_links"]] == \
            np.argsort(-paths[:, c], kind="stable")[:5].tolist()
    page = (tmp_path / "atlas" / second["feature_maps"][0]["page"]).read_text()
    assert "through 2 convolutions" in page


def test_every_file_listed_with_size_and_hash(tmp_path):
    import hashlib

    out = tmp_path / "atlas"
    manifest = build_tiny(out).manifest
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and not p.relative_to(out).as_posix().startswith("_work/")}
    assert on_disk - {"atlas.json"} == set(listed)
    for path, entry in listed.items():
        data = (out / path).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    for layer in manifest["layers"]:
        for record in layer["feature_maps"]:
            assert record["page"] in listed
            assert all(path in listed for path in record["images"].values())
            if record["optimum"]:
                assert record["optimum"]["file"] in listed
                assert record["optimum"]["seconds"] > 0


def _comparable(value):
    """The manifest without timings (which differ between runs)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if k not in ("timings", "seconds", "files", "site_bytes")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_interrupted_build_continues_to_the_same_atlas(tmp_path, monkeypatch):
    from deconv.atlas import images, stages

    whole = build_tiny(tmp_path / "whole").manifest
    calls = {"n": 0}
    real = images.save_jpeg

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:  # midway through the projections of layer "4"
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stages.pictures, "save_jpeg", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_tiny(tmp_path / "resumed")
    monkeypatch.setattr(stages.pictures, "save_jpeg", real)
    work = tmp_path / "resumed" / "_work"
    done = list(work.glob("*/projections/*.json"))
    assert 0 < len(done) < 6 + 8 and not list(work.glob("*/optima/*.json"))
    assert not list((tmp_path / "resumed").rglob("*.tmp"))
    build = build_tiny(tmp_path / "resumed")
    assert build.reused
    resumed = build.manifest
    assert _comparable(resumed) == _comparable(whole)
    files_whole = {f["path"]: f["sha256"] for f in whole["files"]}
    files_resumed = {f["path"]: f["sha256"] for f in resumed["files"]}
    assert files_whole.keys() == files_resumed.keys()
    for path, sha in files_whole.items():
        if path.endswith(".jpg"):  # projections batched differently: equal up to float noise
            a = np.asarray(Image.open(tmp_path / "whole" / path), dtype=int)
            b = np.asarray(Image.open(tmp_path / "resumed" / path), dtype=int)
            assert np.abs(a - b).max() <= 2, path
        elif path.startswith("layers/") or path.endswith((".css", ".js")):
            assert files_resumed[path] == sha, path


def test_projection_groups_and_batches_do_not_change_the_pictures(tmp_path, monkeypatch):
    """Units sorted by image in groups: one channel per group and one unit per engine call
    give the same pictures as whole-layer groups (float noise only)."""
    from deconv.atlas import stages

    whole = build_tiny(tmp_path / "whole", optima=0).manifest
    monkeypatch.setattr(stages, "GROUP_UNITS", 1)  # every channel its own group
    real = stages._project_group
    monkeypatch.setattr(stages, "_project_group", lambda *a: real(*a[:8], 1, a[9]))
    small = build_tiny(tmp_path / "small", optima=0).manifest
    assert _comparable(small) == _comparable(whole)
    jpegs = [f["path"] for f in whole["files"] if f["path"].endswith(".jpg")]
    assert len(jpegs) > 20
    for path in jpegs:
        a = np.asarray(Image.open(tmp_path / "whole" / path), dtype=int)
        b = np.asarray(Image.open(tmp_path / "small" / path), dtype=int)
        assert np.abs(a - b).max() <= 2, path


def test_patch_strips_show_the_top_units_in_rank_order(tmp_path):
    """Each tile of a channel's patch strip is the crop of its rank's image at its position
    (the units go down sorted by image; the strip must come back in rank order)."""
    from deconv.atlas.build import _min_max
    from deconv.atlas.images import fit
    from deconv.plots.topk_grids import crop, unit_window
    from deconv.receptive_field import receptive_field

    out = tmp_path / "atlas"
    build_tiny(out, optima=0)
    images = tiny_data().tensors[0]
    field = receptive_field(tiny_model(), "4", (24, 24))
    stats = json.loads(next((out / "_work").glob("*4*/stats.json")).read_text())
    checked = 0
    for record in stats["channels"]:
        if record["channel"] == DEAD_CHANNEL:
            continue
        strip = np.asarray(Image.open(out / "img" / "4" / f"c{record['channel']:04d}-patches.jpg"),
                           dtype=float) / 255
        tiles = [strip[:, i * 26:i * 26 + 24] for i in range(len(record["top_image_ids"]))]
        want = [fit(crop(_min_max(images[i]), unit_window(field, y, x)), 24).permute(1, 2, 0)
                .numpy() for i, (y, x) in zip(record["top_image_ids"], record["top_positions"])]
        errors = np.array([[np.abs(t - w).mean() for w in want] for t in tiles])
        assert (errors.argmin(axis=1) == np.arange(len(tiles))).all(), errors
        checked += 1
    assert checked >= 5


def test_crops_of_one_photo_show_distinct_regions(tmp_path):
    """With ``source_boxes`` (crops of larger photos) a channel's top-k never holds the same
    region twice: here every image has an identical twin (the same photo, the same place)."""
    from torch.utils.data import TensorDataset

    from deconv.atlas import AtlasData

    images, labels = tiny_data(n=20).tensors
    twins = TensorDataset(images.repeat_interleave(2, dim=0), labels.repeat_interleave(2))

    def same_place(ids, boxes):  # crops 2j and 2j+1 are one region of photo j
        return torch.div(ids, 2, rounding_mode="floor"), boxes.double()

    def data(boxes):
        return AtlasData(twins, twins.tensors[1], ["a", "b", "c", "d"], {"kind": "twins"},
                         f"twins-{boxes is not None}", None, boxes)

    plain = build_tiny(tmp_path / "plain", data=data(None), optima=0).manifest
    distinct = build_tiny(tmp_path / "distinct", data=data(same_place), optima=0).manifest
    assert distinct["settings"]["distinct"]["max_overlap"] == 0.5
    assert plain["settings"]["distinct"] is None
    model = tiny_model()
    with torch.no_grad():
        maps = {"1": model[:2](images), "4": model[:5](images)}
    pairs_plain = pairs_distinct = checked = 0
    for before, after in zip(plain["layers"], distinct["layers"]):
        for a, b in zip(before["feature_maps"], after["feature_maps"]):
            if a["dead_fraction"] == 1.0:
                continue
            photos = [i // 2 for i in b["top_image_ids"]]
            pairs_distinct += len(photos) - len(set(photos))
            pairs_plain += len(a["top_image_ids"]) - len({i // 2 for i in a["top_image_ids"]})
            # independent reference: the 4 best photos by their spatial maximum, each shown
            # by its first crop (twins tie; ties go to the lower id)
            maxima = maps[before["name"]][:, a["channel"]].flatten(1).amax(1)
            order = torch.argsort(-maxima, stable=True)[:4]
            if maxima[order[-1]] > 0:
                assert b["top_image_ids"] == (2 * order).tolist()
                checked += 1
    assert pairs_distinct == 0 and pairs_plain > 10 and checked >= 5


def test_more_layers_and_optima_reuse_earlier_work(tmp_path):
    from deconv.atlas import build_atlas

    out = tmp_path / "atlas"
    first = build_tiny(out, optima=2).manifest
    assert [layer["optima_done"] for layer in first["layers"]] == [2, 2]
    stamp = (out / "img" / "1" / "c0000-patches.jpg").stat().st_mtime_ns
    second = build_tiny(out, optima=3).manifest
    assert [layer["optima_done"] for layer in second["layers"]] == [5, 5]
    assert (out / "img" / "1" / "c0000-patches.jpg").stat().st_mtime_ns == stamp
    page = (out / "layers" / "1.html").read_text()
    assert "5 of 6 channels so far" in page and "not yet" in page
    third = build_atlas(tiny_model(), tiny_data(), ["1", "4", "7"], out, k=4, optima=0,
                        optima_steps=2, tile=24, batch_size=16, progress=False,
                        class_names=["a", "b", "c", "d"])
    assert [layer["name"] for layer in third.manifest["layers"]] == ["1", "4", "7"]
    assert (out / "img" / "1" / "c0000-patches.jpg").stat().st_mtime_ns == stamp


def test_without_guided_projections(tmp_path):
    out = tmp_path / "atlas"
    manifest = build_tiny(out, guided=False, optima=0).manifest
    for layer in manifest["layers"]:
        for record in layer["feature_maps"]:
            assert {"patches", "deconv", "thumb"} <= set(record["images"])
            assert "guided" not in record["images"]
    assert "guided" not in (out / "channels" / "1" / "c0000.html").read_text()
    with pytest.raises(AtlasMismatchError, match="settings"):
        build_tiny(out, optima=0)


def test_changed_model_or_data_is_refused_then_rebuilt(tmp_path):
    out = tmp_path / "atlas"
    build_tiny(out, optima=0)
    other = tiny_model()
    with torch.no_grad():
        other[0].weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(AtlasMismatchError, match="model"):
        build_tiny(out, model=other, optima=0)
    with pytest.raises(AtlasMismatchError, match="data"):
        build_tiny(out, data=tiny_data(seed=1), optima=0)
    with pytest.raises(AtlasMismatchError, match="settings"):
        build_tiny(out, k=3, optima=0)
    rebuilt = build_tiny(out, model=other, optima=0, rebuild=True)
    assert not rebuilt.reused
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AtlasMismatchError, match="not an atlas"):
        build_tiny(tmp_path / "mine", optima=0, rebuild=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_model_is_unchanged_and_no_hooks_left(tmp_path):
    model = tiny_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build_tiny(tmp_path / "atlas", model=model)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                   for m in model.modules())


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="k must be"):
        build_tiny(tmp_path / "a", k=0)
    with pytest.raises(ValueError, match="optima must be"):
        build_tiny(tmp_path / "a", optima=-1)
    with pytest.raises(ValueError, match="needs a zoo model"):
        build_tiny(tmp_path / "a", data="samples")
    with pytest.raises(ValueError, match="Fashion-MNIST split"):
        build_tiny(tmp_path / "a", data="fashion-mnist:validation")
    with pytest.raises(FileNotFoundError, match="not 'samples'"):
        build_tiny(tmp_path / "a", data=str(tmp_path / "missing"))


def test_cli_builds_a_zoo_model_atlas_and_refuses_other_data(tmp_path, capsys):
    from deconv.cli import main
    from deconv.datasets import FashionMNISTNotFoundError, load_fashion_mnist

    try:
        load_fashion_mnist("test", limit=1)
    except FashionMNISTNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed ({exc})")
    out = tmp_path / "atlas"
    argv = ["atlas", "--model", "zfnet-fashion", "--data", "fashion-mnist:test", "--layers",
            "1", "--limit", "40", "--optima", "2", "--optima-steps", "2", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "atlas of 32 channels in 1 layer(s), 2 with optima" in printed
    manifest = json.loads((out / "atlas.json").read_text())
    layer = manifest["layers"][0]
    assert (layer["name"], layer["paper"], layer["images"]) == ("features.1", 1, 40)
    assert manifest["class_names"][0] == "T-shirt/top"
    assert all("label_entropy" in r for r in layer["feature_maps"])
    argv[argv.index("40")] = "50"
    assert main(argv) == 2
    assert "different data" in capsys.readouterr().err
