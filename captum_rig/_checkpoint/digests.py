"""Digests of tensors: one hasher for batches, models and cached data sets.

SHA-256 over a tensor's dtype, shape and bytes, so that a resumed run proves it sees the
same model and the same batches, and a cache proves it was built from the same data.
"""

import hashlib
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "DIGEST_BYTES",
    "BATCH_PARTS",
    "TensorHash",
    "tensor_bytes",
    "batch_digest",
    "model_digest",
    "StreamDigest",
    "stream_digest",
]

DIGEST_BYTES = 32
"""Bytes of one SHA-256 digest; a batch digest is two, images then labels."""

BATCH_PARTS = (("images", slice(0, DIGEST_BYTES)), ("labels", slice(DIGEST_BYTES, None)))
"""The parts of a :func:`batch_digest`, named."""


def tensor_bytes(tensor: Tensor, dtype: Optional[torch.dtype] = None) -> memoryview:
    """The bytes of ``tensor`` (cast to ``dtype`` first, if given), in memory order.

    A ``uint8`` view: every dtype (bfloat16 included) without a conversion of values.
    """
    tensor = tensor.detach()
    if dtype is not None:
        tensor = tensor.to(dtype)
    flat = tensor.reshape(-1).contiguous().view(torch.uint8).cpu()
    return memoryview(flat.numpy())


class TensorHash:
    """SHA-256 of a stream of tensors, integers and text; the one hasher of the package.

    Args:
        header (str): text hashed first (e.g. the shape every item shares).

    Examples:
        >>> x = torch.arange(6.0).view(2, 3)
        >>> TensorHash().tensor(x, described=True).hexdigest() == (
        ...     TensorHash().tensor(x.clone(), described=True).hexdigest())
        True
        >>> len(TensorHash("(3, 8, 8)").tensor(x, dtype=torch.float32).integer(7).digest())
        32
    """

    def __init__(self, header: str = "") -> None:
        self._hash = hashlib.sha256(header.encode())

    def text(self, text: str) -> "TensorHash":
        """Adds ``text`` (UTF-8)."""
        self._hash.update(text.encode())
        return self

    def tensor(
        self,
        tensor: Tensor,
        *,
        dtype: Optional[torch.dtype] = None,
        described: bool = False,
        name: Optional[str] = None,
    ) -> "TensorHash":
        """Adds the bytes of ``tensor`` (cast to ``dtype`` first, if given).

        With ``described=True`` its ``"name:dtype:shape;"`` (``name`` when given) comes
        first, so that equal bytes of another dtype or shape hash differently.
        """
        if described:
            prefix = "" if name is None else f"{name}:"
            self.text(f"{prefix}{tensor.dtype}:{tuple(tensor.shape)};")
        self._hash.update(tensor_bytes(tensor, dtype))
        return self

    def integer(self, value: int) -> "TensorHash":
        """Adds ``value`` as 8 bytes, little-endian, signed (an int64 label)."""
        self._hash.update(int(value).to_bytes(8, "little", signed=True))
        return self

    def digest(self) -> bytes:
        return self._hash.digest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def batch_digest(images: Tensor, labels: Optional[Tensor]) -> bytes:
    """64 bytes: the SHA-256 of the images and that of the labels (dtype, shape, bytes).

    Examples:
        >>> x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
        >>> d = batch_digest(x, y)
        >>> len(d), d == batch_digest(x.clone(), y), d[32:] == batch_digest(x, None)[32:]
        (64, True, False)
    """
    out = b""
    for tensor in (images, labels):
        h = TensorHash()
        if tensor is not None:
            h.tensor(tensor, described=True)
        out += h.digest()
    return out


def model_digest(model: Any) -> Optional[str]:
    """SHA-256 of an nn.Module's parameter and buffer names, dtypes, shapes and bytes.

    None for a callable that is not an ``nn.Module``: its weights cannot be seen.

    Examples:
        >>> model_digest(torch.nn.Linear(2, 2)) != model_digest(torch.nn.Linear(2, 2))
        True
        >>> model_digest(lambda x: x) is None
        True
    """
    if not isinstance(model, nn.Module):
        return None
    h = TensorHash()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        h.tensor(tensor, described=True, name=name)
    return h.hexdigest()


def _batch_parts(batch: Any) -> "tuple[Tensor, Optional[Tensor]]":
    """``(images, labels or None)`` of a batch given as a pair, ``(images,)`` or images."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


class StreamDigest:
    """An iterable of batches that hashes each batch as it passes (a data set's digest
    for free while a job reads it).

    Iterating it iterates ``data`` and yields its batches unchanged; every other attribute
    (``batch_size``, ``dataset``, ``sampler``, ...) and ``len`` are ``data``'s, so a job
    sees the same data. After one complete pass, :meth:`hexdigest` is the
    :func:`stream_digest` of ``data``.

    Args:
        data (iterable): batches ``(images, labels)``, ``(images,)`` or ``images``.

    Examples:
        >>> batches = [(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))]
        >>> seen = StreamDigest(batches)
        >>> [len(images) for images, _ in seen], seen.hexdigest() == stream_digest(batches)
        ([2], True)
    """

    def __init__(self, data: Any) -> None:
        self.data = data
        self._hash: Optional[TensorHash] = None
        self._complete = False

    def __iter__(self) -> Iterator[Any]:
        self._hash, self._complete = TensorHash("images;"), False
        for batch in self.data:
            images, labels = _batch_parts(batch)
            for i in range(images.shape[0]):  # image by image: the batch size does not count
                self._hash.tensor(images[i], described=True)
                self._hash.text("-" if labels is None else str(int(labels[i])))
            yield batch
        self._complete = True

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "_hash", "_complete"):  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def hexdigest(self) -> str:
        """The digest of every batch of the last complete pass.

        Raises:
            RuntimeError: no pass over ``data`` has completed.
        """
        if self._hash is None or not self._complete:
            raise RuntimeError("no complete pass over the data yet")
        return self._hash.hexdigest()


def stream_digest(data: Any) -> str:
    """SHA-256 of a stream of batches: every image (dtype, shape, bytes) and its label,
    in order, whatever the batch size. Reads ``data`` once.

    Examples:
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])
        >>> stream_digest([(x, y)]) == stream_digest([(x[:2], y[:2]), (x[2:], y[2:])])
        True
        >>> stream_digest([(x, y)]) == stream_digest([(x, y.flip(0))])
        False
    """
    seen = StreamDigest(data)
    for _ in seen:
        pass
    return seen.hexdigest()
