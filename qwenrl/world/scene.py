"""Scenes of the Shapes world: a background colour and one to four flat-coloured shapes.

Rendering is exact (no anti-aliasing) so that the parser can recover a clean render
pixel for pixel; every image is a palette image over ``PALETTE``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

import numpy as np

IMAGE_SIZE = 32

# Object colours: well separated in RGB (pairwise distance > 130).
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 215, 30),
    "purple": (150, 40, 190),
    "cyan": (40, 210, 220),
}
# Background colours, far from every object colour.
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (120, 120, 120),
}
DEFAULT_BACKGROUND = "white"
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 8, "large": 14}  # side of the bounding box in pixels
MIN_GAP = 2  # free pixels kept between the bounding boxes of two objects

# One palette for the whole world: backgrounds first, then object colours.
PALETTE_NAMES: tuple[str, ...] = tuple(BACKGROUND_COLORS) + tuple(OBJECT_COLORS)
PALETTE = np.array([(BACKGROUND_COLORS | OBJECT_COLORS)[n] for n in PALETTE_NAMES], dtype=np.uint8)
PALETTE_INDEX = {n: i for i, n in enumerate(PALETTE_NAMES)}


@dataclass(frozen=True)
class Obj:
    """One shape. ``x``, ``y`` are the top-left corner of its bounding box (pixels)."""

    shape: str
    color: str
    size: str
    x: int
    y: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.color not in OBJECT_COLORS:
            raise ValueError(f"unknown colour {self.color!r}; expected one of {tuple(OBJECT_COLORS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {tuple(SIZES)}")

    @property
    def side(self) -> int:
        return SIZES[self.size]

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the bounding box, in pixel coordinates (x right, y down)."""
        s = self.side
        return (self.x + (s - 1) / 2.0, self.y + (s - 1) / 2.0)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), x1 and y1 exclusive."""
        return (self.x, self.y, self.x + self.side, self.y + self.side)

    def moved_to(self, x: int, y: int) -> "Obj":
        return replace(self, x=x, y=y)


@dataclass(frozen=True)
class Scene:
    background: str = DEFAULT_BACKGROUND
    objects: tuple[Obj, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.background not in BACKGROUND_COLORS:
            raise ValueError(
                f"unknown background {self.background!r}; expected one of {tuple(BACKGROUND_COLORS)}"
            )
        object.__setattr__(self, "objects", tuple(self.objects))

    def to_dict(self) -> dict:
        return {"background": self.background, "objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(background=d["background"], objects=tuple(Obj(**o) for o in d["objects"]))


def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean mask of a shape inside a ``side``×``side`` box."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        r = side / 2.0
        return (xx - r) ** 2 + (yy - r) ** 2 <= r * r
    if shape == "triangle":
        # Apex at the top centre, base along the bottom row.
        half_width = (yy / side) * (side / 2.0)
        return np.abs(xx - side / 2.0) <= half_width + 0.25
    raise ValueError(f"unknown shape {shape!r}")


_MASKS = {(s, n): shape_mask(s, n) for s in SHAPES for n in SIZES.values()}


def object_mask(obj: Obj, size: int = IMAGE_SIZE) -> np.ndarray:
    """Full-image boolean mask of one object (clipped to the canvas)."""
    out = np.zeros((size, size), dtype=bool)
    m = _MASKS[(obj.shape, obj.side)]
    x0, y0, x1, y1 = obj.box
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if cx0 < cx1 and cy0 < cy1:
        out[cy0:cy1, cx0:cx1] = m[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


def render_indices(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Palette-index image (H, W) of a scene, int64."""
    img = np.full((size, size), PALETTE_INDEX[scene.background], dtype=np.int64)
    for obj in scene.objects:
        img[object_mask(obj, size)] = PALETTE_INDEX[obj.color]
    return img


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB image (H, W, 3) of a scene, uint8."""
    return PALETTE[render_indices(scene, size)]


def boxes_clear(a: Obj, b: Obj, gap: int = MIN_GAP) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def fits(obj: Obj, others: Iterable[Obj], size: int = IMAGE_SIZE) -> bool:
    """True when ``obj`` lies inside the canvas (1 px margin) and clear of ``others``."""
    x0, y0, x1, y1 = obj.box
    if x0 < 1 or y0 < 1 or x1 > size - 1 or y1 > size - 1:
        return False
    return all(boxes_clear(obj, o) for o in others)


def place(
    rng: np.random.Generator,
    shape: str,
    color: str,
    size: str,
    others: Iterable[Obj],
    tries: int = 200,
    region: tuple[int, int, int, int] | None = None,
) -> Obj | None:
    """A random placement of a new object clear of ``others``, or None when none is found.

    ``region`` optionally bounds the object's centre: (cx_min, cy_min, cx_max, cy_max).
    """
    others = tuple(others)
    side = SIZES[size]
    lo, hi = 1, IMAGE_SIZE - 1 - side
    for _ in range(tries):
        x, y = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        obj = Obj(shape, color, size, x, y)
        if region is not None:
            cx, cy = obj.center
            if not (region[0] <= cx <= region[2] and region[1] <= cy <= region[3]):
                continue
        if fits(obj, others):
            return obj
    return None
