"""Representation similarity: linear centred kernel alignment (CKA, Kornblith et al. 2019).

Linear CKA compares two representations of the same ``n`` inputs, ``X [n, p]`` and ``Y [n, q]``
(any widths: two epochs of one layer, two layers, two networks):

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),

with ``Xc``, ``Yc`` the column-centred matrices. It is 1 for identical representations, lies in
[0, 1], and is invariant to orthogonal transforms and isotropic scaling of either side (not to
arbitrary invertible linear maps), so it can compare epochs whose channels were permuted or
rotated, which a filter-by-filter cosine cannot. It is computed here through the ``n x n``
Gram matrices (``<Kc, Lc>_F / (||Kc||_F ||Lc||_F)``, ``K = Xc Xc^T``), which is cheap when the
feature maps are flattened into many more features than there are images, in float64.
"""

from __future__ import annotations

import torch

from deconv.errors import InvalidArgumentError

__all__ = ["linear_cka", "gram_linear"]


def gram_linear(features: torch.Tensor) -> torch.Tensor:
    """Centred linear Gram matrix ``Xc Xc^T`` (float64) of features ``[n, ...]`` (flattened).

    Raises:
        ValueError: fewer than 2 rows.
    """
    if features.dim() < 2 or features.shape[0] < 2:
        raise InvalidArgumentError(
            f"expected features [n >= 2, ...], got shape {tuple(features.shape)}")
    x = features.detach().flatten(1).double()
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two representations of the same inputs (rows).

    Args:
        x (torch.Tensor): ``[n, ...]`` features of ``n`` inputs (flattened per row).
        y (torch.Tensor): ``[n, ...]`` features of the same ``n`` inputs, any width.

    Returns:
        float: CKA in [0, 1] (nan if either representation is constant over the inputs).

    Raises:
        ValueError: the row counts differ or are below 2.
    """
    if x.shape[0] != y.shape[0]:
        raise InvalidArgumentError(
            f"x and y must describe the same inputs (rows): got {x.shape[0]} and "
            f"{y.shape[0]} rows")
    k, m = gram_linear(x), gram_linear(y)
    denom = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(m)
    if not denom > 0:
        return float("nan")
    return float((k * m).sum() / denom)
