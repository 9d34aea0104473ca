"""The committed learned judge (data/models/shapes-judge): it loads through ``vlm_local`` as the
reward YAMLs configure it, writes answers that parse, ranks a correct render above a wrong one
on fixed cases, stays small, never trained on a test prompt, and answers the same through
``qwenrl judge serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from qwenrl.rewards import Sample, load_reward
from qwenrl.rewards.base import build_judge
from qwenrl.rewards.serve import JudgeServer
from qwenrl.rewards.shapes_cot import read_answer, seen_agrees, target_for
from qwenrl.rewards.vlm import VLMServedJudge
from qwenrl.world.grammar import EditTask, T2IPrompt
from qwenrl.world.parse import parse
from qwenrl.world.prompt_sets import load_prompt_set
from qwenrl.world.scene import Obj, Scene, render

REPO = Path(__file__).resolve().parents[1]
JUDGE = REPO / "data" / "models" / "shapes-judge"
REWARDS = REPO / "training" / "configs" / "rewards"


def prompt(text: str, family: str, objects: list[dict], relation: dict | None = None, background: str | None = None) -> T2IPrompt:
    return T2IPrompt(text, family, {"objects": objects, "relation": relation, "background": background})


RED_CIRCLE = {"color": "red", "shape": "circle", "count": 1}
BLUE_SQUARE = {"color": "blue", "shape": "square", "count": 1}
# (prompt, a scene that satisfies it, a scene that does not): colour, relation, count, background, extra object
T2I_CASES = [
    (prompt("a red circle", "single", [RED_CIRCLE]),
     Scene("white", (Obj("circle", "red", "large", 9, 9),)), Scene("white", (Obj("circle", "green", "large", 9, 9),))),
    (prompt("a red circle left of a blue square", "position", [RED_CIRCLE, BLUE_SQUARE], {"a": 0, "rel": "left of", "b": 1}),
     Scene("white", (Obj("circle", "red", "small", 3, 12), Obj("square", "blue", "large", 17, 9))),
     Scene("white", (Obj("circle", "red", "small", 21, 12), Obj("square", "blue", "large", 3, 9)))),
    (prompt("three yellow squares", "counting", [{"color": "yellow", "shape": "square", "count": 3}]),
     Scene("white", (Obj("square", "yellow", "small", 3, 3), Obj("square", "yellow", "small", 18, 5), Obj("square", "yellow", "small", 8, 20))),
     Scene("white", (Obj("square", "yellow", "small", 3, 3), Obj("square", "yellow", "small", 18, 5)))),
    (prompt("a green triangle on a black background", "background", [{"color": "green", "shape": "triangle", "count": 1}], background="black"),
     Scene("black", (Obj("triangle", "green", "large", 8, 8),)), Scene("white", (Obj("triangle", "green", "large", 8, 8),))),
    (prompt("a purple square and a cyan circle", "two_objects",
            [{"color": "purple", "shape": "square", "count": 1}, {"color": "cyan", "shape": "circle", "count": 1}]),
     Scene("white", (Obj("square", "purple", "large", 2, 2), Obj("circle", "cyan", "small", 20, 20))),
     Scene("white", (Obj("square", "cyan", "large", 2, 2), Obj("circle", "purple", "small", 20, 20)))),
]
_SRC = Scene("white", (Obj("circle", "red", "small", 4, 4), Obj("square", "blue", "large", 16, 14)))
EDIT_CASES = [
    EditTask("make the red circle green", "recolor", _SRC,
             Scene("white", (Obj("circle", "green", "small", 4, 4), Obj("square", "blue", "large", 16, 14))), 0, ((1, 1),)),
    EditTask("remove the blue square", "remove", _SRC, Scene("white", (Obj("circle", "red", "small", 4, 4),)), None, ((0, 0),)),
    EditTask("make the background gray", "background", _SRC, Scene("gray", _SRC.objects), None, ((0, 0), (1, 1))),
]


@pytest.fixture(scope="module")
def judges():
    torch.set_num_threads(2)
    out = {}
    for task in ("t2i", "edit"):
        options = yaml.safe_load((REWARDS / f"shapes_{task}_vlm.yaml").read_text())["components"]["judge"]["config"]
        options = {**options, "model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics")}
        out[task] = build_judge("vlm_local", name="judge", config=options)
    return out


def test_committed_judge_is_small_and_described():
    size = sum(f.stat().st_size for f in JUDGE.rglob("*") if f.is_file())
    assert size <= 30e6, f"{size / 1e6:.1f} MB"
    manifest = json.loads((JUDGE / "manifest.json").read_text())
    assert manifest["kind"] == "judge" and manifest["architecture"] == "Qwen2VLForConditionalGeneration"
    assert manifest["step"] > 0 and manifest["data"]["examples"] and manifest["image_size"] == 32
    assert (JUDGE / "model.safetensors").is_file() and not list(JUDGE.glob("*.bin")) and not list(JUDGE.glob("*.pt"))


def test_no_test_prompt_in_the_training_data():
    texts = json.loads((JUDGE / "training_texts.json").read_text())
    t2i_held_out = {p.text for split in ("test", "compositional") for p in load_prompt_set("t2i", split)}
    edit_test = {t.text for t in load_prompt_set("edit", "test")}
    assert len(texts["t2i"]) > 500 and len(texts["edit"]) > 500
    assert not set(texts["t2i"]) & t2i_held_out
    assert not set(texts["edit"]) & edit_test


def test_reads_each_render_and_passes_the_correct_ones(judges):
    """What the committed judge gets right on clean renders: every answer parses and follows its
    own verdicts, its Seen line is what the parser finds, a correct image passes with the
    checker's verdicts, and a missing object fails. (What it gets wrong — a wrong colour,
    relation or background read correctly and still called met — is measured by
    benchmarks/judge.py and shown in docs/rewards.md.)"""
    samples = [Sample.from_spec(render(scene), p) for p, good, bad in T2I_CASES for scene in (good, bad)]
    answers = judges["t2i"].generate(samples)
    for sample, answer in zip(samples, answers):
        r = read_answer(answer)
        assert r.score is not None and r.consistent, answer
        assert seen_agrees(r, parse(sample.image)), answer
    for k, (p, good, bad) in enumerate(T2I_CASES):
        ok = read_answer(answers[2 * k])
        assert ok.passes and ok.verdicts == list(target_for(samples[2 * k]).verdicts), (p.text, answers[2 * k])
    counting = [k for k, (p, _, _) in enumerate(T2I_CASES) if p.family == "counting"][0]
    short = read_answer(answers[2 * counting + 1])  # two squares for "three yellow squares"
    assert not short.passes and short.verdicts == list(target_for(samples[2 * counting + 1]).verdicts)


def test_edits_done_pass_with_the_checkers_verdicts(judges):
    samples = [Sample.from_spec(render(scene), task) for task in EDIT_CASES for scene in (task.target, task.source)]
    answers = judges["edit"].generate(samples)
    for sample, answer in zip(samples, answers):
        r = read_answer(answer)
        assert r.score is not None and r.consistent and seen_agrees(r, parse(sample.image)), answer
    for k, task in enumerate(EDIT_CASES):
        done = read_answer(answers[2 * k])
        assert done.passes and done.verdicts == list(target_for(samples[2 * k]).verdicts), (task.instruction, answers[2 * k])


def test_reward_yamls_combine_the_judge_with_programmatic_parts():
    p, good, bad = T2I_CASES[2]  # three squares or two: a difference the judge sees
    reward = load_reward(REWARDS / "shapes_t2i_vlm.yaml", cache=False)
    j_good, j_bad = reward([Sample.from_spec(render(good), p), Sample.from_spec(render(bad), p)])
    assert j_good.score > j_bad.score
    assert {"judge", "aesthetics", "fidelity", "strict"} <= set(j_good.parts) and j_good.parts["judge"] == 1.0
    assert j_bad.parts["judge"] < 1.0 and j_bad.parts["strict"] == 0.0
    assert "[judge] 1.000" in j_good.rationale and "Score: 10/10" in j_good.rationale
    task = EDIT_CASES[0]
    edit = load_reward(REWARDS / "shapes_edit_vlm.yaml", cache=False)
    [j] = edit([Sample.from_spec(render(task.target), task)])
    assert j.parts["judge"] == 1.0 and j.parts["strict"] == 1.0


def test_strict_yaml_passes_only_a_perfect_answer():
    """shapes_t2i_vlm_strict.yaml (the reward of the learned-judge RL run): 1 for 10/10, else 0,
    the answer's own score kept as a part."""
    reward = load_reward(REWARDS / "shapes_t2i_vlm_strict.yaml", cache=False)
    samples = [Sample.from_spec(render(scene), p) for p, good, bad in T2I_CASES for scene in (good, bad)]
    judged = reward(samples)
    for j in judged:
        assert j.score == j.parts["judge"] == float(j.parts["judge/score"] == 1.0), j.parts
        assert ("passes (pass at 10/10)" if j.score else "fails (pass at 10/10)") in j.rationale
    assert [j.score for j in judged[0::2]] == [1.0] * len(T2I_CASES)  # the correct renders pass
    assert judged[5].score == 0.0 and judged[5].parts["strict"] == 0.0  # two squares for three


def test_served_judge_answers_as_vlm_local_does(judges):
    p, good, bad = T2I_CASES[0]
    samples = [Sample.from_spec(render(good), p), Sample.from_spec(render(bad), p)]
    local = [j.score for j in judges["t2i"](samples)]
    with JudgeServer(JUDGE, port=0, threads=2) as server:
        served = VLMServedJudge(config={"base_url": server.url, "model": "shapes-judge", "rubric": "t2i",
                                        "rubric_dir": str(JUDGE / "rubrics"), "image_size": None, "max_tokens": 112})
        remote = [j.score for j in served(samples)]
    assert remote == local and local[0] == 1.0
