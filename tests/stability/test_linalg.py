"""Tests for captum_rig.stability._linalg: Gram iteration on plain matrices."""

import torch

from captum_rig.stability._linalg import gram_bound


def test_gram_iteration_on_matrices():
    """On plain matrices: above the largest singular value, within rank^(1/2^(t+1))."""
    matrices = torch.randn(5, 7, 4, dtype=torch.float64) * torch.logspace(-3, 3, 5).view(5, 1, 1)
    exact = torch.linalg.matrix_norm(matrices, 2)
    for t in (1, 3, 8):
        bound = gram_bound(matrices, t)
        assert bool((bound >= exact * (1 - 1e-12)).all()), f"t={t}: {bound} < {exact}"
        assert bool((bound <= exact * 4 ** (1 / 2 ** (t + 1)) * (1 + 1e-12)).all()), t
