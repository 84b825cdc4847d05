"""The two implementations of the op, siblings over :mod:`spadenorm._core`: ``torch`` and ``triton``.

Internal: each exposes ``modulated_norm(x, gamma, beta, labels, spec, running, training)`` for arguments already
checked and resolved by :mod:`spadenorm.functional` or a module. :mod:`spadenorm._backend` chooses one per call.
Neither imports the other; ``triton`` imports Triton, so it is imported only when a call resolves to it.
"""
