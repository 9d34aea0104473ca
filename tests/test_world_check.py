"""The strict checker: reference images pass, near misses fail with a reason."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qwenrl.world.check import CheckResult, check_edit, check_image, check_t2i
from qwenrl.world.grammar import (
    EDIT_FAMILIES,
    T2I_FAMILIES,
    EditTask,
    T2IPrompt,
    sample_edit,
    sample_t2i_prompt,
    scene_for_prompt,
)
from qwenrl.world.parse import parse
from qwenrl.world.scene import OBJECT_COLORS, Obj, Scene, fits, render


def prompt(text: str, family: str, objects: list[dict], relation: dict | None = None, background: str | None = None) -> T2IPrompt:
    return T2IPrompt(text, family, {"objects": objects, "relation": relation, "background": background})


def one(color: str, shape: str, count: int = 1, size: str | None = None) -> dict:
    return {"color": color, "shape": shape, "count": count} | ({"size": size} if size else {})


def edit_of(rng: np.random.Generator, family: str, n_min: int = 1) -> EditTask:
    while True:
        task = sample_edit(rng, family=family)
        if len(task.source.objects) >= n_min:
            return task


def with_object(scene: Scene, index: int, **changes) -> Scene:
    objs = list(scene.objects)
    objs[index] = replace(objs[index], **changes)
    return Scene(scene.background, tuple(objs))


# ---------------------------------------------------------------------------------------
# Text to image
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", T2I_FAMILIES)
def test_reference_scenes_pass(family):
    rng = np.random.default_rng(hash(family) % 2**32)
    for _ in range(30):
        p = sample_t2i_prompt(rng, family)
        result = check_image(p, render(scene_for_prompt(p, rng)))
        assert result.passed, (p.text, result.reasons)
        assert result.reasons == [] and result.fraction_met == 1.0


TWO = prompt("a red circle and a blue square", "two_objects", [one("red", "circle"), one("blue", "square")])
TWO_SCENE = Scene("white", (Obj("circle", "red", "large", 2, 2), Obj("square", "blue", "small", 20, 20)))


def test_two_objects_pass_and_report_requirements():
    result = check_image(TWO, render(TWO_SCENE))
    assert isinstance(result, CheckResult) and result.passed
    assert [d for d, _ in result.requirements] == ["exactly 1 red circle", "exactly 1 blue square", "no other objects"]


def test_wrong_colour_on_one_object_fails():
    result = check_image(TWO, render(with_object(TWO_SCENE, 1, color="green")))
    assert not result.passed
    assert "expected 1 blue square, found 0" in result.reasons
    assert any("extra small green square" in r for r in result.reasons)
    assert result.fraction_met == pytest.approx(1 / 3)


def test_extra_object_fails_but_a_speck_does_not():
    with_extra = Scene("white", TWO_SCENE.objects + (Obj("triangle", "yellow", "small", 2, 22),))
    result = check_image(TWO, render(with_extra))
    assert not result.passed and any("extra small yellow triangle" in r for r in result.reasons)
    img = render(TWO_SCENE)
    img[26:28, 4:6] = OBJECT_COLORS["yellow"]  # a 2x2 speck is noise, not an object
    assert check_image(TWO, img).passed


def test_unrecognisable_blob_is_not_an_object_of_the_prompt():
    img = render(Scene("white", (Obj("square", "blue", "small", 20, 20),)))
    # A ragged red blob: a plus sign with long arms, nothing like a circle.
    img[4:20, 10:12] = OBJECT_COLORS["red"]
    img[10:12, 3:19] = OBJECT_COLORS["red"]
    result = check_image(TWO, img)
    assert not result.passed
    assert any("unrecognisable red blob" in r for r in result.reasons)


def test_count_off_by_one_fails():
    p = prompt("three green triangles", "counting", [one("green", "triangle", 3)])
    objs = (Obj("triangle", "green", "small", 2, 2), Obj("triangle", "green", "small", 20, 2), Obj("triangle", "green", "large", 8, 16))
    assert check_image(p, render(Scene("white", objs))).passed
    result = check_image(p, render(Scene("white", objs[:2])))
    assert not result.passed and result.reasons == ["expected 3 green triangles, found 2"]
    four = objs + (Obj("triangle", "green", "small", 24, 24),)
    assert check_image(p, render(Scene("white", four))).reasons == ["expected 3 green triangles, found 4"]


def test_size_is_checked_only_when_named():
    scene = Scene("white", (Obj("circle", "red", "large", 5, 5),))
    assert check_image(prompt("a red circle", "single", [one("red", "circle")]), render(scene)).passed
    result = check_image(prompt("a small red circle", "single", [one("red", "circle", size="small")]), render(scene))
    assert not result.passed
    assert result.reasons[0] == "expected 1 small red circle, found 0 (and 1 of the other size)"


@pytest.mark.parametrize(
    "rel, gap, passes",
    [("left of", 3, True), ("left of", 2, False), ("left of", -5, False),
     ("right of", -3, True), ("right of", -2, False), ("above", 3, True), ("above", 2, False),
     ("below", -3, True), ("below", 0, False)],
)
def test_relation_by_centroids_with_a_margin(rel, gap, passes):
    """``gap``: centroid of b minus centroid of a, along the relation's axis."""
    p = prompt(f"a red square {rel} a blue square", "position", [one("red", "square"), one("blue", "square")],
               relation={"a": 0, "rel": rel, "b": 1})
    horizontal = rel in ("left of", "right of")
    a = Obj("square", "red", "small", 12, 2) if horizontal else Obj("square", "red", "small", 2, 12)
    b = Obj("square", "blue", "small", 12 + gap, 20) if horizontal else Obj("square", "blue", "small", 20, 12 + gap)
    result = check_image(p, render(Scene("white", (a, b))))
    assert result.passed == passes, result.reasons
    if not passes:
        assert result.reasons[0].startswith(f"the red square at") and rel in result.reasons[0]


