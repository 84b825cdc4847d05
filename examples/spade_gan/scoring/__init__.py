"""Scores of generated images: how well they follow their label maps and how close they are to real images.

* ``alignment``: the alignment metric of the built-in scenes (classes read back from colour and texture), pixel
  accuracy and mIoU;
* ``fidelity``: FID and KID with torch-fidelity's Inception, read from a local file;
* ``segmenter``: accuracy and mIoU of a segmenter the user supplies;
* ``generator_scores``: :func:`~spade_gan.scoring.generator_scores.score_generator`, one pass over a dataset that
  generates an image per label map and feeds every metric switched on, and the table of its results.

Imports ``data``, ``images`` and ``optional_packages``; nothing of ``models``, ``training``, ``synthesis``,
``evaluation`` or ``ablation``.
"""
