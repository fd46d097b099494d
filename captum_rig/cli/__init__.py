"""``captum-rig``: low-rank images, attributions, rank spectra and PGD robustness from a shell.

Subcommands (``captum-rig <command> --help`` for each; the reference is ``docs/cli.md``):

- ``demo``: the self-contained demo (synthetic data, a small model, every figure).
- ``explain``: attribution maps of images for a model, side by side per method.
- ``lowrank``: the rank-k (or top-k-removed) version of an image.
- ``spectrum``: the paper's Algorithm 1 over a data set, for one or several models.
- ``robustness``: targeted or untargeted PGD, the paper's Table 2, for several models.
- ``contributions``: how much of ``F(x) - F(0)`` each singular component accounts for.
- ``stability``: minimal distortions, Lipschitz bounds and layer spectra of models.

One module per sub-command (``add_parser``, ``run``), listed in :data:`COMMANDS`; the
package parses arguments and calls the library: images, folders and CIFAR-10 are read by
:mod:`captum_rig.data`, models by :mod:`captum_rig.loading`, figures drawn by
:mod:`captum_rig.viz`.

Exit codes: 0 success; 2 a usage or input error (one line ``captum-rig: error: ...`` on
stderr, no traceback, no output file written); 130 interrupted. Output files are written
under a temporary name in their folder and renamed when complete.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from captum_rig.cli._main import COMMANDS, build_parser, main
from captum_rig.cli._options import parse_ranks

__all__ = ["main", "parse_ranks", "build_parser", "COMMANDS"]
