"""The generators SPADE is compared with: the label map enters at the input only (pix2pixHD) or at every block.

Both are the pix2pixHD global generator (Wang et al. 2018) with ordinary normalization layers, the baselines of the
SPADE paper's ablation: with ``concat_mask=False`` the label map goes through the network's input and
nowhere else, so a normalization layer that removes a spatially constant signal "washes away" a uniform map; with
``concat_mask=True`` the map, resized to each residual block's and upsampling layer's resolution, is concatenated to
that layer's input (the paper's "concat" variant).

:func:`matched_width` picks the width that brings a baseline's parameter count closest to a target (the SPADE
generator it is compared with), so the comparison is at equal size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .generator import semantic_map
from .layers import check_positive_int, init_weights

BaselineNorm = Literal["instance", "batch"]

BASELINES = ("pix2pixhd", "concat")
"""The ``--generator`` names of the two pix2pixHD generators (the map at the input only; concatenated to every
block)."""


def plain_norm(kind: BaselineNorm, channels: int) -> nn.Module:
    """``InstanceNorm2d(affine=False)`` (pix2pixHD's choice) or ``BatchNorm2d`` (affine, running statistics)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'instance' or 'batch' for the pix2pixHD generators, got {kind!r}")


class _MaskedLayer(nn.Module):
    """A layer whose input is, with ``concat_mask``, concatenated with the label map resized (nearest) to it."""

    def __init__(self, concat_mask: bool) -> None:
        super().__init__()
        self.concat_mask = concat_mask

    def with_mask(self, x: Tensor, seg: Tensor) -> Tensor:
        if not self.concat_mask:
            return x
        return torch.cat([x, F.interpolate(seg, size=x.shape[-2:], mode="nearest").to(x.dtype)], 1)


class ResnetBlock(_MaskedLayer):
    r""":math:`y = x + \mathrm{norm}(\mathrm{conv}(\mathrm{relu}(\mathrm{norm}(\mathrm{conv}([x, m])))))`, 3x3 convs
    with reflection padding (``[x, m]``: x, concatenated with the map m only with ``concat_mask``)."""

    def __init__(self, channels: int, label_nc: int, norm: BaselineNorm, concat_mask: bool) -> None:
        super().__init__(concat_mask)
        extra = label_nc if concat_mask else 0
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels + extra, channels, 3),
            plain_norm(norm, channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            plain_norm(norm, channels),
        )

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        return x + self.body(self.with_mask(x, seg))


class UpLayer(_MaskedLayer):
    """``relu(norm(conv_transpose([x, m])))``: a stride-2 3x3 transposed conv that doubles H and W."""

    def __init__(self, fin: int, fout: int, label_nc: int, norm: BaselineNorm, concat_mask: bool) -> None:
        super().__init__(concat_mask)
        extra = label_nc if concat_mask else 0
        self.body = nn.Sequential(
            nn.ConvTranspose2d(fin + extra, fout, 3, stride=2, padding=1, output_padding=1),
            plain_norm(norm, fout),
            nn.ReLU(),
        )

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        return self.body(self.with_mask(x, seg))


