"""qwenrl.world.boundary: objects between two templates, labelled by the checker."""

import numpy as np
import pytest

from qwenrl.world.boundary import blend_mask, boundary_images, coverage
from qwenrl.world.parse import parse
from qwenrl.world.scene import PALETTE, PALETTE_INDEX, shape_mask


def _on_canvas(mask: np.ndarray, x: int = 8, y: int = 8) -> np.ndarray:
    image = np.full((32, 32, 3), PALETTE[PALETTE_INDEX["white"]], np.uint8)
    image[y:y + mask.shape[0], x:x + mask.shape[1]][mask] = PALETTE[PALETTE_INDEX["red"]]
    return image


def test_coverage_and_the_blends_ends_are_the_templates():
    assert (coverage("square", 10) == 1.0).all()
    assert np.isclose(coverage("circle", 12).sum(), np.pi * 36, rtol=0.02)  # the disc's area, supersampled
    for side in (8, 14):
        assert (blend_mask("circle", "square", 0.0, side) == (coverage("circle", side) > 0.5)).all()
        assert (blend_mask("circle", "square", 1.0, side) == shape_mask("square", side)).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_mask("circle", "square", 1.5, 10)


def test_a_circle_turns_into_a_square_for_the_checker_somewhere_along_the_blend():
    """The parser's name moves from circle to square once as t grows, and its margin is smallest
    where it changes: the blend walks across the checker's boundary."""
    names, margins = [], []
    for t in np.linspace(0, 1, 21):
        (obj,) = parse(_on_canvas(blend_mask("circle", "square", float(t), 14))).objects
        names.append(obj.shape)
        margins.append(obj.shape_margin)
    assert names[0] == "circle" and names[-1] == "square"
    flip = names.index("square")
    assert set(names[:flip]) == {"circle"} and set(names[flip:]) == {"square"}
    assert min(margins[flip - 1], margins[flip]) < min(margins[0], margins[-1])


def test_boundary_images_are_seeded_and_parse_into_one_to_three_objects():
    a, b = boundary_images(20, seed=3), boundary_images(20, seed=3)
    assert a.shape == (20, 32, 32, 3) and a.dtype == np.uint8 and (a == b).all()
    assert not (a == boundary_images(20, seed=4)).all()
    counts = [len(parse(im).objects) for im in a]
    assert all(1 <= c <= 3 for c in counts) and len(set(counts)) > 1
    assert boundary_images(0).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="0 or more"):
        boundary_images(-1)
