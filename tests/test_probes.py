"""Linear probes: logistic regression vs a scipy float64 reference, pooled layer features."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.special import logsumexp
from torch.utils.data import TensorDataset

import deconv
from deconv.layers import register_paper_layers
from deconv.probes import fit_linear_probe, layer_features, probe_layers
from deconv.zoo import ZFNet, ZFNetConfig

TINY = ZFNetConfig(input_size=32, num_classes=3, widths=(8, 16, 16, 16, 16), conv2=(5, 2, 2),
                   fc=32, init="kaiming", classes="none")


def blobs(n: int, seed: int, dims: int = 5, spread: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(3, dims) * 3.0
    y = torch.arange(n) % 3
    return centres[y] + spread * torch.randn(n, dims, generator=g), y


def test_probe_separates_a_separable_toy_problem():
    x, y = blobs(150, 0)
    probe = fit_linear_probe(x, y)
    test_x, test_y = blobs(300, 1)
    assert probe.accuracy(x, y) == 1.0 and probe.accuracy(test_x, test_y) == 1.0
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert fit_linear_probe(x, shuffled).accuracy(test_x, test_y) < 0.6  # can fail


def test_probe_matches_scipy_float64_reference():
    x, y = blobs(60, 2, dims=4, spread=1.5)  # overlapping: a unique, finite optimum
    l2 = 0.1
    probe = fit_linear_probe(x, y, l2=l2)
    z = ((x.double() - x.double().mean(0)) / x.double().std(0, unbiased=False)).numpy()
    labels = y.numpy()

    def objective(theta):
        w, b = theta[:12].reshape(3, 4), theta[12:]
        s = z @ w.T + b
        log_p = s - logsumexp(s, axis=1, keepdims=True)
        p = np.exp(log_p)
        onehot = np.eye(3)[labels]
        loss = -log_p[np.arange(len(labels)), labels].mean() + 0.5 * l2 * (w**2).sum()
        grad_s = (p - onehot) / len(labels)
        grad_w = grad_s.T @ z + l2 * w
        return loss, np.concatenate([grad_w.ravel(), grad_s.sum(0)])

    ref = minimize(objective, np.zeros(15), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 2000})
    assert probe.train_loss == pytest.approx(ref.fun, rel=1e-6)
    # softmax weights are defined up to a per-feature constant added to every class; the
    # penalty picks zero-mean columns in both, so they are directly comparable
    np.testing.assert_allclose(probe.weight.numpy(), ref.x[:12].reshape(3, 4), atol=1e-4)
    np.testing.assert_allclose(probe.bias.numpy() - probe.bias.numpy().mean(),
                               ref.x[12:] - ref.x[12:].mean(), atol=1e-4)


def test_layer_features_equal_a_direct_forward_and_leave_no_hooks(model_guard):
    loaded = deconv.load_model("zfnet", config=TINY)
    model = loaded.model.train()
    guard = model_guard(model)
    x = torch.randn(10, 3, 32, 32)
    feats, labels = layer_features(loaded, x, ["features.5", 7, "features.14"], grid=2,
                                   batch_size=4)
    assert labels is None
    guard.check()
    model.eval()
    with torch.no_grad():
        relu2 = model.features[:6](x)
        pool5 = model.features(x)
        fc7 = model.classifier[:5](model.flatten(pool5))
    assert torch.allclose(feats["features.5"], F.adaptive_avg_pool2d(relu2, 2).flatten(1),
                          atol=1e-6)
    assert torch.allclose(feats["classifier.4"], fc7, atol=1e-6)
    assert feats["features.14"].shape == (10, 16)  # pool5 is 1x1: kept, not repeated
    model.train()
    with pytest.raises(RuntimeError):
        layer_features(model, torch.randn(2, 1, 32, 32), [1])  # wrong channels
    assert model.training
    guard.check()


def test_probe_layers_on_labelled_data():
    model = ZFNet(TINY)
    register_paper_layers(model, ZFNet.paper_layer_modules)  # what load_model does
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 3, 32, 32, generator=g) * 0.5
    for c in range(3):
        x[y == c, c] += 1.0
    data = TensorDataset(x, y)
    result = probe_layers(model, data, data, [1, "features.13"], max_iter=100)
    assert list(result) == ["1", "features.13"]
    assert result["1"]["module"] == "features.1" and result["1"]["dims"] == 8 * 4
    assert result["1"]["train_accuracy"] == 1.0  # colour is linear in layer-1 features
    with pytest.raises(ValueError, match="features"):
        fit_linear_probe(torch.zeros(3), torch.zeros(3))
