"""From label ids (and instance ids) to the generator's semantic input, following the original conventions.

Conventions:

* Label maps hold integer ids ``0 .. label_nc - 1``. With ``contain_dontcare`` the id 255 means "don't care" and is
  mapped to id ``label_nc``, which gets a one-hot channel of its own (ADE20K, COCO-Stuff).
* The range check accepts what has a channel: ``0 .. label_nc - 1``, plus ``label_nc`` itself and 255 when
  ``contain_dontcare`` is on. Accepting a raw ``label_nc`` is deliberate: the original leaves ADE20K's ids unshifted
  (0 = "other", 1..150 the classes), so with ``label_nc=150`` the raw id 150 is a real class that shares channel 150
  with dontcare, exactly as in the original; rejecting it would refuse real ADE20K files.
* The semantic map is the one-hot encoding over ``label_nc + contain_dontcare`` channels followed, where instance maps
  are used, by one instance edge channel: a pixel is an edge (1.0) if its instance id differs from that of its left,
  right, upper or lower neighbour, else 0.0. Pixels outside the image are no neighbours.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .errors import LabelRangeError

DONTCARE_ID = 255


def map_dontcare(label: Tensor, *, label_nc: int, contain_dontcare: bool) -> Tensor:
    """Map the dontcare id 255 to ``label_nc`` where ``contain_dontcare`` is on; otherwise return ``label`` as is.

    Already-mapped maps pass through unchanged (for ``label_nc != 255``), so the call is idempotent.
    """
    if contain_dontcare and label_nc != DONTCARE_ID:
        return torch.where(label == DONTCARE_ID, torch.full_like(label, label_nc), label)
    return label


def check_label_range(label: Tensor, *, label_nc: int, contain_dontcare: bool, source: str = "label") -> None:
    """Raise :class:`LabelRangeError` unless every id of ``label`` (after the dontcare mapping) is a valid channel.

    Valid ids are ``0 .. label_nc - 1``, plus ``label_nc`` when ``contain_dontcare`` is on. ``source`` names the file
    or argument in the message.
    """
    if label.numel() == 0:
        return
    num_channels = label_nc + int(contain_dontcare)
    bad = (label < 0) | (label >= num_channels)
    if bool(bad.any()):
        ids = torch.unique(label[bad]).tolist()
        shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
        allowed = f"0..{label_nc - 1}" + (" or 255 (dontcare)" if contain_dontcare else "")
        raise LabelRangeError(
            f"{source}: label ids must be {allowed} for label_nc={label_nc}, contain_dontcare={contain_dontcare}; "
            f"found {shown}"
        )


def instance_edges(instance: Tensor) -> Tensor:
    """Instance edge map: 1.0 where a pixel's id differs from its left, right, upper or lower neighbour, else 0.0.

    Args:
        instance: integer instance ids of shape ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` (C is 1 in practice).

    Returns:
        A float32 tensor of the same shape.
    """
    if instance.dim() < 2:
        raise ValueError(f"instance: expected a tensor of shape (..., H, W), got shape {tuple(instance.shape)}")
    edge = torch.zeros(instance.shape, dtype=torch.bool, device=instance.device)
    horizontal = instance[..., :, 1:] != instance[..., :, :-1]
    vertical = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()


class Semantics(NamedTuple):
    """A batch's semantic input in the two forms the networks read.

    The SPADE generator reads the class ids and the edge channel apart (its SPADE layers look the first
    convolution's weights up by id, see :class:`spadenorm.SPADE`); the discriminator and the pix2pixHD baselines read
    the float map.

    Attributes:
        ids: (N, H, W) int64 class ids in ``[0, label_nc + contain_dontcare)``, dontcare mapped to ``label_nc``.
        edges: (N, 1, H, W) float instance-edge map, or ``None`` without instance maps.
        map: (N, semantic_nc, H, W) float: the one-hot ids, then the edge channel (what :func:`to_semantics` gives).
    """

    ids: Tensor
    edges: Tensor | None
    map: Tensor


def semantic_ids(
    label: Tensor,
    instance: Tensor | None = None,
    *,
    label_nc: int,
    contain_dontcare: bool,
) -> tuple[Tensor, Tensor | None]:
    """What the SPADE generator reads of a batch, without the one-hot map: the (N, H, W) int64 class ids (dontcare
    mapped to ``label_nc``) and the (N, 1, H, W) float instance-edge map, or ``None`` without ``instance``. The
    arguments, shapes and errors are those of :func:`to_semantics`."""
    if label_nc < 1:
        raise ValueError(f"label_nc: expected a positive int, got {label_nc!r}")
    if not isinstance(label, Tensor):
        raise TypeError(f"label: expected a torch.Tensor of integer ids, got {type(label).__name__}")
    if label.is_floating_point() or label.dtype == torch.bool:
        raise TypeError(f"label: expected an integer tensor of ids, got dtype {label.dtype}")
    if label.dim() == 3:
        label = label.unsqueeze(1)
    if label.dim() != 4 or label.shape[1] != 1:
        raise ValueError(f"label: expected shape (N, 1, H, W) or (N, H, W), got {tuple(label.shape)}")
    label = map_dontcare(label.long(), label_nc=label_nc, contain_dontcare=contain_dontcare)
    check_label_range(label, label_nc=label_nc, contain_dontcare=contain_dontcare)
    if instance is None:
        return label[:, 0], None
    n, _, h, w = label.shape
    if instance.dim() == 3:
        instance = instance.unsqueeze(1)
    if instance.shape != (n, 1, h, w):
        raise ValueError(f"instance: expected shape {(n, 1, h, w)} to match label, got {tuple(instance.shape)}")
    edges = instance.float() if instance.is_floating_point() else instance_edges(instance)
    return label[:, 0], edges.to(label.device)


def semantic_inputs(
    label: Tensor,
    instance: Tensor | None = None,
    *,
    label_nc: int,
    contain_dontcare: bool,
) -> Semantics:
    """The class ids, the instance edges and the float semantic map of a batch: see :func:`to_semantics` (the
    arguments, shapes and errors are its own) and :class:`Semantics`."""
    ids, edges = semantic_ids(label, instance, label_nc=label_nc, contain_dontcare=contain_dontcare)
    n, h, w = ids.shape
    semantics = torch.zeros(n, label_nc + int(contain_dontcare), h, w, device=ids.device)
    semantics.scatter_(1, ids[:, None], 1.0)
    return Semantics(ids, edges, semantics if edges is None else torch.cat([semantics, edges], dim=1))


def to_semantics(
    label: Tensor,
    instance: Tensor | None = None,
    *,
    label_nc: int,
    contain_dontcare: bool,
) -> Tensor:
    """The generator's semantic input: one-hot label channels, then the instance edge channel if ``instance`` is given.

    Args:
        label: integer ids of shape ``(N, 1, H, W)`` or ``(N, H, W)`` (so one dataset item's ``(1, H, W)`` map gives
            a batch of one). Raw (255) and already mapped (``label_nc``) dontcare ids are both accepted.
        instance: optional, same spatial size: integer instance ids, from which the edge map is computed, or a
            floating-point tensor that already is an edge map (as in the dataset items), used as is.
        label_nc: number of real classes.
        contain_dontcare: whether id 255 / ``label_nc`` is the dontcare class with a channel of its own.

    Returns:
        float32 tensor ``(N, label_nc + contain_dontcare + (instance is not None), H, W)``.

    Raises:
        TypeError: ``label`` is not a tensor of an integer dtype.
        LabelRangeError: for an id that has no channel.
        ValueError: for mismatched shapes.
    """
    return semantic_inputs(label, instance, label_nc=label_nc, contain_dontcare=contain_dontcare).map
