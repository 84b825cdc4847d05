"""SPADE: spatially-adaptive normalization (Park et al., CVPR 2019), for 1, 2 or 3 spatial dimensions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from .. import _validation
from .._core import NormName
from ..functional import resize_labels
from ..label_conv import label_conv
from ..migration import parse_spade_config
from .param_free import ParamFreeNorm

Activation = Literal["relu", "leaky_relu"]
ACTIVATIONS = ("relu", "leaky_relu")
# F.interpolate modes for a float segmap, and the spatial dimensions each supports.
INTERPOLATIONS: dict[str, tuple[int, ...]] = {
    "nearest": (1, 2, 3),
    "nearest-exact": (1, 2, 3),
    "area": (1, 2, 3),
    "linear": (1,),
    "bilinear": (2,),
    "bicubic": (2,),
    "trilinear": (3,),
}
_CONVS: dict[int, Callable[..., _ConvNd]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
LOOKUP_MIN_CLASSES = 32
"""With ``label_lookup=None``, the fewest classes (input channels looked up) for which the lookup runs: from there it
was measured at least 10 % faster than building the one-hot map and convolving it, forward and backward, on one and
on two CPU threads (docs/benchmarks.md, the crossover table). Below, the two are within a few percent; the lookup's
other gain, no one-hot map kept for backward, holds at any count (``label_lookup=True``)."""
HIDDEN_CHANNELS_LAST_MIN_POSITIONS = 2**16
"""On CPU, for 2-D maps, the fewest label positions (N times the map's positions at x's size) from which a lookup's
result, and so the hidden map that ``mlp_gamma`` and ``mlp_beta`` read, is kept channels last whatever x's layout:
the lookup computes it in that order (no transposing copy forward or backward), and oneDNN's convolutions of such
maps ran faster channels last. Measured per SPADE layer on two CPU threads, forward and backward, x contiguous, 151
classes, channels-last hidden map against x's layout: 0.88x to 0.95x the time at 1 x 64 and 1 x 128 x 256 x 256,
2 x 128 x 256 x 256 and 4 x 128 x 128 x 128; below the threshold, 1 x 128 and 1 x 256 x 128 x 128 and 1 x 512 x 64 x
64 ran 1.08x to 1.12x slower (the mixed layouts cost more than the convolutions gain) and 1 x 64 x 128 x 128 0.87x,
so there the hidden map follows x (docs/benchmarks.md). Those measurements are of float32 layers with sync-batch
statistics and up to 128 channels past the threshold; other statistics, dtypes and wider layers past it follow the
same rule unmeasured. 1-D and 3-D maps, not measured, follow x's layout."""


