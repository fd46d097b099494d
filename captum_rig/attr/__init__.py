"""Attribution methods, one per file, each a Captum ``GradientAttribution``."""

from captum_rig.attr.blur_ig import BlurIG, BlurIntegratedGradients
from captum_rig.attr.layer_rig import LayerRankIntegratedGradients, LayerRIG
from captum_rig.attr.rig import RIG, RankIntegratedGradients

__all__ = [
    "RankIntegratedGradients",
    "RIG",
    "BlurIntegratedGradients",
    "BlurIG",
    "LayerRankIntegratedGradients",
    "LayerRIG",
]
