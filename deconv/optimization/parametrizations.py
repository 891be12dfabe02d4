"""Image parametrizations: what the optimizer changes, and how it becomes pixels in [0, 1].

Olah et al. (Distill 2017, "Preconditioning and parameterization") show that the same
objective gives very different pictures depending on the variables the optimizer steps in:

* **pixel** (:class:`PixelImage`): one variable per pixel and colour. Gradient steps favour
  high frequencies (the gradient of a CNN is dominated by them), so images turn to noise.
* **Fourier, 1/f scaled** (:class:`FourierImage`): the variables are the image's 2-D Fourier
  coefficients, each multiplied by ``1 / max(f, 1/max(H, W)) ** decay_power``; a unit step
  then changes low frequencies more, as in natural images (whose spectrum falls like 1/f).
  This whitens the spatial statistics; with ``norm="ortho"`` the transform is unitary, so the
  learning rate means the same as for pixels. Lucid also divides by 4; we keep that.
* **decorrelated colour** (:func:`to_rgb` with ``decorrelate=True``): the three variables per
  pixel are coordinates along the principal axes of natural-image colour, scaled by the square
  root of their variances: ``rgb = M @ v`` with ``M = U sqrt(S)`` from the eigen-decomposition
  ``U S U^T`` of the ImageNet RGB covariance, normalized by its largest column norm.
  :data:`COLOR_CORRELATION_SVD_SQRT` is Lucid's matrix (tensorflow/lucid,
  ``lucid/optvis/param/color.py``, Apache-2.0); :func:`colour_correlation_sqrt` derives the
  same kind of matrix from any pictures. On the 10 offline sample photos (3.1 M pixels) it
  gives ``[[.267, -.095, -.010], [.247, .019, .025], [.235, .088, -.016]]``: the same
  luminance axis (~0.25) and red-blue axis (~0.09, opposite sign: an eigenvector's sign is
  arbitrary) as Lucid's, so the constant is no ImageNet peculiarity.

Finally a sigmoid maps each colour value into (0, 1). Every parametrization can be started
from given pixels (``from_pixels``), which inverts the chain exactly (up to float error).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deconv.errors import InvalidArgumentError

__all__ = ["COLOR_CORRELATION_SVD_SQRT", "colour_correlation_sqrt", "normalized_colour_matrix",
           "to_rgb", "from_rgb", "PixelImage", "FourierImage", "ImageParam", "make_image",
           "PARAMETRIZATIONS"]

# sqrt of the ImageNet colour covariance (rows R, G, B; columns: principal axes), from Lucid.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])


def colour_correlation_sqrt(pixels: torch.Tensor) -> torch.Tensor:
    """The "svd sqrt" colour matrix ``U sqrt(S)`` of the RGB covariance of some pixels.

    Args:
        pixels (torch.Tensor): ``[..., 3, H, W]`` (or ``[N, 3]``) pixel values in [0, 1].

    Returns:
        torch.Tensor: ``[3, 3]`` float32; column ``k`` is the ``k``-th principal colour axis
        (largest variance first) times the square root of its variance, sign chosen so that
        the column sums to a non-negative number (the luminance axis is positive), as Lucid's.
    """
    if pixels.dim() == 2 and pixels.shape[1] == 3:
        flat = pixels.double()
    elif pixels.dim() >= 3 and pixels.shape[-3] == 3:
        flat = pixels.double().movedim(-3, -1).reshape(-1, 3)
    else:
        raise InvalidArgumentError(
            f"expected [..., 3, H, W] or [N, 3] pixels, got {tuple(pixels.shape)}")
    if flat.shape[0] < 2:
        raise InvalidArgumentError("need at least two pixels to estimate a covariance")
    cov = torch.cov(flat.T)
    values, vectors = torch.linalg.eigh(cov)
    order = torch.argsort(values, descending=True)
    values, vectors = values[order].clamp_min(0), vectors[:, order]
    signs = torch.where(vectors.sum(0) < 0, -1.0, 1.0).double()
    return (vectors * signs * values.sqrt()).float()


def normalized_colour_matrix(matrix: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix`` (default :data:`COLOR_CORRELATION_SVD_SQRT`) divided by its largest column
    norm, so that no decorrelated direction is amplified (Lucid's
    ``color_correlation_normalized``)."""
    matrix = COLOR_CORRELATION_SVD_SQRT if matrix is None else matrix
    if matrix.shape != (3, 3):
        raise InvalidArgumentError(f"the colour matrix must be 3 x 3, got {tuple(matrix.shape)}")
    return matrix / matrix.norm(dim=0).max()


