"""Image-quality metrics used to report FiveK / PPR10K results (docs/metrics.md).

All functions take a pair of RGB images ``(..., H, W, 3)`` of the same shape, as uint8
(the usual case: the model output is clamped and rounded to 8 bits before scoring, as
the authors' saved PNGs were), uint16, or floats in ``[0, 1]``. Leading dimensions are a
batch: the result has shape ``(...)`` (a Python float for a single image). Everything is
computed in float64 numpy, which is what makes the scikit-image cross-checks tight.

* :func:`psnr`: peak signal-to-noise ratio over all pixels and channels, with the data
  range of the dtype (255 for uint8), identical to ``skimage.metrics.peak_signal_noise_ratio``.
* :func:`ssim`: the standard Gaussian SSIM of Wang et al. (11x11 window, sigma 1.5,
  K = (0.01, 0.03), population covariance), computed per channel and averaged, as
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1)`` does.
* :func:`ssim_paper`: the variant of the authors' MATLAB script
  (``adaint/metrics/fivek_calculate_metrics.m``, Zhou Wang's "SSIM with automatic
  downsampling"). Its ``[M N] = size(img)`` on an H x W x 3 array gives ``N = 3W``, so the
  R, G and B planes are scored laid side by side as one H x 3W image (windows straddle the
  plane borders), after a box low-pass and subsampling by ``max(1, round(min(H, 3W)/256))``.
  This is the number the papers' SSIM columns come from.
* :func:`delta_e`: mean CIE76 colour difference in CIELAB (sRGB, D65, 2 degree observer),
  identical up to rounding to ``deltaE_cie76(rgb2lab(a), rgb2lab(b)).mean()``.
"""

from __future__ import annotations

import numpy as np

#: sRGB (linear) -> CIE XYZ, D65 (the matrix scikit-image and most papers' code use).
XYZ_FROM_LINEAR_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
#: D65 white point, 2 degree observer.
D65_WHITE = np.array([0.95047, 1.0, 1.08883])

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _data_range(dtype) -> float:
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"images must be uint8, uint16 or float in [0, 1], got dtype {dtype}")


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray, float]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"images must have shape (..., H, W, 3), got {a.shape}")
    if a.dtype != b.dtype:
        raise ValueError(f"images must have the same dtype, got {a.dtype} and {b.dtype}")
    return a, b, _data_range(a.dtype)


def _scalar_or_array(x: np.ndarray):
    return float(x) if x.ndim == 0 else x


def psnr(a, b, data_range: float | None = None):
    """Peak signal-to-noise ratio in dB of ``(..., H, W, 3)`` images; ``inf`` if equal.

    ``data_range`` defaults to the dtype's: 255 for uint8, 65535 for uint16, 1 for floats.
    """
    a, b, default_range = _check_pair(a, b)
    data_range = default_range if data_range is None else float(data_range)
    batch = a.shape[:-3]
    diff = a.astype(np.float64).reshape(*batch, -1) - b.astype(np.float64).reshape(*batch, -1)
    mse = np.mean(diff**2, axis=-1)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(10 * np.log10(data_range**2 / mse))


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', n, s)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-0.5 * x**2 / sigma**2)
    return w / w.sum()


def _sliding_valid(x: np.ndarray, window: np.ndarray, axis: int) -> np.ndarray:
    """'valid' 1D correlation along ``axis`` (-1 or -2) for short windows of any length."""
    n = x.shape[axis] - window.size + 1

    def tap(k):
        return x[..., k : k + n] if axis == -1 else x[..., k : k + n, :]

    out = window[0] * tap(0)
    for k in range(1, window.size):
        out += window[k] * tap(k)
    return out


def _correlate_valid(x: np.ndarray, window: np.ndarray, axis: int) -> np.ndarray:
    """'valid' 1D correlation of ``x`` with an odd-length ``window`` along ``axis``."""
    from scipy.ndimage import correlate1d

    radius = window.size // 2
    full = correlate1d(x, window, axis=axis, mode="nearest")
    index = [slice(None)] * x.ndim
    index[axis] = slice(radius, x.shape[axis] - radius)
    return full[tuple(index)]


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al.'s SSIM map of float64 planes ``(..., H, W)``, valid region only.

    Filtering only the valid region is the same as scikit-image's reflect-padded filter
    followed by its crop of ``(win - 1) // 2`` pixels on every side, and the same as
    MATLAB's ``filter2(window, img, 'valid')``.
    """
    window = gaussian_window_1d()
    stacked = np.stack([x, y, x * x, y * y, x * y])
    mu_x, mu_y, e_xx, e_yy, e_xy = _correlate_valid(
        _correlate_valid(stacked, window, -1), window, -2
    )
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def _check_window_fits(h: int, w: int, what: str) -> None:
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs {what} of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}"
        )


def ssim(a, b, data_range: float | None = None):
    """Standard Gaussian SSIM on RGB: per-channel mean SSIM, averaged over the channels.

    Args:
      a, b: ``(..., H, W, 3)`` images, H and W at least 11.
      data_range: defaults to the dtype's (255 for uint8, 1 for floats).

    Returns:
      ``(...)`` SSIM values (a float for one image).
    """
    a, b, default_range = _check_pair(a, b)
    _check_window_fits(a.shape[-3], a.shape[-2], "images")
    data_range = default_range if data_range is None else float(data_range)
    # Channels first, so that the window slides along the two contiguous last axes.
    planes_a = np.ascontiguousarray(np.moveaxis(a, -1, -3), dtype=np.float64)
    planes_b = np.ascontiguousarray(np.moveaxis(b, -1, -3), dtype=np.float64)
    smap = _ssim_map(planes_a, planes_b, data_range)
    return _scalar_or_array(smap.mean(axis=(-3, -2, -1)))


def paper_downsample_factor(height: int, width: int) -> int:
    """``max(1, round(min(M, N) / 256))`` with MATLAB's ``[M N] = size(HxWx3) = (H, 3W)``."""
    m, n = height, 3 * width
    # MATLAB rounds halves away from zero; Python's round() would round them to even.
    return max(1, int(np.floor(min(m, n) / 256 + 0.5)))


