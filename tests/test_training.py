"""Training: feature-scale clipping, the loop (loss goes down, resume == uninterrupted), data."""

import gzip
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import deconv
from deconv.datasets import (
    FASHION_MNIST_CLASSES,
    FashionMNISTNotFoundError,
    fashion_batch_transform,
    load_fashion_mnist,
    read_idx,
)
from deconv.training import (
    PAPER_CHECKPOINT_EPOCHS,
    ResumeMismatchError,
    TrainSettings,
    evaluate,
    feature_scale_clip,
    filter_rms,
    learning_rate,
    save_weights,
    scaled_checkpoint_epochs,
    train,
)
from deconv.zoo import ZFNET_CONFIGS, ZFNet, ZFNetConfig

TINY = ZFNetConfig(input_size=32, num_classes=3, widths=(8, 16, 16, 16, 16), conv2=(5, 2, 2), fc=32,
                   init="kaiming", classes="none")


def tiny_model(seed: int = 0) -> ZFNet:
    torch.manual_seed(seed)
    return ZFNet(TINY)


def toy_data(n: int = 96, seed: int = 0) -> TensorDataset:
    """Three classes of noisy 32 px images: class c has a bright square in colour channel c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.5
    for c in range(3):
        x[y == c, c, 8:24, 8:24] += 1.5
    return TensorDataset(x, y)


def float64_rms(weight: torch.Tensor) -> torch.Tensor:
    return torch.stack([w.double().pow(2).mean().sqrt() for w in weight])


# ---------------------------------------------------------------- clipping


def test_clip_hand_computed_and_untouched_filters():
    conv = nn.Conv2d(1, 3, 2, bias=True)
    with torch.no_grad():
        conv.weight[0] = 1.0                      # RMS 1 -> every weight becomes 0.1
        conv.weight[1] = torch.tensor([[0.05, -0.05], [0.05, -0.05]])  # RMS 0.05: untouched
        conv.weight[2] = torch.tensor([[0.3, 0.0], [0.0, -0.4]])       # RMS 0.25 -> x 0.4
        conv.bias.fill_(7.0)
    before = conv.weight.detach().clone()
    clipped = feature_scale_clip(conv, radius=0.1)
    assert clipped == 2
    w = conv.weight.detach()
    assert torch.allclose(w[0], torch.full((1, 2, 2), 0.1), rtol=1e-5)
    assert torch.equal(w[1], before[1])
    assert torch.allclose(w[2], before[2] * 0.4, rtol=1e-5)
    assert torch.equal(conv.bias.detach(), torch.full((3,), 7.0))
    assert (float64_rms(w) <= 0.1).all()


def test_clip_random_filters_never_exceed_radius_and_keep_direction():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 16, 5), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Linear(4, 4))
    with torch.no_grad():
        for conv in (model[0], model[2]):
            conv.weight.mul_(torch.rand(conv.weight.shape[0], 1, 1, 1) * 20)
    linear_before = model[3].weight.detach().clone()
    before = [model[i].weight.detach().clone() for i in (0, 2)]
    feature_scale_clip(model, radius=0.1)
    for old, i in zip(before, (0, 2)):
        new = model[i].weight.detach()
        old_rms, new_rms = float64_rms(old), float64_rms(new)
        assert (new_rms <= 0.1).all()
        under = old_rms <= 0.1
        assert torch.equal(new[under], old[under])
        over = ~under
        assert over.any()
        assert torch.allclose(new_rms[over], torch.full_like(new_rms[over], 0.1), rtol=1e-5)
        cosine = torch.cosine_similarity(new[over].flatten(1).double(),
                                         old[over].flatten(1).double(), dim=1)
        assert torch.allclose(cosine, torch.ones_like(cosine))
    assert torch.equal(model[3].weight.detach(), linear_before)  # only conv filters
    assert torch.allclose(filter_rms(model[0].weight).double(), float64_rms(model[0].weight))


def test_clip_rejects_bad_radius():
    with pytest.raises(ValueError, match="positive"):
        feature_scale_clip(nn.Conv2d(1, 1, 1), radius=0.0)


def test_rms_never_exceeds_radius_after_any_training_step(tmp_path, monkeypatch):
    """Check every step of a run with a large rate (filters would grow far past 0.1)."""
    import deconv.training.loop as loop

    seen = []
    original = loop.feature_scale_clip_by_layer

    def checked(model, radius, layer_radii=None):
        n = original(model, radius, layer_radii)
        seen.append(max(float(float64_rms(m.weight.detach()).max()) for m in model.modules()
                        if isinstance(m, nn.Conv2d)))
        return n

    monkeypatch.setattr(loop, "feature_scale_clip_by_layer", checked)
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.5, clip_radius=0.1)
    history = train(tiny_model(), toy_data(), settings, tmp_path, progress=False)
    assert len(seen) == 6 and max(seen) <= 0.1
    assert history[0]["filters_clipped"] > 0
    by_layer = history[0]["filters_clipped_by_layer"]
    assert sum(by_layer.values()) == history[0]["filters_clipped"]
    assert set(by_layer) == {n for n, m in tiny_model().named_modules() if isinstance(m, nn.Conv2d)}
    for name, rms in history[0]["filter_rms"].items():
        assert max(rms) <= 0.1 and len(rms) == dict(tiny_model().named_modules())[name].out_channels


def test_per_layer_radius_clips_that_layer_at_its_own_radius(tmp_path):
    """``clip_layer_radii``: the named conv at its radius, the others at ``clip_radius``."""
    from deconv.training.clipping import feature_scale_clip_by_layer

    model = tiny_model()
    first, second = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][:2]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(0).add_(0.05)  # every filter at RMS 0.05
    counts = feature_scale_clip_by_layer(model, 0.1, {first: 0.03})
    convs = dict(model.named_modules())
    assert counts[first] == convs[first].out_channels and counts[second] == 0
    assert float(filter_rms(convs[first].weight).max()) <= 0.03
    untouched = filter_rms(convs[second].weight)
    assert torch.allclose(untouched, torch.full_like(untouched, 0.05))
    with pytest.raises(ValueError, match="not conv modules"):
        feature_scale_clip_by_layer(model, 0.1, {"nope": 0.03})
    with pytest.raises(ValueError, match="needs clip_radius"):
        TrainSettings(clip_radius=None, clip_layer_radii={first: 0.03})
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.5, clip_radius=0.1,
                             clip_layer_radii={first: 0.02})
    history = train(tiny_model(), toy_data(), settings, tmp_path, progress=False)
    assert max(history[0]["filter_rms"][first]) <= 0.02
    assert max(history[0]["filter_rms"][second]) <= 0.1
    assert "clip_layer_radii" not in TrainSettings().to_json()  # old runs still resume
    assert settings.to_json()["clip_layer_radii"] == {first: 0.02}


# ---------------------------------------------------------------- the loop


def test_training_reduces_loss_on_a_tiny_problem(tmp_path):
    data = toy_data()
    model = tiny_model()
    before = evaluate(model, data)
    settings = TrainSettings(epochs=6, batch_size=16, lr=0.05, warmup_epochs=1)
    history = train(model, data, settings, tmp_path, test_data=data, progress=False)
    after = evaluate(model, data)
    assert after["loss"] < 0.5 * before["loss"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert after["accuracy"] > 0.9
    assert history[-1]["test_accuracy"] == pytest.approx(after["accuracy"])
    assert not model.training
    log = json.loads((tmp_path / "log.json").read_text())
    assert [r["epoch"] for r in log["history"]] == list(range(1, 7))
    assert log["settings"]["lr"] == 0.05


def test_resume_is_identical_to_an_uninterrupted_run(tmp_path):
    data = toy_data(64)
    flip = fashion_batch_transform(size=32, mean=0.0, std=1.0, flip=True)  # random: uses the RNG

    def transform(x):  # flips + dropout both draw from the seeded generator
        return flip(x * 255.0)

    settings = TrainSettings(epochs=3, batch_size=16, lr=0.02, lr_drops=(2,), warmup_epochs=1,
                             checkpoint_epochs=(1, 3), seed=5)
    whole = tiny_model()
    full = train(whole, data, settings, tmp_path / "a", batch_transform=transform, progress=False)
    parts = tiny_model()
    first = train(parts, data, settings, tmp_path / "b", batch_transform=transform,
                  stop_after=1, progress=False)
    assert len(first) == 1
    torch.manual_seed(123)  # the caller's generator state must not matter
    resumed_model = tiny_model(seed=99)  # weights come from last.pt, not from this init
    resumed = train(resumed_model, data, settings, tmp_path / "b", batch_transform=transform,
                    progress=False)
    for a, b in zip(whole.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)

    def drop_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert drop_time(full) == drop_time(resumed)
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*.pt")) == \
        ["epoch_001.pt", "epoch_003.pt"]
    # a different seed gives a different run (the test can fail)
    other = tiny_model()
    train(other, data, replace(settings, seed=6), tmp_path / "c",
          batch_transform=transform, progress=False)
    assert not torch.equal(other.features[0].weight, whole.features[0].weight)


def test_training_does_not_change_the_callers_generator(tmp_path):
    model, data = tiny_model(), toy_data(32)
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    train(model, data, TrainSettings(epochs=1, batch_size=16), tmp_path, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_resume_with_other_settings_is_refused(tmp_path):
    data = toy_data(32)
    train(tiny_model(), data, TrainSettings(epochs=2, batch_size=16), tmp_path, stop_after=1,
          progress=False)
    with pytest.raises(ResumeMismatchError, match="another run directory"):
        train(tiny_model(), data, TrainSettings(epochs=2, batch_size=16, lr=0.5), tmp_path,
              progress=False)


def test_schedules():
    assert scaled_checkpoint_epochs(64) == PAPER_CHECKPOINT_EPOCHS
    assert scaled_checkpoint_epochs(12) == (1, 2, 4, 6, 8, 12)
    assert scaled_checkpoint_epochs(1) == (1,)
    s = TrainSettings(epochs=4, lr=0.1, lr_drops=(2, 3), warmup_epochs=1)
    assert learning_rate(s, 1, 0, 10) == pytest.approx(0.01)
    assert learning_rate(s, 1, 9, 10) == pytest.approx(0.1)
    assert learning_rate(s, 2, 0, 10) == pytest.approx(0.1)
    assert learning_rate(s, 3, 5, 10) == pytest.approx(0.01)
    assert learning_rate(s, 4, 5, 10) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="outside"):
        TrainSettings(epochs=2, checkpoint_epochs=(3,))


def test_save_weights_float16_loads_with_weights_only(tmp_path):
    model = tiny_model()
    path = save_weights(model, tmp_path / "w.pt", dtype=torch.float16)
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    loaded = deconv.load_model("zfnet", weights=str(path), config=TINY)
    for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()):
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- data and configs


def write_idx(path, array: np.ndarray, code: int, compress: bool) -> None:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def test_idx_reader_on_hand_made_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, -2, 300000], dtype=np.int32)
    write_idx(tmp_path / "a-idx3-ubyte.gz", images, 0x08, compress=True)
    write_idx(tmp_path / "b-idx1", labels, 0x0C, compress=False)
    # hand-written bytes: 1-D uint8 [5, 9]
    (tmp_path / "c").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 5, 9]))
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), images)
    out = read_idx(tmp_path / "b-idx1")
    assert out.dtype == np.int32 and out.tolist() == [7, -2, 300000]
    assert read_idx(tmp_path / "c").tolist() == [5, 9]
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 9]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not an idx")
    with pytest.raises(ValueError, match="not an idx"):
        read_idx(tmp_path / "bad")


def test_fashion_loader_reads_a_folder_and_explains_missing_files(tmp_path, monkeypatch):
    monkeypatch.delenv("DECONV_FASHION_MNIST", raising=False)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8), 0x08, True)
    data = load_fashion_mnist("test", root=tmp_path, limit=4)
    x, y = data.tensors
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(images[:4])) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", root=tmp_path)
    monkeypatch.setattr("deconv.datasets._DEBIAN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FashionMNISTNotFoundError, match="apt-get install"):
        load_fashion_mnist("train", root=tmp_path)


def test_fashion_batch_transform():
    batch = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    batch[1] = 0
    out = fashion_batch_transform(size=64, mean=0.5, std=0.25)(batch)
    assert out.shape == (2, 3, 64, 64)
    assert torch.allclose(out[0], torch.full_like(out[0], 2.0))
    assert torch.allclose(out[1], torch.full_like(out[1], -2.0))
    ramp = torch.arange(28, dtype=torch.uint8).repeat(1, 1, 28, 1) * 9
    torch.manual_seed(0)
    flipped = fashion_batch_transform(size=28, mean=0.0, std=1.0, flip=True)(ramp.repeat(64, 1,
                                                                                        1, 1))
    mirrored = (flipped[:, 0, 0, 0] > flipped[:, 0, 0, -1]).float().mean()
    assert 0.2 < float(mirrored) < 0.8  # about half the images are mirrored


def test_fashion_configs_sizes_and_loaded_model():
    sizes = {}
    for name in ("fashion", "fashion-alexnet-conv1"):
        model = ZFNet(ZFNET_CONFIGS[name])
        x = torch.zeros(1, 3, 64, 64)
        sizes[name] = []
        for module in model.features:
            x = module(x)
            sizes[name].append(x.shape[-1])
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert sizes["fashion"] == [30, 30, 15, 15, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 2]
    assert sizes["fashion-alexnet-conv1"][:3] == [15, 15, 7]
    loaded = deconv.load_model("zfnet", config="fashion")
    assert loaded.categories == list(FASHION_MNIST_CLASSES) and loaded.input_size == 64
    assert loaded.layers == ZFNet.paper_layer_modules
    with pytest.raises(KeyError, match="choose one of"):
        deconv.load_model("zfnet", config="fashon")


def test_export_run_writes_float16_epochs_and_a_manifest(tmp_path):
    from deconv.training.checkpoints import epoch_checkpoints, export_run, final_checkpoint

    model = tiny_model()
    settings = TrainSettings(epochs=2, batch_size=16, checkpoint_epochs=(1, 2))
    train(model, toy_data(32), settings, tmp_path / "run", progress=False)
    with pytest.raises(FileNotFoundError, match="retrain"):
        final_checkpoint(tmp_path / "export")
    final = export_run(tmp_path / "run", tmp_path / "export", "cmd --retrain", "tiny")
    assert final == final_checkpoint(tmp_path / "export") and final.name == "epoch_002.pt"
    assert list(epoch_checkpoints(tmp_path / "export")) == [1, 2]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["command"] == "cmd --retrain" and manifest["dtype"] == "float16"
    state = torch.load(final, weights_only=True)
    for name, value in model.state_dict().items():
        assert state[name].dtype == torch.float16
        assert torch.allclose(state[name].float(), value, rtol=1e-3, atol=1e-4)
