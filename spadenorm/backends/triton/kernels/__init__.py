"""The ``@triton.jit`` kernels, one file per pass; :mod:`.common` holds the device helpers they share.

Every kernel addresses element (n, c, s) of a tensor as ``ptr + n * stride_n + c * stride_c + s * stride_s``, S being
the flattened spatial dimensions (see :mod:`..layout`). gamma/beta are absent (``None`` pointer), strided tensors of
x's rank, or rows of (K, C) class tables gathered by a label map: the ``NONE``/``TENSOR``/``TABLE`` kinds of
:mod:`.common`.
"""
