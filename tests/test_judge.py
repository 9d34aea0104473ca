"""The learned judge's code paths on tiny random models: its answer format and how it is read,
training data from the train split only, tokenisation identical to ``vlm_local``'s, a short
training run that resumes and exports, the served endpoint, and clear errors for bad inputs.
The committed judge's quality is tested in test_judge_quality.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from qwenrl.checkpoints import read_manifest
from qwenrl.rewards import RewardConfigError, Sample
from qwenrl.rewards.serve import BadRequest, JudgeServer, read_request
from qwenrl.rewards.shapes_cot import positions_agree, read_answer, scene_of_reading, score10, seen_agrees, target_for
from qwenrl.rewards.vlm import VLMLocalJudge, VLMServedJudge, chat_inputs, load_rubric, png_data_url
from qwenrl.world.grammar import EditTask, T2IPrompt
from qwenrl.world.parse import parse
from qwenrl.world.prompt_sets import load_prompt_set
from qwenrl.world.scene import Obj, Scene, render
from training import judge as tj

REPO = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, vision_hidden_size=32,
            vision_layers=1, vision_heads=1, chunk_size=8, model_examples=8, render_examples=8, val_examples=8,
            eval_examples=4, models=["data/models/shapes-base"], sampling=[[2, 1.0]], max_new_tokens=8, threads=1,
            batch_size=8, lr=3e-3, warmup_steps=0, caption_steps=1, caption_batch_size=8, contrast_fraction=1.0,
            pair_examples=8, val_pair_examples=8, pair_fraction=0.5)

RELATION = T2IPrompt("a red circle left of a blue square", "position", {
    "objects": [{"color": "red", "shape": "circle", "count": 1}, {"color": "blue", "shape": "square", "count": 1}],
    "relation": {"a": 0, "rel": "left of", "b": 1}, "background": None})
RED_LEFT = Scene("white", (Obj("circle", "red", "small", 3, 10), Obj("square", "blue", "large", 16, 8)))
RED_RIGHT = Scene("white", (Obj("circle", "red", "small", 20, 10), Obj("square", "blue", "large", 2, 8)))
RECOLOR = EditTask("make the red circle green", "recolor",
                   Scene("gray", (Obj("circle", "red", "small", 4, 4), Obj("triangle", "blue", "large", 15, 14))),
                   Scene("gray", (Obj("circle", "green", "small", 4, 4), Obj("triangle", "blue", "large", 15, 14))),
                   0, ((1, 1),))


# ---------------------------------------------------------------------------------------
# The answer format
# ---------------------------------------------------------------------------------------


def test_target_follows_the_checker_and_reads_back():
    good = target_for(Sample.from_spec(render(RED_LEFT), RELATION))
    assert good.passed and good.score10 == 10 and good.verdicts == (True, True, True, True)
    assert good.text.startswith("Requirements: (1) one red circle (2) one blue square (3) left of (4) nothing else.\nSeen: ")
    assert good.text.endswith("(1) met (2) met (3) met (4) met.\nScore: 10/10")
    bad = target_for(Sample.from_spec(render(RED_RIGHT), RELATION))
    assert not bad.passed and bad.verdicts == (True, True, False, True) and bad.score10 == score10(False, bad.soft) < 10
    assert "(3) not met" in bad.text
    for t, scene in ((good, RED_LEFT), (bad, RED_RIGHT)):
        r = read_answer(t.text)
        assert r.problems == [] and r.requirements == ["one red circle", "one blue square", "left of", "nothing else"]
        assert r.verdicts == list(t.verdicts) and r.passes == t.passed and r.consistent
        assert seen_agrees(r, parse(render(scene))) and r.seen == [("small", "red", "circle"), ("large", "blue", "square")]
    wrong_colour = Scene("white", (Obj("circle", "green", "small", 3, 10), Obj("square", "blue", "large", 16, 8)))
    assert not seen_agrees(read_answer(good.text), parse(render(wrong_colour)))


def test_edit_target_names_what_must_stay_and_the_change():
    done = target_for(Sample.from_spec(render(RECOLOR.target), RECOLOR))
    assert done.passed and done.text.startswith(
        "Requirements: (1) large blue triangle kept (2) small red circle now green (3) background kept (4) nothing else.\n"
        "Seen: small green circle; large blue triangle; on gray.\n")
    undone = target_for(Sample.from_spec(render(RECOLOR.source), RECOLOR))
    assert not undone.passed and undone.verdicts == (True, False, True, True)
    assert undone.score10 == 5  # instruction 0, identity 1: soft 0.5


def test_positions_write_each_centroid_and_an_edits_source():
    from qwenrl.world.parse import object_centroid

    good = target_for(Sample.from_spec(render(RED_LEFT), RELATION), positions=True)
    plain = target_for(Sample.from_spec(render(RED_LEFT), RELATION))
    # the same verdicts and score; only the Seen line gains where each object is, in whole pixels
    assert (good.passed, good.verdicts, good.score10) == (plain.passed, plain.verdicts, plain.score10)
    seen = good.text.splitlines()[1]
    parsed = parse(render(RED_LEFT))
    px = lambda v: int(np.floor(v + 0.5))  # whole pixels, halves up  # noqa: E731
    cx = [px(o.centroid[0]) for o in parsed.objects]
    cy = [px(o.centroid[1]) for o in parsed.objects]
    assert seen == f"Seen: small red circle at {cx[0]} {cy[0]}; large blue square at {cx[1]} {cy[1]}; on white."
    # the parser's centroids are the scene's own, to the pixel, on a clean render
    assert [(px(x), px(y)) for x, y in map(object_centroid, RED_LEFT.objects)] == list(zip(cx, cy))
    r = read_answer(good.text)
    assert r.problems == [] and r.seen == [("small", "red", "circle"), ("large", "blue", "square")]
    assert r.seen_at == list(zip(cx, cy)) and r.before is None and seen_agrees(r, parsed)
    assert positions_agree(r, parsed) is True
    # off by two pixels: the objects still agree, their positions do not; no positions at all: None
    shifted = good.text.replace(f"circle at {cx[0]} ", f"circle at {cx[0] + 2} ")
    assert seen_agrees(read_answer(shifted), parsed) and positions_agree(read_answer(shifted), parsed) is False
    assert positions_agree(read_answer(plain.text), parsed) is None and read_answer(plain.text).seen_at == [None, None]

    moved = target_for(Sample.from_spec(render(RECOLOR.target), RECOLOR), positions=True)
    lines = moved.text.splitlines()
    assert lines[0].startswith("Requirements: (1) large blue triangle kept") and lines[1].startswith("Before: small red circle at ")
    assert lines[2].startswith("Seen: small green circle at ") and moved.passed
    r = read_answer(moved.text)
    assert r.problems == [] and r.requirements[1] == "small red circle now green"
    assert r.before == [("small", "red", "circle"), ("large", "blue", "triangle")] and r.before_at == r.seen_at  # nothing moved
    with pytest.raises(ValueError, match="source image"):
        target_for(Sample(render(RECOLOR.target), RECOLOR.text, task="edit", spec=RECOLOR), positions=True)


def test_the_checker_can_judge_what_an_answer_says_it_saw():
    """scene_of_reading: the answer's own objects at its own positions, judged by the checker, give
    the verdicts that reading implies; moving the circle in the text flips the relation."""
    from qwenrl.world.check import check_edit, check_t2i

    good = target_for(Sample.from_spec(render(RED_LEFT), RELATION), positions=True)
    scene = scene_of_reading(read_answer(good.text))
    assert [m for _, m in check_t2i(RELATION, scene).requirements] == list(good.verdicts) == [True] * 4
    (cx, cy), (sx, _) = read_answer(good.text).seen_at
    moved = good.text.replace(f"circle at {cx} {cy}", f"circle at {sx + 5} {cy}")  # now right of the square
    result = check_t2i(RELATION, scene_of_reading(read_answer(moved)))
    assert [m for _, m in result.requirements] == [True, True, False, True] and not result.passed
    blob = good.text.replace("small red circle", "small red blob")
    assert not check_t2i(RELATION, scene_of_reading(read_answer(blob))).passed  # a blob is no circle
    assert scene_of_reading(read_answer(target_for(Sample.from_spec(render(RED_LEFT), RELATION)).text)) is None  # no positions
    nothing = scene_of_reading(read_answer("Requirements: (1) a.\nSeen: nothing on gray.\n(1) met.\nScore: 3/10"))
    assert nothing.objects == () and nothing.background == "gray"
    edit = target_for(Sample.from_spec(render(RECOLOR.target), RECOLOR), positions=True)
    assert check_edit(RECOLOR, scene_of_reading(read_answer(edit.text))).passed


def test_score_is_ten_only_for_a_pass():
    assert score10(True, 0.2) == 10
    assert score10(False, 1.0) == 9 and score10(False, 0.94) == 9 and score10(False, 0.44) == 4 and score10(False, 0.45) == 5


@pytest.mark.parametrize("text, problem", [
    ("", "score: empty"),
    ("Seen: nothing on white.\n(1) met.\nScore: 3/10", "no 'Requirements"),
    ("Requirements: (1) one red circle.\nSeen: a big red thing; on white.\n(1) met.\nScore: 3/10", "cannot read 'a big red thing'"),
    ("Requirements: (1) a.\nSeen: nothing on white.\n(2) met.\nScore: 3/10", "verdicts: not numbered"),
    ("Requirements: (1) a.\nSeen: nothing on white.\n(1) met.\nScore: 3/10\nScore: 4/10", "2 scores"),
    ("Requirements: (1) a.\nSeen: small red circle at 3; on white.\n(1) met.\nScore: 3/10", "cannot read 'small red circle at 3'"),
    ("Requirements: (1) a.\nBefore: small red circle at x y; on white.\nSeen: nothing on white.\n(1) met.\nScore: 3/10",
     "before: cannot read"),
])
def test_malformed_answers_are_read_without_guessing(text, problem):
    r = read_answer(text)
    assert any(problem in p for p in r.problems), r.problems


# ---------------------------------------------------------------------------------------
# Data, tokenizer and the training run
# ---------------------------------------------------------------------------------------


def held_out_texts(task: str) -> set[str]:
    """Texts the judge must never train on: the test split's, and for text to image the
    compositional split's (an edit is compositional by its scene's colour-shape pairs, not its text)."""
    splits = ("test", "compositional") if task == "t2i" else ("test",)
    return {it.text for split in splits for it in load_prompt_set(task, split)}


def test_training_prompts_come_from_the_train_split_only():
    from qwenrl.world.grammar import COMPOSITIONAL_PAIRS

    rng = np.random.default_rng(0)
    for task in ("t2i", "edit"):
        items = [tj.draw_item(rng, task) for _ in range(400)]
        texts = {it.text for it in items}
        assert len(texts) > 50 and not texts & held_out_texts(task)
        assert all(not it.pairs & COMPOSITIONAL_PAIRS for it in items)


def test_perturbed_renders_are_labelled_by_the_checker():
    cfg = tj.JudgeConfig(**{**TINY, "render_wrong_fraction": 1.0, "render_noisy_fraction": 0.0, "contrast_fraction": 1.0})
    images, records = tj.build_chunk(cfg, "t2i", "render", 0, {})
    own, twins = records[:8], records[8:]
    assert images.shape == (8, 32, 32, 3) and all(r["origin"] == "render:perturbed" for r in own)
    for img, r in zip(images, own):
        t = target_for(Sample.from_spec(img, T2IPrompt.from_dict(r["spec"])))
        assert (t.text, t.passed) == (r["answer"], r["passed"])
    # every image again with a minimally wrong train-split prompt, labelled by the checker too
    assert len(twins) == 8 and sorted(r["image_index"] for r in twins) == list(range(8))
    for r in twins:
        wrong = T2IPrompt.from_dict(r["spec"])
        assert wrong.split == "train" and wrong.text != own[r["image_index"]]["text"] and r["origin"].endswith(":contrast")
        t = target_for(Sample.from_spec(images[r["image_index"]], wrong))
        assert (t.text, t.passed) == (r["answer"], r["passed"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Data (8 model samples, 8 renders, 8 validation samples per task), then 2 + 2 training steps."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("judge-run")
    cfg = tj.JudgeConfig(**{**TINY, "steps": 2, "log_every": 1, "eval_every": 3, "state_every": 1})
    first = tj.train(cfg, run)
    before = read_manifest(run / "state")["step"]
    second = tj.train(tj.JudgeConfig(**{**TINY, "steps": 4, "log_every": 1, "eval_every": 3, "state_every": 1}), run,
                      export=run / "exported")
    return {"run": run, "cfg": cfg, "first": first, "second": second, "before": before}


def test_tokenizer_round_trips_every_answer(tiny_run):
    cfg = tiny_run["cfg"]
    tok, ip = tj.build_tokenizer(), tj.build_image_processor(cfg)
    examples = tj.load_examples(cfg, tiny_run["run"] / "data", tok, ip, ("model", "render"), "edit")
    captions = tj.caption_examples(examples, tok, ip)
    own = [e for e in examples if "image_index" not in e.record]
    assert examples and len(captions) == len(own) == 16 and len(examples) > len(own)  # contrastive twins are not captioned
    pairs = tj.load_examples(cfg, tiny_run["run"] / "data", tok, ip, ("pair",), "edit")
    assert len(pairs) == 8 and all(len(p.images) == 3 and p.record["answer"].splitlines()[-1].startswith("Better: ") for p in pairs)
    examples = examples + pairs
    assert all(c.record["answer"].startswith("Seen: ") and len(c.images) == 1 for c in captions)
    for e in examples + captions:
        assert tok.unk_token_id not in e.prompt_ids + e.answer_ids
        assert tok.decode(e.answer_ids, skip_special_tokens=True) == e.record["answer"]


def test_training_inputs_are_what_vlm_local_sends(tiny_run):
    cfg = tiny_run["cfg"]
    tok, ip = tj.build_tokenizer(), tj.build_image_processor(cfg)
    processor = tj.make_processor(tok, ip)
    for task in ("t2i", "edit"):
        [e] = tj.load_examples(cfg, tiny_run["run"] / "data", tok, ip, ("val",), task)[:1]
        rubric = load_rubric(tj.RUBRIC_FOR_TASK[task], str(tj.RUBRIC_DIR), "cot")
        sample = Sample(e.images[-1], e.record["text"], task=task, source=e.images[0] if task == "edit" else None)
        sent = chat_inputs(processor, [(e.images, rubric.render(sample))])
        assert sent["input_ids"][0].tolist() == e.prompt_ids
        batch = tj.collate([e], tok, ip)
        assert torch.equal(batch["pixel_values"], sent["pixel_values"])
        assert torch.equal(batch["mm_token_type_ids"][0, : len(e.prompt_ids)], sent["mm_token_type_ids"][0])
        assert (batch["labels"][0] != -100).sum() == len(e.answer_ids)


def test_training_resumes_learns_and_exports(tiny_run):
    run = tiny_run["run"]
    # one caption step, then judge steps: 3 in the first call, 5 after resuming
    assert tiny_run["before"] == 3 and tiny_run["first"]["metrics"]["step"] == 3 and tiny_run["second"]["metrics"]["step"] == 5
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # the resumed run continued the log
    assert [r["stage"] for r in rows] == ["caption"] + ["judge"] * 4
    assert rows[-1]["loss"] < rows[1]["loss"]
    assert {"val/t2i/agreement", "val/edit/parsed", "val/seen_exact", "val/edit/pair_accuracy", "val/t2i/pair_decisive"} <= set(rows[-1])
    assert "val/seen_exact" in rows[2]
    out = run / "exported"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "judge" and manifest["step"] == 5 and manifest["caption_steps"] == 1 and manifest["image_size"] == 32
    assert manifest["data"]["examples"]["t2i/model"] > 8 and manifest["data"]["examples"]["edit/pair"] == 8 and "tasks" not in manifest  # never an arena model
    assert (out / "model.safetensors").is_file() and (out / "rubrics" / "t2i.txt").is_file()
    texts = json.loads((out / "training_texts.json").read_text())
    assert texts["t2i"] and texts["edit"]
    assert not set(texts["t2i"]) & held_out_texts("t2i") and not set(texts["edit"]) & held_out_texts("edit")
    # a finished run exported again (no step left to train) keeps its final metrics
    again = tj.train(tj.JudgeConfig(**{**TINY, "steps": 4, "log_every": 1, "eval_every": 3, "state_every": 1}), run,
                     export=run / "exported-again")
    assert again["metrics"] == rows[-1] == json.loads((run / "exported-again" / "manifest.json").read_text())["final_metrics"]


def test_bad_configs_name_the_fix():
    with pytest.raises(tj.ConfigError, match="multiple of chunk_size"):
        tj.JudgeConfig(**{**TINY, "model_examples": 12})
    with pytest.raises(tj.ConfigError, match="must be 32"):
        tj.JudgeConfig(**{**TINY, "hidden_size": 96, "num_heads": 2})
    with pytest.raises(tj.ConfigError, match="eval_examples"):
        tj.JudgeConfig(**{**TINY, "eval_examples": 64})
    with pytest.raises(tj.ConfigError, match="unknown JudgeConfig key"):
        tj.JudgeConfig.from_yaml(None, ["learning_rate=1"])
    cfg = tj.JudgeConfig.from_yaml(REPO / "training" / "configs" / "judge.yaml")
    assert cfg.patch_size == 4 and cfg.models == tj.DEFAULT_MODELS


# ---------------------------------------------------------------------------------------
# Running it: vlm_local, the served endpoint, bad inputs
# ---------------------------------------------------------------------------------------


def test_vlm_local_loads_the_exported_judge_and_refuses_bad_inputs(tiny_run):
    folder = str(tiny_run["run"] / "exported")
    judge = VLMLocalJudge(config={"model_path": folder, "rubric": "t2i", "rubric_dir": folder + "/rubrics",
                                  "image_size": None, "max_new_tokens": 4, "batch_size": 2})
    assert judge.input_size == 32
    out = judge([Sample.from_spec(render(RED_LEFT), RELATION)] * 3)
    assert len(out) == 3 and judge.metrics["requests"] == 3
    with pytest.raises(ValueError, match=r"reads 32×32 images; got 64×64"):
        judge([Sample(np.zeros((64, 64, 3), np.uint8), "a red circle")])
    with pytest.raises(RewardConfigError, match="image_size: null or 32"):
        VLMLocalJudge(config={"model_path": folder, "image_size": 448})
    with pytest.raises(RewardConfigError, match="no config.json"):
        VLMLocalJudge(config={"model_path": str(tiny_run["run"] / "missing")})


def test_processor_marks_the_image_tokens(tiny_run):
    from qwenrl.rewards.vlm import QwenStyleProcessor

    proc = QwenStyleProcessor.from_pretrained(tiny_run["run"] / "exported")
    enc = chat_inputs(proc, [([render(RED_LEFT)], "a red circle"), ([render(RED_LEFT)] * 2, "two")])
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(enc["mm_token_type_ids"], (enc["input_ids"] == image_id).int())
    assert enc["mm_token_type_ids"].sum(1).tolist() == [16, 32]  # 16 vision tokens per 32×32 image


def test_served_endpoint_speaks_the_openai_chat_format(tiny_run):
    folder = tiny_run["run"] / "exported"
    with JudgeServer(folder, port=0, max_tokens=6, threads=1) as server:
        image = png_data_url(render(RED_LEFT))
        body = {"model": "exported", "temperature": 0, "max_tokens": 4, "messages": [
            {"role": "system", "content": "You are a judge."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": "a red circle"}]}]}
        r = httpx.post(server.url + "/chat/completions", json=body, timeout=60)
        assert r.status_code == 200
        out = r.json()
        assert out["object"] == "chat.completion" and out["model"] == "exported"
        choice = out["choices"][0]
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length") and out["usage"]["completion_tokens"] <= 4
        assert httpx.get(server.url + "/models").json()["data"][0]["id"] == "exported"
        for bad, why in (({**body, "temperature": 0.7}, "greedily"),
                         ({**body, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_data_url(np.zeros((64, 64, 3), np.uint8))}}]}]}, "reads 32×32"),
                         ({**body, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]}, "fetches nothing"),
                         ({**body, "model": "gpt-4"}, "not served here")):
            r = httpx.post(server.url + "/chat/completions", json=bad, timeout=60)
            assert r.status_code in (400, 404) and why in r.json()["error"]["message"]
        # vlm_served end to end: concurrent requests batched by the server
        judge = VLMServedJudge(config={"base_url": server.url, "model": "exported", "rubric": "t2i",
                                       "rubric_dir": str(folder / "rubrics"), "image_size": None, "max_tokens": 4})
        out = judge([Sample.from_spec(render(RED_LEFT), RELATION)] * 4)
        assert len(out) == 4 and judge.metrics["failed"] == 0 and judge.metrics["requests"] == 4


def test_request_reader_refuses_what_it_cannot_serve():
    with pytest.raises(BadRequest, match="messages"):
        read_request({"model": "x"})
    with pytest.raises(BadRequest, match="n must be 1"):
        read_request({"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert read_request({"messages": [{"role": "user", "content": "hi"}]}) == ([], "hi", None)


def test_pairwise_judge_runs_the_exported_model_and_never_guesses(tiny_run):
    """The pairwise path end to end on the tiny exported judge: the pair rubric is sent with both
    images (editing: the source first), the answers come back one per pair, and what cannot be
    read is counted and left without a winner."""
    from qwenrl.rewards.pairwise import PairwiseLocalJudge, read_pairwise

    judge = PairwiseLocalJudge(tiny_run["run"] / "exported", batch_size=2, max_new_tokens=8)
    t2i = [(Sample.from_spec(render(RED_LEFT), RELATION), Sample.from_spec(render(RED_RIGHT), RELATION))] * 3
    edit = [(Sample.from_spec(render(RECOLOR.target), RECOLOR), Sample.from_spec(render(RECOLOR.source), RECOLOR))]
    verdicts = judge.compare(t2i + edit)
    assert len(verdicts) == 4 and judge.metrics["pairs"] == 4
    for v in verdicts:
        assert v.winner == read_pairwise(v.rationale.split("Raw answer:\n")[-1]).winner
    assert judge.metrics["unparsed"] == sum(v.winner is None for v in verdicts)
    with pytest.raises(ValueError, match="one task"):
        judge.compare([(t2i[0][0], edit[0][0])])
    other = Sample.from_spec(render(RED_LEFT), T2IPrompt("a red circle", "single", {
        "objects": [{"color": "red", "shape": "circle", "count": 1}], "relation": None, "background": None}))
    with pytest.raises(ValueError, match="one prompt"):
        judge.compare([(t2i[0][0], other)])


# ---------------------------------------------------------------------------------------
# Fine-tuning an exported judge, with the dense perception loss
# ---------------------------------------------------------------------------------------


def test_cell_labels_name_the_shape_under_each_vision_token():
    image = render(RED_LEFT)
    labels = tj.cell_shape_labels(image, 8)
    assert labels.shape == (16,)
    for o in parse(image).objects:  # the cell under each object's centroid carries its shape
        x, y = o.centroid
        assert tj.PERCEPTION_CLASSES[labels[int(y) // 8 * 4 + int(x) // 8]] == o.shape
    assert set(labels.tolist()) == {0, tj.PERCEPTION_CLASSES.index("circle"), tj.PERCEPTION_CLASSES.index("square")}
    blob = np.full_like(image, 255)
    blob[20:22, 2:14] = image[parse(image).objects[0].mask][0]  # a red bar: no shape's template fits it
    blob[14:22, 2:4] = blob[20, 2]
    [o] = parse(blob).objects
    assert o.shape_confidence < 0.5
    assert tj.PERCEPTION_CLASSES[tj.cell_shape_labels(blob, 8)[2 * 4 + 0]] == "blob"


def test_cell_order_is_the_order_of_the_merged_vision_tokens():
    ip = tj.build_image_processor(tj.JudgeConfig(**TINY))
    for cell in (0, 6, 13):
        image = np.full((32, 32, 3), 255, np.uint8)
        r, c = divmod(cell, 4)
        image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = 0
        patches = ip(images=[image], return_tensors="pt")["pixel_values"]  # 64 patches, 4 per merged token
        dark = (patches.mean(dim=1) < 0).nonzero().flatten().tolist()
        assert dark == [4 * cell + k for k in range(4)]


def test_fine_tune_starts_from_an_exported_judge_and_learns_cells(tiny_run):
    exported = tiny_run["run"] / "exported"
    cfg = tj.JudgeConfig(**{**TINY, "init_from": str(exported), "perception_weight": 1.0, "steps": 2, "log_every": 1,
                            "eval_every": 0, "data_dir": str(tiny_run["run"] / "data")})
    model = tj.build_model(cfg, tj.build_tokenizer())
    tj.load_initial_weights(model, exported)
    from transformers import Qwen2VLForConditionalGeneration

    source = Qwen2VLForConditionalGeneration.from_pretrained(exported).state_dict()
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())
    run = tiny_run["run"].parent / "judge-finetune"
    out = tj.train(cfg, run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    image = tj.load_examples(cfg, tiny_run["run"] / "data", tj.build_tokenizer(), tj.build_image_processor(cfg), ("model",), "t2i")[0].images[0]
    loss = tj.PerceptionLoss(cfg, tj.build_model(cfg, tj.build_tokenizer()))
    assert loss.cells(image) is loss.cells(image) and np.array_equal(loss.cells(image), tj.cell_shape_labels(image, 8))  # parsed once
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["perception_loss"] > 0 and 0 <= r["perception_accuracy"] <= 1 for r in rows)
    manifest = json.loads((Path(out["checkpoint"]) / "manifest.json").read_text())
    assert manifest["training"]["init_from"] == str(exported) and manifest["training"]["perception_weight"] == 1.0
    # the manifest counts the parent's minutes and steps; the texts list what the parent saw too
    parent = json.loads((exported / "manifest.json").read_text())
    assert manifest["parent"] == {"path": str(exported), "step": parent["step"], "train_minutes_total": parent["train_minutes"]}
    assert manifest["train_minutes_total"] == round(parent["train_minutes"] + manifest["final_metrics"]["train_minutes"], 1)
    texts = json.loads((Path(out["checkpoint"]) / "training_texts.json").read_text())
    parent_texts = json.loads((exported / "training_texts.json").read_text())
    assert all(set(parent_texts[t]) <= set(texts[t]) for t in parent_texts)
    # the head is kept with the checkpoint, and a fine-tune from it starts from it (a judge without one: a new head)
    from safetensors.torch import load_file

    kept = load_file(str(Path(out["checkpoint"]) / tj.PERCEPTION_HEAD))
    again = tj.perception_head(tj.JudgeConfig(**{**TINY, "init_from": out["checkpoint"], "perception_weight": 1.0}))
    assert torch.equal(again.weight, kept["weight"]) and torch.equal(again.bias, kept["bias"])
    fresh = tj.perception_head(cfg)  # the exported judge was trained without the loss: no head there
    assert not (exported / tj.PERCEPTION_HEAD).exists() and not torch.equal(fresh.weight, kept["weight"])
    with pytest.raises(tj.ConfigError, match="not this config's architecture"):
        tj.load_initial_weights(tj.build_model(tj.JudgeConfig(**{**TINY, "vision_hidden_size": 64, "vision_heads": 2}), tj.build_tokenizer()), exported)
    with pytest.raises(tj.ConfigError, match="not an exported judge folder"):
        tj.JudgeConfig(**{**TINY, "init_from": str(run / "nowhere")})
    with pytest.raises(tj.ConfigError, match="perception_weight"):
        tj.JudgeConfig(**{**TINY, "perception_weight": -1.0})


def test_a_fine_tunes_training_texts_include_its_parents(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "config.json").write_text("{}")
    (parent / "training_texts.json").write_text(json.dumps({"t2i": ["a red circle", "a blue square"], "edit": ["make it red"]}))
    cfg = tj.JudgeConfig(**{**TINY, "init_from": str(parent)})
    merged = tj.seen_texts(cfg, {"t2i": ["a green circle", "a red circle"], "edit": []})
    assert merged == {"t2i": ["a blue square", "a green circle", "a red circle"], "edit": ["make it red"]}
    assert tj.seen_texts(tj.JudgeConfig(**TINY), {"t2i": ["b", "a", "b"], "edit": []}) == {"t2i": ["a", "b"], "edit": []}
    # a parent without a manifest: its minutes are unknown, not guessed
    assert tj.parent_summary(cfg, 3.0) == {"parent": {"path": str(parent), "step": None, "train_minutes_total": None},
                                           "train_minutes_total": None}
    assert tj.parent_summary(tj.JudgeConfig(**TINY), 3.0) == {}
    (parent / "manifest.json").write_text(json.dumps({"step": 900, "train_minutes": 40.0, "train_minutes_total": 50.0}))
    assert tj.parent_summary(cfg, 3.04)["train_minutes_total"] == 53.0


def _fake_examples(task: str, n: int, base: int) -> list[tj.Example]:
    rng = np.random.default_rng(len(task) + n)
    return [tj.Example([], list(range(base)), list(range(int(rng.integers(1, 60)))), {"task": task, "i": i}) for i in range(n)]


def test_length_buckets_batch_the_same_draws_by_length():
    train = {"t2i": _fake_examples("t2i", 200, 80), "edit": _fake_examples("edit", 150, 120)}
    captions = _fake_examples("caption", 300, 30)
    cfg = tj.JudgeConfig(**{**TINY, "caption_steps": 8, "length_buckets": 4, "batch_size": 16, "caption_batch_size": 12})
    plain = tj.JudgeConfig(**{**TINY, "caption_steps": 8, "batch_size": 16, "caption_batch_size": 12})
    length = lambda e: len(e.prompt_ids) + len(e.answer_ids)  # noqa: E731
    for first, size in ((0, 12), (8, 16), (12, 16)):  # a caption block, then two judge blocks
        block = [tj.draw_batch(cfg, s, captions, train, {}) for s in range(first, first + 4)]
        assert block == [tj.draw_batch(cfg, s, captions, train, {}) for s in range(first, first + 4)]  # a function of the step
        assert [len(b) for b in block] == [size] * 4
        # the block's batches cut one length-sorted pool: no two batches overlap in length
        spans = sorted((min(map(length, b)), max(map(length, b))) for b in block)
        assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
        # ...and that pool is the k draws each step would make, drawn from the block's own generator
        rng = np.random.default_rng([cfg.seed, 8, int(first < 8), (first - (0 if first < 8 else 8)) // 4])
        if first < 8:
            expected = [captions[i] for _ in range(4) for i in rng.integers(len(captions), size=12)]
        else:
            expected = [e for _ in range(4) for e in tj._judge_draw(cfg, rng, train, {})]
        assert sorted(id(e) for b in block for e in b) == sorted(id(e) for e in expected)
    # over many steps a bucketed batch pads far less, with the task mix unchanged in expectation
    steps = range(8, 8 + 400)
    pad = {c.length_buckets: np.mean([max(map(length, tj.draw_batch(c, s, captions, train, {}))) for s in steps]) for c in (cfg, plain)}
    edit = {c.length_buckets: np.mean([e.record["task"] == "edit" for s in steps for e in tj.draw_batch(c, s, captions, train, {})])
            for c in (cfg, plain)}
    assert pad[4] < 0.9 * pad[1]
    assert abs(edit[4] - edit[1]) < 0.03 and abs(edit[4] - cfg.edit_fraction) < 0.03
    assert tj.draw_batch(plain, 9, captions, train, {}) == tj.draw_batch(plain, 9, captions, train, {})
    with pytest.raises(tj.ConfigError, match="length_buckets"):
        tj.JudgeConfig(**{**TINY, "length_buckets": 0})


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "training" / "configs").glob("judge*.yaml")))
def test_bundled_judge_configs_validate_and_fine_tunes_start_from_a_bundled_judge(name):
    cfg = tj.JudgeConfig.from_yaml(REPO / "training" / "configs" / name)
    assert cfg.steps > 0 and cfg.models
    if cfg.init_from:
        assert (REPO / cfg.init_from / "manifest.json").is_file(), cfg.init_from
