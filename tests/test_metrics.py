"""Metrics cross-checked against scikit-image and a literal transcription of the authors' MATLAB."""

import _models
import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage.color import deltaE_cie76, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ailut_jax import metrics


def _photo(width: int, height: int) -> np.ndarray:
    return _models.photo(width, height)


def _pairs():
    """(name, image, distorted image) uint8 pairs covering noise, tone and colour shifts."""
    rng = np.random.default_rng(6)
    photo = _photo(241, 160)  # odd width on purpose
    noisy = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    toned = np.rint(255 * (photo / 255.0) ** 0.7).astype(np.uint8)
    warm = np.clip(photo * np.array([1.1, 1.0, 0.85]) + 6, 0, 255).astype(np.uint8)
    rand_a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rand_b = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    return [
        ("noise", photo, noisy),
        ("tone", photo, toned),
        ("warm", photo, warm),
        ("random", rand_a, rand_b),
    ]


PAIRS = _pairs()
IDS = [name for name, *_ in PAIRS]


def _skimage_ssim(a, b, data_range=255):
    return structural_similarity(
        a,
        b,
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )


@pytest.mark.parametrize("name,a,b", PAIRS, ids=IDS)
def test_psnr_matches_skimage_exactly(name, a, b):
    assert metrics.psnr(a, b) == peak_signal_noise_ratio(a, b, data_range=255)
    assert metrics.psnr(b, a) == peak_signal_noise_ratio(b, a, data_range=255)