def _box_lowpass_matlab(x: np.ndarray, f: int) -> np.ndarray:
    """MATLAB ``imfilter(x, ones(f)/f^2, 'symmetric', 'same')`` over axes -3, -2 of (.., H, W, C).

    For an even ``f`` MATLAB anchors the kernel at ``floor((f + 1) / 2)``, so the window
    reaches ``center - 1`` pixels back and ``f - center`` forward.
    """
    center = (f + 1) // 2
    before, after = center - 1, f - center
    planes = np.ascontiguousarray(np.moveaxis(x, -1, -3))  # (..., C, H, W)
    pad = [(0, 0)] * (planes.ndim - 2) + [(before, after)] * 2
    planes = np.pad(planes, pad, mode="symmetric")
    box = np.full(f, 1.0 / f)
    return np.moveaxis(_sliding_valid(_sliding_valid(planes, box, -1), box, -2), -3, -1)


def ssim_paper(a, b):
    """SSIM as computed by the authors' MATLAB evaluation script (paper-compatible).

    Zhou Wang's ``ssim.m`` with automatic downsampling, called on H x W x 3 uint8 arrays:
    each plane is box-filtered (``f x f``, symmetric borders), the planes are laid side by
    side as one ``H x 3W`` image ``[R | G | B]`` and subsampled by ``f`` in both directions,
    then the Gaussian SSIM map (data range 255) is averaged over its valid region.
    ``f = max(1, round(min(H, 3W) / 256))``: 2 for 480p landscape FiveK images.

    Args:
      a, b: ``(..., H, W, 3)`` uint8 images (floats in ``[0, 1]`` are scaled by 255).

    Returns:
      ``(...)`` SSIM values (a float for one image).
    """
    a, b, data_range = _check_pair(a, b)
    scale = 255.0 / data_range
    x = a.astype(np.float64) * scale
    y = b.astype(np.float64) * scale
    h, w = a.shape[-3:-1]
    f = paper_downsample_factor(h, w)
    if f > 1:
        x = _box_lowpass_matlab(x, f)
        y = _box_lowpass_matlab(y, f)

    def side_by_side(img):  # (..., H, W, 3) -> (..., H, 3W), planes R | G | B
        img = np.moveaxis(img, -1, -2)  # (..., H, 3, W)
        return img.reshape(*img.shape[:-2], 3 * w)[..., ::f, ::f]

    x, y = side_by_side(x), side_by_side(y)
    _check_window_fits(x.shape[-2], x.shape[-1], "the downsampled R|G|B image")
    smap = _ssim_map(x, y, 255.0)
    return _scalar_or_array(smap.mean(axis=(-2, -1)))


def _srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    return np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def srgb_to_lab(img) -> np.ndarray:
    """sRGB ``(..., 3)`` (uint8, uint16 or floats in [0, 1]) -> CIELAB, D65, float64."""
    img = np.asarray(img)
    top = _data_range(img.dtype)
    if img.dtype in (np.uint8, np.uint16):
        # Integer images take one of 256 (65536) values: linearise those once, then look
        # up; the same arithmetic per value as the elementwise formula, several times faster.
        levels = np.arange(int(top) + 1, dtype=np.float64) / top
        linear = _srgb_to_linear(levels)[img]
    else:
        linear = _srgb_to_linear(img.astype(np.float64))
    xyz = (linear @ XYZ_FROM_LINEAR_RGB.T) / D65_WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def delta_e(a, b):
    """Mean CIE76 Delta-E (Euclidean distance in CIELAB) of ``(..., H, W, 3)`` sRGB images."""
    a, b, _ = _check_pair(a, b)
    dist = np.sqrt(np.sum((srgb_to_lab(a) - srgb_to_lab(b)) ** 2, axis=-1))
    return _scalar_or_array(dist.mean(axis=(-2, -1)))


#: Every metric, by the name it has in reports, CSV columns and JSON files.
METRICS = {"psnr": psnr, "ssim": ssim, "ssim_paper": ssim_paper, "delta_e": delta_e}
#: The one list of metric names: training reports, ``ailut evaluate`` and every table.
METRIC_NAMES = tuple(METRICS)
#: Column heading and number format of each metric in human-readable tables.
METRIC_LABELS = {
    "psnr": ("PSNR (dB)", ".2f"),
    "ssim": ("SSIM", ".4f"),
    "ssim_paper": ("SSIM (paper)", ".4f"),
    "delta_e": ("Delta-E", ".2f"),
}


def all_metrics(output, target, names=METRIC_NAMES) -> dict[str, float]:
    """The metrics ``names`` (default: all) of one output image against its target."""
    return {name: float(METRICS[name](output, target)) for name in names}


def format_metric(name: str, value: float) -> str:
    """``value`` of metric ``name`` as tables print it (PSNR and Delta-E: 2 decimals)."""
    return format(value, METRIC_LABELS[name][1])
