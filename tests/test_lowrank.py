"""low_rank, drop_top_ranks and RankPath against references computed another way."""

import numpy as np
import pytest
import torch
from _reference import numpy_rank_k
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_rig import RankPath, drop_top_ranks, low_rank
from captum_rig import _checks as checks


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 7, 12), (2, 1, 12, 5), (9, 4)])
def test_matches_per_channel_numpy_svd(shape, dtype, device):
    """Every rank-k image equals a literal per-image, per-channel numpy SVD truncation."""
    x = torch.rand(shape, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for k in range(min(shape[-2:]) + 2):
        expected = numpy_rank_k(x.numpy(), k)
        got = low_rank(x.to(device), k)
        assert got.dtype == dtype and got.shape == x.shape and got.device.type == device.type
        np.testing.assert_allclose(got.double().cpu().numpy(), expected, atol=tol, err_msg=f"k={k}")


def test_eckart_young_error_identity(device):
    """||x - x_k||_F^2 equals the sum of the dropped squared singular values."""
    x = torch.rand(3, 2, 10, 7, dtype=torch.float64, device=device)
    s = torch.linalg.svdvals(x)
    for k in range(8):
        err = (x - low_rank(x, k)).pow(2).sum((-2, -1))
        torch.testing.assert_close(err, s[..., k:].pow(2).sum(-1), msg=f"k={k}")


def test_rank_of_rank_k_image_is_at_most_k():
    """rank(x_k) <= k, and = k for a generic random matrix."""
    x = torch.rand(2, 3, 12, 9, dtype=torch.float64)
    for k in range(10):
        ranks = torch.linalg.matrix_rank(low_rank(x, k))
        assert bool((ranks == k).all()), f"k={k}: ranks {ranks.tolist()}"


def test_endpoints():
    """k=0 gives zeros; k >= min(H, W) gives x back exactly."""
    x = torch.rand(2, 3, 6, 9)
    assert bool((low_rank(x, 0) == 0).all()), "rank 0 must be zero"
    assert torch.equal(low_rank(x, 6), x) and torch.equal(low_rank(x, 100), x)
    assert torch.equal(drop_top_ranks(x, 0), x) and bool((drop_top_ranks(x, 6) == 0).all())


def test_drop_top_ranks_is_the_complement():
    """drop_top_ranks(x, k) == x - low_rank(x, k), and keeps the singular values above k."""
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    for k in range(9):
        torch.testing.assert_close(drop_top_ranks(x, k), x - low_rank(x, k))
        s = torch.linalg.svdvals(x)
        s_high = torch.linalg.svdvals(drop_top_ranks(x, k))[..., : 8 - k]
        torch.testing.assert_close(s_high, s[..., k:], msg=f"k={k}")


@pytest.mark.parametrize("k", [0, 1, 3, 4, 5])
def test_gradcheck(k):
    """low_rank is differentiable in x (float64 gradcheck, away from repeated values)."""
    x = torch.rand(2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: low_rank(a, k), (x,))
    assert torch.autograd.gradcheck(lambda a: drop_top_ranks(a, k), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast(dtype):
    """Half inputs are computed in float32 and returned in their own dtype."""
    x = torch.rand(1, 3, 16, 16)
    got = low_rank(x.to(dtype), 4)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), low_rank(x.to(dtype).float(), 4), atol=1e-2, rtol=0)


def test_non_contiguous_input():
    """A transposed (non-contiguous) view gives the same answer as its contiguous copy."""
    x = torch.rand(2, 3, 9, 6).transpose(-2, -1)
    assert not x.is_contiguous()
    torch.testing.assert_close(low_rank(x, 3), low_rank(x.contiguous(), 3))


