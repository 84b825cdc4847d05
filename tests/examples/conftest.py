"""Make ``examples/`` importable: the reference GAN lives there as the ``spade_gan`` package, not in spadenorm."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
