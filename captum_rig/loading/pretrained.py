"""torchvision's pretrained weights: from the torch hub cache, else downloaded, never hung.

An offline machine without the file in the cache fails at once with one clear line
(:class:`WeightsUnavailableError`) instead of hanging in a download.
"""

import os
import socket
from pathlib import Path
from typing import Any, Dict
from urllib.parse import urlparse

import torch

__all__ = ["WeightsUnavailableError"]

OFFLINE = (
    "cannot download the pretrained weights of {name} ({url}): no network. Put the file "
    "at {cache} or pass --weights PATH"
)
DOWNLOAD_FAILED = "cannot download the pretrained weights of {name} ({url}): {why}"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that are neither cached nor downloadable (e.g. offline)."""


def _weights_enum(name: str) -> Any:
    """The DEFAULT weights entry of a torchvision builder, or None (metadata only)."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _online(url: str, timeout: float = 3.0) -> bool:
    """True if the host of ``url`` accepts a TCP connection within ``timeout`` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pretrained_state_dict(name: str) -> Dict[str, Any]:
    """torchvision's DEFAULT weights of ``name``: from the hub cache, else downloaded.

    Checks the cache first and, when the file is absent, probes the network with a short
    timeout, so that an offline machine fails at once with one clear line instead of
    hanging in a download.
    """
    weights = _weights_enum(name)
    if weights is None:
        raise ValueError(f"torchvision has no pretrained weights for {name!r}")
    url = weights.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not cache.is_file() and not _online(url):
        raise WeightsUnavailableError(OFFLINE.format(name=name, url=url, cache=cache))
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsUnavailableError(DOWNLOAD_FAILED.format(name=name, url=url, why=why)) from None
