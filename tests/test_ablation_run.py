"""The Fig. 6 ablation run: paper init of conv1, what it keeps, clipping counted per layer."""

import pytest
import torch

from deconv.datasets import FashionMNISTNotFoundError, load_fashion_mnist
from deconv.training import TrainSettings, filter_rms
from deconv.training.ablation_run import (
    KEPT_MODULES,
    load_ablation_run,
    paper_init_,
    train_ablation_run,
)

try:
    load_fashion_mnist("test", limit=1)
    FASHION = True
except FashionMNISTNotFoundError:
    FASHION = False
needs_fashion = pytest.mark.skipif(not FASHION, reason="apt-get install dataset-fashion-mnist")


def test_paper_init_is_seeded_normal_with_zero_bias():
    conv = torch.nn.Conv2d(3, 64, 7)
    paper_init_(conv, seed=3)
    first = conv.weight.detach().clone()
    assert float(conv.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert torch.equal(conv.bias.detach(), torch.zeros(64))
    paper_init_(conv, seed=3)
    assert torch.equal(conv.weight.detach(), first)


@needs_fashion
def test_run_keeps_conv1_conv2_and_logs_clipping(tmp_path):
    settings = TrainSettings(epochs=2, batch_size=32, lr=0.01, warmup_epochs=1, clip_radius=0.1,
                             seed=0)
    log = train_ablation_run("fashion-alexnet-conv1", settings, tmp_path / "run",
                             tmp_path / "dest", train_images=96, test_images=32, trace_every=1)
    saved = torch.load(tmp_path / "dest" / "weights.pt", weights_only=True)
    assert {k.rsplit(".", 1)[0] for k in saved["state"]} == set(KEPT_MODULES)
    assert saved["conv1_by_epoch"].shape == (3, 32, 3, 11, 11)
    assert float(saved["conv1_by_epoch"][0].float().std()) == pytest.approx(0.01, rel=0.1)
    assert len(log["history"]) == 2 and len(log["conv1_rms_trace"]) == 6  # 3 steps x 2 epochs
    for row in log["history"]:
        assert sum(row["filters_clipped_by_layer"].values()) == row["filters_clipped"]
        assert max(row["filter_rms"]["features.0"]) <= 0.1
    loaded, by_epoch, again = load_ablation_run(tmp_path / "dest")
    assert again["history"] == log["history"]
    conv1 = loaded.model.features[0].weight.detach()
    assert torch.equal(conv1, saved["state"]["features.0.weight"].float())
    assert torch.allclose(by_epoch[-1], conv1)
    assert torch.allclose(filter_rms(conv1), torch.tensor(log["history"][-1]["filter_rms"]
                                                          ["features.0"]), atol=1e-4)


def test_load_missing_run_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="--retrain"):
        load_ablation_run(tmp_path)


@needs_fashion
def test_paper_init_probe_records_a_flat_loss_for_the_all_layer_init():
    from deconv.training.ablation_run import paper_init_probe

    flat = paper_init_probe("fashion-alexnet-conv1", steps=3, all_layers=True)
    assert flat["loss_first"] == pytest.approx(flat["ln_10"], abs=0.01)
    assert flat["conv1_max_weight_change"] < 1e-3
    clipped = paper_init_probe("fashion-alexnet-conv1", steps=3, all_layers=False,
                               clip_radius=0.1)
    assert clipped["conv1_rms_max"] <= 0.1 and clipped["steps"] == 3