class Pix2PixHDGenerator(nn.Module):
    r"""The pix2pixHD global generator, fed the label map at its input (and, with ``concat_mask``, at every block).

    With ``d = n_downsampling``:

    - ``stem``: reflection pad 3, 7x7 conv ``label_nc -> ngf``, norm, ReLU;
    - ``down``: d stride-2 3x3 convs doubling the width (``ngf * 2**d`` at the bottom), each with norm and ReLU;
    - ``blocks``: ``n_blocks`` :class:`ResnetBlock` at ``ngf * 2**d`` channels;
    - ``up``: d :class:`UpLayer` halving the width back to ``ngf``;
    - ``head``: reflection pad 3, 7x7 conv to 3 channels, tanh.

    Weights are initialised like the SPADE generator's (:func:`~spade_gan.models.layers.init_weights`).

    Args:
        label_nc: channels of the semantic input.
        ngf: width of the first layer.
        n_downsampling: stride-2 stages; the output's height and width must be multiples of ``2**n_downsampling``.
        n_blocks: residual blocks at the bottom.
        crop_size: output width W.
        aspect_ratio: W / H of the output.
        norm: ``"instance"`` or ``"batch"``.
        concat_mask: concatenate the resized label map to every residual block's and upsampling layer's input.

    Shape:
        - seg: as for :class:`~spade_gan.models.generator.SPADEGenerator` (one-hot map or class ids), resized
          (nearest) to :attr:`output_size` if it has another size
        - z: must be ``None`` (these generators have no style input)
        - output: (N, 3, H, W) in [-1, 1]

    Example:
        >>> import torch
        >>> g = Pix2PixHDGenerator(4, ngf=4, crop_size=32, n_blocks=2)
        >>> g(torch.randint(0, 4, (2, 32, 32))).shape
        torch.Size([2, 3, 32, 32])
    """

    use_vae = False

    def __init__(
        self,
        label_nc: int,
        *,
        ngf: int = 64,
        n_downsampling: int = 3,
        n_blocks: int = 9,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        norm: BaselineNorm = "instance",
        concat_mask: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(label_nc, "label_nc")
        check_positive_int(ngf, "ngf")
        check_positive_int(n_blocks, "n_blocks")
        self.label_nc = label_nc
        self.concat_mask = concat_mask
        self._output_size = baseline_output_size(crop_size, aspect_ratio, n_downsampling)
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(label_nc, ngf, 7), plain_norm(norm, ngf), nn.ReLU())
        widths = [ngf * 2**i for i in range(n_downsampling + 1)]
        self.down = nn.Sequential(
            *(
                nn.Sequential(nn.Conv2d(fin, fout, 3, stride=2, padding=1), plain_norm(norm, fout), nn.ReLU())
                for fin, fout in itertools.pairwise(widths)
            )
        )
        self.blocks = nn.ModuleList(ResnetBlock(widths[-1], label_nc, norm, concat_mask) for _ in range(n_blocks))
        self.up = nn.ModuleList(
            UpLayer(fin, fout, label_nc, norm, concat_mask)
            for fin, fout in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())
        self.apply(init_weights)

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the generated image."""
        return self._output_size

    def semantic_map(self, seg: Tensor, extra: Tensor | None = None) -> Tensor:
        """``seg`` validated, one-hot encoded if it holds ids (followed by the ``extra`` channels), and resized
        (nearest) to :attr:`output_size`."""
        seg = semantic_map(seg, self.label_nc, self.head[1].weight.dtype, extra)
        if tuple(seg.shape[-2:]) != self.output_size:
            seg = F.interpolate(seg, size=self.output_size, mode="nearest")
        return seg

    def forward(self, seg: Tensor, z: Tensor | None = None, *, extra: Tensor | None = None) -> Tensor:
        """Images for a float map, or for class ids and the ``extra`` channels after the classes (one-hot encoded
        and concatenated here: these generators convolve the map itself)."""
        if z is not None:
            raise ValueError("z: the pix2pixHD generators have no style input, pass z=None")
        seg = self.semantic_map(seg, extra)
        x = self.down(self.stem(seg))
        for block in self.blocks:
            x = block(x, seg)
        for layer in self.up:
            x = layer(x, seg)
        return self.head(x)

    def extra_repr(self) -> str:
        return f"label_nc={self.label_nc}, concat_mask={self.concat_mask}, output_size={self.output_size}"


def baseline_output_size(crop_size: int, aspect_ratio: float, n_downsampling: int) -> tuple[int, int]:
    """``(H, W) = (round(crop_size / aspect_ratio), crop_size)``, checked: the ``n_downsampling`` stride-2 stages
    need both sides to be multiples of ``2**n_downsampling``.

    Raises:
        TypeError, ValueError: a non-positive ``crop_size``, ``aspect_ratio`` or ``n_downsampling``, or sides that
            are not such multiples.
    """
    check_positive_int(crop_size, "crop_size")
    check_positive_int(n_downsampling, "n_downsampling")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be > 0, got {aspect_ratio!r}")
    height = round(crop_size / aspect_ratio)
    step = 2**n_downsampling
    if crop_size % step or height % step:
        raise ValueError(
            f"the pix2pixHD generator needs an output whose sides are multiples of {step}, got {height}x{crop_size} "
            f"(crop_size={crop_size}, aspect_ratio={aspect_ratio}; both sides must be multiples of 2**n_downsampling "
            f"= {step})"
        )
    return height, crop_size


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_width(build: Callable[[int], nn.Module], target: int, *, max_width: int = 1024) -> int:
    """The width ``w`` in ``[1, max_width]`` whose ``build(w)`` has the parameter count closest to ``target``.

    ``build`` must give a parameter count that grows with the width; the networks are built on the meta device (no
    memory, no initialisation cost).

    Example:
        >>> matched_width(lambda w: nn.Linear(w, w), target=110)
        10
    """
    check_positive_int(target, "target")

    def count(width: int) -> int:
        with torch.device("meta"):
            return parameter_count(build(width))

    low, high = 1, max_width
    while low < high:  # the smallest width with count >= target
        mid = (low + high) // 2
        if count(mid) >= target:
            high = mid
        else:
            low = mid + 1
    candidates = [w for w in (low - 1, low) if w >= 1]
    return min(candidates, key=lambda w: abs(count(w) - target))
