r"""The SPADE GAN's losses: hinge adversarial, feature matching, VGG19 perceptual and the VAE's KL term.

The generator's objective in the paper is

.. math::

    L_G = L_{hinge,G} + \lambda_{feat} L_{FM} + \lambda_{vgg} L_{VGG} \; [+ \lambda_{kld} L_{KL}]

with :math:`\lambda_{feat} = \lambda_{vgg} = 10`, :math:`\lambda_{kld} = 0.05`; every function below returns its term
already multiplied by its lambda. Discriminator outputs are those of :class:`MultiscaleDiscriminator`: a list, one
entry per scale, of lists of feature maps whose last is the score map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.vgg import VGG19Features

DiscriminatorOutput = Sequence[Sequence[Tensor]]

LAMBDA_FEAT = 10.0
LAMBDA_VGG = 10.0
LAMBDA_KLD = 0.05
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
"""Weights of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in the perceptual loss."""

__all__ = [
    "LAMBDA_FEAT",
    "LAMBDA_KLD",
    "LAMBDA_VGG",
    "VGG_LAYER_WEIGHTS",
    "VGG19Features",
    "VGGLoss",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
    "kl_divergence_loss",
]


def _score_maps(pred: DiscriminatorOutput | Tensor, name: str) -> list[Tensor]:
    """The score map of each scale: the last feature of each per-scale list (a bare tensor is one scale)."""
    if isinstance(pred, Tensor):
        return [pred]
    if not pred or not all(isinstance(p, Sequence) and p and isinstance(p[-1], Tensor) for p in pred):
        raise TypeError(
            f"{name} must be a discriminator output: a non-empty list (one per scale) of non-empty lists of tensors, "
            f"or a single score tensor"
        )
    return [p[-1] for p in pred]


def discriminator_hinge_loss(pred: DiscriminatorOutput | Tensor, *, real: bool) -> Tensor:
    r"""Hinge loss of the discriminator on real or on generated inputs, averaged over scales.

    Per scale, on the score map D: :math:`-\mathrm{mean}(\min(D - 1, 0))` for real inputs,
    :math:`-\mathrm{mean}(\min(-D - 1, 0))` for generated ones; the two are added for the discriminator's loss.

    Example:
        >>> import torch
        >>> discriminator_hinge_loss([[torch.tensor([2.0, 0.5, -1.0])]], real=True)
        tensor(0.8333)
    """
    scores = _score_maps(pred, "pred")
    sign = 1.0 if real else -1.0
    losses = [-torch.clamp(sign * d - 1.0, max=0.0).mean() for d in scores]
    return torch.stack(losses).mean()


def generator_hinge_loss(pred: DiscriminatorOutput | Tensor) -> Tensor:
    r"""Adversarial loss of the generator on the discriminator's output for generated images: per scale
    :math:`-\mathrm{mean}(D)`, averaged over scales.

    Example:
        >>> import torch
        >>> generator_hinge_loss([[torch.tensor([2.0, 0.5, -1.0])], [torch.tensor([1.0])]])
        tensor(-0.7500)
    """
    return torch.stack([-d.mean() for d in _score_maps(pred, "pred")]).mean()


def feature_matching_loss(
    fake_pred: DiscriminatorOutput, real_pred: DiscriminatorOutput, *, lambda_feat: float = LAMBDA_FEAT
) -> Tensor:
    r"""pix2pixHD's feature matching: :math:`\frac{\lambda_{feat}}{num_D} \sum_{k} \sum_{i < T_k - 1}
    \lVert D_k^{(i)}(\text{fake}) - \mathrm{sg}(D_k^{(i)}(\text{real})) \rVert_1` (L1 as a mean over elements).

    Sums over every scale k and every intermediate feature i of that scale except the last (the score map); the real
    features are detached (sg), so only the generator gets gradients.
    """
    if len(fake_pred) != len(real_pred) or not fake_pred:
        raise ValueError(
            f"fake_pred and real_pred must have the same non-zero number of scales, got {len(fake_pred)} and "
            f"{len(real_pred)}"
        )
    num_d = len(fake_pred)
    loss = fake_pred[0][0].new_zeros(())
    for k, (fake, real) in enumerate(zip(fake_pred, real_pred, strict=True)):
        if len(fake) != len(real):
            raise ValueError(f"scale {k}: fake has {len(fake)} features and real {len(real)}; they must match")
        for f, r in zip(fake[:-1], real[:-1], strict=True):
            loss = loss + F.l1_loss(f, r.detach()) * (lambda_feat / num_d)
    return loss


def kl_divergence_loss(mu: Tensor, logvar: Tensor, *, lambda_kld: float = LAMBDA_KLD) -> Tensor:
    r""":math:`\lambda_{kld} \cdot KL(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, I))
    = -\frac{\lambda_{kld}}{2} \sum (1 + \log\sigma^2 - \mu^2 - \sigma^2)`, summed over batch and dimensions.

    Example:
        >>> import torch
        >>> kl_divergence_loss(torch.ones(4, 8), torch.zeros(4, 8))  # 0.05 * 32 * mu^2 / 2
        tensor(0.8000)
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return -0.5 * lambda_kld * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class VGGLoss(nn.Module):
    r"""Perceptual loss: :math:`\lambda_{vgg} \sum_l w_l \lVert \phi_l(x) - \mathrm{sg}(\phi_l(y)) \rVert_1`.

    :math:`\phi_l` are VGG19's relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 activations, weighted
    1/32, 1/16, 1/8, 1/4, 1; L1 is a mean over elements; the target's features are computed without gradients.
    Images go in as they are, in [-1, 1], without ImageNet normalization (as in the original). Load the ImageNet
    weights with :meth:`from_file`; a bare ``VGGLoss()`` has random VGG weights (for tests).

    Args:
        vgg: the feature extractor (a fresh, randomly initialised :class:`VGG19Features` when ``None``).
        lambda_vgg: the loss weight.

    Shape:
        - x, y: (N, 3, H, W) images in [-1, 1], x generated, y the target
        - output: scalar
    """

    def __init__(self, vgg: VGG19Features | None = None, *, lambda_vgg: float = LAMBDA_VGG) -> None:
        super().__init__()
        self.vgg = vgg if vgg is not None else VGG19Features()
        self.lambda_vgg = lambda_vgg

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        lambda_vgg: float = LAMBDA_VGG,
        map_location: str | torch.device = "cpu",
    ) -> VGGLoss:
        """The loss with VGG19 weights read from a torchvision-format file (whole model or ``features`` only),
        loaded with ``torch.load(weights_only=True)``."""
        return cls(VGG19Features.from_file(path, map_location=map_location), lambda_vgg=lambda_vgg)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        x_features = self.vgg(x)
        with torch.no_grad():
            y_features = self.vgg(y)
        loss = x.new_zeros(())
        for w, fx, fy in zip(VGG_LAYER_WEIGHTS, x_features, y_features, strict=True):
            loss = loss + w * F.l1_loss(fx, fy)
        return self.lambda_vgg * loss

    def extra_repr(self) -> str:
        return f"lambda_vgg={self.lambda_vgg}, layer_weights={VGG_LAYER_WEIGHTS}"
