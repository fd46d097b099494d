"""The rank path RIG, LayerRIG and rank_contributions share: Eq. (3)'s weights, nodes,
cells and the checks on the inputs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from captum_rig import RIG
from captum_rig.attr.rank_path import (
    BaselineRankPath,
    check_method,
    paper_rank_weights,
    path_nodes,
    rank_nodes,
)


class TestPaperRankWeights:
    """paper_rank_weights: the ranks Eq. (3) evaluates and their weights."""

    def test_rank_weights(self):
        """Weights are (w - k) / w; subsampled groups carry the summed weight."""
        ranks, weights = paper_rank_weights(8)
        assert ranks == list(range(1, 8))
        np.testing.assert_allclose(weights, [(8 - k) / 8 for k in ranks])
        for m in range(1, 9):
            sub_ranks, sub_weights = paper_rank_weights(8, m)
            assert len(sub_ranks) == min(m, 7) and sorted(set(sub_ranks)) == sub_ranks
            assert math.isclose(sum(sub_weights), sum(weights)), "total weight must be kept"
        assert paper_rank_weights(1) == ([], [])

    # Written by hand from the rule: masses w - k (k = 1..w-1), group j ends at the rank
    # whose cumulative mass is closest to j/m of the total, each group evaluated at the
    # rank nearest its mass-weighted mean rank. E.g. w = 8, m = 3: masses 7..1, total 28,
    # cumulative 7, 13, 18, 22, ...; 28/3 ≈ 9.3 is closest to 7 (rank 1), 56/3 ≈ 18.7 to
    # 18 (rank 3): groups {1}, {2, 3}, {4..7}; means 1, 27/11 ≈ 2.45, 50/10 = 5.
    @pytest.mark.parametrize(
        "width, n_steps, ranks, weights",
        [
            (4, 1, [2], [1.5]),
            (4, 2, [1, 2], [0.75, 0.75]),
            (8, 2, [1, 4], [1.625, 1.875]),
            (8, 3, [1, 2, 5], [0.875, 1.375, 1.25]),
            (8, 6, [1, 2, 3, 4, 5, 6], [0.875, 0.75, 0.625, 0.5, 0.375, 0.375]),
            (10, 4, [1, 2, 4, 7], [0.9, 1.5, 1.1, 1.0]),
            (2, 1, [1], [0.5]),
        ],
    )
    def test_rank_weights_pinned(self, width, n_steps, ranks, weights):
        """The grouped ranks and weights, computed by hand from the equal-mass rule."""
        got_ranks, got_weights = paper_rank_weights(width, n_steps)
        assert got_ranks == ranks, f"w={width}, m={n_steps}: {got_ranks}"
        np.testing.assert_allclose(got_weights, weights, rtol=1e-12)

    def test_groups_have_equal_weight_mass(self):
        """For w = 224, m = 16 every group's weight is within one rank's weight of the mean."""
        ranks, weights = paper_rank_weights(224, 16)
        mean = sum(weights) / 16
        assert len(ranks) == 16 and all(abs(g - mean) <= 223 / 224 for g in weights), weights
        assert ranks[0] < 10 and ranks[-1] > 150, "groups must spread over all ranks"


class TestRankNodes:
    """rank_nodes: where RIG and LayerRIG evaluate gradients, for both variants."""

    def test_paper_nodes_are_the_grouped_ranks(self):
        """ "paper": the ranks and weights of paper_rank_weights, rank-k images at each."""
        x = torch.rand(2, 3, 8, 6, dtype=torch.float64)
        nodes = rank_nodes((x,), n_steps=3)
        ranks, weights = paper_rank_weights(6, 3)
        assert nodes.paper and len(nodes) == 3 and nodes.nodes.tolist() == ranks
        np.testing.assert_allclose(nodes.weights.numpy(), weights, rtol=0)
        points = nodes.points(0, 3)[0]
        assert points.shape == (3, 2, 3, 8, 6)
        ranks_seen = torch.linalg.matrix_rank(points, atol=1e-8).amax(dim=(1, 2))
        assert ranks_seen.tolist() == ranks, "node k is the rank-k image"

    def test_weighted_is_the_weighted_sum(self):
        """weighted(start, stop, grads) is Σ_s weights[s] · grads[s] over the slice."""
        nodes = rank_nodes((torch.rand(1, 1, 6, 6, dtype=torch.float64),))
        grads = torch.rand(3, 1, 1, 6, 6, dtype=torch.float64)
        (got,) = nodes.weighted(1, 4, (grads,))
        expected = sum(w * g for w, g in zip(nodes.weights[1:4].tolist(), grads))
        torch.testing.assert_close(got, expected)

    @pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_trapezoid"])
    def test_path_cells_cover_the_path(self, method):
        """A path rule's cells cover t ∈ [0, w] of every input: increments sum to x - b."""
        a = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        c = torch.rand(2, 1, 5, 9, dtype=torch.float64)
        nodes = rank_nodes((a, c), baselines=(0.5, None), method=method, n_steps=7)
        alphas, edges = path_nodes(method, 7)
        assert not nodes.paper and len(nodes) == 7 and torch.equal(nodes.nodes, alphas)
        assert edges[0] == 0 and edges[-1] == 1 and bool((torch.diff(edges) > 0).all())
        steps = nodes.increments(0, 7)
        torch.testing.assert_close(steps[0].sum(0), a - 0.5)
        torch.testing.assert_close(steps[1].sum(0), c)
        torch.testing.assert_close(nodes.edge_points(7, 8)[1][0], c)

    def test_n_steps_defaults(self):
        """Without n_steps: w - 1 ranks for "paper", the widest input's w for path rules."""
        a, c = torch.rand(1, 3, 6, 6), torch.rand(1, 1, 9, 12)
        assert len(rank_nodes((a,))) == 5
        assert len(rank_nodes((a, c), method="riemann_right")) == 9

    def test_baseline_path_ends(self):
        """x(0) is the baseline, x(w) the input bit for bit."""
        x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
        b = torch.rand(1, 3, 1, 1, dtype=torch.float64)
        path = BaselineRankPath(x, b)
        ends = path.images([0, 5])
        torch.testing.assert_close(ends[0], b.expand_as(x))
        assert torch.equal(ends[1], x) and torch.equal(path.start(), b.expand_as(x))

    def test_bad_method_and_widths(self):
        """An unknown rule names method; "paper" needs one min(H, W) for all inputs."""
        with pytest.raises(ValueError, match="method must be 'paper' or one of"):
            check_method("simpson")
        with pytest.raises(ValueError, match="same min"):
            rank_nodes((torch.rand(1, 3, 6, 6), torch.rand(1, 3, 4, 4)))


