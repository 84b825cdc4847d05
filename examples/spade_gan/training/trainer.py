"""One SPADE training step, the original way: a generator step, then a discriminator step on the same batch.

Generator step (optimiser over G and, with VAE, E):

.. math::

    L_G = L_{hinge,G} + \\lambda_{feat} L_{FM} \\; [+ \\lambda_{vgg} L_{VGG}] \\; [+ \\lambda_{kld} L_{KL}]

Discriminator step: hinge loss on real and on (detached) generated images. Fake and real go through D as one
concatenated batch. Adam with betas (0, 0.9); with TTUR the generator's learning rate is ``lr / 2`` and the
discriminator's ``2 lr``; after ``epochs`` epochs both decay linearly to 0 over ``decay_epochs`` epochs.

With ``ema_decay > 0`` a copy of the generator, ``G_ema``, follows its weights as an exponential moving average
(as in OASIS and StyleGAN): after the n-th generator update, with :math:`d_n = \\min(d, (1 + n) / (10 + n))`,

.. math::

    \\theta_{ema} \\leftarrow d_n \\theta_{ema} + (1 - d_n) \\theta_G

and its buffers (running statistics, spectral-norm vectors) are copied from G. Samples, evaluation and synthesis use
``G_ema``; the warm-up term keeps short runs from averaging in their first, random weights.

Under ``torchrun`` the networks being optimised in a step are wrapped in ``DistributedDataParallel`` (G and E in the
generator step, D in the discriminator step); the other network is called unwrapped, with its parameters frozen in
the generator step, so no gradient of it is reduced or kept.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..data.semantics import Semantics, semantic_inputs
from ..models.discriminator import MultiscaleDiscriminator
from ..models.encoder import reparameterize
from . import losses as L
from .config import TrainConfig
from .distributed import DistInfo

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

Network = Callable[..., Any]
"""What the steps call: a module, its DDP wrapper, or either compiled by ``torch.compile``."""


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The base (pre-TTUR) learning rate during 0-based ``epoch``: constant for ``cfg.epochs`` epochs, then
    lowered by ``lr / decay_epochs`` after every further epoch (the original's schedule)."""
    if cfg.epochs is None or not cfg.decay_epochs or epoch < cfg.epochs:
        return cfg.base_lr
    return max(0.0, cfg.base_lr * (1.0 - (epoch - cfg.epochs) / cfg.decay_epochs))


def run_generator(generator: Network, seg: Semantics, z: Tensor | None) -> Tensor:
    """The generator's images for a batch, from its class ids and edge channel (every generator takes them; the SPADE
    generator's layers look their first convolution up by id, where the classes are many enough, instead of
    convolving the one-hot map)."""
    return generator(seg.ids, z, extra=seg.edges)


def split_prediction(pred: list[list[Tensor]], n: int) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
    """Split D's output on ``cat([fake, real])`` into its fake and real halves (as float32)."""
    fake = [[f[:n].float() for f in scale] for scale in pred]
    real = [[f[n:].float() for f in scale] for scale in pred]
    return fake, real


