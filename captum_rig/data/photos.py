"""The photographs shipped with the package, for demos and tests that need real images.

Three public-domain / CC0 photographs from scikit-image, 128×128 RGB, in
``captum_rig/assets/`` (rebuilt by ``scripts/make_demo_assets.py``).
"""

from typing import Dict

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from captum_rig.models import ASSETS

__all__ = ["PHOTOS", "load_photo"]

PHOTOS: Dict[str, Dict[str, str]] = {
    "chelsea": {
        "skimage": "chelsea",
        "title": "Chelsea the cat",
        "author": "Stefan van der Walt",
        "license": "CC0 1.0 (public domain dedication)",
    },
    "coffee": {
        "skimage": "coffee",
        "title": "Coffee cup (courtesy of Pikolo Espresso Bar)",
        "author": "Rachel Michetti",
        "license": "CC0 1.0 (public domain dedication)",
    },
    "astronaut": {
        "skimage": "astronaut",
        "title": "Astronaut Eileen Collins",
        "author": "NASA",
        "license": "Public domain (NASA; no known copyright restrictions)",
    },
}
"""The shipped photographs: ``assets/<name>.png``, 128×128 RGB, from scikit-image."""


def load_photo(name: str = "chelsea") -> Tensor:
    r"""A shipped photograph as a float tensor ``(3, 128, 128)`` in [0, 1].

    Args:
        name (str): one of :data:`PHOTOS` (``"chelsea"``, ``"coffee"``, ``"astronaut"``).

    Examples:
        >>> load_photo("coffee").shape
        torch.Size([3, 128, 128])
    """
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {list(PHOTOS)}, got {name!r}")
    with Image.open(ASSETS / f"{name}.png") as im:
        array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
