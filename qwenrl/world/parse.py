"""Image → scene: recover the background and the objects of a Shapes-world image.

The parser must read the imperfect images a model makes, not only exact renders, so every
step tolerates some damage:

1. Each pixel takes the nearest palette colour, or none when it is farther than
   ``COLOR_THRESHOLD`` from all of them (blends of two colours, for instance).
2. A pixel whose 8 neighbours agree (at least ``CONSENSUS`` of them) on another colour takes
   that colour: salt-and-pepper noise and one-pixel cracks go, shape corners stay.
3. The background is the dominant colour of the border pixels.
4. Connected components (8-connected) of each other colour are candidate objects;
   components under ``MIN_OBJECT_AREA`` pixels are specks, counted and dropped.
5. The shape is the template (circle, square, triangle) that best overlaps the component
   (intersection over union) when centred on its centroid, over a range of sides; the
   best-fitting side gives the size (large from ``LARGE_MIN_SIDE`` pixels). Fitting by
   centroid rather than by bounding box keeps one stray edge pixel from changing the size.

Quality measures (colour distance, purity, shape confidence and margin, specks, unknown
pixels) travel with the result so that a checker or a reward can be stricter than the
classification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import permutations

import numpy as np
from scipy import ndimage

from .scene import (
    BACKGROUND_COLORS,
    IMAGE_SIZE,
    OBJECT_COLORS,
    PALETTE,
    PALETTE_NAMES,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    object_mask,
    shape_mask,
)

COLOR_THRESHOLD = 90.0  # max RGB distance from a pixel to its palette colour
CONSENSUS = 6  # neighbours (of 8) that must agree to overrule a pixel's own colour
MIN_OBJECT_AREA = 12  # smaller components are specks
LARGE_MIN_SIDE = 11  # fitted side (pixels) from which an object is large: small 8, large 14
UNKNOWN = -1  # label of pixels far from every palette colour
_EIGHT = np.ones((3, 3), dtype=bool)
_PAD = 24  # padding around the object mask when templates are slid over it


@dataclass(frozen=True, eq=False)
class ParsedObject:
    """One object found in an image. Coordinates are pixels, x right and y down."""

    shape: str
    color: str  # a palette name; an object colour unless the image is wrong
    size: str
    centroid: tuple[float, float]  # centre of mass of the mask
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1 and y1 exclusive
    area: int
    mask: np.ndarray  # (H, W) bool
    side: int  # side of the best-fitting template
    color_distance: float  # mean RGB distance of its pixels from its palette colour
    purity: float  # share of the non-background pixels in its bbox that carry its colour
    fill_ratio: float  # area / bbox area: square 1, circle ~0.8, triangle ~0.55
    shape_scores: dict[str, float] = field(default_factory=dict)  # best IoU per shape
    shape_confidence: float = 0.0  # IoU of the chosen shape's template
    shape_margin: float = 0.0  # best IoU minus the runner-up's

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the bounding box."""
        x0, y0, x1, y1 = self.bbox
        return ((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0)

    def describe(self) -> str:
        cx, cy = self.centroid
        return f"{self.size} {self.color} {self.shape} at ({cx:.1f}, {cy:.1f})"

    def to_obj(self) -> Obj:
        """The scene object whose render best matches this one (ValueError for a colour
        that is not an object colour)."""
        side = SIZES[self.size]
        tx, ty = template_centroid(self.shape, side)
        x = int(round(self.centroid[0] - tx))
        y = int(round(self.centroid[1] - ty))
        return Obj(self.shape, self.color, self.size, x, y)


@dataclass(frozen=True, eq=False)
class ParsedScene:
    background: str  # a palette name, normally a background colour
    objects: tuple[ParsedObject, ...]
    speck_count: int  # components dropped for being under MIN_OBJECT_AREA
    speck_area: int
    unknown_fraction: float  # share of pixels far from every palette colour
    border_agreement: float  # share of border pixels with the background colour
    labels: np.ndarray  # (H, W) palette index per pixel after cleaning, UNKNOWN where none

    def to_scene(self) -> Scene:
        """The scene this image shows (ValueError when a colour is outside its role)."""
        return Scene(self.background, tuple(o.to_obj() for o in self.objects))

    def describe(self) -> str:
        objs = "; ".join(o.describe() for o in self.objects) or "no objects"
        return f"{self.background} background: {objs}"


# ---------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _template(shape: str, side: int) -> tuple[np.ndarray, int, float, float]:
    m = shape_mask(shape, side)
    ys, xs = np.nonzero(m)
    return m, int(m.sum()), float(xs.mean()), float(ys.mean())


def template_centroid(shape: str, side: int) -> tuple[float, float]:
    """Centre of mass of a shape's mask inside its ``side``×``side`` box."""
    _, _, tx, ty = _template(shape, side)
    return tx, ty


def object_centroid(obj: Obj) -> tuple[float, float]:
    """Where the parser will put the centroid of ``obj`` in an exact render."""
    tx, ty = template_centroid(obj.shape, obj.side)
    return (obj.x + tx, obj.y + ty)


def _fit_templates(mask: np.ndarray, area: int, cx: float, cy: float, bbox_side: int) -> dict[str, tuple[float, int]]:
    """Best (IoU, side) per shape of templates centred on (cx, cy)."""
    padded = np.pad(mask, _PAD)
    lo = max(3, bbox_side - 4)
    hi = min(IMAGE_SIZE, bbox_side + 2)
    best: dict[str, tuple[float, int]] = {}
    for shape in SHAPES:
        top = (0.0, bbox_side)
        for side in range(lo, hi + 1):
            t, t_area, tx, ty = _template(shape, side)
            x0 = int(round(cx - tx)) + _PAD
            y0 = int(round(cy - ty)) + _PAD
            inter = int(np.count_nonzero(padded[y0 : y0 + side, x0 : x0 + side] & t))
            iou = inter / (area + t_area - inter)
            if iou > top[0]:
                top = (iou, side)
        best[shape] = top
    return best


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"parse expects a numpy array, got {type(image).__name__}")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"parse expects an RGB image of shape ({IMAGE_SIZE}, {IMAGE_SIZE}, 3), got {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"parse expects a uint8 image (0-255), got dtype {image.dtype}")


