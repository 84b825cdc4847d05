"""spadenorm: spatially-adaptive and conditional normalization (SPADE, CLADE, AdaIN, conditional BN) for PyTorch.

``import spadenorm`` touches neither CUDA nor Triton; kernels are chosen per call by the backend switch.
"""

from . import functional
from ._backend import BackendUnavailableError, get_backend, set_backend, use_backend
from ._version import __version__
from .modules import CLADE, SPADE, AdaIN, ConditionalBatchNorm, ConditionalBatchNorm2d, ParamFreeNorm

__all__ = [
    "CLADE",
    "SPADE",
    "AdaIN",
    "BackendUnavailableError",
    "ConditionalBatchNorm",
    "ConditionalBatchNorm2d",
    "ParamFreeNorm",
    "__version__",
    "functional",
    "get_backend",
    "set_backend",
    "use_backend",
]
