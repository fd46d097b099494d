r"""Stability analysis: "Intriguing properties of neural networks" revisited.

How far can a small input change move a model? Three views, and a table comparing models:

- **Layer operator norms and the Lipschitz upper bound** (Szegedy et al. 2013, Sec. 4.3).
  Every layer's L2 → L2 operator norm (a certified upper bound, tight to about 10⁻⁶, for
  ``nn.Linear`` and ``nn.Conv2d``, or a power-iteration estimate; known constants for
  BatchNorm in eval mode, pooling and activations), combined along the model's graph
  (``torch.fx``): a chain multiplies, a residual addition adds, a concatenation takes the
  root of the sum of squares. :func:`lipschitz_bound` works through ResNets, VGG,
  DenseNet and MobileNetV2; an operation with no known constant gives ``None`` and a
  note naming it.
- **Average minimal distortion**: per image, the smallest perturbation found that changes
  the prediction: a search over the PGD radius from small radii up, then bisection (L2
  and L∞, through :func:`captum_rig.robustness.pgd_attack`, with its resolution), the
  minimal-norm attacks DeepFool, FAB and CW (``attacks``), the best of them per image,
  and a search over the standard deviation of Gaussian noise; then the mean over images.
- **Spectra**: the singular values of every weight (:func:`weight_spectra`) and of every
  feature map (:func:`feature_map_spectra`).

:func:`compare_stability` puts several models side by side (one row per model and
attack, with clean accuracy and the Lipschitz bound), as in the comparison of a network
trained from scratch with one fine-tuned from ImageNet; :func:`write_stability` writes
that table as Markdown, CSV and JSON.

One idea per module: ``conv`` (convolution norms), ``layers`` (the one table of layer
rules), ``layer_norms`` (every layer call's norm), ``lipschitz`` (the bound along the
graph), ``local`` (the lower bound), ``minimal`` (a search's result), ``distortion``
(minimal distortion), ``attacks`` (minimal-norm attacks), ``report`` (one model's
report), ``spectra``, ``compare`` (the comparison) and ``table`` (its table and files).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).

    Sedghi, Gupta, Long. The Singular Values of Convolutional Layers. ICLR 2019.

    Rump. Verification of positive definiteness. BIT 46 (2006) 433–452.
"""

from captum_rig.stability.attacks import MINIMAL_NORM_ATTACKS, AttackSearch, best_distortion
from captum_rig.stability.compare import ATTACKS, compare_stability
from captum_rig.stability.conv import BAD_INPUT_SIZE as BAD_INPUT_SIZE  # a message template
from captum_rig.stability.conv import conv2d_norm_bound, conv2d_operator_norm
from captum_rig.stability.distortion import (
    LADDER,
    MinimalDistortion,
    gaussian_minimal_distortion,
    minimal_distortion,
)
from captum_rig.stability.layer_norms import layer_operator_norms
from captum_rig.stability.layers import RULES, OperatorNorm, Rule
from captum_rig.stability.lipschitz import LipschitzReport, lipschitz_analysis, lipschitz_bound
from captum_rig.stability.local import local_lipschitz
from captum_rig.stability.report import StabilityReport, stability_analysis
from captum_rig.stability.spectra import UNKNOWN_LAYERS as UNKNOWN_LAYERS  # a message template
from captum_rig.stability.spectra import feature_map_spectra, weight_spectra
from captum_rig.stability.table import (
    STABILITY_FILES,
    StabilityRow,
    StabilityTable,
    check_stability_outputs,
    write_stability,
)

__all__ = [
    "OperatorNorm",
    "conv2d_operator_norm",
    "conv2d_norm_bound",
    "layer_operator_norms",
    "LipschitzReport",
    "lipschitz_analysis",
    "lipschitz_bound",
    "local_lipschitz",
    "MinimalDistortion",
    "minimal_distortion",
    "gaussian_minimal_distortion",
    "LADDER",
    "AttackSearch",
    "best_distortion",
    "MINIMAL_NORM_ATTACKS",
    "StabilityReport",
    "stability_analysis",
    "weight_spectra",
    "feature_map_spectra",
    "StabilityRow",
    "StabilityTable",
    "compare_stability",
    "write_stability",
    "check_stability_outputs",
    "STABILITY_FILES",
    "Rule",
    "RULES",
    "ATTACKS",
]
