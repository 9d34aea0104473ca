"""Shapes between shapes: renders whose objects sit near the checker's decision boundary.

The strict checker names an object by the template (circle, square, triangle) whose mask it
overlaps best. Model samples draw many objects between two templates (a rounded square, a
blunted triangle), and there the checker's call turns on a few pixels. Grammar renders never draw
such objects, so a judge trained on renders and a few model samples sees few of them. This module
draws them on purpose: each object is the blend of two templates' pixel coverage,
``(1 - t) · coverage(a) + t · coverage(b) > threshold``, at a random size, mix and threshold, so
that it morphs from one shape into the other. The label of every object is whatever the checker
parses, never the blend's parameters.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from qwenrl.world.scene import BACKGROUND_COLORS, IMAGE_SIZE, MIN_GAP, OBJECT_COLORS, SHAPES, shape_mask

SIDES = (7, 15)  # the blended objects' box sides, inclusive: around the world's small 8 and large 14


@lru_cache(maxsize=None)
def coverage(shape: str, side: int, scale: int = 4) -> np.ndarray:
    """The share of each pixel of a ``side``×``side`` box inside ``shape`` (supersampled ``scale``×)."""
    big = shape_mask(shape, side * scale).astype(np.float64)
    return big.reshape(side, scale, side, scale).mean(axis=(1, 3))


def blend_mask(a: str, b: str, t: float, side: int, threshold: float = 0.5) -> np.ndarray:
    """A ``side``×``side`` boolean mask between shapes ``a`` (t = 0) and ``b`` (t = 1)."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    return (1.0 - t) * coverage(a, side) + t * coverage(b, side) > threshold


def _clear(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 + MIN_GAP <= u0 or u1 + MIN_GAP <= x0 or y1 + MIN_GAP <= v0 or v1 + MIN_GAP <= y0 for u0, v0, u1, v1 in boxes)


def boundary_image(rng: np.random.Generator, max_objects: int = 3, jitter: float = 0.15, sigma: float = 8.0) -> np.ndarray:
    """An RGB image (uint8) of one to ``max_objects`` blended objects in distinct colours on a random
    background, edge pixels flipped with probability ``jitter`` and Gaussian noise of up to
    ``sigma`` per channel, the way model samples are damaged."""
    size = IMAGE_SIZE
    background = str(rng.choice(list(BACKGROUND_COLORS)))
    image = np.broadcast_to(np.array(BACKGROUND_COLORS[background], np.float64), (size, size, 3)).copy()
    colours = list(rng.permutation(list(OBJECT_COLORS)))
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        a, b = rng.choice(SHAPES, size=2, replace=False)
        side = int(rng.integers(SIDES[0], SIDES[1] + 1))
        mask = blend_mask(str(a), str(b), float(rng.random()), side, float(rng.uniform(0.35, 0.65)))
        for _try in range(50):
            x, y = int(rng.integers(1, size - side)), int(rng.integers(1, size - side))
            if _clear((x, y, x + side, y + side), boxes):
                break
        else:
            continue
        boxes.append((x, y, x + side, y + side))
        full = np.zeros((size, size), bool)
        full[y:y + side, x:x + side] = mask
        edge = full & ~ndimage.binary_erosion(full)
        ring = ndimage.binary_dilation(full) & ~full
        full = (full & ~(edge & (rng.random(full.shape) < jitter))) | (ring & (rng.random(full.shape) < jitter / 2))
        image[full] = OBJECT_COLORS[colours.pop()]
    image += rng.normal(0.0, float(rng.uniform(0.0, sigma)), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def boundary_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` images of ``boundary_image``, a function of ``seed``."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    rng = np.random.default_rng(seed)
    return np.stack([boundary_image(rng) for _ in range(n)]) if n else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