def test_relation_cannot_hold_when_an_object_is_missing():
    p = prompt("a red circle above a blue square", "position", [one("red", "circle"), one("blue", "square")],
               relation={"a": 0, "rel": "above", "b": 1})
    result = check_image(p, render(Scene("white", (Obj("circle", "red", "small", 2, 2),))))
    assert not result.passed
    assert "cannot check 'above': need one red circle and one blue square" in result.reasons


def test_background_is_checked_when_named():
    p = prompt("a red circle on a black background", "background", [one("red", "circle")], background="black")
    obj = (Obj("circle", "red", "small", 5, 5),)
    assert check_image(p, render(Scene("black", obj))).passed
    result = check_image(p, render(Scene("gray", obj)))
    assert not result.passed and result.reasons == ["background is gray, not black"]
    assert check_image(TWO, render(Scene("gray", TWO_SCENE.objects))).passed  # not named: any background


# ---------------------------------------------------------------------------------------
# Editing
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_edit_target_passes_and_source_fails(family):
    rng = np.random.default_rng(sum(map(ord, family)))
    for _ in range(25):
        task = sample_edit(rng, family=family)
        result = check_image(task, render(task.target))
        assert result.passed, (task.instruction, result.reasons)
        unedited = check_image(task, render(task.source))
        assert not unedited.passed, task.instruction
        assert unedited.reasons


def test_moved_object_must_travel_far_enough_and_straight():
    rng = np.random.default_rng(5)
    task = edit_of(rng, "move")
    k, direction = task.target_index, task.instruction.split()[-1]
    before, after = task.source.objects[k], task.target.objects[k]
    ux, uy = np.sign(after.x - before.x), np.sign(after.y - before.y)

    def result_with(along: int, across: int) -> CheckResult:
        moved = Obj(before.shape, before.color, before.size, before.x + ux * along + uy * across, before.y + uy * along + ux * across)
        objs = tuple(moved if i == k else o for i, o in enumerate(task.target.objects))
        return check_edit(task, parse(render(Scene(task.target.background, objs))))

    assert result_with(4, 0).passed and result_with(8, 3).passed
    short = result_with(3, 0)
    assert not short.passed and f"moved 3.0 px {direction}" in short.reasons[0]
    drifted = result_with(8, 4)
    assert not drifted.passed and "drifted 4.0 px sideways" in drifted.reasons[0]


