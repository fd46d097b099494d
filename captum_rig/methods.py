"""The registry's old path, kept for old imports: use :mod:`captum_rig.attr.registry`."""

from captum_rig.attr.registry import *  # noqa: F403
from captum_rig.attr.registry import __all__  # noqa: F401
