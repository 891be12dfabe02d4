"""Approximate occlusion maps: adaptive drill-down (Krypton, Nakandala et al., SIGMOD 2019).

Adaptive drill-down evaluates the occluder on a coarse sub-grid of the requested positions
(every ``coarse``-th row and column, plus the last ones), interpolates that map onto the full
grid, and then evaluates exactly only the positions where the interpolated map is most
sensitive (the ``refine`` fraction of positions whose interpolated score departs most from
the unoccluded one). The other positions keep their interpolated value. It composes with the
projective-field threshold (``IncrementalOcclusion(..., max_fraction=...)``), which makes each
evaluated position cheaper. Quality is measured against the exact map (SSIM, see
``experiments/bench_occlusion.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deconv.errors import InvalidArgumentError
from deconv.occlusion.incremental import IncrementalOcclusion
from deconv.occlusion.outputs import OcclusionOutputs

__all__ = ["DrillDownResult", "drill_down_map"]


@dataclass(frozen=True)
class DrillDownResult:
    """An approximate occlusion map.

    Attributes:
        grid (torch.Tensor): float64 ``[rows, cols]`` score per occluder position.
        evaluated (torch.Tensor): bool ``[rows, cols]``, True where the score was computed (not
            interpolated).
        reference (float): the score of the unoccluded image.
    """

    grid: torch.Tensor
    evaluated: torch.Tensor
    reference: float

    @property
    def evaluated_fraction(self) -> float:
        """float: share of the positions that were actually run."""
        return float(self.evaluated.double().mean())


def _coarse_indices(n: int, coarse: int) -> np.ndarray:
    idx = list(range(0, n, coarse))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return np.asarray(idx)


def _interpolate(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_rows: int,
                 n_cols: int) -> np.ndarray:
    """Separable linear interpolation of ``values[len(rows), len(cols)]`` onto the full grid."""
    along_cols = np.stack([np.interp(np.arange(n_cols), cols, v) for v in values])
    return np.stack([np.interp(np.arange(n_rows), rows, c) for c in along_cols.T], axis=1)


def drill_down_map(engine: IncrementalOcclusion, boxes: torch.Tensor, shape: tuple[int, int],
                   score: Callable[[OcclusionOutputs], torch.Tensor], *, coarse: int = 2,
                   refine: float = 0.25) -> DrillDownResult:
    """Approximate the score map over a grid of occluders by coarse-then-fine evaluation.

    Args:
        engine (IncrementalOcclusion): the engine for the image (exact or thresholded).
        boxes (torch.Tensor): long ``[rows * cols, 4]`` occluder windows, row-major (as
            :func:`deconv.occlusion.grid.occluder_boxes` returns them).
        shape (tuple[int, int]): grid shape ``(rows, cols)``.
        score (Callable[[OcclusionOutputs], torch.Tensor]): outputs -> one number per position
            (e.g. the target class probability).
        coarse (int): step of the coarse sub-grid, in grid positions (>= 1; 1 is exact).
        refine (float): fraction (0..1) of all positions to evaluate exactly after the coarse
            pass, chosen where the interpolated score departs most from the unoccluded one.

    Returns:
        DrillDownResult: the approximate grid and which positions were evaluated.

    Raises:
        ValueError: bad ``coarse``/``refine`` or boxes that do not match ``shape``.
    """
    n_rows, n_cols = shape
    if len(boxes) != n_rows * n_cols:
        raise InvalidArgumentError(f"{len(boxes)} boxes do not fill a {n_rows}x{n_cols} grid")
    if coarse < 1:
        raise InvalidArgumentError(f"coarse must be >= 1, got {coarse}")
    if not 0 <= refine <= 1:
        raise InvalidArgumentError(f"refine must be in [0, 1], got {refine}")
    reference = float(score(engine.reference)[0])
    rows, cols = _coarse_indices(n_rows, coarse), _coarse_indices(n_cols, coarse)
    grid = np.zeros((n_rows, n_cols))
    evaluated = np.zeros((n_rows, n_cols), dtype=bool)
    coarse_flat = (rows[:, None] * n_cols + cols[None, :]).reshape(-1)
    values = score(engine.outputs(boxes[torch.as_tensor(coarse_flat)])).double().cpu().numpy()
    grid = _interpolate(values.reshape(len(rows), len(cols)), rows, cols, n_rows, n_cols)
    evaluated[np.ix_(rows, cols)] = True
    grid[np.ix_(rows, cols)] = values.reshape(len(rows), len(cols))
    budget = int(round(refine * n_rows * n_cols))
    if budget > 0:
        change = np.abs(grid - reference)
        change[evaluated] = -np.inf
        chosen = np.zeros_like(evaluated)
        order = np.argsort(-change, axis=None)[:budget]
        chosen.flat[order] = True
        chosen &= ~evaluated
        todo = np.flatnonzero(chosen)
        if len(todo):
            fine = score(engine.outputs(boxes[torch.as_tensor(todo)])).double().cpu().numpy()
            grid.flat[todo] = fine
            evaluated.flat[todo] = True
    return DrillDownResult(torch.from_numpy(grid), torch.from_numpy(evaluated), reference)
