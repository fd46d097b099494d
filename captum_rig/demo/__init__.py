"""The demo: attribution figures, rank galleries, rank spectra and contributions, scores.

:func:`run_demo` (``captum-rig demo --out DIR``) needs nothing but the package: the
synthetic shapes, the two demo CNNs of :mod:`captum_rig.models` and the photographs of
:mod:`captum_rig.data`. ``stages`` runs the job, ``report`` writes its prose.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from captum_rig.demo._state import OUTPUTS, SHAPES_TEST_SEED
from captum_rig.demo.stages import run_demo

__all__ = ["run_demo", "OUTPUTS", "SHAPES_TEST_SEED"]
