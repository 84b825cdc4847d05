"""Synthesis with a trained generator: what ``synthesize.py`` runs.

* ``loading``: :func:`load_model`, the generator (and style encoder) of a checkpoint file, a ``train_spade.py``
  checkpoint or the original implementation's ``latest_net_G.pth``;
* ``original_weights``: reading and recognising ``latest_net_G.pth`` files and the :class:`~spade_gan.models.ModelSpec`
  they describe;
* ``strict_loading``: :func:`load_generator_weights`, a strict ``load_state_dict`` whose errors name the constructor
  argument to change;
* ``inference``: :func:`synthesize_folder`, images from a folder of label maps, and :func:`generator_function`, images
  for batches of a dataset.

Imports ``models``, ``data``, the training configuration and checkpoint format of ``training`` (a checkpoint carries
its configuration), ``images`` and, for one type, ``scoring``.
"""

from __future__ import annotations

from .inference import synthesize_folder
from .loading import LoadedModel, SynthesisError, load_model
from .original_weights import load_original_generator, load_state_dict_file, spec_from_original
from .strict_loading import load_generator_weights

__all__ = [
    "LoadedModel",
    "SynthesisError",
    "load_generator_weights",
    "load_model",
    "load_original_generator",
    "load_state_dict_file",
    "spec_from_original",
    "synthesize_folder",
]