class SPADE(nn.Module):
    r"""Spatially-adaptive normalization: :math:`y = \mathrm{norm}(x) \odot (1 + \gamma(m)) + \beta(m)`.

    :math:`\gamma(m), \beta(m)` are maps of x's size predicted from the segmentation map m, resized to x's size: a
    shared ``kernel_size`` conv with ReLU into ``hidden_channels`` channels, then one conv each for gamma and beta
    (with ``hidden_channels=0`` the gamma and beta convs read m directly). Submodule and buffer names follow the
    original layer (``param_free_norm``, ``mlp_shared.0``, ``mlp_gamma``, ``mlp_beta``), so its state dicts load with
    ``strict=True``. An optional second modulation, a diffusion model's timestep scale and shift per (n, c), runs in
    the same pass: :math:`y = (\mathrm{norm}(x) \odot (1 + \gamma) + \beta) \odot (1 + s) + t`.

    Label maps as class ids. Given integer ids l instead of a float map, the shared conv of their one-hot map
    :math:`e(l)` is computed without building it: a one-hot input selects one input channel of the weight per
    kernel tap,

    .. math::

        \mathrm{conv}(e(l), W, b)[o, p] = b[o] + \sum_t W[o, \, l(p + t - \lfloor k/2 \rfloor), \, t]

    (no term for taps outside the map), a sum of ``k**spatial_dims`` weight rows per pixel instead of a
    ``label_nc``-channel convolution, with a backward that scatters the gradient into the selected rows
    (:func:`spadenorm.functional.label_conv`). The weights stay those of the convolution. Maps with channels after
    the classes, such as the instance-edge channel of Cityscapes-style inputs, pass the ids and those channels apart:
    ``layer(x, ids, extra=edges)`` with ids in [0, label_nc - E) and ``edges`` (N, E, \*spatial'), the last E input
    channels of ``mlp_shared.0``, which an ordinary convolution reads. This is the layer's result for the float map
    ``cat([one_hot(ids), edges], 1)``, to rounding. The lookup runs whenever ids are resized by nearest neighbours
    (``interpolation="nearest"``, or ids already at x's size), ``hidden_channels > 0`` and ``label_lookup`` allows it
    (by default from :data:`LOOKUP_MIN_CLASSES` classes on, where it is the faster); float (soft) maps, and ids with
    ``hidden_channels=0`` or another interpolation, take the convolution of the one-hot map.

    Args:
        num_features: C, channels of x.
        label_nc: channels of the segmentation map (classes, plus any extra channels such as an instance edge map).
        spatial_dims: 1, 2 or 3: the rank of x's spatial part and of the convolutions (2, images, by default).
        norm: statistics of the parameter-free norm: ``"instance"``, ``"batch"``, ``"sync_batch"`` (synchronized
            across processes when ``torch.distributed`` is initialized and the module is training; set
            ``layer.param_free_norm.process_group`` to reduce over a group other than the default), ``"group"``,
            ``"layer"`` or ``"none"``.
        hidden_channels: width of the shared embedding (128 in the paper); 0 for none.
        kernel_size: odd kernel size of the convs (padding ``kernel_size // 2``).
        activation: of the shared embedding: ``"relu"`` (the paper) or ``"leaky_relu"`` (slope 0.01, as MONAI).
        norm_affine: give the inner norm a learnable per-channel weight and bias (``param_free_norm.weight`` and
            ``.bias``), applied before the modulation, as MONAI's SPADE latent diffusion models do.
        eps: variance epsilon of the norm.
        momentum: running-statistics momentum for batch norms (``None``: cumulative average).
        num_groups: groups for ``norm="group"``.
        interpolation: ``F.interpolate`` mode used to resize a float (soft) segmap, and an integer one whenever it
            is not ``"nearest"`` (ids are one-hot encoded first): ``"nearest"`` (the paper), ``"nearest-exact"``,
            ``"area"``, or the linear mode of the rank (``"linear"``, ``"bilinear"``/``"bicubic"``, ``"trilinear"``).
        label_lookup: compute ``mlp_shared``'s convolution of integer ids by table lookups: ``True`` (whenever it
            applies), ``False`` (never: one-hot encode and convolve) or ``None`` (when the ids index at least
            :data:`LOOKUP_MIN_CLASSES` classes). The results agree to rounding either way.
        fuse_gamma_beta: compute ``mlp_gamma`` and ``mlp_beta`` as one convolution with 2C outputs (their weights
            concatenated per call; parameters and state-dict keys unchanged). Off by default: on one CPU thread it was
            measured slower at five of the six SPADE layers of the ADE20K generator (docs/benchmarks.md).
        device: device of the parameters and buffers.
        dtype: dtype of the parameters and buffers.

    Shape:
        - x: (N, C, \*spatial) with ``spatial_dims`` spatial dimensions, e.g. (N, C, H, W)
        - segmap: float (N, label_nc, \*spatial') (one-hot, soft or probabilistic), or integer class ids
          (N, \*spatial') / (N, 1, \*spatial') of any integer dtype, with ids in [0, label_nc - E)
        - extra (keyword, optional, with integer ids only): float (N, E, \*spatial'), the map's E channels after the
          classes, 1 <= E < label_nc
        - scale, shift (optional): (N, C), (C,), (1, C) or (N, C, 1, ...)
        - output: x's shape, in x's memory format

    Example:
        >>> import torch
        >>> from spadenorm import SPADE
        >>> layer = SPADE(64, label_nc=10)
        >>> x = torch.randn(2, 64, 32, 32)
        >>> labels = torch.randint(0, 10, (2, 256, 256))
        >>> layer(x, labels).shape
        torch.Size([2, 64, 32, 32])
        >>> cityscapes = SPADE(64, label_nc=36)  # 35 classes and an instance-edge channel
        >>> ids, edges = torch.randint(0, 35, (2, 64, 64)), torch.rand(2, 1, 64, 64).round()
        >>> cityscapes(x, ids, extra=edges).shape
        torch.Size([2, 64, 32, 32])
        >>> volume = SPADE(8, label_nc=4, spatial_dims=3, hidden_channels=16)
        >>> volume(torch.randn(1, 8, 6, 8, 8), torch.rand(1, 4, 12, 16, 16)).shape
        torch.Size([1, 8, 6, 8, 8])
    """

    def __init__(
        self,
        num_features: int,
        label_nc: int,
        *,
        spatial_dims: int = 2,
        norm: NormName = "instance",
        hidden_channels: int = 128,
        kernel_size: int = 3,
        activation: Activation = "relu",
        norm_affine: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        num_groups: int | None = None,
        interpolation: str = "nearest",
        label_lookup: bool | None = None,
        fuse_gamma_beta: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _validation.check_positive_int(label_nc, "label_nc")
        if _validation.check_positive_int(spatial_dims, "spatial_dims") > 3:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        if isinstance(hidden_channels, bool) or not isinstance(hidden_channels, int):
            raise TypeError(f"hidden_channels must be an int, got {type(hidden_channels).__name__}")
        if hidden_channels < 0:
            raise ValueError(f"hidden_channels must be >= 0 (0: no shared layer), got {hidden_channels}")
        if _validation.check_positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (the output keeps x's size), got {kernel_size}")
        _validation.check_choice(activation, "activation", ACTIVATIONS)
        _validation.check_bool(norm_affine, "norm_affine")
        _validation.check_choice(interpolation, "interpolation", tuple(INTERPOLATIONS))
        if label_lookup is not None:
            _validation.check_bool(label_lookup, "label_lookup")
        self.label_lookup = label_lookup
        self.fuse_gamma_beta = _validation.check_bool(fuse_gamma_beta, "fuse_gamma_beta")
        if spatial_dims not in INTERPOLATIONS[interpolation]:
            dims = " or ".join(map(str, INTERPOLATIONS[interpolation]))
            raise ValueError(
                f"interpolation {interpolation!r} resizes maps of {dims} spatial dimension(s), got spatial_dims="
                f"{spatial_dims}"
            )
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.label_nc = label_nc
        self.spatial_dims = spatial_dims
        self.interpolation = interpolation
        self.param_free_norm = ParamFreeNorm(
            num_features, norm, eps=eps, momentum=momentum, num_groups=num_groups, affine=norm_affine, **factory
        )
        conv, padding = _CONVS[spatial_dims], kernel_size // 2
        self.mlp_shared: nn.Sequential | None = None
        embedded = label_nc
        if hidden_channels:
            act = nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.01)
            self.mlp_shared = nn.Sequential(
                conv(label_nc, hidden_channels, kernel_size, padding=padding, **factory), act
            )
            embedded = hidden_channels
        self.mlp_gamma: _ConvNd = conv(embedded, num_features, kernel_size, padding=padding, **factory)
        self.mlp_beta: _ConvNd = conv(embedded, num_features, kernel_size, padding=padding, **factory)

    @classmethod
    def from_config(cls, config: str, num_features: int, label_nc: int, **kwargs: Any) -> SPADE:
        """Build the layer the original code builds from ``config`` (e.g. ``"spadesyncbatch3x3"``).

        Example:
            >>> SPADE.from_config("spadesyncbatch3x3", 256, 36).param_free_norm.norm
            'sync_batch'
        """
        parsed = parse_spade_config(config)
        return cls(num_features, label_nc, norm=parsed.norm, kernel_size=parsed.kernel_size, **kwargs)

    @property
    def num_features(self) -> int:
        return self.param_free_norm.num_features

    def _label_ids(self, segmap: Tensor, extra: object, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """An integer ``segmap`` and its ``extra`` channels checked against x: ids (N, \\*spatial') in
        [0, label_nc - E) and the (N, E, \\*spatial') float map or ``None``."""
        soft_rank = x.dim()
        if segmap.dim() == soft_rank and segmap.shape[1] == self.label_nc and self.label_nc > 1:
            raise TypeError(
                f"segmap of shape {tuple(segmap.shape)} holds one map per class: a one-hot or soft segmap must "
                f"be floating point, got {segmap.dtype} (integer segmaps hold class ids, (N, *spatial))"
            )
        if extra is None:
            return _validation.check_label_map(segmap, self.label_nc, x, "segmap"), None
        _validation.check_integer_ids(segmap, "segmap")
        ids = segmap.squeeze(1) if segmap.dim() == soft_rank and segmap.shape[1] == 1 else segmap
        checked = _validation.check_extra_map(extra, ids, self.label_nc)
        labels = _validation.check_label_map(segmap, self.label_nc - checked.shape[1], x, "segmap")
        return labels, checked

    def prepare_segmap(self, segmap: Tensor, x: Tensor, extra: Tensor | None = None) -> Tensor:
        """Validate ``segmap`` (and ``extra``) against x and return the float (N, label_nc, \\*spatial) map at x's
        size that ``mlp_shared`` convolves: a float segmap as it is, integer ids one-hot encoded and followed by the
        ``extra`` channels, resized with ``interpolation``."""
        dtype = self.mlp_gamma.weight.dtype
        size = tuple(x.shape[2:])
        if not isinstance(segmap, Tensor):
            raise TypeError(f"segmap must be a torch.Tensor, got {type(segmap).__name__}")
        if not segmap.is_floating_point():
            labels, extra = self._label_ids(segmap, extra, x)
            nearest = self.interpolation == "nearest"
            if nearest:
                labels = resize_labels(labels, size)
                extra = None if extra is None else _resize(extra, size)
            segmap = F.one_hot(labels.long(), self.label_nc - _channels(extra)).movedim(-1, 1).to(dtype)
            if extra is not None:
                segmap = torch.cat([segmap, extra.to(dtype)], 1)
            if nearest:
                return segmap
        elif extra is not None:
            raise ValueError(
                "extra goes with integer class ids in segmap; a float segmap holds all label_nc channels itself"
            )
        if segmap.dim() != x.dim() or segmap.shape[0] != x.shape[0] or segmap.shape[1] != self.label_nc:
            spatial = ", ".join(["d", "h", "w"][-self.spatial_dims :])
            raise ValueError(
                f"segmap must have shape ({x.shape[0]}, {self.label_nc}, {spatial}) (x's batch, label_nc channels, "
                f"x's spatial rank {self.spatial_dims}), got {tuple(segmap.shape)}"
            )
        if segmap.device != x.device:
            raise ValueError(f"segmap must be on x's device {x.device}, got {segmap.device}")
        if tuple(segmap.shape[2:]) != size:
            segmap = F.interpolate(segmap, size=size, mode=self.interpolation)
        return segmap

    def _looks_up(self, segmap: object, x: Tensor, extra: object) -> bool:
        """Whether ``mlp_shared``'s convolution of this segmap runs as table lookups: integer ids, resized (if at
        all) by nearest neighbours, enough classes (``label_lookup``), and the convolution as built (stride 1,
        padding k // 2, no hooks)."""
        if self.mlp_shared is None or self.label_lookup is False:
            return False
        if not isinstance(segmap, Tensor) or segmap.is_floating_point():
            return False
        classes = self.label_nc - (extra.shape[1] if isinstance(extra, Tensor) and extra.dim() > 1 else 0)
        if self.label_lookup is None and classes < LOOKUP_MIN_CLASSES:
            return False
        if segmap.dtype == torch.bool or segmap.is_complex():
            return False
        if self.interpolation != "nearest" and tuple(segmap.shape[-self.spatial_dims :]) != tuple(x.shape[2:]):
            return False
        return _plain_conv(cast(_ConvNd, self.mlp_shared[0]))

    def _hidden(self, segmap: Tensor, x: Tensor, extra: Tensor | None) -> Tensor:
        """What ``mlp_gamma`` and ``mlp_beta`` read: ``mlp_shared`` of the map, or the map itself without it."""
        if self._looks_up(segmap, x, extra):
            assert self.mlp_shared is not None
            labels, extra = self._label_ids(segmap, extra, x)
            size = tuple(x.shape[2:])
            labels = resize_labels(labels, size)
            extra = None if extra is None else _resize(extra, size)
            conv = cast(_ConvNd, self.mlp_shared[0])
            # In x's layout, as the convolution of a map in x's layout gives it, so that mlp_gamma and mlp_beta
            # produce gamma and beta in it (mixed layouts make the norm and the convolutions' backward slower),
            # except for large maps on CPU, where channels last pays (HIDDEN_CHANNELS_LAST_MIN_POSITIONS).
            channels_last = not x.is_contiguous() or (
                self.spatial_dims == 2
                and labels.device.type == "cpu"
                and labels.numel() >= HIDDEN_CHANNELS_LAST_MIN_POSITIONS
            )
            hidden = label_conv(labels, conv.weight, conv.bias, extra, conv.padding_mode, channels_last)
            return _activate_in_place(self.mlp_shared[1], hidden)
        actv = self.prepare_segmap(segmap, x, extra)
        return actv if self.mlp_shared is None else self.mlp_shared(actv)

    def _gamma_beta(self, actv: Tensor) -> tuple[Tensor, Tensor]:
        """``mlp_gamma(actv)`` and ``mlp_beta(actv)``; with ``fuse_gamma_beta`` one convolution with 2C outputs."""
        gamma_conv, beta_conv = self.mlp_gamma, self.mlp_beta
        fusable = (
            _plain_conv(gamma_conv)
            and _plain_conv(beta_conv)
            and (gamma_conv.bias is None) == (beta_conv.bias is None)
            and gamma_conv.padding_mode == beta_conv.padding_mode
        )
        if not (self.fuse_gamma_beta and fusable):
            return gamma_conv(actv), beta_conv(actv)
        weight = torch.cat([gamma_conv.weight, beta_conv.weight])
        bias = None
        if gamma_conv.bias is not None and beta_conv.bias is not None:
            bias = torch.cat([gamma_conv.bias, beta_conv.bias])
        gamma, beta = gamma_conv._conv_forward(actv, weight, bias).split(self.num_features, 1)
        # The norm keeps gamma for backward: in a storage of its own, so that beta's half is freed.
        return (gamma.clone() if torch.is_grad_enabled() else gamma), beta

    def forward(
        self,
        x: Tensor,
        segmap: Tensor,
        scale: Tensor | None = None,
        shift: Tensor | None = None,
        *,
        extra: Tensor | None = None,
    ) -> Tensor:
        """Normalize x (N, C, \\*spatial), modulate it with gamma and beta predicted from ``segmap`` (see the class),
        then by ``1 + scale`` and ``shift`` (per (n, c) or per channel, optional, as a diffusion model's timestep).
        ``extra``: the float channels after the classes (e.g. an instance-edge map) beside integer ids."""
        x = self.param_free_norm.check_input(x, ranks=(self.spatial_dims + 2,))
        scale = _validation.check_scale_shift(scale, x, "scale")
        shift = _validation.check_scale_shift(shift, x, "shift")
        gamma, beta = self._gamma_beta(self._hidden(segmap, x, extra))
        return self.param_free_norm.modulate(x, gamma, beta, scale, shift)

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"label_nc={self.label_nc}"]
        if self.spatial_dims != 2:
            parts.append(f"spatial_dims={self.spatial_dims}")
        parts.append(f"interpolation={self.interpolation!r}")
        if self.label_lookup is not None:
            parts.append(f"label_lookup={self.label_lookup}")
        if self.fuse_gamma_beta:
            parts.append("fuse_gamma_beta=True")
        return ", ".join(parts)


def _channels(extra: Tensor | None) -> int:
    return 0 if extra is None else extra.shape[1]


def _resize(extra: Tensor, size: tuple[int, ...]) -> Tensor:
    """The extra channels resized as the ids are (nearest), or as they are at x's size."""
    return extra if tuple(extra.shape[2:]) == size else F.interpolate(extra, size=size, mode="nearest")


def _activate_in_place(activation: nn.Module, hidden: Tensor) -> Tensor:
    """``mlp_shared``'s activation of the lookup's result: in place for torch's ReLU and LeakyReLU without hooks (the
    result is fresh, and the lookup's backward does not read it), else the module's own call."""
    if not (activation._forward_hooks or activation._forward_pre_hooks):
        if type(activation) is nn.ReLU:
            return F.relu(hidden, inplace=True)
        if type(activation) is nn.LeakyReLU:
            return F.leaky_relu(hidden, activation.negative_slope, inplace=True)
    return activation(hidden)


def _plain_conv(conv: _ConvNd) -> bool:
    """A convolution as SPADE builds it (stride 1, no dilation, one group, padding k // 2) without hooks, so that
    running it from its weight gives what calling it gives."""
    if conv._forward_hooks or conv._forward_pre_hooks:
        return False
    pads = tuple(k // 2 for k in conv.kernel_size)
    padding = conv.padding if not isinstance(conv.padding, str) else (pads if conv.padding == "same" else None)
    return (
        all(s == 1 for s in conv.stride)
        and all(d == 1 for d in conv.dilation)
        and conv.groups == 1
        and all(k % 2 == 1 for k in conv.kernel_size)
        and tuple(padding or ()) == pads
    )
