"""The reference SPADE GAN: generator, discriminator, encoder, losses, data and metrics, built on spadenorm."""
