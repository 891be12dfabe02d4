"""Linear CKA against hand cases, its invariances and a naive float64 formula."""

import math

import pytest
import torch

from deconv.similarity import linear_cka


def naive_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """HSIC form with the centring matrix H = I - 11^T / n, in float64 (Kornblith et al. eq. 3)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    k, m = x @ x.T, y @ y.T

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h)

    return float(hsic(k, m) / torch.sqrt(hsic(k, k) * hsic(m, m)))


def test_hand_computed_value():
    # Xc = [-1, 0, 1], Yc = [0, -1, 1]: (Xc.Yc)^2 = 1, ||Xc^T Xc|| = ||Yc^T Yc|| = 2 -> 1/4
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)


def test_identity_orthogonal_and_scale_invariance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 7, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x.double() @ q) == pytest.approx(1.0, abs=1e-10)
    y = torch.randn(20, 5, generator=g, dtype=torch.float64)
    base = linear_cka(x, y)
    assert linear_cka(3.5 * x, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x.double() @ q, 0.2 * y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x + 4.0, y - 2.0) == pytest.approx(base, abs=1e-10)  # centring
    assert 0.0 <= base < 1.0


def test_not_invariant_to_anisotropic_scaling():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g)
    stretched = x * torch.tensor([10.0, 1.0, 1.0, 1.0])
    assert linear_cka(x, stretched) < 0.99


def test_matches_naive_formula_on_feature_maps():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 3, 4, 4, generator=g)
    y = torch.relu(torch.randn(12, 6, 2, 2, generator=g))
    assert linear_cka(x, y) == pytest.approx(naive_cka(x, y), abs=1e-12)


def test_errors_and_constant_input():
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n >= 2"):
        linear_cka(torch.zeros(1, 2), torch.zeros(1, 2))
    assert math.isnan(linear_cka(torch.ones(5, 2), torch.randn(5, 2)))
