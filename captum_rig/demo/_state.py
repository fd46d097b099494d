"""The demo's settings (what it writes, at which ranks, in which bands) and the record its
stages fill in and its report reads."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from torch import Tensor, nn

OUTPUTS = {
    "comparison_shapes": "comparison_shapes.png",
    "comparison_photo": "comparison_photo.png",
    "rig_channel_max": "rig_channel_max.png",
    "rank_gallery": "rank_gallery.png",
    "rank_gallery_reverse": "rank_gallery_reverse.png",
    "rank_spectra": "rank_spectra.png",
    "rank_contributions": "rank_contributions.png",
    "rank_or_frequency": "rank_or_frequency.png",
    "deletion_insertion": "deletion_insertion.png",
    "scores": "scores.csv",
    "report": "report.md",
}
"""What :func:`~captum_rig.demo.run_demo` writes: key → file name, in the order of the
returned list."""

SHAPES_TEST_SEED = 2
"""Seed of the synthetic test split the demo models were scored on (train seed: 1)."""

# Ranks the spectra are computed at: every rank up to 6, then sparser (32 is full).
SPECTRUM_GRID = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
MODEL_TITLES = {"natural": "natural", "lowrank8": "trained on rank 8"}
# Rank bands of the contribution overview (the shapes are 32×32, so w = 32) and gradient
# evaluations per image for all of them: a tenth of the 4 · 32 one entry per rank costs.
CONTRIBUTION_BANDS = (0, 1, 2, 4, 8, 16, 32)
CONTRIBUTION_STEPS = 40
# The Fourier view, kept cheap (the demo stays within its time): the images and radii of
# the frequency spectra (the largest radius of a 32×32 image is sqrt(16² + 16²) ≈ 22.6:
# radius 23 keeps the image itself and costs nothing), the radius bands of the frequency
# contributions, their gradient evaluations per image and their images, the heat maps'
# images and perturbation (L2 norm per channel; Yin et al. use 4 on CIFAR-10, which
# saturates these small models).
FOURIER_SPECTRUM_IMAGES = 40
FOURIER_RADII = (0, 2, 4, 6, 8, 11, 16, 23)
FOURIER_BANDS = (0, 2, 4, 8, 16, 23)
FOURIER_STEPS = 12
FOURIER_IMAGES = 6
HEAT_MAP_IMAGES = 4
HEAT_MAP_EPS = 2.0


@dataclass
class DemoState:
    """What the demo's stages share: the settings, the inputs, and results so far."""

    methods: List[Any]  # registry entries (name, title, takes_steps, attribute)
    n_images: int
    n_eval: int
    n_spectrum: int
    n_steps: int
    score_steps: int
    photo: str
    dpi: int
    paths: Dict[str, Path] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    models: Dict[str, nn.Module] = field(default_factory=dict)
    data: Any = None  # the synthetic shapes: images, labels, masks
    picture: Optional[Tensor] = None
    shape_names: Sequence[str] = ()
    photo_class: str = ""
    maps: Dict[str, Tensor] = field(default_factory=dict)  # method -> maps of n_eval images
    seconds: Dict[str, float] = field(default_factory=dict)  # method -> time for its maps
    spectra: Dict[bool, Dict[str, Any]] = field(default_factory=dict)
    contributions: Dict[str, Tensor] = field(default_factory=dict)  # title -> (N, C, bands)
    rises: Dict[str, float] = field(default_factory=dict)  # title -> Σ F(x) - F(0)
    frequency_spectra: Dict[str, Any] = field(default_factory=dict)  # title -> low-pass kept
    frequency_contributions: Dict[str, Tensor] = field(default_factory=dict)  # (N, C, bands)
    heat_maps: Dict[str, Tensor] = field(default_factory=dict)  # title -> (H, W) error rates
    heat_clean: Dict[str, float] = field(default_factory=dict)  # title -> error, unperturbed
    rows: List[Dict[str, Any]] = field(default_factory=list)
    accuracies: Dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The model every attribution explains."""
        return self.models["natural"]

    @property
    def titles(self) -> str:
        """The methods' titles, comma-separated."""
        return ", ".join(m.title for m in self.methods)
