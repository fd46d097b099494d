"""captum-rig: the singular value perspective on model robustness, as a Captum plugin.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from captum_rig.attr.blur_ig import BlurIG, BlurIntegratedGradients
from captum_rig.attr.layer_rig import LayerRankIntegratedGradients, LayerRIG
from captum_rig.attr.rank_contributions import rank_contributions
from captum_rig.attr.rig import RIG, RankIntegratedGradients
from captum_rig.lowrank import RankPath, drop_top_ranks, low_rank
from captum_rig.spectrum import RankSpectrum, rank_spectrum
from captum_rig.transforms import DropTopRanks, LowRank

__version__ = "0.1.0"

__all__ = [
    "RankIntegratedGradients",
    "RIG",
    "BlurIntegratedGradients",
    "BlurIG",
    "LayerRankIntegratedGradients",
    "LayerRIG",
    "rank_contributions",
    "low_rank",
    "drop_top_ranks",
    "RankPath",
    "rank_spectrum",
    "RankSpectrum",
    "LowRank",
    "DropTopRanks",
]
