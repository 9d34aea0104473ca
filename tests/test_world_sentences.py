"""Reading prompts and edit instructions back into specs (qwenrl/world/sentences.py), and prompts
that forgive punctuation and case, down to `qwenrl generate`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from qwenrl.commands import generate
from qwenrl.world.check import check_image
from qwenrl.world.grammar import GrammarError, sample_edit, sample_t2i_prompt, scene_for_prompt
from qwenrl.world.scene import Obj, Scene, render
from qwenrl.world.sentences import normalize, read_instruction, read_prompt
from tests.studio_support import make_tiny_models


def test_every_grammar_prompt_reads_back_as_its_spec():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        prompt = sample_t2i_prompt(rng)
        read = read_prompt(prompt.text)
        assert (read.text, read.family, read.spec) == (prompt.text, prompt.family, prompt.spec)


def test_every_grammar_instruction_reads_back_as_its_edit():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        task = sample_edit(rng)
        read = read_instruction(task.instruction, task.source)
        assert (read.family, read.target_index, read.preserved) == (task.family, task.target_index, task.preserved)
        if task.family != "add":  # an added object is placed by the reader's own seed
            assert read.target == task.target
        assert check_image(read, render(task.target)).passed  # the grammar's target passes the read edit


def test_punctuation_and_case_are_forgiven():
    assert normalize("A red circle, LEFT of a blue square!") == "a red circle left of a blue square"
    assert read_prompt("A red circle.").spec == read_prompt("a red circle").spec
    assert read_prompt("a red circle, left of a blue square").spec["relation"] == {"a": 0, "rel": "left of", "b": 1}


@pytest.mark.parametrize("text, why", [
    ("circle red a blue blue", "expected “a” or a number"),
    ("a red", "expected a shape"),
    ("two red circle", "“two” needs “circles”"),
    ("two red squares above a blue circle", "relates one object to one object"),
    ("a red circle and a red circle", "count them instead"),
    ("a red circle on a red background", "background colour"),
    ("a red circle left", "expected the end of the prompt"),
])
def test_word_salad_is_not_a_prompt(text, why):
    with pytest.raises(GrammarError, match=why):
        read_prompt(text)


SOURCE = Scene("white", (Obj("circle", "red", "small", 4, 4), Obj("square", "blue", "large", 14, 14)))


@pytest.mark.parametrize("text, why", [
    ("remove the yellow circle", "the source image has no yellow circle; it has a small red circle, a large blue square on white"),
    ("remove the large red circle", "has no large red circle"),
    ("make the background white", "white already"),
    ("make the background blue", r"background colour \(white, black, gray\)"),
    ("make the red circle red", "red already"),
    ("change the blue square to red circle", "expected the end"),
    ("paint the red circle", "expected an edit verb"),
])
def test_edits_must_apply_to_their_source(text, why):
    with pytest.raises(GrammarError, match=why):
        read_instruction(text, SOURCE)


def test_a_read_edit_is_what_the_checker_checks():
    task = read_instruction("Move the red circle right.", SOURCE)
    assert task.family == "move" and task.target.objects[0].x == 4 + 8
    assert check_image(task, render(task.target)).passed
    assert not check_image(task, render(SOURCE)).passed  # nothing moved
    prompt = read_prompt("a small red circle on a black background")
    assert check_image(prompt, render(scene_for_prompt(prompt, np.random.default_rng(0)))).passed


def test_qwenrl_generate_forgives_punctuation(tmp_path):
    """`qwenrl generate --prompt "a red circle."` used to fail with "unknown word(s) ['circle.']"."""
    models = make_tiny_models(tmp_path / "models", ["tiny"])
    result = CliRunner().invoke(generate, ["--model", str(models / "tiny"), "--prompt", "A red circle, left of a blue square.",
                                           "--n", "1", "--steps", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "0000.png").is_file()
