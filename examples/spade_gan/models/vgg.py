"""VGG19 convolutional features up to relu5_1, laid out like ``torchvision.models.vgg19().features``.

Defined here so the examples need no torchvision; the pretrained ImageNet weights load from a file in torchvision's
format (``vgg19-dcbb9e9d.pth`` or any ``vgg19().state_dict()`` / ``vgg19().features.state_dict()``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .layers import check_image_batch

# torchvision's configuration "E": conv widths, "M" for a 2x2 max pool.
VGG19_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
)
# Index, in that Sequential, of the ReLU after the first conv of each block.
SLICE_ENDS: dict[str, int] = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}


class VGG19Features(nn.Module):
    """VGG19's convolutional trunk up to relu5_1, returning the activations relu1_1, relu2_1, ..., relu5_1.

    ``self.features`` holds modules 0..29 of torchvision's ``vgg19().features`` (3x3 convs with padding 1, ReLU,
    2x2 max pools) under the same indices, so ``features.0.weight`` .. ``features.28.bias`` load from torchvision's
    state dicts (see :meth:`load_torchvision_state_dict`). The weights start random and are frozen: the module is
    a fixed feature extractor (``requires_grad=False``); gradients still flow to its input.

    Shape:
        - x: (N, 3, H, W)
        - output: 5 maps with 64, 128, 256, 512, 512 channels at sizes H, H/2, H/4, H/8, H/16 (floored)

    Example:
        >>> import torch
        >>> [f.shape[1] for f in VGG19Features()(torch.randn(1, 3, 32, 32))]
        [64, 128, 256, 512, 512]
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in VGG19_CONFIG:
            if isinstance(v, int):
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU()]
                channels = v
            else:  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers[: SLICE_ENDS["relu5_1"] + 1])
        self.requires_grad_(False)
        super().train(False)

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> VGG19Features:
        """Load a torchvision VGG19 state dict: the whole model's (``features.N.*`` plus ``classifier.*``, ignored)
        or its ``features`` alone (``N.weight``, ``N.bias``). Layers past relu5_1 are ignored; every conv up to
        it must be present with torchvision's shape."""
        if any(k.startswith("features.") for k in state_dict):
            state = {k.removeprefix("features."): v for k, v in state_dict.items() if k.startswith("features.")}
        else:
            state = dict(state_dict)
        unknown = [k for k in state if not k.split(".", 1)[0].isdigit()]
        if unknown:
            raise ValueError(
                "state_dict must be torchvision's vgg19 (keys 'features.N.weight', ...) or vgg19().features "
                f"('N.weight', ...), got keys such as {unknown[:3]}"
            )
        keep = {k: v for k, v in state.items() if int(k.split(".", 1)[0]) < len(self.features)}
        self.features.load_state_dict(keep, strict=True)
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> VGG19Features:
        """Build the trunk and load torchvision-format weights from ``path`` with ``torch.load(weights_only=True)``."""
        state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, Mapping):
            raise TypeError(f"{os.fspath(path)!r} must hold a VGG19 state dict, got a {type(state).__name__}")
        return cls().load_torchvision_state_dict(state)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode whatever ``mode``: a fixed extractor inside a model being trained."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        check_image_batch(x, "x")
        outputs = []
        ends = iter(sorted(SLICE_ENDS.values()))
        end = next(ends)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == end:
                outputs.append(x)
                end = next(ends, -1)
        return outputs