def test_input_not_mutated():
    """The input tensor is left untouched."""
    x = torch.rand(2, 3, 8, 8)
    before = x.clone()
    low_rank(x, 3), drop_top_ranks(x, 3), RankPath(x).images([0, 4, 8])
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    "x, k, error, message",
    [
        ([[1.0]], 1, TypeError, "x must be a torch.Tensor"),
        (torch.ones(4), 1, ValueError, "x must have at least 2 dims"),
        (torch.ones(2, 3, 4, 4, dtype=torch.uint8), 1, TypeError, "floating point"),
        (torch.ones(2, 3, 4, 4, dtype=torch.int64), 1, TypeError, "x.float"),
        (torch.full((3, 4, 4), float("nan")), 1, ValueError, "x contains NaN or Inf"),
        (torch.full((3, 4, 4), float("inf")), 1, ValueError, "x contains NaN or Inf"),
        (torch.ones(0, 3, 4, 4), 1, ValueError, "x must not be empty"),
        (torch.ones(3, 4, 4), -1, ValueError, "k must be >= 0"),
        (torch.ones(3, 4, 4), 1.5, TypeError, "k must be an integer"),
        (torch.ones(3, 4, 4), 2.0, TypeError, "k must be an integer"),
        (torch.ones(3, 4, 4), True, TypeError, "k must be an integer"),
        (torch.ones(3, 4, 4), "3", TypeError, "k must be an integer"),
    ],
)
def test_bad_input(x, k, error, message):
    """Bad input raises a clear error naming the argument."""
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        low_rank(x, k)


def test_numpy_and_tensor_ints_are_ranks():
    """NumPy integers and 0-dim integer tensors are accepted as k."""
    x = torch.rand(3, 6, 6)
    torch.testing.assert_close(low_rank(x, np.int64(2)), low_rank(x, 2))
    torch.testing.assert_close(low_rank(x, torch.tensor(2)), low_rank(x, 2))


def test_error_templates_name_the_argument():
    """The shared templates put the argument's name first."""
    assert checks.NOT_FINITE.format(name="images").startswith("images ")


@settings(max_examples=30, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.integers(0, 11),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_shape_dtype_rank(batch, h, w, k, dtype):
    """For any shape, dtype and k: shape and dtype kept, rank <= k, Eckart-Young holds."""
    x = torch.rand(*batch, h, w, dtype=torch.float64)
    got = low_rank(x.to(dtype), k)
    assert got.shape == x.shape and got.dtype == dtype
    ref = torch.from_numpy(numpy_rank_k(x.to(dtype).double().numpy(), k))
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got.double(), ref, atol=tol, rtol=0)
    assert int(torch.linalg.matrix_rank(got.double(), atol=1e-3).max()) <= k


class TestRankPath:
    """The rank path: one SVD, every rank image, the continuous path between them."""

    def test_integer_points_are_rank_images(self, dtype, device):
        """x(k) == low_rank(x, k) for every integer k, and reverse == drop_top_ranks."""
        x = torch.rand(2, 3, 7, 9, dtype=dtype, device=device)
        path = RankPath(x)
        assert path.width == 7
        ranks = list(range(8))
        tol = dict(atol=1e-10, rtol=0) if dtype == torch.float64 else dict(atol=2e-5, rtol=0)
        for k, image in zip(ranks, path.images(ranks)):
            torch.testing.assert_close(image, low_rank(x, k), **tol)
        for k, image in zip(ranks, path.images(ranks, reverse=True)):
            torch.testing.assert_close(image, drop_top_ranks(x, k), **tol)

    def test_full_rank_is_the_input_bit_for_bit(self):
        """x(w) is x itself, so rank w can never flip a prediction."""
        x = torch.rand(2, 3, 16, 16)
        path = RankPath(x)
        assert torch.equal(path.images([16])[0], x)
        assert bool((path.images([16], reverse=True) == 0).all())

    def test_linear_between_integer_ranks(self):
        """x(k + a) = (1 - a) x(k) + a x(k + 1)."""
        x = torch.rand(1, 2, 6, 6, dtype=torch.float64)
        path = RankPath(x)
        a, b, mid = path.images([2.0, 3.0, 2.25])
        torch.testing.assert_close(mid, 0.75 * a + 0.25 * b)

    def test_displacement_is_the_difference_of_points(self):
        """displacement(s, t) = x(t) - x(s), also across integer ranks."""
        x = torch.rand(2, 3, 5, 8, dtype=torch.float64)
        path = RankPath(x)
        start, stop = torch.tensor([0.0, 0.3, 1.7, 2.0]), torch.tensor([0.3, 1.7, 4.9, 5.0])
        expected = path.images(stop) - path.images(start)
        torch.testing.assert_close(path.displacement(start, stop), expected)

    def test_chunks_cover_all_points_in_order(self):
        """chunks() yields every point once, in order, at most chunk_size at a time."""
        x = torch.rand(2, 3, 8, 8)
        path = RankPath(x)
        ranks = list(range(9))
        seen = []
        for start, images in path.chunks(ranks, 4):
            assert images.shape[0] <= 4
            seen.extend(range(start, start + images.shape[0]))
            torch.testing.assert_close(images, path.images(ranks[start : start + 4]))
        assert seen == ranks

    def test_singular_values_are_descending_and_correct(self):
        """singular_values match torch.linalg.svdvals of each matrix."""
        x = torch.rand(2, 3, 6, 10, dtype=torch.float64)
        torch.testing.assert_close(RankPath(x).singular_values, torch.linalg.svdvals(x))

    @pytest.mark.parametrize("t", [[-1], [9], [float("nan")]])
    def test_points_outside_the_path(self, t):
        """Points outside [0, w] raise a ValueError naming the ranks."""
        with pytest.raises(ValueError, match="ranks must lie in 0..8"):
            RankPath(torch.rand(3, 8, 8)).images(t)

    def test_matches_on_cuda(self, cuda_device):
        """CPU and CUDA give the same rank images."""
        x = torch.rand(2, 3, 16, 12)
        cpu = RankPath(x).images([1, 5, 12])
        gpu = RankPath(x.to(cuda_device)).images([1, 5, 12])
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_compute_dtype(dtype, expected):
    """Half and bfloat16 are upcast to float32; float32 and float64 are kept."""
    assert checks.compute_dtype(dtype) == expected


