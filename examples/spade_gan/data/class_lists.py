"""Class names and colours of the label maps a generator draws: the built-in scenes, Cityscapes, ADE20K, COCO-Stuff.

Data only, written from the datasets' published class lists (no code of theirs):

* Cityscapes: the label definitions published with the dataset (``cityscapesScripts``, ``helpers/labels.py``): ids
  0-33 with their names and colours. The original SPADE configuration gives Cityscapes ``label_nc=35``; id 34 has no
  class (the license plate has id -1 there and is not written into label maps), so it is left out of the list.
* ADE20K: the 150 classes of the MIT Scene Parsing benchmark (``objectInfo150``, the first name of each entry) and
  the benchmark's colour table (``color150``, also used by MMSegmentation). SPADE leaves the ids unshifted: 0 is
  "other" (black here), 1-150 are the classes, and the dontcare id 255 shares channel 150 with the last class.
* COCO-Stuff: the 182 labels of ``labels.txt`` in the COCO-Stuff repository (91 things, 91 stuff classes), stored
  0-based in label maps (person = 0, ..., wood = 181), with 255 = unlabeled, which SPADE maps to id 182. Eleven thing
  labels of COCO's original 91 were never annotated (street sign, hat, shoe, eye glasses, plate, mirror, window, desk,
  door, blender, hair brush) and are left out. COCO-Stuff publishes no colour per class: the colours here are a fixed
  spread of hues (:func:`spread_colours`).

:func:`class_list` picks the list for a dataset name and a generator's label layout; layouts of no known dataset (a
``custom`` run) get numbered classes in the colours of the training sample grids
(:func:`spade_gan.data.palette.label_palette`).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

from .palette import label_palette
from .presets import PRESETS
from .scene_classes import SCENE_CLASSES

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class LabelClass:
    """One class: its id in label maps, its name and its RGB colour (0-255)."""

    id: int
    name: str
    colour: Colour


@dataclass(frozen=True)
class ClassList:
    """The classes a generator's label maps hold.

    Attributes:
        dataset: the dataset's name (``synthetic``, ``cityscapes``, ``ade20k``, ``coco``, or ``custom``).
        classes: the classes, by id; ids without a class (unused ids) are left out.
        label_nc: the generator's ``label_nc``.
        contain_dontcare: whether the raw id 255 means "don't care" and is read as id ``label_nc``.
        background: the id of the dataset's "unknown" or background class (what an eraser paints).
        unlabeled: the id that label files store as 255 (COCO-Stuff's "unlabeled"), or ``None`` (ADE20K's id 150 is
            a class, "flag", that the raw 255 shares a channel with: it is stored as 150).
        source: where the names and colours come from, in words.
    """

    dataset: str
    classes: tuple[LabelClass, ...]
    label_nc: int
    contain_dontcare: bool
    background: int
    unlabeled: int | None
    source: str

    @property
    def num_ids(self) -> int:
        """Ids the generator has a channel for: ``label_nc``, plus one for dontcare."""
        return self.label_nc + int(self.contain_dontcare)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if ids != sorted(set(ids)) or not ids or ids[0] < 0 or ids[-1] >= self.num_ids:
            raise ValueError(f"{self.dataset}: class ids must be distinct, sorted and in 0..{self.num_ids - 1}")
        if self.background not in ids:
            raise ValueError(f"{self.dataset}: the background id {self.background} is not a class")

    def colour_table(self) -> list[Colour]:
        """One colour per id ``0 .. num_ids - 1`` (black for ids without a class)."""
        table: list[Colour] = [(0, 0, 0)] * self.num_ids
        for c in self.classes:
            table[c.id] = c.colour
        return table


def spread_colours(count: int, seed_hue: float = 0.0) -> list[Colour]:
    """``count`` distinct colours: hues in golden-ratio steps, alternating lightness and saturation."""
    colours = []
    for k in range(count):
        hue = (seed_hue + k * 0.618034) % 1.0
        lightness = (0.42, 0.58, 0.34, 0.66)[k % 4]
        saturation = (0.85, 0.65)[(k // 4) % 2]
        r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def scene_classes() -> ClassList:
    """The 8 classes of the built-in scenes in their own colours; the eraser paints sky (there is no unknown class)."""
    classes = tuple(
        LabelClass(i, c.name, (round(c.colour[0] * 255), round(c.colour[1] * 255), round(c.colour[2] * 255)))
        for i, c in enumerate(SCENE_CLASSES)
    )
    return ClassList("synthetic", classes, len(classes), False, 0, None, "spade_gan.data.scene_classes")


# Cityscapes label ids 0-33: name, colour (cityscapesScripts' labels.py).
_CITYSCAPES: tuple[tuple[str, Colour], ...] = (
    ("unlabeled", (0, 0, 0)),
    ("ego vehicle", (0, 0, 0)),
    ("rectification border", (0, 0, 0)),
    ("out of roi", (0, 0, 0)),
    ("static", (0, 0, 0)),
    ("dynamic", (111, 74, 0)),
    ("ground", (81, 0, 81)),
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("parking", (250, 170, 160)),
    ("rail track", (230, 150, 140)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("guard rail", (180, 165, 180)),
    ("bridge", (150, 100, 100)),
    ("tunnel", (150, 120, 90)),
    ("pole", (153, 153, 153)),
    ("polegroup", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("caravan", (0, 0, 90)),
    ("trailer", (0, 0, 110)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
)


def cityscapes_classes() -> ClassList:
    """Cityscapes' 34 classes (ids 0-33) for SPADE's 35 ids; the eraser paints "unlabeled" (0)."""
    classes = tuple(LabelClass(i, name, colour) for i, (name, colour) in enumerate(_CITYSCAPES))
    return ClassList("cityscapes", classes, PRESETS["cityscapes"].label_nc, False, 0, None, "Cityscapes ids 0-33")


# ADE20K (SceneParsing) classes 1-150 in id order.
_ADE20K_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

# The SceneParsing benchmark's colour table (color150), classes 1-150 in id order.
_ADE20K_COLOURS: tuple[Colour, ...] = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
)  # fmt: skip


def ade20k_classes() -> ClassList:
    """ADE20K's "other" (0) and 150 classes (1-150), SPADE's unshifted ids; the eraser paints "other"."""
    preset = PRESETS["ade20k"]
    named = zip(_ADE20K_NAMES, _ADE20K_COLOURS, strict=True)
    classes = (
        LabelClass(0, "other", (0, 0, 0)),
        *(LabelClass(i + 1, name, colour) for i, (name, colour) in enumerate(named)),
    )
    # label_nc = 150 with dontcare: 151 ids; the raw 255 shares channel 150 with "flag", as in SPADE
    return ClassList("ade20k", classes, preset.label_nc, True, 0, None, "ADE20K SceneParsing, 150 classes")


# COCO-Stuff labels 0-181 (labels.txt, shifted to the 0-based ids of the label maps); None marks the 11 thing
# labels that COCO never annotated.
_COCO_STUFF: tuple[str | None, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", None, "backpack", "umbrella", None, None,
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", None, "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
    "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", None, "dining table", None,
    None, "toilet", None, "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", None, "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", None,
    # stuff, ids 91-181
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip


def coco_stuff_classes() -> ClassList:
    """COCO-Stuff's 171 annotated classes (ids 0-181) and "unlabeled" (182, the raw 255); the eraser paints
    "unlabeled"."""
    preset = PRESETS["coco"]
    colours = spread_colours(len(_COCO_STUFF))
    named = enumerate(zip(_COCO_STUFF, colours, strict=True))
    things_and_stuff = (LabelClass(i, name, colour) for i, (name, colour) in named if name is not None)
    classes = (*things_and_stuff, LabelClass(preset.label_nc, "unlabeled", (0, 0, 0)))
    return ClassList(
        "coco", classes, preset.label_nc, True, preset.label_nc, preset.label_nc, "COCO-Stuff labels.txt, 182 labels"
    )


def numbered_classes(label_nc: int, contain_dontcare: bool, dataset: str = "custom") -> ClassList:
    """Classes ``class 0 .. class label_nc - 1`` (and ``dontcare``) in the training sample grids' colours; the eraser
    paints dontcare where there is one, else class 0."""
    rgb = (label_palette(label_nc) * 255).round().to(int).tolist()
    classes = tuple(LabelClass(i, f"class {i}", (r, g, b)) for i, (r, g, b) in enumerate(rgb))
    dontcare = label_nc if contain_dontcare else None
    if dontcare is not None:
        classes += (LabelClass(dontcare, "dontcare", (0, 0, 0)),)
    background = dontcare if dontcare is not None else 0
    return ClassList(dataset, classes, label_nc, contain_dontcare, background, dontcare, "numbered classes")


KNOWN_LISTS = {
    "synthetic": scene_classes,
    "cityscapes": cityscapes_classes,
    "ade20k": ade20k_classes,
    "coco": coco_stuff_classes,
}
"""The class list of each dataset that has one, by dataset (and preset) name."""


def class_list(dataset: str | None, label_nc: int, contain_dontcare: bool) -> ClassList:
    """The classes of a generator trained on ``dataset`` with ``label_nc`` ids (and a dontcare id).

    The dataset's own list where the name is known and its layout matches (``label_nc``, ``contain_dontcare``);
    numbered classes otherwise (a ``custom`` dataset, or a known name with another layout).

    Example:
        >>> [c.name for c in class_list("synthetic", 8, False).classes][:3]
        ['sky', 'water', 'vegetation']
        >>> class_list("coco", 182, True).background
        182
    """
    build = KNOWN_LISTS.get(dataset or "")
    if build is not None:
        known = build()
        if (known.label_nc, known.contain_dontcare) == (label_nc, contain_dontcare):
            return known
    return numbered_classes(label_nc, contain_dontcare, dataset or "custom")
