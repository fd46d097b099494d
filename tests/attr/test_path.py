"""The path loop every method shares: how the path points are cut into passes."""

import pytest
import torch
from _reference import SinModel

from captum_rig import RIG
from captum_rig.attr import _path


class TestPassSizes:
    """How the path is cut into forward passes."""

    @staticmethod
    def _batch_sizes(forward, inputs, **kwargs):
        sizes = []

        def recording(*args):
            sizes.append(args[0].shape[0])
            return forward(*args)

        RIG(recording).attribute(inputs, target=0, **kwargs)
        return sizes

    @pytest.mark.parametrize("num_examples, sizes", [(1, [64, 36]), (3, [63] * 4 + [48])])
    def test_default_passes_hold_64_examples_whatever_the_batch(self, num_examples, sizes):
        """Without internal_batch_size a pass holds 64 // N points of N examples each."""
        x = torch.rand(num_examples, 3, 6, 6, dtype=torch.float64)
        got = self._batch_sizes(SinModel(), x, method="riemann_middle", n_steps=100)
        assert got == sizes

    def test_default_passes_are_bounded_in_bytes(self, monkeypatch):
        """Large images get fewer examples per pass: at most DEFAULT_PASS_BYTES of points."""
        x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
        per_example = 3 * 16 * 16 * 8
        assert _path.example_bytes((x,)) == per_example
        monkeypatch.setattr(_path, "DEFAULT_PASS_BYTES", 10 * per_example)
        got = self._batch_sizes(SinModel(), x, method="riemann_middle", n_steps=12)
        assert got == [10, 10, 4], "5 points of 2 examples, then 2"
        # A tuple counts every input's bytes.
        monkeypatch.setattr(_path, "DEFAULT_PASS_BYTES", 12 * per_example)
        got = self._batch_sizes(
            lambda a, c: (a.sum((1, 2, 3)) + c.sum((1, 2, 3)))[:, None],
            (x, x.clone()),
            method="riemann_middle",
            n_steps=12,
        )
        assert got == [6, 6, 6, 6], "6 examples of two inputs each"

    def test_default_for_a_megapixel_image(self):
        """A 1024×1024 RGB float32 image: 12 MiB a point, two examples per pass."""
        x = torch.empty(1, 3, 1024, 1024)
        step = _path.points_per_pass(1, None, _path.example_bytes((x,)))
        assert step == _path.DEFAULT_PASS_BYTES // (12 * 2**20) == 2
        assert _path.points_per_pass(1, 8, _path.example_bytes((x,))) == 8, "given: as is"

    def test_default_path_steps_follow_the_widest_input(self):
        """Path methods default to n_steps = the largest min(H, W) of the inputs."""
        a = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        c = torch.rand(1, 1, 9, 12, dtype=torch.float64)
        for inputs in ((a, c), (c, a)):
            sizes = self._batch_sizes(
                lambda p, q: (p.sum((1, 2, 3)) + q.sum((1, 2, 3)))[:, None],
                inputs,
                method="riemann_right",
            )
            assert sum(sizes) == 9, f"{sizes}: 9 steps, the wider input's width"
