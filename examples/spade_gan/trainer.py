"""One SPADE training step, the original way: a generator step, then a discriminator step on the same batch.

Generator step (optimiser over G and, with VAE, E):

.. math::

    L_G = L_{hinge,G} + \\lambda_{feat} L_{FM} \\; [+ \\lambda_{vgg} L_{VGG}] \\; [+ \\lambda_{kld} L_{KL}]

Discriminator step: hinge loss on real and on (detached) generated images. Fake and real go through D as one
concatenated batch. Adam with betas (0, 0.9); with TTUR the generator's learning rate is ``lr / 2`` and the
discriminator's ``2 lr``; after ``epochs`` epochs both decay linearly to 0 over ``decay_epochs`` epochs.

Under ``torchrun`` the networks being optimised in a step are wrapped in ``DistributedDataParallel`` (G and E in the
generator step, D in the discriminator step); the other network is called unwrapped, with its parameters frozen in
the generator step, so no gradient of it is reduced or kept.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from . import losses as L
from .config import TrainConfig
from .discriminator import MultiscaleDiscriminator
from .distributed_utils import DistInfo
from .encoder import ConvEncoder, reparameterize
from .generator import SPADEGenerator

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The base (pre-TTUR) learning rate during 0-based ``epoch``: constant for ``cfg.epochs`` epochs, then
    lowered by ``lr / decay_epochs`` after every further epoch (the original's schedule)."""
    if cfg.epochs is None or cfg.decay_epochs <= 0 or epoch < cfg.epochs:
        return cfg.lr
    return max(0.0, cfg.lr * (1.0 - (epoch - cfg.epochs) / cfg.decay_epochs))


def split_prediction(pred: list[list[Tensor]], n: int) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
    """Split D's output on ``cat([fake, real])`` into its fake and real halves (as float32)."""
    fake = [[f[:n].float() for f in scale] for scale in pred]
    real = [[f[n:].float() for f in scale] for scale in pred]
    return fake, real


class SPADETrainer:
    """The networks, optimisers and gradient scalers of a run, and its two update steps.

    Args:
        cfg: the resolved configuration (``semantic_nc`` set).
        info: rank, world size and device.
        vgg_loss: the perceptual loss, or ``None`` to leave it out.
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo, vgg_loss: L.VGGLoss | None = None) -> None:
        assert cfg.semantic_nc is not None
        assert cfg.crop_size is not None
        assert cfg.aspect_ratio is not None
        self.cfg = cfg
        self.info = info
        self.device = info.device
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G = SPADEGenerator(
            cfg.semantic_nc,
            ngf=cfg.ngf,
            num_upsampling_layers=cfg.num_upsampling_layers,  # type: ignore[arg-type]
            crop_size=cfg.crop_size,
            aspect_ratio=cfg.aspect_ratio,
            use_vae=cfg.use_vae,
            z_dim=cfg.z_dim,
            norm=cfg.norm,  # type: ignore[arg-type]
        )
        self.D = MultiscaleDiscriminator(cfg.semantic_nc + 3, ndf=cfg.ndf, n_layers_D=cfg.n_layers_d, num_D=cfg.num_d)
        self.E = ConvEncoder(cfg.crop_size, ngf=cfg.ngf, z_dim=cfg.z_dim) if cfg.use_vae else None
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
        self.G_train: nn.Module = self._wrap(self.G)
        self.D_train: nn.Module = self._wrap(self.D)
        self.E_train: nn.Module | None = self._wrap(self.E) if self.E is not None else None
        self.G_plain: nn.Module = torch.compile(self.G) if cfg.compile else self.G
        self.D_plain: nn.Module = torch.compile(self.D) if cfg.compile else self.D
        self.E_plain: nn.Module | None = self.E
        if cfg.compile and self.E is not None:
            self.E_plain = torch.compile(self.E)

    def _wrap(self, net: nn.Module) -> nn.Module:
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DDP(net, device_ids=ids)
        return torch.compile(net) if self.cfg.compile else net

    def networks(self) -> list[nn.Module]:
        return [m for m in (self.G, self.D, self.E) if m is not None]

    def train(self, mode: bool = True) -> None:
        for net in self.networks():
            net.train(mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def set_epoch(self, epoch: int) -> None:
        """Set both optimisers' learning rates for ``epoch`` (a pure function of the epoch: nothing to resume)."""
        lr = learning_rate(self.cfg, epoch)
        scale_g, scale_d = (0.5, 2.0) if self.cfg.ttur else (1.0, 1.0)
        for group in self.opt_G.param_groups:
            group["lr"] = lr * scale_g
        for group in self.opt_D.param_groups:
            group["lr"] = lr * scale_d

    def _discriminate(self, d: nn.Module, seg: Tensor, fake: Tensor, real: Tensor):
        fake_and_real = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
        return split_prediction(d(fake_and_real), fake.shape[0])

    def generator_step(self, seg: Tensor, real: Tensor) -> tuple[dict[str, Tensor], Tensor]:
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
                fake = self.G_train(seg, z)
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
        finally:
            self.D.requires_grad_(True)
        return terms, fake.detach()

    def discriminator_step(self, seg: Tensor, real: Tensor) -> dict[str, Tensor]:
        """One update of D on real images and freshly generated (detached) ones."""
        with torch.no_grad(), self.autocast():
            z = None
            if self.E_plain is not None:
                mu, logvar = self.E_plain(real)
                z = reparameterize(mu.float(), logvar.float())
            fake = self.G_plain(seg, z).detach()
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
        seg: Tensor,
        *,
        style: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Images for ``seg`` in eval mode, without touching the global RNG (``generator`` draws z). With VAE, z
        comes from the encoder on ``style`` images when given, else from N(0, I)."""
        was_training = self.G.training
        self.train(False)
        try:
            z = None
            if self.E is not None:
                n = seg.shape[0]
                if style is not None:
                    mu, logvar = self.E(style)
                    z = reparameterize(mu.float(), logvar.float(), generator=generator)
                else:
                    z = torch.randn(n, self.cfg.z_dim, generator=generator, device="cpu").to(self.device)
            with self.autocast():
                return self.G(seg, z).float()
        finally:
            self.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "E": self.E.state_dict() if self.E is not None else None,
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
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if state.get("scaler_G"):
            self.scaler_G.load_state_dict(state["scaler_G"])
        if state.get("scaler_D"):
            self.scaler_D.load_state_dict(state["scaler_D"])
