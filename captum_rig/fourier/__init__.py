"""The Fourier view beside the rank view: filters, spectra, heat maps, contributions.

- :mod:`~captum_rig.fourier.filters`: :func:`low_pass`, :func:`high_pass` (and the
  :class:`LowPass`, :class:`HighPass` modules) keep or remove the 2-D DFT frequencies of
  radius ``<= r``; :class:`FrequencyPath` gives many of them from one DFT.
- :mod:`~captum_rig.fourier.spectrum`: :func:`frequency_spectrum`, Algorithm 1 over
  radii, with :class:`FrequencySpectrum` (as :func:`~captum_rig.rank_spectrum`).
- :mod:`~captum_rig.fourier.heat_map`: :func:`fourier_heat_map`, Yin et al.'s map.
- :mod:`~captum_rig.fourier.contributions`: :func:`frequency_contributions`, the
  complete low-pass path integral split by radius band.

References:
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

from captum_rig.fourier.contributions import frequency_contributions
from captum_rig.fourier.filters import (
    FrequencyPath,
    HighPass,
    LowPass,
    frequency_radius,
    high_pass,
    low_pass,
    max_radius,
)
from captum_rig.fourier.heat_map import fourier_basis, fourier_heat_map
from captum_rig.fourier.spectrum import FrequencySpectrum, default_radii, frequency_spectrum

__all__ = [
    "low_pass",
    "high_pass",
    "LowPass",
    "HighPass",
    "FrequencyPath",
    "max_radius",
    "frequency_radius",
    "frequency_spectrum",
    "FrequencySpectrum",
    "default_radii",
    "fourier_heat_map",
    "fourier_basis",
    "frequency_contributions",
]
