"""Drop-in ``torch.nn`` modules; each holds parameters and buffers and calls one functional op."""

from .adain import AdaIN
from .clade import CLADE
from .conditional_batchnorm import ConditionalBatchNorm, ConditionalBatchNorm2d
from .param_free import ParamFreeNorm
from .spade import SPADE

__all__ = ["CLADE", "SPADE", "AdaIN", "ConditionalBatchNorm", "ConditionalBatchNorm2d", "ParamFreeNorm"]
