"""Shared settings and helpers of the demo tests: the small run, the rank_contributions
spy, the written paths by key."""

from captum_rig import rank_contributions
from captum_rig.demo import OUTPUTS

SMALL = dict(n_images=2, n_eval=6, n_spectrum=24, n_steps=4, score_steps=4, dpi=40)
STAGES = [
    "setup",
    "attributions",
    "rank galleries",
    "rank spectra",
    "rank contributions",
    "rank or frequency",
    "scores",
    "report",
]


def counting_rank_contributions(calls):
    """rank_contributions that records its inputs and the model rows it evaluated."""
    original = rank_contributions

    def spy(forward_func, inputs, **kwargs):
        rows = []

        def counted(x, *args):
            rows.append(x.shape[0])
            return forward_func(x, *args)

        result = original(counted, inputs, **kwargs)
        calls.append({"inputs": inputs.clone(), "evaluations": sum(rows), **kwargs})
        return result

    return spy


def by_key(paths):
    return {key: p for key, p in zip(OUTPUTS, paths)}
