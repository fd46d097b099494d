"""Loading a classifier from a short spec: a torchvision builder or a user factory.

A *model spec* names where the network comes from; :class:`ModelSpec` parses it once,
against the registry of model sources :data:`SOURCES` (each with its builder, its
preprocessing and its class names):

- ``demo:<name>``: a CNN that ships with the package (``demo:natural``,
  ``demo:lowrank8``; :func:`captum_rig.models.load_demo_model`), classifying the six
  synthetic shapes in 32×32 images, normalization included.
- ``torchvision:<name>``: any classification builder of ``torchvision.models``
  (``torchvision:resnet18``, ``torchvision:vit_b_16``, ...), built with ``weights=None``
  unless ``pretrained=True``.
- ``<module>:<factory>``: ``module`` is an importable module (``mypkg.nets``) or a path
  to a ``.py`` file (``nets/small.py``); ``factory`` is a callable in it (a function or an
  ``nn.Module`` class, dotted attributes allowed) that returns an ``nn.Module``.
  Such a spec imports, that is *runs*, that module or file, as ``python file.py`` would:
  give only code you trust.

:func:`load_model` (:meth:`ModelSpec.load`) builds the network, loads a checkpoint into
it if asked (``torch.load(..., weights_only=True)``), moves it to a device and returns it
in eval mode. :func:`model_preprocessing` (:meth:`ModelSpec.preprocessing`) says what the
network expects of its inputs: the image size, the number of channels and, for
torchvision models, the ImageNet mean and std.

Why the normalization goes *inside* the model: captum-rig takes ranks in [0, 1] pixel
space, as the paper does. The SVD is not shift-invariant (subtracting a channel mean
subtracts a rank-one matrix and changes every singular value), so the rank-k image of a
normalized image is a different image. Wrapping the model as
``Sequential(Normalize(mean, std), model)`` lets low-rank images, RIG's rank path and
rank spectra work on the pixels the user sees while the network still gets its
normalized inputs (:func:`captum_rig.models.with_normalization`).
:func:`load_pixel_model` does both steps.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from captum_rig.loading.preprocessing import Preprocessing, normalized
from captum_rig.loading.pretrained import WeightsUnavailableError
from captum_rig.loading.sources import DEMO_PREFIX, SOURCES, TORCHVISION_PREFIX, ModelSource
from captum_rig.loading.spec import ModelSpec, load_model, load_pixel_model, model_preprocessing
from captum_rig.loading.weights import load_state_dict

__all__ = [
    "TORCHVISION_PREFIX",
    "DEMO_PREFIX",
    "WeightsUnavailableError",
    "Preprocessing",
    "ModelSpec",
    "ModelSource",
    "SOURCES",
    "load_model",
    "load_state_dict",
    "model_preprocessing",
    "load_pixel_model",
    "normalized",
]
