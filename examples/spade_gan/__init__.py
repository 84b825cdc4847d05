"""The reference SPADE GAN built on spadenorm: networks, their architecture spec, losses, data, training runs,
checkpoints, synthesis and the alignment metric."""
