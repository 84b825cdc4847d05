"""Training the GAN: what ``train_spade.py`` runs.

* ``config``: :class:`~spade_gan.training.config.TrainConfig` and the command line of ``train_spade.py``;
* ``run``: :func:`~spade_gan.training.run.train`, the run: set up, step, write the outputs, report;
* ``prepare``: setting a run up from its configuration: resume state, data, networks, data order, fixed batches;
* ``trainer``: :class:`~spade_gan.training.trainer.SPADETrainer`, the networks, optimisers and the generator and
  discriminator updates;
* ``losses``: hinge, feature matching, VGG19 perceptual and KL terms;
* ``checkpoints``: the checkpoint format, atomic writes, rotation and RNG states;
* ``logs``: ``log.jsonl`` and TensorBoard;
* ``distributed``: ``torchrun`` process groups and cross-rank checks;
* ``alignment_report``: the alignment table a run ends with.

Imports ``models``, ``data``, ``scoring``, ``images``, ``optional_packages`` and ``command_line``; nothing of
``synthesis``, ``evaluation`` or ``ablation``.
"""