def _clean(labels: np.ndarray) -> np.ndarray:
    """Give each pixel the colour that at least CONSENSUS of its 8 neighbours share."""
    h, w = labels.shape
    padded = np.pad(labels, 1, constant_values=-2)  # -2: outside the image, agrees with nothing
    neigh = np.stack(
        [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    )
    out = labels.copy()
    for value in np.unique(labels):
        votes = (neigh == value).sum(axis=0)
        out[(votes >= CONSENSUS) & (labels != value)] = value
    return out


def parse(image: np.ndarray) -> ParsedScene:
    """The scene shown by an RGB image of shape (IMAGE_SIZE, IMAGE_SIZE, 3), uint8."""
    _check_image(image)
    rgb = image.astype(np.float64)
    dist = np.linalg.norm(rgb[:, :, None, :] - PALETTE[None, None].astype(np.float64), axis=-1)
    nearest = dist.argmin(axis=-1)
    nearest_dist = dist.min(axis=-1)
    raw = np.where(nearest_dist <= COLOR_THRESHOLD, nearest, UNKNOWN)
    labels = _clean(raw)

    # Background: dominant nearest colour on the border (no threshold, so that a noisy or
    # off-colour background still has a name).
    border = np.concatenate([nearest[0], nearest[-1], nearest[1:-1, 0], nearest[1:-1, -1]])
    bg_index = int(np.bincount(border, minlength=len(PALETTE)).argmax())
    border_agreement = float((border == bg_index).mean())

    objects: list[ParsedObject] = []
    speck_count = speck_area = 0
    for index in np.unique(labels):
        if index in (UNKNOWN, bg_index):
            continue
        components, n = ndimage.label(labels == index, structure=_EIGHT)
        for k in range(1, n + 1):
            mask = components == k
            area = int(mask.sum())
            if area < MIN_OBJECT_AREA:
                speck_count += 1
                speck_area += area
                continue
            objects.append(_measure(mask, area, int(index), labels, bg_index, dist))
    objects.sort(key=lambda o: (o.centroid[1], o.centroid[0]))
    return ParsedScene(
        background=PALETTE_NAMES[bg_index],
        objects=tuple(objects),
        speck_count=speck_count,
        speck_area=speck_area,
        unknown_fraction=float((raw == UNKNOWN).mean()),
        border_agreement=border_agreement,
        labels=labels,
    )


def _measure(mask: np.ndarray, area: int, index: int, labels: np.ndarray, bg_index: int, dist: np.ndarray) -> ParsedObject:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    cx, cy = float(xs.mean()), float(ys.mean())
    box_labels = labels[y0:y1, x0:x1]
    foreground = int(np.count_nonzero(box_labels != bg_index))
    fits = _fit_templates(mask, area, cx, cy, max(x1 - x0, y1 - y0))
    ranked = sorted(fits, key=lambda s: fits[s][0], reverse=True)
    shape = ranked[0]
    iou, side = fits[shape]
    return ParsedObject(
        shape=shape,
        color=PALETTE_NAMES[index],
        size="large" if side >= LARGE_MIN_SIDE else "small",
        centroid=(cx, cy),
        bbox=(x0, y0, x1, y1),
        area=area,
        mask=mask,
        side=side,
        color_distance=float(dist[:, :, index][mask].mean()),
        purity=area / foreground if foreground else 0.0,
        fill_ratio=area / ((x1 - x0) * (y1 - y0)),
        shape_scores={s: round(fits[s][0], 4) for s in SHAPES},
        shape_confidence=iou,
        shape_margin=iou - fits[ranked[1]][0],
    )


# ---------------------------------------------------------------------------------------
# Comparing a parse with the scene that was drawn
# ---------------------------------------------------------------------------------------


def parse_errors(parsed: ParsedScene, scene: Scene, tolerance: float = 1.0) -> list[str]:
    """Why ``parsed`` is not an exact parse of ``scene`` (empty when it is): same background,
    same multiset of (shape, colour, size), and centroids within ``tolerance`` pixels."""
    errors: list[str] = []
    if parsed.background != scene.background:
        errors.append(f"background {parsed.background}, expected {scene.background}")
    want: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for o in scene.objects:
        want.setdefault((o.shape, o.color, o.size), []).append(object_centroid(o))
    got: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for p in parsed.objects:
        got.setdefault((p.shape, p.color, p.size), []).append(p.centroid)
    for key in sorted(set(want) | set(got)):
        w, g = want.get(key, []), got.get(key, [])
        name = " ".join((key[2], key[1], key[0]))
        if len(w) != len(g):
            errors.append(f"{len(g)} {name}(s) found, expected {len(w)}")
            continue
        # At most four objects: try every matching.
        best = min(
            max((np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(w, perm)), default=0.0)
            for perm in permutations(g)
        )
        if best > tolerance:
            errors.append(f"{name} centroid off by {best:.2f} px")
    return errors


def is_exact_parse(parsed: ParsedScene, scene: Scene, tolerance: float = 1.0) -> bool:
    return not parse_errors(parsed, scene, tolerance)


# ---------------------------------------------------------------------------------------
# Damaged renders, to measure robustness
# ---------------------------------------------------------------------------------------


def noisy_render(
    scene: Scene,
    rng: np.random.Generator,
    *,
    sigma: float = 20.0,
    n_specks: int = 3,
    jitter: float = 0.25,
) -> np.ndarray:
    """A render damaged the way model images are.

    * 1-px edge jitter: each pixel on an object's edge is dropped, and each background
      pixel touching it is added, with probability ``jitter`` (never closing the gap
      between two objects, which would make them one);
    * ``n_specks`` specks of 1-4 pixels in random object colours at random places;
    * Gaussian noise of standard deviation ``sigma`` on every channel.
    """
    size = IMAGE_SIZE
    img = np.broadcast_to(np.array(BACKGROUND_COLORS[scene.background], dtype=np.float64), (size, size, 3)).copy()
    masks = [object_mask(o) for o in scene.objects]
    for i, (obj, m) in enumerate(zip(scene.objects, masks)):
        others = np.zeros((size, size), dtype=bool)
        for j, other in enumerate(masks):
            if j != i:
                others |= other
        edge = m & ~ndimage.binary_erosion(m)
        ring = ndimage.binary_dilation(m) & ~m & ~ndimage.binary_dilation(others, _EIGHT, iterations=2)
        m = (m & ~(edge & (rng.random(m.shape) < jitter))) | (ring & (rng.random(m.shape) < jitter))
        img[m] = OBJECT_COLORS[obj.color]
    colors = list(OBJECT_COLORS.values())
    for _ in range(n_specks):
        h, w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        img[y : y + h, x : x + w] = colors[rng.integers(len(colors))]
    img += rng.normal(0.0, sigma, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