class SPADETrainer:
    """The networks, optimisers and gradient scalers of a run, and its two update steps.

    The generator and encoder come from :meth:`TrainConfig.model_spec
    <spade_gan.training.config.TrainConfig.model_spec>`; the discriminator sees the semantic map and the image
    concatenated (``semantic_nc + 3`` channels).

    Args:
        cfg: the resolved configuration, with the dataset's label layout set.
        info: rank, world size and device.
        vgg_loss: the perceptual loss, or ``None`` to leave it out.
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo, vgg_loss: L.VGGLoss | None = None) -> None:
        self.cfg = cfg
        self.spec = cfg.model_spec()
        self.info = info
        self.device = info.device
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G = self.spec.build_generator()
        self.D = MultiscaleDiscriminator(
            self.spec.semantic_nc + 3, ndf=cfg.ndf, n_layers_D=cfg.n_layers_d, num_D=cfg.num_d
        )
        self.E = self.spec.build_encoder()
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if cfg.ema_decay > 0 else None
        self.ema_updates = 0
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        for net in self.networks():
            net.to(self.device, memory_format=memory_format)
        self.vgg_loss = vgg_loss.to(self.device) if vgg_loss is not None else None

        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E is not None else [])
        betas = (float(cfg.beta1), float(cfg.beta2))
        self.opt_G = torch.optim.Adam(g_params, lr=cfg.lr_g, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        fp16 = cfg.amp == "fp16"
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.amp_dtype = AMP_DTYPES.get(cfg.amp)

        # The modules the steps call: DDP wrappers for the networks being optimised, compiled where asked.
        self.G_train = self._wrap(self.G)
        self.D_train = self._wrap(self.D)
        self.E_train = self._wrap(self.E) if self.E is not None else None
        self.G_plain = self._compiled(self.G)
        self.D_plain = self._compiled(self.D)
        self.E_plain = self._compiled(self.E) if self.E is not None else None

    def _compiled(self, net: nn.Module) -> Network:
        return torch.compile(net) if self.cfg.compile else net

    def _wrap(self, net: nn.Module) -> Network:
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DDP(net, device_ids=ids)
        return self._compiled(net)

    def networks(self) -> list[nn.Module]:
        """G, D and, with VAE, E (unwrapped), and G_ema with EMA."""
        return [m for m in (self.G, self.D, self.E, self.G_ema) if m is not None]

    @property
    def G_eval(self) -> nn.Module:
        """The generator that samples, evaluation and synthesis use: ``G_ema`` with EMA, else ``G``."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step of ``G_ema`` towards ``G`` (see the module docstring); a no-op without EMA."""
        if self.G_ema is None:
            return
        self.ema_updates += 1
        decay = min(self.cfg.ema_decay, (1 + self.ema_updates) / (10 + self.ema_updates))
        for ema, live in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            ema.lerp_(live, 1.0 - decay)
        for ema, live in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            ema.copy_(live)

    def train(self, mode: bool = True) -> None:
        """Put every network in training (``True``) or eval mode."""
        for net in self.networks():
            net.train(mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the run's ``--amp`` dtype, or a no-op context without AMP."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` on the training device, channels-last where the run asks for it (4-D tensors)."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last and x.dim() == 4 else x

    def batch_inputs(self, batch: Mapping[str, Any]) -> tuple[Semantics, Tensor]:
        """The semantic input of a data batch (class ids, instance edges where the dataset has them, and the
        ``(N, semantic_nc, H, W)`` map of both) and its real images ``(N, 3, H, W)``, on the training device."""
        seg = semantic_inputs(
            batch["label"],
            batch.get("instance"),
            label_nc=self.spec.label_nc,
            contain_dontcare=self.spec.contain_dontcare,
        )
        edges = None if seg.edges is None else self.prepare(seg.edges)
        return Semantics(self.prepare(seg.ids), edges, self.prepare(seg.map)), self.prepare(batch["image"])

    def set_epoch(self, epoch: int) -> None:
        """Set both optimisers' learning rates for ``epoch`` (a pure function of the epoch: nothing to resume)."""
        lr = learning_rate(self.cfg, epoch)
        scale_g, scale_d = (0.5, 2.0) if self.cfg.ttur else (1.0, 1.0)
        for group in self.opt_G.param_groups:
            group["lr"] = lr * scale_g
        for group in self.opt_D.param_groups:
            group["lr"] = lr * scale_d

    def _discriminate(
        self, d: Network, seg: Semantics, fake: Tensor, real: Tensor
    ) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        fake_and_real = torch.cat([torch.cat([seg.map, fake], 1), torch.cat([seg.map, real], 1)], 0)
        return split_prediction(d(fake_and_real), fake.shape[0])

    def generator_step(self, seg: Semantics, real: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """One update of G (and E). Returns the loss terms and the generated batch (detached)."""
        cfg = self.cfg
        self.D.requires_grad_(False)
        try:
            terms: dict[str, Tensor] = {}
            with self.autocast():
                z = None
                if self.E_train is not None:
                    mu, logvar = self.E_train(real)
                    mu, logvar = mu.float(), logvar.float()
                    z = reparameterize(mu, logvar)
                    terms["KLD"] = L.kl_divergence_loss(mu, logvar, lambda_kld=cfg.lambda_kld)
                fake = run_generator(self.G_train, seg, z)
                pred_fake, pred_real = self._discriminate(self.D_plain, seg, fake, real)
            terms["G_GAN"] = L.generator_hinge_loss(pred_fake)
            if not cfg.no_feat_loss:
                terms["G_GAN_Feat"] = L.feature_matching_loss(pred_fake, pred_real, lambda_feat=cfg.lambda_feat)
            if self.vgg_loss is not None:
                with self.autocast():
                    terms["G_VGG"] = self.vgg_loss(fake, real).float()
            total = torch.stack(list(terms.values())).sum()
            self.opt_G.zero_grad(set_to_none=True)
            self.scaler_G.scale(total).backward()
            self.scaler_G.step(self.opt_G)
            self.scaler_G.update()
            self.update_ema()
        finally:
            self.D.requires_grad_(True)
        return terms, fake.detach()

    def discriminator_step(self, seg: Semantics, real: Tensor) -> dict[str, Tensor]:
        """One update of D on real images and freshly generated (detached) ones."""
        with torch.no_grad(), self.autocast():
            z = None
            if self.E_plain is not None:
                mu, logvar = self.E_plain(real)
                z = reparameterize(mu.float(), logvar.float())
            fake = run_generator(self.G_plain, seg, z).detach()
        with self.autocast():
            pred_fake, pred_real = self._discriminate(self.D_train, seg, fake, real)
        terms = {
            "D_Fake": L.discriminator_hinge_loss(pred_fake, real=False),
            "D_real": L.discriminator_hinge_loss(pred_real, real=True),
        }
        total = terms["D_Fake"] + terms["D_real"]
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler_D.scale(total).backward()
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        return terms

    @torch.no_grad()
    def generate(
        self,
        seg: Semantics,
        *,
        style: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Images of :attr:`G_eval` for ``seg`` in eval mode, without touching the global RNG (``generator`` draws
        z). With VAE, z comes from the encoder on ``style`` images when given, else from N(0, I)."""
        was_training = self.G.training
        self.train(False)
        try:
            z = None
            if self.E is not None:
                n = seg.ids.shape[0]
                if style is not None:
                    mu, logvar = self.E(style)
                    z = reparameterize(mu.float(), logvar.float(), generator=generator)
                else:
                    z = torch.randn(n, self.spec.z_dim, generator=generator, device="cpu").to(self.device)
            with self.autocast():
                return run_generator(self.G_eval, seg, z).float()
        finally:
            self.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "E": self.E.state_dict() if self.E is not None else None,
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "ema_updates": self.ema_updates,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.E is not None:
            if state.get("E") is None:
                raise ValueError("the checkpoint has no encoder (E) but the run uses --use-vae")
            self.E.load_state_dict(state["E"])
        if self.G_ema is not None:
            if state.get("G_ema") is None:
                raise ValueError("the checkpoint has no G_ema but the run averages the generator (--ema-decay > 0)")
            self.G_ema.load_state_dict(state["G_ema"])
            self.ema_updates = int(state["ema_updates"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if state.get("scaler_G"):
            self.scaler_G.load_state_dict(state["scaler_G"])
        if state.get("scaler_D"):
            self.scaler_D.load_state_dict(state["scaler_D"])
