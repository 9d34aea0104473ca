"""Reading and writing images and sample grids (PNG through Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
    return path


def load_png(path: str | Path, size: int | None = None) -> np.ndarray:
    """An RGB uint8 array; raises ValueError for a non-image or (with ``size``) a wrong size."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc
    if size is not None and arr.shape[:2] != (size, size):
        raise ValueError(f"{path}: expected a {size}×{size} image, got {arr.shape[1]}×{arr.shape[0]}")
    return arr


def grid(images: np.ndarray, cols: int = 8, pad: int = 2, scale: int = 1, fill: int = 255) -> np.ndarray:
    """Tile (N, H, W, 3) images into one image, ``cols`` per row."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    if scale > 1:
        out = out.repeat(scale, 0).repeat(scale, 1)
    return out
