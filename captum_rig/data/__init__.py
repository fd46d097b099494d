"""Every way images come in: image files, image folders, CIFAR-10 from a local folder.

Everything here returns float tensors in [0, 1] pixel space, the space where captum-rig
truncates ranks; normalization belongs inside the model
(:func:`captum_rig.models.with_normalization`, which also explains why). Nothing here
downloads anything. :func:`save_image` writes an image back out; :func:`load_photo`
gives the photographs shipped with the package.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from captum_rig.data.cifar10 import load_cifar10
from captum_rig.data.folders import IMAGE_EXTENSIONS, ImageFiles, image_dataset, image_folder
from captum_rig.data.images import MAX_PIXELS, image_format, load_image, load_images, save_image
from captum_rig.data.photos import PHOTOS, load_photo

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "load_image",
    "load_images",
    "ImageFiles",
    "image_folder",
    "load_cifar10",
    "image_dataset",
    "image_format",
    "save_image",
    "PHOTOS",
    "load_photo",
]
