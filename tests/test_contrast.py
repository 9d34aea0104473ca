"""The contrastive prompt maker: exactly one fact changed, and the checker fails the original's image."""

import numpy as np
import pytest

from qwenrl.world.check import check_image
from qwenrl.world.contrast import minimally_wrong, t2i_text
from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES, sample_edit, sample_t2i_prompt, scene_for_prompt
from qwenrl.world.scene import render


def _spec_diffs(a: dict, b: dict) -> list[str]:
    diffs = []
    for i, (oa, ob) in enumerate(zip(a["objects"], b["objects"])):
        diffs += [f"{i}.{k}" for k in set(oa) | set(ob) if oa.get(k) != ob.get(k)]
    diffs += [k for k in ("relation", "background") if a.get(k) != b.get(k)]
    return diffs


@pytest.mark.parametrize("family", T2I_FAMILIES)
def test_t2i_one_fact_changed_and_the_checker_fails_it(family):
    rng = np.random.default_rng(1)
    made = 0
    for _ in range(40):
        prompt = sample_t2i_prompt(rng, family)
        assert t2i_text(family, prompt.spec) == prompt.text  # the writer is the grammar's
        got = minimally_wrong(prompt, rng, split=None)
        assert got is not None
        what, wrong = got
        assert wrong.family == family and wrong.text != prompt.text
        assert len(_spec_diffs(prompt.spec, wrong.spec)) == 1, (prompt.spec, wrong.spec)
        image = render(scene_for_prompt(prompt, rng))
        assert check_image(prompt, image).passed
        assert not check_image(wrong, image).passed, (prompt.text, wrong.text, what)
        made += 1
    assert made == 40


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_edit_one_parameter_changed_and_the_checker_fails_it(family):
    rng = np.random.default_rng(2)
    made = 0
    for _ in range(100):
        task = sample_edit(rng, family)
        got = minimally_wrong(task, rng, split=None)
        if got is None:  # e.g. remove in a one-object scene, or no other direction that fits
            continue
        what, wrong = got
        assert wrong.source == task.source and wrong.family == family
        assert wrong.instruction != task.instruction and wrong.target != task.target
        image = render(task.target)
        assert check_image(task, image).passed
        assert not check_image(wrong, image).passed, (task.instruction, wrong.instruction, what)
        assert check_image(wrong, render(wrong.target)).passed  # the wrong edit is itself a valid edit
        made += 1
    assert made >= 5  # resize has another object to name in about one draw in ten


def test_only_the_asked_split():
    rng = np.random.default_rng(3)
    for _ in range(100):
        prompt = sample_t2i_prompt(rng)
        got = minimally_wrong(prompt, rng, split="train")
        if got is not None:
            assert got[1].split == "train"
        task = sample_edit(rng)
        got = minimally_wrong(task, rng, split="train")
        if got is not None:
            assert got[1].split == "train"
