"""Tests for captum_rig.stability._linalg: the Cholesky-certified norm of many matrices."""

import math

import pytest
import torch

import captum_rig.stability._linalg as linalg
from captum_rig.stability._linalg import UNIT_ROUNDOFF, certified_norm, gram_matrix


def _grams(matrices):
    return matrices.mH @ matrices


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_certified_norm_is_above_and_close_to_the_largest_norm(dtype):
    """Plain matrices over six orders of magnitude, real and complex, several batches."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-3, 3, 7, dtype=torch.float64).view(7, 1, 1)
    batches = [torch.randn(7, 60, 50, generator=generator, dtype=dtype) * scales for _ in range(3)]
    exact = max(float(torch.linalg.matrix_norm(b, 2).max()) for b in batches)
    bound = certified_norm([_grams(b) for b in batches], error=0.0)
    assert exact <= bound <= exact * (1 + 1e-5), (bound, exact)


def test_certified_norm_holds_when_the_ranking_is_wrong(monkeypatch):
    """The power iterations only rank; ranked backwards, the matrix with the largest norm
    fails the Cholesky test, gets its own eigenvalue, and the bound still holds."""
    monkeypatch.setattr(linalg, "_rayleigh", lambda grams, n_iter, seed: -grams[:, 0, 0].real)
    matrices = torch.diag_embed(torch.linspace(1.0, 2.0, 20, dtype=torch.float64)[:, None] *
                                torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))  # fmt: skip
    bound = certified_norm([_grams(matrices)], error=0.0, top=1)
    assert 2.0 <= bound <= 2.0 * (1 + 1e-5), bound


def test_certified_norm_adds_the_error_of_the_gram_matrices():
    """The bound is √(λ + error): a Gram matrix computed within ``error`` is covered."""
    grams = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))[None]
    assert certified_norm([grams.clone()], error=0.0) == pytest.approx(2.0, rel=1e-6)
    assert certified_norm([grams.clone()], error=5.0) == pytest.approx(3.0, rel=1e-6)


def test_the_cholesky_test_refuses_a_matrix_at_its_level():
    """``level·I − G`` singular (an eigenvalue exactly at the level) is not certified; a
    level just above the eigenvalue is."""
    grams = torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64))[None]
    assert linalg._not_below(grams, 1.0, 0.0).shape[0] == 1
    assert linalg._not_below(grams, 1.0 + 1e-9, 0.0).shape[0] == 0
    assert linalg._not_below(grams, 0.999, 0.0).shape[0] == 1


def test_certified_norm_of_non_finite_matrices_is_inf():
    grams = torch.eye(3, dtype=torch.float64)[None].repeat(5, 1, 1)
    grams[3, 1, 1] = float("nan")
    assert certified_norm([grams], error=0.0) == math.inf


def test_gram_matrix_takes_the_smaller_side_and_bounds_its_rounding():
    """``M Mᵀ`` or ``Mᵀ M``, whichever is smaller, with ``error >= γ_m ‖M‖_F²``."""
    matrix = torch.randn(30, 7, dtype=torch.float64)
    gram, error = gram_matrix(matrix)
    assert gram.shape == (7, 7)
    torch.testing.assert_close(gram, matrix.T @ matrix)
    assert error >= 30 * UNIT_ROUNDOFF * float(torch.linalg.matrix_norm(matrix)) ** 2
    assert gram_matrix(matrix.T)[0].shape == (7, 7)


def test_the_matrices_that_fail_come_back_exactly_as_given():
    """The in-place test gives back the failed matrices bit for bit (their eigenvalues are
    computed next: a rounded copy would be a different matrix)."""
    generator = torch.Generator().manual_seed(1)
    matrices = torch.randn(6, 9, 9, generator=generator, dtype=torch.complex128) / 3
    grams = _grams(matrices)
    original = grams.clone()
    failed = linalg._not_below(grams, 1e-3, 0.0, in_place=True)
    assert failed.shape[0] == 6 and torch.equal(failed, original)
