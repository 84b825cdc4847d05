"""The SPADE generator: a stack of SPADE residual blocks with nearest upsampling, from a downsampled mask or a z."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spadenorm.functional import NormName, label_conv, resize_labels

from .block import MODULATIONS, Modulation, SPADEResnetBlock
from .layers import LEAKY_SLOPE, check_positive_int, init_weights

Upsampling = Literal["normal", "more", "most"]
NUM_UPSAMPLINGS: dict[str, int] = {"normal": 5, "more": 6, "most": 7}


class SPADEGenerator(nn.Module):
    r"""The SPADE generator (Park et al. 2019), with the original's submodule names.

    With ``nf = ngf``, ``n`` = 5, 6 or 7 upsamplings for ``"normal"``, ``"more"``, ``"most"``,
    ``sw = crop_size // 2**n`` and ``sh = round(sw / aspect_ratio)``:

    - input: ``fc``, a 3x3 ``Conv2d(label_nc, 16 nf)`` applied to the mask resized (nearest) to (sh, sw), or with
      ``use_vae`` a ``Linear(z_dim, 16 nf * sh * sw)`` applied to z and reshaped to (N, 16 nf, sh, sw);
    - ``head_0`` (16nf), up, ``G_middle_0`` (16nf), [up for more/most], ``G_middle_1`` (16nf), then up followed by
      ``up_0`` (16nf -> 8nf), ``up_1`` (-> 4nf), ``up_2`` (-> 2nf), ``up_3`` (-> nf) and, for ``"most"``, ``up_4``
      (-> nf / 2); each "up" is nearest x2 and every block gets the full-resolution mask;
    - output: :math:`\tanh(\mathrm{conv\_img}(\mathrm{lrelu}_{0.2}(x)))`, a 3x3 conv to 3 channels.

    Weights are initialised by :func:`init_weights` (Xavier normal, gain 0.02, zero biases).

    Args:
        label_nc: channels of the semantic input: classes, plus the dontcare class and the instance-edge channel
            when the dataset uses them (the original's ``semantic_nc``: 151 for ADE20K, 36 for Cityscapes).
        ngf: base width nf.
        num_upsampling_layers: ``"normal"``, ``"more"`` or ``"most"``.
        crop_size: output width W = sw * 2**n.
        aspect_ratio: W / H of the output.
        use_vae: start from a style vector z (from :class:`ConvEncoder` or N(0, I)) instead of the mask.
        z_dim: length of z.
        norm: parameter-free norm of the SPADE layers (``"sync_batch"`` in the original).
        kernel_size: kernel size of the SPADE layers' convs.
        spectral: spectral normalization on the residual blocks' convs.
        spade_hidden: width of every SPADE layer's shared convolution (128 in the original, whatever ``ngf``).
        modulation: ``"spade"``, or ``"clade"`` for class-adaptive layers (Tan et al. 2021): every block gets the
            class ids (the argmax of the semantic map) and looks its scale and shift up in per-class tables. The
            semantic map must then be a pure one-hot map (no instance-edge channel).

    Class ids are the fast input: given integer ids (and, keyword ``extra``, the float channels that follow the
    classes in the semantic map, such as the instance-edge channel), every SPADE layer computes its first
    convolution by table lookups where the classes are many enough for that to pay (:class:`spadenorm.SPADE`'s
    ``label_lookup``), and ``fc`` likewise (:func:`spadenorm.functional.label_conv`). The result is the generator's
    result for the float map ``cat([one_hot(ids), extra], 1)``, to rounding.

    Shape:
        - seg: integer class ids (N, h, w) / (N, 1, h, w) in [0, label_nc - E), or a float (N, label_nc, h, w) map
          (one-hot plus any extra channels)
        - extra (keyword, optional, with ids only): float (N, E, h, w), the map's channels after the classes (the
          instance-edge channel); not with ``"clade"``
        - z: (N, z_dim), only with ``use_vae``
        - output: (N, 3, H, W) in [-1, 1], (H, W) = :attr:`output_size`

    Example:
        >>> import torch
        >>> g = SPADEGenerator(4, ngf=4, crop_size=64, norm="instance")
        >>> g(torch.randint(0, 4, (1, 64, 64))).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(
        self,
        label_nc: int,
        *,
        ngf: int = 64,
        num_upsampling_layers: Upsampling = "normal",
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        use_vae: bool = False,
        z_dim: int = 256,
        norm: NormName = "sync_batch",
        kernel_size: int = 3,
        spectral: bool = True,
        spade_hidden: int = 128,
        modulation: Modulation = "spade",
    ) -> None:
        super().__init__()
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
        check_positive_int(label_nc, "label_nc")
        check_positive_int(ngf, "ngf")
        check_positive_int(z_dim, "z_dim")
        self.label_nc = label_nc
        self.use_vae = use_vae
        self.z_dim = z_dim
        self.modulation = modulation
        self.num_upsampling_layers = num_upsampling_layers
        self.sh, self.sw = starting_map_size(crop_size, aspect_ratio, num_upsampling_layers)
        self.num_up = NUM_UPSAMPLINGS[num_upsampling_layers]
        nf = ngf
        if use_vae:
            self.fc: nn.Module = nn.Linear(z_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(
                fin,
                fout,
                label_nc,
                norm=norm,
                kernel_size=kernel_size,
                spectral=spectral,
                hidden_channels=spade_hidden,
                modulation=modulation,
            )

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, nf)
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)
        self.apply(init_weights)

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the generated image: the starting map (sh, sw) upsampled ``2**n`` times."""
        return self.sh * 2**self.num_up, self.sw * 2**self.num_up

    def semantic_map(self, seg: Tensor, extra: Tensor | None = None) -> Tensor:
        """``seg`` (and ``extra``) validated and as a float (N, label_nc, h, w) map: see :func:`semantic_map`."""
        return semantic_map(seg, self.label_nc, self.conv_img.weight.dtype, extra)

    def checked_input(self, seg: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(ids, extra)`` for integer ids (checked by :func:`label_ids`), ``(map, None)`` for a float map (checked
        by :func:`semantic_map`)."""
        if not isinstance(seg, Tensor) or seg.is_floating_point():
            return self.semantic_map(seg, extra), None
        if self.modulation == "clade" and extra is not None:
            raise ValueError("modulation='clade' looks classes up per pixel; it cannot take extra channels (extra)")
        return label_ids(seg, self.label_nc, extra)

    def initial_map(self, seg: Tensor, z: Tensor | None, extra: Tensor | None = None) -> Tensor:
        """The (N, 16 nf, sh, sw) map the first block starts from: ``fc`` of z (VAE) or of the downsampled mask
        (float map, or ids and ``extra``: the same convolution by table lookups)."""
        if not self.use_vae:
            if z is not None:
                raise ValueError("z is only used with use_vae=True; this generator starts from the mask")
            size = (self.sh, self.sw)
            if seg.is_floating_point():
                return self.fc(F.interpolate(seg, size=size, mode="nearest"))
            assert isinstance(self.fc, nn.Conv2d)
            small = None if extra is None else F.interpolate(extra, size=size, mode="nearest")
            # channels last where the network is (its weights moved with memory_format=torch.channels_last)
            channels_last = _is_channels_last(self.fc.weight)
            return label_conv(
                resize_labels(seg, size), self.fc.weight, self.fc.bias, extra=small, channels_last=channels_last
            )
        n = seg.shape[0]
        if z is None:
            dtype = seg.dtype if seg.is_floating_point() else self.fc.weight.dtype
            z = torch.randn(n, self.z_dim, device=seg.device, dtype=dtype)
        elif z.shape != (n, self.z_dim):
            raise ValueError(f"z must have shape (N={n}, z_dim={self.z_dim}), got {tuple(z.shape)}")
        return self.fc(z).view(n, -1, self.sh, self.sw)

    def forward(self, seg: Tensor, z: Tensor | None = None, *, extra: Tensor | None = None) -> Tensor:
        seg, extra = self.checked_input(seg, extra)
        clade_of_map = self.modulation == "clade" and seg.is_floating_point()
        cond = seg.argmax(1) if clade_of_map else seg  # what every block is conditioned on
        x = self.head_0(self.initial_map(seg, z, extra), cond, extra)
        x = self.G_middle_0(_up(x), cond, extra)
        if self.num_upsampling_layers in ("more", "most"):
            x = _up(x)
        x = self.G_middle_1(x, cond, extra)
        blocks = [self.up_0, self.up_1, self.up_2, self.up_3]
        if self.num_upsampling_layers == "most":
            blocks.append(self.up_4)
        for block in blocks:
            x = block(_up(x), cond, extra)
        return torch.tanh(self.conv_img(F.leaky_relu(x, LEAKY_SLOPE)))

    def extra_repr(self) -> str:
        start = f"z_dim={self.z_dim}" if self.use_vae else "mask"
        return (
            f"label_nc={self.label_nc}, modulation={self.modulation!r}, "
            f"num_upsampling_layers={self.num_upsampling_layers!r}, "
            f"start={start} at {self.sh}x{self.sw}, output_size={self.output_size}"
        )


