"""The reference SPADE GAN built on spadenorm, one part per package:

* ``models/``: the networks (SPADE generator and residual block, style encoder, multi-scale discriminator, the
  pix2pixHD baselines, VGG19 features) and ``ModelSpec``, the generator's architecture;
* ``data/``: the built-in procedural scenes, loaders for the original datasets' layouts, label semantics, data order;
* ``scoring/``: the alignment metric, FID / KID, segmenter scores, and one scoring pass over a dataset;
* ``training/``: what ``train_spade.py`` runs: configuration, set-up, trainer, losses, checkpoints, logs, torchrun;
* ``synthesis/``: what ``synthesize.py`` runs: a checkpoint's or ``latest_net_G.pth``'s generator, images from label
  maps;
* ``evaluation``: what ``evaluate.py`` runs: a checkpoint scored on a validation split, with its protocol;
* ``ablation/``: what ``ablation.py`` runs: one training run per generator and seed, the wash-away probe, the table;
* ``studio/``: what ``paint.py`` runs: a local page to paint label maps on, and the server whose generator draws them;
* ``images``: generated images as uint8 arrays and PNG grids;
* ``optional_packages``: torch-fidelity and tensorboard, imported on first use;
* ``command_line``: the start the scripts share.

Imports go one way: ``images``, ``optional_packages`` and ``command_line`` import nothing of ``spade_gan``;
``models`` imports spadenorm and torch only; ``data`` imports ``models`` (one type); ``scoring`` imports ``data``;
``training`` imports ``models``, ``data`` and ``scoring``; ``synthesis`` imports ``models``, ``data``, ``training``
(the configuration and the checkpoint format) and ``scoring`` (one type); ``evaluation``, ``ablation`` and ``studio``
import what they need of these, and nothing imports them. ``tests/examples/test_gan_layout.py`` checks this order.
"""