@pytest.mark.parametrize("shape", [(1, 3, 1, 8), (1, 3, 8, 1), (2, 1, 1, 1)])
@pytest.mark.parametrize("method", ["paper", "gausslegendre"])
def test_single_rank_images_are_rejected(shape, method):
    """min(H, W) = 1 raises naming inputs in RIG, LayerRIG and rank_contributions."""
    from captum_rig.attr.layer_rig import LayerRankIntegratedGradients
    from captum_rig.attr.rank_contributions import rank_contributions

    net = nn.Sequential(nn.Flatten(), nn.Linear(shape[1] * shape[2] * shape[3], 2)).double()
    x = torch.rand(*shape, dtype=torch.float64)
    match = r"inputs must have min\(H, W\) >= 2 for the rank path"
    with pytest.raises(ValueError, match=match):
        RIG(net).attribute(x, target=0, method=method)
    with pytest.raises(ValueError, match=match):
        LayerRankIntegratedGradients(net, net[1]).attribute(x, target=0, method=method)
    with pytest.raises(ValueError, match=match):
        rank_contributions(net, x, target=0)


def test_single_rank_image_in_a_tuple_names_its_index():
    """In a tuple, the error names the offending input by index; width 2 is accepted."""
    net = lambda a, b: (a.sum((1, 2, 3)) + b.sum((1, 2, 3)))[:, None]  # noqa: E731
    a, b = torch.rand(1, 3, 2, 5), torch.rand(1, 3, 6, 1)
    with pytest.raises(ValueError, match=r"inputs\[1\] must have min\(H, W\) >= 2"):
        RIG(net).attribute((a, b), target=0)
    got = RIG(net).attribute((a, a), target=0)
    assert bool((got[0] != 0).any()), "min(H, W) = 2 still has a rank with weight 1/2"
