"""Data of the reference SPADE GAN: the built-in synthetic scenes, loaders for the original layouts, label semantics.

Every dataset yields the same item format (a dict):

* ``label``: int64 ``(1, H, W)`` ids, dontcare (255) already mapped to ``label_nc`` where the dataset uses it;
* ``instance``: float32 ``(1, H, W)`` instance edge map, only for datasets with instance maps;
* ``image``: float32 ``(3, H, W)`` in ``[-1, 1]``;
* ``path``: a string naming the source.

:func:`to_semantics` turns a batch of labels (and instance maps) into the one-hot semantic map;
:func:`semantic_inputs` gives the class ids and edge map beside it (:class:`Semantics`), as the SPADE generator
reads them; :func:`semantic_ids` gives the ids and edge map alone, for synthesis, which needs no one-hot map.
"""

from .build import DATASETS, DatasetOptions, build_dataset
from .errors import DatasetLayoutError, LabelRangeError
from .folders import SegmentationFolder
from .layouts import ade20k_samples, cityscapes_samples, coco_samples, custom_samples
from .pairing import Sample
from .palette import colorize_labels, label_palette
from .presets import PRESETS, Preset, get_preset
from .scene_classes import CLASS_NAMES, NUM_CLASSES, SCENE_CLASSES, SceneClass
from .semantics import (
    Semantics,
    check_label_range,
    instance_edges,
    map_dontcare,
    semantic_ids,
    semantic_inputs,
    to_semantics,
)
from .synthetic import SyntheticScenes
from .transforms import Preprocess

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "NUM_CLASSES",
    "PRESETS",
    "SCENE_CLASSES",
    "DatasetLayoutError",
    "DatasetOptions",
    "LabelRangeError",
    "Preprocess",
    "Preset",
    "Sample",
    "SceneClass",
    "SegmentationFolder",
    "Semantics",
    "SyntheticScenes",
    "ade20k_samples",
    "build_dataset",
    "check_label_range",
    "cityscapes_samples",
    "coco_samples",
    "colorize_labels",
    "custom_samples",
    "get_preset",
    "instance_edges",
    "label_palette",
    "map_dontcare",
    "semantic_ids",
    "semantic_inputs",
    "to_semantics",
]