class TestSvdThreads:
    """The CPU SVD runs on one thread, and the caller's thread count comes back."""

    @pytest.fixture
    def two_threads(self):
        """Two intra-op threads during the test, the previous count after."""
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        yield
        torch.set_num_threads(before)

    def test_svd_sees_one_thread_and_count_is_restored(self, two_threads, monkeypatch):
        """RankPath and low_rank factor on one thread; the count is 2 again after."""
        seen = []
        svd = torch.linalg.svd

        def recording_svd(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return svd(*args, **kwargs)

        monkeypatch.setattr(torch.linalg, "svd", recording_svd)
        x = torch.rand(2, 3, 6, 6)
        RankPath(x)
        low_rank(x, 2)
        assert seen == [1, 1] and torch.get_num_threads() == 2

    def test_count_is_restored_on_error(self, two_threads, monkeypatch):
        """An SVD that fails still gives the thread count back."""

        def failing_svd(*args, **kwargs):
            raise RuntimeError("linalg.svd: did not converge")

        monkeypatch.setattr(torch.linalg, "svd", failing_svd)
        with pytest.raises(RuntimeError, match="did not converge"):
            RankPath(torch.rand(1, 1, 4, 4))
        assert torch.get_num_threads() == 2


def _with_spectrum(s: torch.Tensor, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """An h×w float64 matrix with singular values ``s`` and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(h, len(s), generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(w, len(s), generator=g, dtype=torch.float64)).Q
    return (u * s) @ v.T


class TestRandomized:
    """low_rank(..., method="randomized"): the truncated SVD from a random sketch."""

    @pytest.mark.parametrize("k", [1, 3, 7])
    def test_rank_is_at_most_k(self, k):
        """Every channel of the result has numerical rank <= k."""
        x = torch.rand(2, 3, 40, 30, dtype=torch.float64)
        got = low_rank(x, k, method="randomized")
        assert int(torch.linalg.matrix_rank(got).max()) == k

    @pytest.mark.parametrize("oversample, power_iters", [(10, 2), (0, 0), (3, 1)])
    def test_exact_on_matrices_of_rank_at_most_k(self, oversample, power_iters):
        """On matrices of rank r <= k it returns the matrix itself, as the exact SVD does."""
        g = torch.Generator().manual_seed(1)
        for r in (1, 4, 6):
            x = torch.randn(2, 3, 50, r, generator=g, dtype=torch.float64)
            x = x @ torch.randn(2, 3, r, 40, generator=g, dtype=torch.float64)
            got = low_rank(
                x, 6, method="randomized", oversample=oversample, power_iters=power_iters
            )
            torch.testing.assert_close(got, x, atol=1e-10, rtol=0, msg=f"r={r}")
            torch.testing.assert_close(got, low_rank(x, 6), atol=1e-10, rtol=0)
        x32 = x.float()
        torch.testing.assert_close(low_rank(x32, 6, method="randomized"), x32, atol=2e-4, rtol=0)

    @pytest.mark.parametrize(
        "spectrum",
        [
            1.0 / torch.arange(1, 151, dtype=torch.float64),
            torch.arange(1, 151, dtype=torch.float64) ** -0.5,
            0.9 ** torch.arange(150, dtype=torch.float64),
        ],
        ids=["1/i", "1/sqrt(i)", "0.9^i"],
    )
    def test_error_within_two_percent_of_eckart_young(self, spectrum):
        """Defaults: ‖x - x̂_k‖_F <= 1.02 × sqrt(Σ_{i>k} σ_i²) for decaying spectra, 10 seeds."""
        x = _with_spectrum(spectrum, 200, 170)
        for k in (5, 10, 30):
            optimum = float(spectrum[k:].square().sum().sqrt())
            for seed in range(10):
                error = float(torch.linalg.norm(x - low_rank(x, k, method="randomized", seed=seed)))
                assert optimum * (1 - 1e-9) <= error <= 1.02 * optimum, (k, seed, error / optimum)

    def test_power_iterations_tighten_the_error(self):
        """On a slowly decaying spectrum the plain sketch is visibly worse than the default."""
        spectrum = torch.arange(1, 151, dtype=torch.float64) ** -0.5
        x = _with_spectrum(spectrum, 200, 170)
        plain = torch.linalg.norm(x - low_rank(x, 10, method="randomized", power_iters=0))
        default = torch.linalg.norm(x - low_rank(x, 10, method="randomized"))
        assert plain > 1.05 * default

    def test_seeded_and_independent_of_the_batch(self):
        """One seed gives bit-identical results, another seed another; batchmates don't matter."""
        x = torch.rand(3, 2, 60, 50)
        a = low_rank(x, 4, method="randomized", seed=7)
        assert torch.equal(a, low_rank(x, 4, method="randomized", seed=7))
        assert not torch.equal(a, low_rank(x, 4, method="randomized", seed=8))
        torch.testing.assert_close(low_rank(x[1:2], 4, method="randomized", seed=7), a[1:2])

    @pytest.mark.parametrize("kind", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_dtype_and_device_kept(self, kind, device):
        """The result has the input's shape, dtype and device, and near-optimal error."""
        x = torch.rand(2, 3, 48, 40, device=device).to(kind)
        got = low_rank(x, 3, method="randomized")
        assert got.dtype == kind and got.device == x.device and got.shape == x.shape
        optimum = (x.double() - low_rank(x.double(), 3)).norm()
        assert float((x.double() - got.double()).norm()) <= 1.02 * float(optimum)

    def test_small_images_use_the_exact_svd(self):
        """With k + oversample >= min(H, W) the result is the exact one, bit for bit."""
        x = torch.rand(2, 3, 12, 16)
        assert torch.equal(low_rank(x, 3, method="randomized"), low_rank(x, 3))

    def test_drop_top_ranks_takes_the_same_options(self):
        """drop_top_ranks(x, k, method=...) is x - low_rank(x, k, method=...)."""
        x = torch.rand(1, 3, 60, 50, dtype=torch.float64)
        opts = dict(method="randomized", oversample=4, power_iters=1, seed=3)
        torch.testing.assert_close(drop_top_ranks(x, 5, **opts), x - low_rank(x, 5, **opts))

    def test_gradcheck(self):
        """Differentiable in x (the sketch is fixed by the seed)."""
        x = torch.rand(1, 14, 12, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda t: low_rank(t, 2, method="randomized", oversample=3), (x,)
        )

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            (dict(method="svd"), ValueError, "method must be one of"),
            (dict(oversample=-1), ValueError, "oversample must be >= 0"),
            (dict(power_iters=1.0), TypeError, "power_iters must be an integer"),
            (dict(seed=-2), ValueError, "seed must be >= 0"),
        ],
    )
    def test_bad_options(self, kwargs, error, message):
        """Bad options raise errors naming the argument."""
        with pytest.raises(error, match=message):
            low_rank(torch.rand(3, 8, 8), 2, **kwargs)