def to_rgb(t: torch.Tensor, decorrelate: bool = True,
           matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Unconstrained colour values ``[B, 3, H, W]`` -> pixels in (0, 1).

    With ``decorrelate`` the three channels are decorrelated-colour coordinates, mapped to RGB
    by :func:`normalized_colour_matrix`; then a sigmoid.
    """
    if t.dim() != 4 or t.shape[1] != 3:
        raise InvalidArgumentError(f"expected [B, 3, H, W], got {tuple(t.shape)}")
    if decorrelate:
        m = normalized_colour_matrix(matrix).to(t)
        t = torch.einsum("ij,bjhw->bihw", m, t)
    return torch.sigmoid(t)


def from_rgb(pixels: torch.Tensor, decorrelate: bool = True,
             matrix: torch.Tensor | None = None, eps: float = 1e-4) -> torch.Tensor:
    """Inverse of :func:`to_rgb` (pixels are clamped to ``[eps, 1 - eps]`` first)."""
    t = torch.logit(pixels.clamp(eps, 1 - eps))
    if decorrelate:
        m = normalized_colour_matrix(matrix).to(t)
        t = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), t)
    return t


def _check_shape(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise InvalidArgumentError(f"image shape must be (batch, 3, height, width), got {shape}")
    return shape


class PixelImage(nn.Module):
    """One variable per pixel and colour; ``forward()`` gives the unconstrained ``[B, 3, H, W]``.

    Args:
        shape (tuple[int, int, int, int]): ``(batch, 3, height, width)``.
        sd (float): standard deviation of the random start.
        generator (torch.Generator | None): seeds the start.
    """

    def __init__(self, shape, sd: float = 0.01, generator: torch.Generator | None = None):
        super().__init__()
        self.shape = _check_shape(shape)
        self.values = nn.Parameter(torch.randn(self.shape, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        return self.values

    @classmethod
    def from_values(cls, values: torch.Tensor) -> PixelImage:
        """Start from given unconstrained values ``[B, 3, H, W]`` (``forward()`` returns them)."""
        param = cls(values.shape, sd=0.0)
        param.values.data.copy_(values.detach())
        return param


def rfft2d_frequencies(height: int, width: int) -> torch.Tensor:
    """``|f|`` (cycles per pixel) of each coefficient of ``torch.fft.rfft2`` on an H x W image."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return (fy * fy + fx * fx).sqrt()


class FourierImage(nn.Module):
    """Variables are 2-D Fourier coefficients scaled by ``1 / max(f, 1/max(H, W)) ** decay_power``.

    ``forward()`` returns ``irfft2(scale * coefficients, norm="ortho") / 4`` (Lucid's
    ``fft_image``), the unconstrained ``[B, 3, H, W]``.

    Args:
        shape (tuple[int, int, int, int]): ``(batch, 3, height, width)``.
        sd (float): standard deviation of the random start of each real/imaginary part.
        decay_power (float): 1 gives the 1/f scaling; 0 no scaling (a unitary change of basis).
        generator (torch.Generator | None): seeds the start.
    """

    magic = 4.0

    def __init__(self, shape, sd: float = 0.01, decay_power: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.shape = _check_shape(shape)
        b, c, h, w = self.shape
        freqs = rfft2d_frequencies(h, w)
        self.register_buffer("scale",
                             1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power)
        self.decay_power = decay_power
        spectrum = torch.randn((b, c, *freqs.shape, 2), generator=generator) * sd
        self.spectrum = nn.Parameter(spectrum)

    def forward(self) -> torch.Tensor:
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        h, w = self.shape[-2:]
        return torch.fft.irfft2(coeffs, s=(h, w), norm="ortho") / self.magic

    @classmethod
    def from_values(cls, values: torch.Tensor, decay_power: float = 1.0) -> FourierImage:
        """Start from given unconstrained values ``[B, 3, H, W]`` (``forward()`` returns them)."""
        param = cls(values.shape, sd=0.0, decay_power=decay_power)
        h, w = values.shape[-2:]
        coeffs = torch.fft.rfft2(values.detach().float() * cls.magic, s=(h, w), norm="ortho")
        param.spectrum.data.copy_(torch.view_as_real(coeffs / param.scale))
        return param


PARAMETRIZATIONS = {"pixel": PixelImage, "fourier": FourierImage}


class ImageParam(nn.Module):
    """A parametrized batch of images: ``forward()`` gives pixels in (0, 1), ``[B, 3, H, W]``.

    Args:
        spatial (PixelImage | FourierImage): the variables.
        decorrelate (bool): read the three channels as decorrelated colour (see :func:`to_rgb`).
        matrix (torch.Tensor | None): the colour matrix (Lucid's ImageNet one by default).
    """

    def __init__(self, spatial: nn.Module, decorrelate: bool = True,
                 matrix: torch.Tensor | None = None):
        super().__init__()
        self.spatial = spatial
        self.decorrelate = decorrelate
        self.matrix = matrix

    def forward(self) -> torch.Tensor:
        return to_rgb(self.spatial(), self.decorrelate, self.matrix)

    @classmethod
    def from_pixels(cls, pixels: torch.Tensor, parametrization: str = "fourier",
                    decorrelate: bool = True, matrix: torch.Tensor | None = None,
                    **kwargs) -> ImageParam:
        """Start from given pixels in [0, 1] (clamped to [1e-4, 1 - 1e-4] for the sigmoid)."""
        values = from_rgb(pixels, decorrelate, matrix)
        spatial = _parametrization(parametrization).from_values(values, **kwargs)
        return cls(spatial, decorrelate, matrix)


def _parametrization(name: str) -> type:
    if name not in PARAMETRIZATIONS:
        raise InvalidArgumentError(f"unknown parametrization {name!r}; choose one of "
                                             f"{sorted(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[name]


def make_image(size: int | tuple[int, int], batch: int = 1, parametrization: str = "fourier",
               decorrelate: bool = True, *, sd: float = 0.01,
               generator: torch.Generator | None = None, **kwargs) -> ImageParam:
    """A random start (seeded by ``generator``) in the chosen parametrization.

    Args:
        size (int | tuple[int, int]): side, or ``(height, width)``.
        batch (int): images.
        parametrization (str): ``"fourier"`` (1/f scaled) or ``"pixel"``.
        decorrelate (bool): decorrelated colour space.
        sd (float): scale of the random start.
        generator (torch.Generator | None): random numbers.
        **kwargs: passed on (``decay_power`` for Fourier).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if batch < 1 or h < 1 or w < 1 or not math.isfinite(sd):
        raise InvalidArgumentError(
            f"need batch >= 1 and a positive size, got batch={batch}, size={size}")
    spatial = _parametrization(parametrization)((batch, 3, h, w), sd=sd, generator=generator,
                                                **kwargs)
    return ImageParam(spatial, decorrelate)
