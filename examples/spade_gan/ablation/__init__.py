"""The SPADE paper's ablation on the built-in scenes: what ``ablation.py`` runs.

* ``runs``: one training run per (generator, seed), its scores, and the summary table;
* ``washaway``: the "wash away" probe, uniform label maps through a generator.

The generators it compares live in ``models`` (``models.baselines`` for the pix2pixHD ones). Imports any other part
of ``spade_gan``; nothing imports it.
"""
