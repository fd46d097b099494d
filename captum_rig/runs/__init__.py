"""Attributions over a whole data set: one HDF5 file of maps, sharded, resumable, scored.

- :func:`attribute_dataset`: every image's maps by each method, into one HDF5 file
  (under ``torchrun`` each process computes its share; an interrupted run resumes);
- :class:`AttributionFile` (:func:`read_attributions`): the file, read lazily;
- :func:`evaluate_attributions`: deletion and insertion AUC and sparseness per method
  over the set, means and confidence intervals (:class:`ScoreTable`);
- :func:`process_group`: joins ``torchrun``'s process group for a run.
"""

from captum_rig.runs.attribute import attribute_dataset, parts_folder, saved_batches
from captum_rig.runs.evaluate import (
    SCORES,
    ScoreRow,
    ScoreTable,
    evaluate_attributions,
    mean_interval,
    sparseness,
)
from captum_rig.runs.maps_file import (
    FILE_FORMAT,
    AttributionFile,
    MapBatch,
    image_names,
    read_attributions,
    write_maps,
)
from captum_rig.runs.processes import launched_by_torchrun, process_group

__all__ = [
    "attribute_dataset",
    "parts_folder",
    "saved_batches",
    "AttributionFile",
    "MapBatch",
    "read_attributions",
    "write_maps",
    "image_names",
    "FILE_FORMAT",
    "evaluate_attributions",
    "ScoreTable",
    "ScoreRow",
    "SCORES",
    "mean_interval",
    "sparseness",
    "process_group",
    "launched_by_torchrun",
]