def test_preserved_object_that_drifted_fails():
    task = edit_of(np.random.default_rng(6), "recolor", n_min=2)
    keep = next(ti for _, ti in task.preserved)
    o = task.target.objects[keep]
    step = 1 if o.x < 12 else -1  # towards the middle, clear of the border
    assert check_image(task, render(with_object(task.target, keep, x=o.x + step))).passed
    result = check_image(task, render(with_object(task.target, keep, x=o.x + 3 * step)))
    assert not result.passed
    assert result.reasons == [f"the {o.size} {o.color} {o.shape} moved by 3.0 px"]


def test_editing_the_wrong_object_fails():
    rng = np.random.default_rng(7)
    task = edit_of(rng, "recolor", n_min=2)
    k = task.target_index
    wrong = next(ti for _, ti in task.preserved)
    new_color = task.target.objects[k].color
    other = task.source.objects[wrong]
    if (new_color, other.shape) in {(o.color, o.shape) for o in task.source.objects}:
        pytest.fail("seed 7 should give a recolour whose wrong edit duplicates no pair; pick another seed")
    img = render(with_object(task.source, wrong, color=new_color))
    result = check_image(task, img)
    assert not result.passed
    text = " | ".join(result.reasons)
    assert f"the {other.size} {other.color} {other.shape} is missing" in text
    assert "is unchanged" in text  # the object named in the instruction was left as it was


def test_add_checks_kind_and_named_size():
    task = edit_of(np.random.default_rng(8), "add")
    new = task.target.objects[task.target_index]
    assert new.size in task.instruction.split()
    other_size = "large" if new.size == "small" else "small"
    objs = task.target.objects[: task.target_index]
    for x in range(1, 24):
        for y in range(1, 24):
            cand = Obj(new.shape, new.color, other_size, x, y)
            if fits(cand, objs):
                result = check_image(task, render(Scene(task.target.background, objs + (cand,))))
                assert not result.passed
                assert result.reasons == [f"the added {new.color} {new.shape} is {other_size}, not {new.size}"]
                return
    pytest.fail("seed 8 should leave room for the wrongly sized object; pick another seed")


def test_remove_that_left_the_object_fails():
    task = edit_of(np.random.default_rng(9), "remove")
    result = check_image(task, render(task.source))
    assert not result.passed and "is still there" in result.reasons[0]


def test_background_edit_must_keep_the_objects_and_other_edits_the_background():
    rng = np.random.default_rng(10)
    task = edit_of(rng, "background")
    moved = with_object(task.target, 0, y=task.target.objects[0].y + 3)
    assert not check_image(task, render(moved)).passed
    recolor = edit_of(rng, "recolor")
    new_bg = "black" if recolor.target.background != "black" else "gray"
    result = check_image(recolor, render(Scene(new_bg, recolor.target.objects)))
    assert not result.passed
    assert result.reasons == [f"background changed to {new_bg} (was {recolor.source.background})"]


def test_check_image_rejects_other_tasks():
    with pytest.raises(TypeError, match="T2IPrompt or an EditTask"):
        check_image("a red circle", render(TWO_SCENE))
    with pytest.raises(ValueError, match="shape"):
        check_image(TWO, np.zeros((16, 16, 3), dtype=np.uint8))


def test_result_serialises():
    d = check_t2i(TWO, parse(render(TWO_SCENE))).to_dict()
    assert d["passed"] is True and d["reasons"] == [] and len(d["requirements"]) == 3