def semantic_map(seg: Tensor, label_nc: int, dtype: torch.dtype = torch.float32, extra: Tensor | None = None) -> Tensor:
    """Validate a generator's semantic input and return it as a float (N, label_nc, h, w) map.

    Float input must already be (N, label_nc, h, w) (one-hot classes plus any dontcare and instance-edge channels)
    and is returned as is; integer class ids (N, h, w) or (N, 1, h, w) are one-hot encoded as ``dtype``, followed by
    the ``extra`` channels (N, E, h, w) if given (see :func:`label_ids`).

    Raises:
        TypeError: ``seg`` is not a tensor, or ``extra`` is not a float tensor.
        ValueError: a wrong shape, ``extra`` beside a float map, or class ids outside ``[0, label_nc - E)`` (the
            message gives the actual range).
    """
    if not isinstance(seg, Tensor):
        raise TypeError(f"seg must be a torch.Tensor, got {type(seg).__name__}")
    if seg.is_floating_point():
        if extra is not None:
            raise ValueError("extra goes with integer class ids; a float seg holds all label_nc channels itself")
        if seg.dim() != 4 or seg.shape[1] != label_nc:
            raise ValueError(
                f"seg must have shape (N, label_nc={label_nc}, h, w) (one-hot classes plus any dontcare and "
                f"instance-edge channels), got {tuple(seg.shape)}"
            )
        return seg
    ids, extra = label_ids(seg, label_nc, extra)
    one_hot = F.one_hot(ids, label_nc - (0 if extra is None else extra.shape[1])).movedim(-1, 1).to(dtype)
    return one_hot if extra is None else torch.cat([one_hot, extra.to(dtype)], 1)


