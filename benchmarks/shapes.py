"""Normalization shapes of the SPADE generator, from the original architecture's published configurations.

ADE20K configuration: crop 256, ngf 64, ``normal`` upsampling, so the first block runs at 8x8 and each ``up`` doubles.
Each entry is the input of a SPADE layer: (channels, height, width) per sample.
"""

from __future__ import annotations

ADE20K_256 = [
    ("head_0", 1024, 8, 8),
    ("G_middle", 1024, 16, 16),
    ("up_0", 1024, 32, 32),
    ("up_1", 512, 64, 64),
    ("up_2", 256, 128, 128),
    ("up_3", 128, 256, 256),
]

# The second normalization of each upsampling ResnetBlock (``norm_1``) sees ``fmiddle = min(fin, fout)`` channels at the
# block's resolution: half the channels of ``norm_0`` (the block's input, listed above), the same spatial size.
ADE20K_256_FMIDDLE = [
    ("up_0.norm_1", 512, 32, 32),
    ("up_1.norm_1", 256, 64, 64),
    ("up_2.norm_1", 128, 128, 128),
    ("up_3.norm_1", 64, 256, 256),
]

# Cityscapes: crop 512, aspect 2 (output 512x256), ``more`` upsampling: first block at 4x8 (h x w).
CITYSCAPES_512 = [
    ("head_0", 1024, 4, 8),
    ("G_middle_0", 1024, 8, 16),
    ("G_middle_1", 1024, 16, 32),
    ("up_0", 1024, 32, 64),
    ("up_1", 512, 64, 128),
    ("up_2", 256, 128, 256),
    ("up_3", 128, 256, 512),
]

# Today's conditional models, forward+backward of their normalization (CPU and GPU suites):
# SDM's block: GroupNorm(32) statistics, spatial gamma/beta, the timestep scale/shift per (n, c);
# a brainSPADE / MONAI-style volume: instance statistics in 3-D, batch 1.
CONDITIONAL_MODELS = {
    "diffusion": {"shape": (2, 256, 64, 64), "norm": "group", "num_groups": 32, "second": True},
    "volume": {"shape": (1, 64, 32, 64, 64), "norm": "instance", "num_groups": None, "second": False},
}


def conditional_original(x, gamma, beta, scale, shift, norm, num_groups):
    """The eager formula: ``(norm(x) * (1 + gamma) + beta) * (1 + scale) + shift`` (scale/shift per (n, c))."""
    import torch.nn.functional as F

    normalized = F.group_norm(x, num_groups) if norm == "group" else F.instance_norm(x)
    y = normalized * (1 + gamma) + beta
    return y if scale is None else y * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


# The generators of the label-lookup benchmarks (CPU and GPU suites): the ADE20K configuration of the original
# (151 semantic channels: 150 classes and dontcare; ngf 64, 256x256, ``normal``, spectral sync-batch SPADE) and the
# reference GAN's default run (the synthetic scenes' 8 classes, ngf 16, 64x64, batch 8). ``batch`` is the CPU one.
GENERATORS = {
    "ade20k_256": {"label_nc": 151, "ngf": 64, "crop": 256, "batch": 1},
    "default_64": {"label_nc": 8, "ngf": 16, "crop": 64, "batch": 8},
}
