"""How firmly does the strict checker hold its verdict on an image? Single-pixel edits on the rims.

The checker names a shape by the template it overlaps best, so an object drawn between two shapes
can change name, and a sample its verdict, when one pixel of its rim changes. A judge that reads
shapes as people do cannot follow such a verdict, so the studio says which verdicts are this
fragile: ``benchmarks/checker_stability.py`` counts them over the bundled models' samples, and
the reward inspector says it under the checker's rationale of each sample.

An edit is one pixel: an object pixel that touches the background turned to the background's
colour (a *shave*), or a background pixel that touches the object, and no other object, turned to
the object's colour (a *grow*). Edits never join two objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from qwenrl.world.check import check_image, recognisable
from qwenrl.world.parse import ParsedScene
from qwenrl.world.scene import PALETTE, PALETTE_INDEX

_FOUR = ndimage.generate_binary_structure(2, 1)
CLOSE_CALL = 0.05  # the checker's template-IoU lead under which a shape is a close call (benchmarks/judge.py's first margin bin)


def shape_names(parsed: ParsedScene) -> list[str]:
    """The shapes the checker names in a parse, sorted (blobs below its template IoU as ``blob``)."""
    return sorted(o.shape if recognisable(o) else "blob" for o in parsed.objects)


def rim_edits(image: np.ndarray, parsed: ParsedScene) -> list[tuple[int, int, np.ndarray]]:
    """Every single-pixel edit on an object's rim: (y, x, new RGB), the shaves then the grows per object."""
    background = PALETTE[PALETTE_INDEX[parsed.background]]
    occupied = np.zeros(image.shape[:2], bool)
    for o in parsed.objects:
        occupied |= o.mask
    out = []
    for o in parsed.objects:
        others = ndimage.binary_dilation(occupied & ~o.mask, np.ones((3, 3), bool))
        shave = o.mask & ~ndimage.binary_erosion(o.mask, _FOUR, border_value=1)
        grow = ndimage.binary_dilation(o.mask, _FOUR) & ~occupied & ~others
        out += [(int(y), int(x), background) for y, x in zip(*np.nonzero(shave))]
        colour = PALETTE[PALETTE_INDEX[o.color]]
        out += [(int(y), int(x), colour) for y, x in zip(*np.nonzero(grow))]
    return out


def verdict_stability(task: Any, image: np.ndarray, edits: int | None = None,
                      rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The checker's verdict on ``image`` for ``task`` (a T2IPrompt or an EditTask) and how many
    single-pixel rim edits flip it (``flips``) or rename a shape (``shape_flips``), over every
    edit (``edits`` None) or ``edits`` of them drawn by ``rng``; ``close_call``: an object the
    checker names by a template-IoU lead under ``CLOSE_CALL``."""
    base = check_image(task, image)
    names = shape_names(base.parsed)
    candidates = rim_edits(image, base.parsed)
    picked: Any = range(len(candidates))
    if edits is not None and candidates:  # drawn even when all are taken, so that one rng serves many images alike
        picked = (rng or np.random.default_rng(0)).choice(len(candidates), size=min(edits, len(candidates)), replace=False)
    flips = shape_flips = tried = 0
    for k in picked:
        y, x, colour = candidates[int(k)]
        edited = image.copy()
        edited[y, x] = colour
        again = check_image(task, edited)
        flips += again.passed != base.passed
        shape_flips += shape_names(again.parsed) != names
        tried += 1
    close = any(o.shape_margin < CLOSE_CALL and recognisable(o) for o in base.parsed.objects)
    return {"passed": bool(base.passed), "edits": tried, "flips": flips, "shape_flips": shape_flips, "close_call": close}


def describe(result: dict[str, Any]) -> str:
    """One line for a reader of the checker's rationale: whether one pixel turns this verdict over."""
    verdict = "pass" if result["passed"] else "fail"
    if result["edits"] == 0:
        return f"One pixel: no object rim to edit; the {verdict} stands."
    if result["flips"]:
        return (f"One pixel: {result['flips']} of {result['edits']} single-pixel rim edits turn this {verdict} over. "
                "The verdict hangs on a pixel; a judge that reads shapes as people do is guessing here.")
    renamed = f" ({result['shape_flips']} rename a shape without changing it)" if result["shape_flips"] else ""
    return f"One pixel: none of {result['edits']} single-pixel rim edits changes this {verdict}{renamed}."
