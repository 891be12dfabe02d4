"""Window arithmetic shared by the exact occlusion engines (chain and graph).

Both keep each layer's unoccluded map channels-last and flattened (``[H * W, C]``, possibly
zero-padded and, for row bands, starting at row ``lo``) and, per occluder position, recompute
only a changed window. Two operations are common to them: cutting the input window of a
position with the occluder drawn in, and reading a stored map's window with a changed window
pasted over it.
"""

from __future__ import annotations

import torch

__all__ = ["flat_nhwc", "occluded_window", "paste_window"]


def flat_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[1, C, H, W]`` -> ``[H * W, C]`` contiguous."""
    return x[0].permute(1, 2, 0).reshape(-1, x.shape[1]).contiguous()


def occluded_window(image: torch.Tensor, fill: torch.Tensor, top: torch.Tensor, n_r: int,
                    left: torch.Tensor, n_c: int, box: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Per position the input window ``[P, n_r, n_c, C]`` from ``(top, left)``: the fill
    inside the occluder box ``(r0, r1, c0, c1)`` (``[P]`` each, end exclusive), the image
    elsewhere.

    Args:
        image (torch.Tensor): ``[C, H, W]``.
        fill (torch.Tensor): ``[C, H, W]`` (the occluder's pixels).
        top, left (torch.Tensor): ``[P]`` window origins; n_r, n_c: the window's size.
        box (tuple[torch.Tensor, ...]): the occluder ``(r0, r1, c0, c1)`` per position.
    """
    r0, r1, c0, c1 = box
    width = image.shape[-1]
    dev = image.device
    rows = top[:, None] + torch.arange(n_r)
    cols = left[:, None] + torch.arange(n_c)
    index = (rows[:, :, None] * width + cols[:, None, :]).to(dev)
    inside = (((rows >= r0[:, None]) & (rows < r1[:, None]))[:, :, None]
              & ((cols >= c0[:, None]) & (cols < c1[:, None]))[:, None, :]).to(dev)
    return torch.where(inside.unsqueeze(-1), flat_nhwc(fill.unsqueeze(0))[index],
                       flat_nhwc(image.unsqueeze(0))[index])


def paste_window(store: torch.Tensor, width: int, lo: int, pad_top: int, pad_left: int,
                 rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                 top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Windows ``[P, len(rows[0]), len(cols[0]), C]`` of a stored map with the changed
    ``values`` pasted in.

    Args:
        store (torch.Tensor): the stored map, ``[(H_pad - lo) * width, C]`` from padded row
            ``lo`` (0 unless row-banded).
        width (int): its padded width; pad_top, pad_left: its padding.
        rows, cols (torch.Tensor): ``[P, n]`` padded coordinates of each window.
        values (torch.Tensor): ``[P, m_r, m_c, C]`` changed windows, unpadded coordinates
            from ``(top, left)`` (``[P]`` each).
    """
    p, m_r, m_c, ch = values.shape
    dev = values.device
    index = (rows[:, :, None] - lo) * width + cols[:, None, :]
    window = store.index_select(0, index.reshape(-1).to(dev))
    tr = rows - pad_top - top[:, None]  # row inside the changed window
    tc = cols - pad_left - left[:, None]
    valid = (((tr >= 0) & (tr < m_r))[:, :, None] & ((tc >= 0) & (tc < m_c))[:, None, :])
    source = (torch.arange(p)[:, None, None] * (m_r * m_c) + tr[:, :, None] * m_c
              + tc[:, None, :])
    dst = valid.reshape(-1).nonzero().squeeze(1)
    window.index_copy_(0, dst.to(dev), values.reshape(-1, ch).index_select(
        0, source.reshape(-1)[dst].to(dev)))
    return window.view(p, rows.shape[1], cols.shape[1], ch)