@pytest.mark.parametrize("name,a,b", PAIRS, ids=IDS)
def test_ssim_matches_skimage(name, a, b):
    np.testing.assert_allclose(metrics.ssim(a, b), _skimage_ssim(a, b), rtol=0, atol=1e-4)
    # In practice the two agree to float64 rounding; guard against a silent drift too.
    np.testing.assert_allclose(metrics.ssim(a, b), _skimage_ssim(a, b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,a,b", PAIRS, ids=IDS)
def test_delta_e_matches_skimage(name, a, b):
    expected = deltaE_cie76(rgb2lab(a), rgb2lab(b)).mean()
    np.testing.assert_allclose(metrics.delta_e(a, b), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(metrics.delta_e(a, b), expected, rtol=0, atol=1e-10)


def test_lab_matches_skimage_on_every_8bit_colour_axis():
    levels = np.arange(256, dtype=np.uint8)
    img = np.stack(np.meshgrid(levels, levels[::5], levels[::7], indexing="ij"), -1)
    img = img.reshape(256, -1, 3)
    np.testing.assert_allclose(metrics.srgb_to_lab(img), rgb2lab(img), rtol=0, atol=1e-9)


def test_float_inputs_use_unit_data_range():
    _, a, b = PAIRS[0]
    fa, fb = a / 255.0, b / 255.0
    np.testing.assert_allclose(
        metrics.psnr(fa, fb), peak_signal_noise_ratio(fa, fb, data_range=1.0), rtol=1e-12
    )
    np.testing.assert_allclose(metrics.ssim(fa, fb), _skimage_ssim(fa, fb, 1.0), atol=1e-10)
    np.testing.assert_allclose(metrics.delta_e(fa, fb), metrics.delta_e(a, b), atol=1e-10)
    np.testing.assert_allclose(metrics.ssim_paper(fa, fb), metrics.ssim_paper(a, b), atol=1e-10)


def test_batched_inputs_give_per_image_values():
    _, a, b = PAIRS[0]
    _, _, c = PAIRS[1]
    batch_a, batch_b = np.stack([a, a, b]), np.stack([b, c, b])
    for fn in (metrics.psnr, metrics.ssim, metrics.ssim_paper, metrics.delta_e):
        got = fn(batch_a, batch_b)
        assert got.shape == (3,)
        want = [fn(a, b), fn(a, c), fn(b, b)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_identical_images():
    _, a, _ = PAIRS[0]
    assert metrics.psnr(a, a) == np.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim_paper(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.delta_e(a, a) == 0.0


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 5, np.uint8)  # MSE 25 -> 10 log10(255^2 / 25) = 20 log10(51)
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(51), abs=1e-12)


@pytest.mark.parametrize(
    "height,width,factor",
    [
        (480, 722, 2),  # FiveK 480p landscape
        (722, 480, 3),  # portrait: min(M, N) = min(722, 3 * 480) = 722 -> round(2.82)
        (640, 1000, 3),  # 2.5 rounds away from zero in MATLAB (Python's round gives 2)
        (360, 540, 1),  # 1.41 -> 1
        (100, 30, 1),  # 3W = 90: never below 1
        (2000, 3008, 8),
    ],
)
def test_paper_downsample_factor(height, width, factor):
    assert metrics.paper_downsample_factor(height, width) == factor


def _matlab_ssim_transcription(img1: np.ndarray, img2: np.ndarray) -> float:
    """Zhou Wang's ssim.m as called by fivek_calculate_metrics.m, line by line.

    MATLAB facts used: ``[M N] = size(A)`` of an H x W x 3 array is (H, 3W);
    ``A(1:f:end, 1:f:end)`` with two subscripts folds the trailing dims into the second,
    i.e. a column-major reshape to H x 3W; ``imfilter(.., 'symmetric', 'same')`` with an
    f x f kernel anchors it at ``floor((f+1)/2)`` and mirrors the border including the
    edge pixel (numpy's 'symmetric').
    """
    img1, img2 = img1.astype(np.float64), img2.astype(np.float64)
    m, n = img1.shape[0], img1.shape[1] * img1.shape[2]
    f = max(1, int(np.floor(min(m, n) / 256 + 0.5)))
    if f > 1:
        lpf = np.ones((f, f)) / f**2
        c = (f + 1) // 2
        pad = ((c - 1, f - c), (c - 1, f - c))

        def imfilter(img):
            planes = [np.pad(img[..., k], pad, mode="symmetric") for k in range(3)]
            return np.stack([correlate2d(p, lpf, mode="valid") for p in planes], -1)

        img1, img2 = imfilter(img1), imfilter(img2)
    img1 = img1.reshape(m, n, order="F")[::f, ::f]
    img2 = img2.reshape(m, n, order="F")[::f, ::f]
    x = np.arange(-5, 6)
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filter2(img):
        return correlate2d(img, window, mode="valid")

    mu1, mu2 = filter2(img1), filter2(img2)
    s1 = filter2(img1 * img1) - mu1 * mu1
    s2 = filter2(img2 * img2) - mu2 * mu2
    s12 = filter2(img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize(
    "height,width", [(96, 160), (85, 129), (129, 85), (200, 301), (60, 25)], ids=str
)
def test_ssim_paper_matches_matlab_transcription(height, width):
    # 200x301 gives f = 2 with an odd width, so the column subsampling changes phase
    # from one plane to the next; 85x129 and 60x25 stay at f = 1, 129x85 reaches 3W = 255.
    rng = np.random.default_rng(height * 1000 + width)
    a = _photo(width, height)
    b = np.clip(a + rng.normal(0, 10, a.shape) - 5, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(
        metrics.ssim_paper(a, b), _matlab_ssim_transcription(a, b), rtol=0, atol=1e-12
    )


def test_ssim_paper_differs_from_standard():
    # The side-by-side quirk and the downsampling make a visible difference on a real
    # photo: the two SSIMs must not be confused in reports.
    _, a, b = PAIRS[0]
    assert abs(metrics.ssim_paper(a, b) - metrics.ssim(a, b)) > 1e-3


def test_all_metrics_returns_floats():
    _, a, b = PAIRS[2]
    result = metrics.all_metrics(a, b)
    assert set(result) == {"psnr", "ssim", "ssim_paper", "delta_e"}
    assert all(isinstance(v, float) for v in result.values())


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 17, 3), np.uint8), "same shape"),
        (np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16, 4), np.uint8), r"\(\.\.\., H, W, 3\)"),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.float32), "same dtype"),
        (np.zeros((16, 16, 3), np.int32), np.zeros((16, 16, 3), np.int32), "uint8, uint16"),
    ],
)
def test_bad_inputs_raise(a, b, match):
    with pytest.raises(ValueError, match=match):
        metrics.psnr(a, b)


def test_ssim_rejects_images_smaller_than_the_window():
    a = np.zeros((10, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(a, a)
