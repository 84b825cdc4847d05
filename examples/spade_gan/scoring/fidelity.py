"""FID and KID through torch-fidelity, with the Inception weights read from a local file (nothing is downloaded).

Protocol (what two users must share to get the same number):

* images: the generator's output in ``[-1, 1]`` converted to uint8 exactly as the saved PNGs are
  (:func:`~spade_gan.images.to_uint8`), real images converted the same way after the dataset's own resize
  and crop, so both sides have the dataset's crop size;
* features: torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow FID Inception graph of 2015-12-05,
  ported bit-exactly), which resizes every image to 299x299 with TensorFlow-1 bilinear interpolation and returns the
  2048-d pool features, in float32;
* FID: Frechet distance between Gaussians fitted to the two feature sets (all images of both sets);
* KID: unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged over ``subsets`` random
  subsets of ``subset_size`` features of each side (the standard 100 x 1000, with the subset size capped by the
  number of images), seeded.

The weights file is torch-fidelity's ``pt_inception-2015-12-05-6726825d.pth``
(:data:`INCEPTION_URL`); download it once on a machine with internet access and pass its path.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from ..images import to_uint8
from ..optional_packages import import_optional

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
"""File name of the standard weights (torch-fidelity's release asset, saved under this name by its cache)."""

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
"""Where the standard weights come from."""

FEATURE_DIM = 2048


class WeightsError(ValueError):
    """A missing or unusable weights file; the message names the flag and the file."""


def import_fidelity() -> ModuleType:
    """The ``torch_fidelity`` module, or a :class:`~spade_gan.optional_packages.MissingPackageError` saying how to
    install it."""
    install = 'pip install -e ".[eval]" (torch-fidelity, and a torchvision built for this torch)'
    return import_optional("torch_fidelity", "FID/KID", install)


def inception_weights_hint() -> str:
    """Where the standard weights file comes from, for error messages."""
    return f"the standard file is {INCEPTION_FILE}, from {INCEPTION_URL}"


def load_inception(path: str | os.PathLike[str], flag: str = "--inception-weights") -> nn.Module:
    """torch-fidelity's Inception feature extractor with the weights at ``path``, in eval mode, on the CPU.

    The file is read with ``weights_only=True`` first, so a file that is not a plain state dict is refused before
    torch-fidelity (which unpickles it fully) sees it.

    Raises:
        WeightsError: no such file, not a state dict, or a state dict of another network; the message names
            ``flag`` and the standard file.
        MissingPackageError: torch-fidelity is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{flag} {path}: no such file; {inception_weights_hint()}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(
            f"{flag} {path}: not a state dict torch.load(weights_only=True) reads ({type(exc).__name__}); "
            f"{inception_weights_hint()}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{flag} {path}: expected a state dict of tensors; {inception_weights_hint()}")
    import_fidelity()  # a clear MissingPackageError first
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except RuntimeError as exc:  # load_state_dict(strict=True): missing / unexpected keys, wrong shapes
        first = str(exc).splitlines()[0]
        raise WeightsError(
            f"{flag} {path}: not the FID Inception network's weights ({first}); {inception_weights_hint()}"
        ) from exc


@torch.no_grad()
def inception_features(extractor: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """``(N, 2048)`` float64 pool features of images ``(N, 3, H, W)`` in ``[-1, 1]`` (converted to uint8 first)."""
    uint8 = torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).contiguous()
    parts = [extractor(uint8[i : i + batch_size])[0] for i in range(0, len(uint8), batch_size)]
    return torch.cat(parts).double()


def fid(features_1: Tensor, features_2: Tensor) -> float:
    r"""Frechet distance :math:`\lVert\mu_1-\mu_2\rVert^2 + \mathrm{tr}(\Sigma_1+\Sigma_2-2(\Sigma_1\Sigma_2)^{1/2})`
    between Gaussians fitted to two ``(N, D)`` feature sets (torch-fidelity's implementation).

    Raises:
        ValueError: fewer than 2 rows on a side, or different feature sizes.
    """
    _check_features(features_1, features_2, minimum=2)
    metric_fid = import_fidelity().metric_fid
    stats = [metric_fid.fid_features_to_statistics(f.detach().cpu().double()) for f in (features_1, features_2)]
    return float(metric_fid.fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"])


def kid(
    features_1: Tensor, features_2: Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """KID ``(mean, std)`` over ``subsets`` draws of ``min(subset_size, N1, N2)`` rows of each ``(N, D)`` feature set
    (unbiased MMD^2, cubic polynomial kernel; torch-fidelity's implementation)."""
    _check_features(features_1, features_2, minimum=2)
    size = min(subset_size, len(features_1), len(features_2))
    metric_kid = import_fidelity().metric_kid
    out = metric_kid.kid_features_to_metric(
        features_1.detach().cpu().double(),
        features_2.detach().cpu().double(),
        kid_subsets=subsets,
        kid_subset_size=size,
        verbose=False,
        rng_seed=seed,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
    )
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


def _check_features(features_1: Tensor, features_2: Tensor, *, minimum: int) -> None:
    for name, f in (("features_1", features_1), ("features_2", features_2)):
        if f.dim() != 2 or len(f) < minimum:
            raise ValueError(f"{name} must be (N >= {minimum}, D) features, got shape {tuple(f.shape)}")
    if features_1.shape[1] != features_2.shape[1]:
        raise ValueError(f"feature sizes differ: {features_1.shape[1]} and {features_2.shape[1]}")