def label_ids(seg: Tensor, label_nc: int, extra: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Validate integer class ids (N, h, w) or (N, 1, h, w) and the float channels ``extra`` (N, E, h, w) that follow
    the classes, and return the ids as int64 (N, h, w) with ``extra``.

    The ids must lie in ``[0, label_nc - E)``. This is the single place per batch where labels are checked on the
    host: one :func:`torch.aminmax` read, so one device-to-host synchronisation per batch, at the generator's edge
    (the library's layers check integer labels without a host sync on CUDA).

    Raises:
        TypeError: ``extra`` is not a floating-point tensor.
        ValueError: a wrong shape, or ids out of range (the message gives the actual range).
    """
    ids = seg.squeeze(1) if seg.dim() == 4 and seg.shape[1] == 1 else seg
    if ids.dim() != 3:
        raise ValueError(f"integer seg must hold class ids of shape (N, h, w) or (N, 1, h, w), got {tuple(seg.shape)}")
    num_classes = label_nc
    if extra is not None:
        if not isinstance(extra, Tensor) or not extra.is_floating_point():
            raise TypeError(f"extra must be a floating-point tensor (N, E, h, w), got {extra!r:.60}")
        if extra.dim() != 4 or extra.shape[0] != ids.shape[0] or extra.shape[2:] != ids.shape[1:]:
            raise ValueError(
                f"extra must have shape (N, E, h, w) = ({ids.shape[0]}, E, {ids.shape[1]}, {ids.shape[2]}) to "
                f"match the ids, got {tuple(extra.shape)}"
            )
        num_classes = label_nc - extra.shape[1]
        if num_classes < 1:
            raise ValueError(f"extra has {extra.shape[1]} channels, leaving no class of the {label_nc} channels")
    ids = ids.long()
    if ids.numel():
        low, high = torch.stack(torch.aminmax(ids)).tolist()  # the one host read of the batch
        if low < 0 or high >= num_classes:
            bound = f"label_nc={label_nc}" if extra is None else f"label_nc - E = {num_classes}"
            raise ValueError(f"seg class ids must lie in [0, {bound}), got ids in [{low}, {high}]")
    return ids, extra


def starting_map_size(crop_size: int, aspect_ratio: float, num_upsampling_layers: Upsampling) -> tuple[int, int]:
    """``(sh, sw)`` of the map the first block starts from: ``sw = crop_size // 2**n``, ``sh = round(sw /
    aspect_ratio)`` for ``n`` upsamplings.

    Raises:
        ValueError: a non-positive ``crop_size`` or ``aspect_ratio``, an unknown ``num_upsampling_layers``, or an
            empty starting map.
    """
    check_positive_int(crop_size, "crop_size")
    if num_upsampling_layers not in NUM_UPSAMPLINGS:
        raise ValueError(
            f"num_upsampling_layers must be one of {tuple(NUM_UPSAMPLINGS)}, got {num_upsampling_layers!r}"
        )
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be > 0, got {aspect_ratio!r}")
    num_up = NUM_UPSAMPLINGS[num_upsampling_layers]
    sw = crop_size // 2**num_up
    sh = round(sw / aspect_ratio)
    if sw < 1 or sh < 1:
        raise ValueError(
            f"crop_size={crop_size} with aspect_ratio={aspect_ratio} and {num_up} upsamplings "
            f"({num_upsampling_layers!r}) gives an empty {sh}x{sw} starting map; crop_size must be "
            f">= {2**num_up} and crop_size / aspect_ratio >= {2**num_up}"
        )
    return sh, sw


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _is_channels_last(weight: Tensor) -> bool:
    """Whether a 4-D weight is channels last (a network moved with ``memory_format=torch.channels_last``), as
    ``F.conv2d`` makes its output then."""
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
