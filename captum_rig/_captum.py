"""Every private name this package takes from Captum, imported in one place.

Captum's ``captum._utils`` and ``captum.attr._utils`` are not public API: a release may
move or rename them. Every module here imports them from this file, so such a release
costs one edit; a test checks that no other module reaches into them. ``.ci/run`` tests
the attribution methods against the lowest supported Captum.
"""

from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
    _run_forward,
)
from captum._utils.gradient import _forward_layer_eval, compute_layer_gradients_and_eval
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters

__all__ = [
    "SUPPORTED_METHODS",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "approximation_parameters",
    "compute_layer_gradients_and_eval",
    "expand_additional_forward_args",
    "expand_target",
    "format_additional_forward_args",
    "format_output",
    "forward_layer_eval",
    "run_forward",
]

# Public names here for Captum's underscored ones: the underscore says "Captum's private",
# not "private to this package".
expand_additional_forward_args = _expand_additional_forward_args
expand_target = _expand_target
format_additional_forward_args = _format_additional_forward_args
format_output = _format_output
forward_layer_eval = _forward_layer_eval
run_forward = _run_forward
