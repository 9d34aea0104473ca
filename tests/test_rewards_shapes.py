"""Shapes judges on hand-built scenes whose right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qwenrl.rewards import Sample, build_judge
from qwenrl.world.grammar import EDIT_FAMILIES, EditTask, T2IPrompt, sample_edit
from qwenrl.world.parse import noisy_render
from qwenrl.world.scene import Obj, Scene, render


def t2i(text, family, objects, relation=None, background=None):
    return T2IPrompt(text, family, {"objects": objects, "relation": relation, "background": background})


RED_LEFT_OF_BLUE = t2i(
    "a red circle left of a blue square",
    "position",
    [{"color": "red", "shape": "circle", "count": 1}, {"color": "blue", "shape": "square", "count": 1}],
    relation={"a": 0, "rel": "left of", "b": 1},
)
RED_CIRCLE = Obj("circle", "red", "small", 4, 12)
BLUE_SQUARE = Obj("square", "blue", "small", 18, 12)


def judge(kind, image, spec, source=None, **config):
    [j] = build_judge(kind, config=config)([Sample.from_spec(image, spec, source=source)])
    return j


def scene(*objs, bg="white"):
    return Scene(bg, objs)


# ---------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------


def test_alignment_exact_render_meets_every_requirement():
    j = judge("shapes_alignment", render(scene(RED_CIRCLE, BLUE_SQUARE)), RED_LEFT_OF_BLUE)
    assert j.score == 1.0
    assert j.parts == {"objects": 1.0, "relation": 1.0, "nothing_else": 1.0}
    r = j.rationale
    assert r.startswith("Requirements: (1) a red circle, (2) a blue square, (3) the red circle left of the blue square, (4) nothing else.")
    assert "Seen: small red circle at (8, 16); small blue square at (22, 16)" in r
    assert "(3) met, x 8 < 22" in r
    assert r.endswith("Alignment 4.00/4 = 1.00.")
    assert judge("shapes_oracle", render(scene(RED_CIRCLE, BLUE_SQUARE)), RED_LEFT_OF_BLUE).score == 1.0


def test_alignment_wrong_side_loses_only_the_relation():
    img = render(scene(RED_CIRCLE.moved_to(18, 12), BLUE_SQUARE.moved_to(4, 12)))
    j = judge("shapes_alignment", img, RED_LEFT_OF_BLUE)
    assert j.score == pytest.approx(0.75)
    assert j.parts["relation"] == 0.0
    assert "(3) not met, wrong side" in j.rationale
    assert judge("shapes_oracle", img, RED_LEFT_OF_BLUE).score == 0.0


def test_alignment_relation_inside_the_margin_gets_partial_credit():
    # Circle centroid x = 4+3.5 = 7.5 … place the square so that centroids differ by 1 px in x
    # while the boxes stay apart vertically.
    img = render(scene(Obj("circle", "red", "small", 10, 2), Obj("square", "blue", "small", 11, 20)))
    j = judge("shapes_alignment", img, RED_LEFT_OF_BLUE)
    assert j.parts["relation"] == 0.5
    assert "within the 2 px margin" in j.rationale
    assert judge("shapes_oracle", img, RED_LEFT_OF_BLUE).score == 0.0


def test_alignment_wrong_colour_is_a_near_miss():
    img = render(scene(RED_CIRCLE, Obj("square", "green", "small", 18, 12)))
    j = judge("shapes_alignment", img, RED_LEFT_OF_BLUE)
    # (1) met, (2) half (shape right, colour wrong), (3) half (between partly matching objects), (4) met
    assert j.score == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    assert "colour green, expected blue" in j.rationale
    assert 0.5 < j.score < 1.0


def test_alignment_counts_too_few_and_too_many():
    three = t2i("three red circles", "counting", [{"color": "red", "shape": "circle", "count": 3}])
    c = [Obj("circle", "red", "small", x, y) for x, y in [(2, 2), (14, 2), (2, 14), (14, 14)]]
    two = judge("shapes_alignment", render(scene(*c[:2])), three)
    four = judge("shapes_alignment", render(scene(*c)), three)
    exact = judge("shapes_alignment", render(scene(*c[:3])), three)
    assert exact.score == 1.0
    assert two.parts["objects"] == pytest.approx(2 / 3)
    assert four.parts["objects"] == pytest.approx(3 / 4)
    assert four.parts["nothing_else"] == 1.0  # a surplus circle is counted once, by the count
    assert "1 too many" in four.rationale


def test_alignment_extra_object_and_background():
    prompt = t2i("a red circle on a black background", "background", [{"color": "red", "shape": "circle", "count": 1}], background="black")
    ok = judge("shapes_alignment", render(scene(RED_CIRCLE, bg="black")), prompt)
    assert ok.score == 1.0
    j = judge("shapes_alignment", render(scene(RED_CIRCLE, Obj("triangle", "cyan", "small", 20, 20), bg="gray")), prompt)
    assert j.parts["nothing_else"] == 0.5
    assert j.parts["background"] == 0.0
    assert "extra small cyan triangle" in j.rationale and "background is gray" in j.rationale
    assert j.score == pytest.approx((1 + 0.5 + 0) / 3)


def test_alignment_wrong_size_when_named():
    prompt = t2i("a large red circle", "single", [{"color": "red", "shape": "circle", "count": 1, "size": "large"}])
    j = judge("shapes_alignment", render(scene(RED_CIRCLE)), prompt)
    assert j.parts["objects"] == pytest.approx(2 / 3)
    assert "size small, expected large" in j.rationale


def test_alignment_survives_a_noisy_render():
    img = noisy_render(scene(RED_CIRCLE, BLUE_SQUARE), np.random.default_rng(0), sigma=15, n_specks=2, jitter=0.1)
    assert judge("shapes_alignment", img, RED_LEFT_OF_BLUE).score == 1.0


def test_alignment_does_not_apply_without_a_spec_or_to_other_images():
    img = render(scene(RED_CIRCLE))
    j = build_judge("shapes_alignment")([Sample(img, "a red circle")])[0]
    assert j.score is None and "spec" in j.rationale
    big = np.zeros((64, 64, 3), np.uint8)
    assert judge("shapes_alignment", big, RED_LEFT_OF_BLUE).score is None


# ---------------------------------------------------------------------------------------
# Aesthetics and fidelity
# ---------------------------------------------------------------------------------------


def test_aesthetics_clean_render_is_perfect_and_noise_lowers_it():
    sc = scene(RED_CIRCLE, BLUE_SQUARE)
    clean = judge("shapes_aesthetics", render(sc), RED_LEFT_OF_BLUE)
    assert clean.score == 1.0
    assert clean.parts == {"purity": 1.0, "background": 1.0, "specks": 1.0, "edges": 1.0}
    rng = np.random.default_rng(1)
    mild = judge("shapes_aesthetics", noisy_render(sc, rng, sigma=8, n_specks=0, jitter=0.0), RED_LEFT_OF_BLUE)
    heavy = judge("shapes_aesthetics", noisy_render(sc, rng, sigma=30, n_specks=4, jitter=0.3), RED_LEFT_OF_BLUE)
    assert 1.0 > mild.score > heavy.score
    assert heavy.parts["specks"] < 1.0
    assert heavy.parts["purity"] < mild.parts["purity"] < 1.0
    assert "specks" in heavy.rationale and "Aesthetics = " in heavy.rationale


def test_aesthetics_blur_softens_edges():
    img = render(scene(RED_CIRCLE, BLUE_SQUARE)).astype(np.float32)
    blurred = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(np.roll(img, 1, 0), 1, 1)) / 4
    j = judge("shapes_aesthetics", blurred.round().astype(np.uint8), RED_LEFT_OF_BLUE)
    assert j.parts["edges"] < 0.9


def test_fidelity_exact_shapes_score_one_and_a_deformed_shape_less():
    assert judge("shapes_fidelity", render(scene(RED_CIRCLE, BLUE_SQUARE)), RED_LEFT_OF_BLUE).score == 1.0
    img = render(scene(BLUE_SQUARE.moved_to(10, 10)))
    img[10:14, 10:14] = 245  # bite a corner off the square
    j = judge("shapes_fidelity", img, RED_LEFT_OF_BLUE)
    assert 0.5 < j.score < 0.95
    assert "IoU with a" in j.rationale
    empty = judge("shapes_fidelity", render(scene()), RED_LEFT_OF_BLUE)
    assert empty.score == 0.0 and "No object" in empty.rationale


def test_fidelity_of_an_empty_scene_is_one_when_the_edit_removes_the_last_object():
    only = EditTask("remove the red circle", "remove", scene(RED_CIRCLE), scene(), None)
    source = render(only.source)
    assert judge("shapes_fidelity", render(scene()), only, source=source).score == 1.0
    # an edit whose target keeps an object still needs one drawn
    kept = EditTask("remove the red circle", "remove", scene(RED_CIRCLE, BLUE_SQUARE), scene(BLUE_SQUARE), None, ((1, 0),))
    assert judge("shapes_fidelity", render(scene()), kept, source=render(kept.source)).score == 0.0


def test_clarity_is_one_on_clean_renders_of_both_tasks():
    j = judge("shapes_clarity", render(scene(RED_CIRCLE, BLUE_SQUARE)), RED_LEFT_OF_BLUE)
    assert j.score == 1.0 and j.parts == {"shape": 1.0, "size": 1.0}
    assert j.rationale.startswith("Wanted objects: (1) red circle: red object at (8, 16), circle lead +")
    assert j.rationale.endswith("Clarity = mean over 2 = 1.00.")
    rng = np.random.default_rng(3)
    for family in EDIT_FAMILIES:
        task = sample_edit(rng, family=family)
        assert judge("shapes_clarity", render(task.target), task).score == 1.0, family


def test_clarity_by_hand_on_a_fixed_parse():
    """score = clip(½ + lead / (2·shape_margin)) × clip(½ + side lead / (2·size_margin)), with the
    side lead measured from the small/large boundary at 10.5 px."""
    from qwenrl.rewards.shapes import ShapesClarity
    from qwenrl.world.parse import ParsedObject

    o = ParsedObject(shape="circle", color="red", size="small", centroid=(8.0, 8.0), bbox=(4, 4, 14, 14), area=80,
                     mask=np.zeros((32, 32), bool), side=10, color_distance=0.0, purity=1.0, fill_ratio=0.8,
                     shape_scores={"circle": 0.80, "square": 0.75, "triangle": 0.30})
    c = ShapesClarity()
    score, lead, size_lead = c.object_clarity(("red", "circle", None), o)
    assert (lead, size_lead) == (pytest.approx(0.05), 0.0) and score == pytest.approx(0.5 + 0.05 / 0.3)
    score, _, size_lead = c.object_clarity(("red", "circle", "small"), o)
    assert size_lead == 0.5 and score == pytest.approx((0.5 + 0.05 / 0.3) * (0.5 + 0.5 / 4))
    score, lead, _ = c.object_clarity(("red", "square", None), o)  # the mirror image of the circle's lead
    assert lead == pytest.approx(-0.05) and score == pytest.approx(0.5 - 0.05 / 0.3)
    assert c.object_clarity(("red", "circle", "large"), o)[0] == pytest.approx((0.5 + 0.05 / 0.3) * (0.5 - 0.5 / 4))
    assert ShapesClarity(config={"shape_margin": 0.05}).object_clarity(("red", "circle", None), o)[0] == 1.0


def test_clarity_scores_a_wrong_shape_size_or_colour_low():
    square_for_circle = judge("shapes_clarity", render(scene(RED_CIRCLE.__class__("square", "red", "small", 4, 12), BLUE_SQUARE)),
                              RED_LEFT_OF_BLUE)
    assert square_for_circle.score < 0.75 and square_for_circle.parts["shape"] == 0.5  # one of two shapes leads
    big_for_small = t2i("a small red circle", "single", [{"color": "red", "shape": "circle", "count": 1, "size": "small"}])
    j = judge("shapes_clarity", render(scene(Obj("circle", "red", "large", 4, 4))), big_for_small)
    assert j.score == 0.0 and j.parts == {"shape": 1.0, "size": 0.0}  # 14 px is 3.5 px on the large side
    assert "side 14 px (-3.5 px on the small side)" in j.rationale
    missing = judge("shapes_clarity", render(scene(BLUE_SQUARE)), RED_LEFT_OF_BLUE)
    assert missing.score == pytest.approx(0.5) and "(1) red circle: no red object drawn for it" in missing.rationale


def test_clarity_needs_a_spec_and_checks_its_options():
    [j] = build_judge("shapes_clarity")([Sample(image=render(scene(RED_CIRCLE)), prompt="a red circle", task="t2i")])
    assert j.score is None
    with pytest.raises(ValueError, match="shape_margin must be in"):
        build_judge("shapes_clarity", config={"shape_margin": 0})
    with pytest.raises(ValueError, match="size_margin must be positive"):
        build_judge("shapes_clarity", config={"size_margin": -1})


# ---------------------------------------------------------------------------------------
# Editing
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_edit_target_passes_and_untouched_source_fails_the_instruction(family):
    task = sample_edit(np.random.default_rng(EDIT_FAMILIES.index(family)), family)
    source = render(task.source)
    done = render(task.target)
    assert judge("shapes_instruction", done, task).score == 1.0
    assert judge("shapes_identity", done, task).score == 1.0
    assert judge("shapes_oracle", done, task).score == 1.0
    nothing = judge("shapes_instruction", source, task)
    assert nothing.score == 0.0, nothing.rationale
    assert judge("shapes_identity", source, task).score == 1.0  # doing nothing preserves everything


def _two_object_task(family="recolor"):
    src = scene(Obj("circle", "red", "small", 4, 4), Obj("square", "blue", "small", 20, 20))
    if family == "recolor":
        tgt = scene(Obj("circle", "green", "small", 4, 4), Obj("square", "blue", "small", 20, 20))
        return EditTask("make the red circle green", "recolor", src, tgt, 0, ((1, 1),))
    tgt = scene(Obj("circle", "red", "small", 12, 4), Obj("square", "blue", "small", 20, 20))
    return EditTask("move the red circle right", "move", src, tgt, 0, ((1, 1),))


def test_instruction_rationale_is_checkable():
    task = _two_object_task()
    j = judge("shapes_instruction", render(task.target), task)
    assert j.rationale.startswith('Instruction: "make the red circle green". Requirement: (1) the red circle is now green.')
    assert "(1) met, a small green circle at (8, 8)" in j.rationale


def test_move_partly_done_gets_partial_credit():
    task = _two_object_task("move")
    half = render(scene(Obj("circle", "red", "small", 6, 4), Obj("square", "blue", "small", 20, 20)))
    j = judge("shapes_instruction", half, task)
    assert j.score == pytest.approx(0.5)
    assert "2.0 px right (needs 4)" in j.rationale
    wrong_way = render(scene(Obj("circle", "red", "small", 1, 4), Obj("square", "blue", "small", 20, 20)))
    assert judge("shapes_instruction", wrong_way, task).score == 0.0


def test_identity_catches_a_collateral_change():
    task = _two_object_task()
    # The circle was recoloured as asked, but the square turned yellow too.
    img = render(scene(Obj("circle", "green", "small", 4, 4), Obj("square", "yellow", "small", 20, 20)))
    assert judge("shapes_instruction", img, task).score == 1.0
    j = judge("shapes_identity", img, task)
    assert j.parts["pixels"] < 1.0
    # the yellow square stands where the blue one was: a third of half credit (shape and size kept)
    assert "(1) the small blue square unchanged" in j.rationale
    assert "partly met (0.33), a small yellow square is there instead" in j.rationale
    assert j.parts["extras"] == 1.0
    assert j.score < 0.7
    assert judge("shapes_oracle", img, task).score == 0.0


def test_identity_penalises_a_repainted_background_and_noise():
    task = _two_object_task()
    repainted = render(Scene("black", task.target.objects))
    j = judge("shapes_identity", repainted, task)
    assert "not met, now black" in j.rationale
    assert j.parts["pixels"] == pytest.approx(0.5)  # objects kept, every background pixel changed
    noisy = noisy_render(task.target, np.random.default_rng(0), sigma=40, n_specks=0, jitter=0.0)
    jn = judge("shapes_identity", noisy, task)
    assert jn.parts["pixels"] < 0.95
    assert judge("shapes_instruction", noisy, task).score == 1.0


def test_edit_judges_need_an_edit_task():
    img = render(scene(RED_CIRCLE))
    s = Sample(img, "make the red circle green", task="edit", source=img)
    for kind in ("shapes_instruction", "shapes_identity", "shapes_oracle"):
        [j] = build_judge(kind)([s])
        assert j.score is None and "spec" in j.rationale


def test_judges_score_a_batch_in_order():
    rng = np.random.default_rng(3)
    tasks = [sample_edit(rng) for _ in range(6)]
    samples = [Sample.from_spec(render(t.target if i % 2 else t.source), t) for i, t in enumerate(tasks)]
    out = build_judge("shapes_aesthetics")(samples)
    assert len(out) == 6 and all(j.score == 1.0 for j in out)
    scores = [j.score for j in build_judge("shapes_oracle")(samples)]
    assert scores[1::2] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_soft_judges_agree_with_the_strict_checker(task):
    """A strict pass scores 1 on the soft requirements, and 1 on them means a strict pass."""
    from qwenrl.rewards import load_reward
    from qwenrl.world.grammar import sample_t2i_prompt, scene_for_prompt

    rng = np.random.default_rng(7)
    samples = []
    for i in range(90):
        if task == "t2i":
            spec = sample_t2i_prompt(rng)
            right, wrong = scene_for_prompt(spec, rng), scene_for_prompt(sample_t2i_prompt(rng), rng)
        else:
            spec = sample_edit(rng)
            right, wrong = spec.target, spec.source
        img = render(right) if i % 3 == 0 else noisy_render(right, rng) if i % 3 == 1 else render(wrong)
        samples.append(Sample.from_spec(img, spec))
    name = "shapes_t2i" if task == "t2i" else "shapes_edit"
    out = load_reward(Path(__file__).resolve().parents[1] / f"training/configs/rewards/{name}.yaml", cache=None)(samples)
    strict = np.array([j.parts["strict"] for j in out])
    if task == "t2i":
        soft_all = np.array([j.parts["alignment"] for j in out]) == 1.0
    else:
        soft_all = (np.array([j.parts["instruction"] for j in out]) == 1.0) & (
            np.array([j.parts["identity/objects"] for j in out]) == 1.0
        )
    assert 0.2 < strict.mean() < 0.9  # both outcomes are exercised
    assert np.array_equal(strict == 1.0, soft_all)
