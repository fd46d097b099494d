"""The one line ``captum-rig`` prints for an input error, in the command line's words.

The library's messages name its arguments (``convert=True``, ``max_pixels``); the command
line has options instead (``--convert``, ``--max-pixels``): :func:`cli_message` words
them for the command line, so that library messages need not speak of options.
"""

import argparse
import re
from typing import Optional, Tuple

from captum_rig.loading import WeightsUnavailableError

__all__ = ["UsageError", "one_line", "cli_message"]


class UsageError(ValueError):
    """A command-line mistake; reported as one line, exit code 2."""


def one_line(error: BaseException) -> str:
    """An error's message on one line (the CLI prints no traceback for input errors).

    torch.fx's notes on where its interpreter was (``While executing %...``, ``Use
    tlparse ...``) are left out: they name graph nodes, not anything the user gave.
    """
    text = str(error)
    cut = text.find("While executing %")
    if cut > 0:
        text = text[:cut]
    text = " ".join(text.split()) or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) quotes its argument
        text = text.strip("'\"")
    return text


# The library's messages name its arguments; the command line has options instead. Each
# pair: a pattern of a library message, and its wording for the command line.
_CLI_WORDS: Tuple[Tuple[str, str], ...] = (
    (r"\bpass convert=True\b", "pass --convert"),
    (r"\bbut (RGB|greyscale) \(channels=\d\) was asked for", r"but the model takes \1 images"),
    (
        r"pass a larger max_pixels, or None for no limit",
        "pass a larger --max-pixels N, or 0 for no limit",
    ),
    (r"pass a larger max_pixels\b", "pass a larger --max-pixels N"),
    (r"\bmax_pixels = ", "--max-pixels = "),
    (r"\bpass size=N\b", "pass --image-size N"),
    (r"\bbut source takes\b", "but --data takes"),
    (r"\bpass both mean and std, or neither", "pass both --mean and --std, or neither"),
    (r"^mean and std must\b", "--mean and --std must"),
    (r"^mean must be finite and std\b", "--mean must be finite and --std"),
)

# RuntimeErrors of a model fed images of a size it cannot take (a Linear sized for other
# images, a pooling window larger than what is left of the image): input errors, not bugs.
_SIZE_ERRORS = (
    "Output size is too small",
    "shapes cannot be multiplied",
    "Calculated padded input size",
    "Kernel size can't be greater than actual input size",
)


def cli_message(error: BaseException, args: Optional[argparse.Namespace] = None) -> Optional[str]:
    """The one line ``captum-rig`` prints for ``error``, in the command line's words
    (``--convert``, not ``convert=True``); None when ``error`` is not an input error.

    ``args`` (when parsed) names the input size for a model that cannot take it.

    Examples:
        >>> cli_message(ValueError("image g.png is greyscale; pass convert=True to convert it"))
        'image g.png is greyscale; pass --convert to convert it'
        >>> cli_message(RuntimeError("a bug")) is None
        True
    """
    text = one_line(error)
    if isinstance(error, RuntimeError) and not isinstance(error, WeightsUnavailableError):
        if not any(pattern in text for pattern in _SIZE_ERRORS):
            return None
        size = getattr(args, "input_size", None)
        given = f"{size[0]}×{size[1]}×{size[1]} images" if size and size[1] else "these images"
        too_small = "shapes cannot be multiplied" not in text  # pooling left nothing
        how = (
            "pass the --image-size N it was built for"
            if not too_small or not getattr(args, "image_size", None)
            else "give a larger --image-size N (or none: the model's own input size)"
        )
        return f"the model cannot take {given} ({text}); {how}"
    if not isinstance(error, (UsageError, ValueError, TypeError, OSError, WeightsUnavailableError)):
        return None
    for pattern, words in _CLI_WORDS:
        text = re.sub(pattern, words, text)
    return text
