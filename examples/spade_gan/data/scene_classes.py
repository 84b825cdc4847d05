"""The classes of the built-in procedural scenes: name, mean colour and texture of each.

Textures are defined in pixels (not in scene units), so every class keeps the same local statistics at any
resolution; that is what the alignment metric (:mod:`spade_gan.scoring.alignment`) relies on. Each texture is a
luminance modulation added to the class colour:

* ``gradient``: a smooth vertical brightness ramp (sky), nearly no fine texture;
* ``stripes``: a sinusoid of the given period (pixels) and orientation (degrees; 0 = stripes vary along x);
* ``noise``: white noise, blurred over ``period`` pixels when ``period > 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SceneClass:
    """One class of the synthetic scenes. ``colour`` is RGB in ``[0, 1]``; ``amplitude`` is the texture's amplitude."""

    name: str
    colour: tuple[float, float, float]
    texture: Literal["gradient", "stripes", "noise"]
    amplitude: float
    period: float = 1.0
    orientation: float = 0.0


SCENE_CLASSES: tuple[SceneClass, ...] = (
    SceneClass("sky", (0.55, 0.72, 0.95), "gradient", 0.10),
    SceneClass("water", (0.08, 0.28, 0.55), "stripes", 0.08, period=3.0, orientation=90.0),
    SceneClass("vegetation", (0.16, 0.46, 0.12), "noise", 0.10),
    SceneClass("ground", (0.50, 0.36, 0.20), "noise", 0.05, period=3.0),
    SceneClass("building", (0.72, 0.62, 0.62), "stripes", 0.10, period=4.0, orientation=0.0),
    SceneClass("road", (0.25, 0.25, 0.28), "noise", 0.03),
    SceneClass("sand", (0.88, 0.80, 0.52), "stripes", 0.06, period=5.0, orientation=45.0),
    SceneClass("rock", (0.44, 0.38, 0.50), "stripes", 0.08, period=3.5, orientation=-45.0),
)
"""The classes, indexed by label id."""

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in SCENE_CLASSES)
NUM_CLASSES: int = len(SCENE_CLASSES)

SKY, WATER, VEGETATION, GROUND, BUILDING, ROAD, SAND, ROCK = range(NUM_CLASSES)
