"""AdaInt's losses against values worked out by hand on tiny LUTs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ailut_jax import identity_lut
from ailut_jax.losses import monotonicity, mse, rank_sparsity, smoothness, total_loss
from ailut_jax.models import ModelOutput


def _tiny_basis():
    """Two ranks of D=2 LUTs with a few hand-placed decreasing steps."""
    basis = np.zeros((2, 3, 2, 2, 2), np.float32)
    basis[0] = identity_lut(2)  # non-decreasing everywhere: no penalty
    # rank 1, channel 0: one corner 0.5 above its neighbour along the red axis.
    basis[1, 0, 0, 0, 0] = 0.5
    # rank 1, channel 2: a drop of 0.25 along blue at (g=1, r=1).
    basis[1, 2, 0, 1, 1] = 0.25
    return basis


def test_mse():
    a = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    b = jnp.array([[1.0, 1.0], [0.0, 3.0]])
    assert float(mse(a, b)) == pytest.approx((1 + 0 + 4 + 0) / 4)
    with pytest.raises(ValueError, match="shapes differ"):
        mse(a, b[:1])


def test_rank_sparsity():
    w = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    assert float(rank_sparsity(w)) == pytest.approx((1 + 4 + 0.25 + 0 + 9 + 1) / 6)


def test_monotonicity_by_hand():
    basis = _tiny_basis()
    # Each axis has 2 ranks summed, then the mean over 3 channels x (1 x 2 x 2) steps = 12.
    # Along r: rank 1 step 0.5 -> 0 at channel 0 (b=0, g=0): 0.5 / 12.
    # Along g: channel 0 corner (b=0, r=0) 0.5 -> 0: 0.5 / 12.
    # Along b: channel 0 (g=0, r=0) 0.5 -> 0 and channel 2 (g=1, r=1) 0.25 -> 0: 0.75 / 12.
    # Increasing steps (the identity, the rise up to 0.25) cost nothing.
    expected = (0.5 + 0.5 + 0.75) / 12
    assert float(monotonicity(jnp.asarray(basis))) == pytest.approx(expected, rel=1e-6)
    assert float(monotonicity(jnp.asarray(identity_lut(9)[None]))) == 0.0


def test_smoothness_by_hand():
    basis = _tiny_basis()
    # Squares of every step, increasing ones included. Identity: along r, channel 0 has
    # steps of 1 on each of the 4 (b, g) rows; likewise g for channel 1 and b for
    # channel 2: 4 per axis. Rank 1: channel 0's 0.5 corner gives 0.25 along each axis
    # and channel 2's 0.25 corner gives 0.0625 along each axis.
    along_r = 4 * 1.0 + 0.25 + 0.0625
    along_g = 4 * 1.0 + 0.25 + 0.0625
    along_b = 4 * 1.0 + 0.25 + 0.0625
    expected = (along_r + along_g + along_b) / 12
    assert float(smoothness(jnp.asarray(basis))) == pytest.approx(expected, rel=1e-6)


def _authors_regularizations(basis):
    """numpy transcription of LUTGenerator.regularizations (flip, diff, sum(0).mean())."""
    tv = mn = 0.0
    for axis in range(2, 5):
        diff = np.diff(np.flip(basis, axis), axis=axis)
        tv += np.square(diff).sum(0).mean()
        mn += np.maximum(diff, 0).sum(0).mean()
    return tv, mn


def test_regularisers_match_the_authors_formulation():
    basis = np.random.default_rng(0).normal(size=(3, 3, 5, 5, 5)).astype(np.float32)
    tv, mn = _authors_regularizations(basis.astype(np.float64))
    assert float(smoothness(jnp.asarray(basis))) == pytest.approx(tv, rel=1e-5)
    assert float(monotonicity(jnp.asarray(basis))) == pytest.approx(mn, rel=1e-5)


def test_basis_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(M, 3, D, D, D\)"):
        monotonicity(jnp.zeros((3, 5, 5, 5)))


def test_total_loss_combines_terms_with_default_weights():
    basis = jnp.asarray(_tiny_basis())
    rng = np.random.default_rng(1)
    out = ModelOutput(
        output=jnp.asarray(rng.random((2, 4, 4, 3), np.float32)),
        lut=jnp.zeros((2, 3, 2, 2, 2)),
        vertices=jnp.zeros((2, 3, 2)),
        weights=jnp.asarray([[1.0, 2.0], [3.0, -1.0]]),
    )
    target = jnp.asarray(rng.random((2, 4, 4, 3), np.float32))
    loss, terms = total_loss(out, target, basis)
    m = float(np.mean((np.asarray(out.output) - np.asarray(target)) ** 2))
    assert float(terms["mse"]) == pytest.approx(m, rel=1e-6)
    assert float(terms["sparsity"]) == pytest.approx(15 / 4)
    assert float(terms["monotonicity"]) == pytest.approx(1.75 / 12, rel=1e-6)
    expected = m + 1e-4 * 15 / 4 + 10 * 1.75 / 12  # smoothness weight 0 (docs/training.md#losses)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(terms["loss"]) == float(loss)
    loss2, _ = total_loss(out, target, basis, sparsity=0.0, monotonicity=0.0, smoothness=2.0)
    assert float(loss2) == pytest.approx(m + 2 * float(terms["smoothness"]), rel=1e-6)


def test_monotonicity_gradient_pushes_steps_up():
    basis = jnp.asarray(_tiny_basis())
    g = jax.grad(monotonicity)(basis)
    # Raising the lower neighbour of a decreasing step lowers the penalty.
    assert float(g[1, 0, 0, 0, 1]) < 0 and float(g[1, 0, 0, 0, 0]) > 0
    np.testing.assert_array_equal(g[0], 0.0)
