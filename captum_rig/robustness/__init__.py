"""Robustness to PGD attacks, side by side: the paper's Table 2 as a tool.

:func:`evaluate_robustness` attacks every image of a data set with projected gradient
descent (PGD, Madry et al. 2018, through ``torchattacks``) and reports, for each model,
the three columns of the paper's Table 2: clean top-1 accuracy, attack success rate and
recovery rate. All models of one comparison see the same images, the same attack
targets and the same random starts.

Conventions: images are in [0, 1] pixel space and every model contains its own
normalization (torchattacks' convention and ours), so that ``eps`` is measured in pixel
units: ``eps = 4/255`` is four grey levels.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
    Adversarial Attacks. arXiv:1706.06083.
"""

from captum_rig.robustness.pgd import attack_targets, pgd_attack
from captum_rig.robustness.table2 import RobustnessReport, RobustnessRow, evaluate_robustness

__all__ = [
    "attack_targets",
    "pgd_attack",
    "evaluate_robustness",
    "RobustnessReport",
    "RobustnessRow",
]
