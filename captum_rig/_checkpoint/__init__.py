"""Digests and resumable state of streaming jobs: one hasher, one on-disk validator.

A streaming job walks a stream of image batches and either counts (the rank spectrum of
:func:`~captum_rig.rank_spectrum`, a frequency spectrum over radii) or writes per-batch
results (attributions over a data set), and may be interrupted and resumed. What such a
job needs is here, once:

- :class:`TensorHash`, :func:`batch_digest`, :func:`model_digest`: SHA-256 of tensors
  (dtype, shape and bytes), so that a resumed run proves it sees the same model and the
  same batches, and a cache proves it was built from the same data;
  :class:`StreamDigest`, :func:`stream_digest`: the digest of every image and label of a
  stream, whatever its batch size (taken while a job reads it, or in one pass);
- :func:`read_state`, :func:`write_state`, :func:`differences`: a state file read with
  ``torch.load(..., weights_only=True)``, checked for its format, and a settings record
  compared with this call's, naming each key that differs; :func:`saved_batches`: how
  many batches a checkpoint holds (for a message after an interruption);
- :class:`Checkpoint`, :class:`Progress`, :func:`count_batches`: the resumable counting
  loop (save every few batches and on an interrupt, skip and re-verify the batches
  already counted);
- :func:`world`, :class:`Shard`, :func:`interrupts_held`: ``torch.distributed`` (e.g.
  ``torchrun``) shares and an all-reduce of the counts, and a final save that a second
  Ctrl-C cannot cut short.
"""

from captum_rig._checkpoint.digests import (
    BATCH_PARTS,
    DIGEST_BYTES,
    StreamDigest,
    TensorHash,
    batch_digest,
    model_digest,
    stream_digest,
    tensor_bytes,
)
from captum_rig._checkpoint.loop import (
    BatchCounter,
    Shard,
    all_reduce,
    count_batches,
    interrupts_held,
    totals,
    world,
)
from captum_rig._checkpoint.state import (
    Checkpoint,
    Progress,
    StateError,
    describe_difference,
    differences,
    read_state,
    run_identity,
    saved_batches,
    write_state,
)

__all__ = [
    "DIGEST_BYTES",
    "BATCH_PARTS",
    "TensorHash",
    "tensor_bytes",
    "batch_digest",
    "model_digest",
    "StreamDigest",
    "stream_digest",
    "StateError",
    "read_state",
    "write_state",
    "describe_difference",
    "differences",
    "run_identity",
    "saved_batches",
    "Progress",
    "Checkpoint",
    "BatchCounter",
    "count_batches",
    "Shard",
    "totals",
    "world",
    "all_reduce",
    "interrupts_held",
]
