"""qwenrl.world.stability: single-pixel rim edits, and whether the checker's verdict survives them."""

import numpy as np

from qwenrl.world.boundary import boundary_images
from qwenrl.world.check import recognisable
from qwenrl.world.grammar import T2IPrompt
from qwenrl.world.parse import parse
from qwenrl.world.scene import PALETTE, PALETTE_INDEX, Obj, Scene, render
from qwenrl.world.stability import CLOSE_CALL, describe, rim_edits, verdict_stability

BOTH = T2IPrompt("a red square and a blue circle", "two_objects",
                 {"objects": [{"color": "red", "shape": "square", "count": 1}, {"color": "blue", "shape": "circle", "count": 1}]})


def _rim(mask: np.ndarray) -> int:
    """Pixels with a 4-neighbour outside the mask, counted without scipy."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return int((mask & ~inner).sum())


def _named(o) -> T2IPrompt:
    return T2IPrompt(f"a {o.color} {o.shape}", "single", {"objects": [{"color": o.color, "shape": o.shape, "count": 1}],
                                                         "relation": None, "background": None})


def test_rim_edits_shave_every_rim_pixel_and_never_grow_towards_another_object():
    clean = render(Scene("white", (Obj("square", "red", "large", 2, 2), Obj("circle", "blue", "small", 18, 4))))  # 2 px apart
    parsed = parse(clean)
    edits = rim_edits(clean, parsed)
    shaves = sum(1 for _, _, c in edits if (c == PALETTE[PALETTE_INDEX["white"]]).all())
    assert shaves == sum(_rim(o.mask) for o in parsed.objects)
    assert _rim(next(o.mask for o in parsed.objects if o.color == "red")) == 4 * 13  # the 14-px square's rim
    b = np.pad(next(o.mask for o in parsed.objects if o.color == "blue"), 1)
    near_blue = np.zeros((32, 32), bool)  # the circle grown by one pixel, diagonals included
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near_blue |= b[dy:dy + 32, dx:dx + 32]
    red_grows = [(y, x) for y, x, c in edits if (c == PALETTE[PALETTE_INDEX["red"]]).all()]
    assert red_grows and not any(near_blue[y, x] for y, x in red_grows)
    assert any(x == 16 for _, x in red_grows)  # the gap's first column may grow, its second not


def test_a_clean_render_holds_its_verdict_and_some_shapes_between_shapes_do_not():
    clean = render(Scene("white", (Obj("square", "red", "large", 2, 2), Obj("circle", "blue", "small", 18, 4))))
    every = verdict_stability(BOTH, clean)
    assert every["passed"] and every["edits"] == len(rim_edits(clean, parse(clean))) and every["flips"] == every["shape_flips"] == 0
    assert not every["close_call"] and "none of" in describe(every) and "pass" in describe(every)
    some = verdict_stability(BOTH, clean, 40, np.random.default_rng(0))
    assert some["edits"] == 40 and some["flips"] == 0
    assert verdict_stability(BOTH, clean, 40, np.random.default_rng(0)) == some  # a function of the rng

    flipped = []  # irregular shapes between templates: the checker's call on some turns on one rim pixel
    for image in boundary_images(60, seed=0):
        objs = parse(image).objects
        if len(objs) == 1 and recognisable(objs[0]):
            r = verdict_stability(_named(objs[0]), image)
            assert r["passed"] and r["edits"] == len(rim_edits(image, parse(image)))
            flipped += [r] if r["flips"] else []
    assert flipped and all(0 < r["flips"] <= r["shape_flips"] for r in flipped)  # a renamed shape fails its prompt
    assert "turn this pass over" in describe(flipped[0]) and "guessing" in describe(flipped[0])


def test_describe_says_what_was_tried():
    assert describe({"passed": False, "edits": 0, "flips": 0, "shape_flips": 0}) == "One pixel: no object rim to edit; the fail stands."
    line = describe({"passed": True, "edits": 12, "flips": 0, "shape_flips": 3})
    assert "none of 12" in line and "3 rename a shape" in line


def test_close_call_is_the_judge_benchmarks_first_margin_bin():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("judge_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "judge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.MARGIN_EDGES[1] == CLOSE_CALL
