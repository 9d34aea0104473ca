"""Vision-language judges: the strict score parser, rubrics, a tiny local Qwen2.5-VL through
the real ``generate`` path, and the served judge against a loopback chat-completions server."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from qwenrl.rewards import RewardCache, RewardConfigError, Sample, load_reward
from qwenrl.rewards.fake_server import FakeChatServer
from qwenrl.rewards.vlm import VLMLocalJudge, VLMServedJudge, load_rubric, parse_score, upscale
from qwenrl.world.grammar import T2IPrompt
from qwenrl.world.scene import Obj, Scene, render

PROMPT = T2IPrompt("a red circle", "single", {"objects": [{"color": "red", "shape": "circle", "count": 1}], "relation": None, "background": None})


def t2i_sample(x=4):
    return Sample.from_spec(render(Scene("white", (Obj("circle", "red", "small", x, 4),))), PROMPT)


def edit_sample():
    src = render(Scene("white", (Obj("circle", "red", "small", 4, 4),)))
    out = render(Scene("white", (Obj("circle", "blue", "small", 4, 4),)))
    return Sample(out, "make the red circle blue", task="edit", source=src)


# ---------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, mode, expected",
    [
        ("Score: 7/10", "pointwise", 0.7),
        ("7", "pointwise", 0.7),
        ("7/10", "pointwise", 0.7),
        ("**Score: 8.5 / 10**", "pointwise", 0.85),
        ("The circle is red and round.\nScore: 9/10", "pointwise", 0.9),  # extra text before: fine
        ("score = 0", "cot", 0.0),
        ("The image shows a red circle.\nIt is round, as asked.\n\nScore: 10/10", "cot", 1.0),
        ("Step 1: red circle present.\nStep 2: nothing else.\nScore: 6/10.", "cot", 0.6),
    ],
)
def test_parser_reads_exactly_one_final_score(text, mode, expected):
    score, why = parse_score(text, mode)
    assert score == pytest.approx(expected) and why == ""


@pytest.mark.parametrize(
    "text, mode, reason",
    [
        ("", "cot", "empty"),
        ("The image is nice.", "pointwise", "no 'Score"),
        ("The image shows a red circle.", "cot", "no 'Score"),
        ("7", "cot", "no 'Score"),  # cot needs the score line
        ("Score: 6/10\nOn reflection, Score: 8/10", "cot", "2 scores"),
        ("Score: 7/10 Score: 7/10", "pointwise", "2 scores"),
        ("Score: 11/10", "pointwise", "outside 0-10"),
        ("Score: -1/10", "cot", "outside 0-10"),
        ("Score: 7/100", "pointwise", "not on the /10 scale"),
        ("12", "pointwise", "outside 0-10"),
        ("Score: 7/10\nBut the square is missing.", "cot", "text after"),
        ("Score: 7/10 because it is red", "pointwise", "text after"),
    ],
)
def test_parser_refuses_to_guess(text, mode, reason):
    score, why = parse_score(text, mode)
    assert score is None
    assert reason in why


# ---------------------------------------------------------------------------------------
# Rubrics
# ---------------------------------------------------------------------------------------


def test_bundled_rubrics_render_prompt_and_format():
    r = load_rubric("alignment", None, "cot")
    text = r.render(t2i_sample())
    assert '"a red circle"' in text and "Score: <an integer from 0 to 10>/10" in text and "step by step" in text
    assert "step by step" not in load_rubric("alignment", None, "pointwise").render(t2i_sample())
    edit = load_rubric("instruction", None, "pointwise").render(edit_sample())
    assert '"make the red circle blue"' in edit


def test_custom_rubric_dir_and_missing_rubric(tmp_path):
    (tmp_path / "mine.txt").write_text("Is it {prompt}?")
    r = load_rubric("mine", str(tmp_path), "pointwise")
    assert r.render(t2i_sample()).startswith("Is it a red circle?")
    r2 = load_rubric(str(tmp_path / "mine.txt"), None, "cot")
    assert r2.path == tmp_path / "mine.txt"
    with pytest.raises(RewardConfigError, match=r"rubric file .*nope.txt not found.*alignment"):
        load_rubric("nope", None, "cot")


def test_upscale_is_nearest_neighbour():
    img = render(Scene("white", (Obj("circle", "red", "small", 4, 4),)))
    big = upscale(img, 128)
    assert big.shape == (128, 128, 3) and np.array_equal(big[::4, ::4], img)


# ---------------------------------------------------------------------------------------
# A tiny local Qwen2.5-VL, built offline and loaded back from a folder
# ---------------------------------------------------------------------------------------

WORDS = [
    "<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>", "user", "assistant", "the", "a", "image", "red", "circle", "blue", "is", "round", "not",
]  # no "score" and no digits: a random model cannot write a parseable answer by chance
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> {% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %} <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def build_tiny_qwen25_vl(path) -> None:
    """A randomly initialised Qwen2.5-VL (2 text layers, 2 vision blocks, width 32) with a
    word-level tokenizer, a tiny image processor and a chat template, saved to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
        additional_special_tokens=specials, chat_template=CHAT_TEMPLATE,
    )
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, temporal_patch_size=2, merge_size=2)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=2, eos_token_id=3, pad_token_id=1,
            rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=28, fullatt_block_indexes=[1],
        ),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # never emit special tokens, so that the random answer is visible text
        model.lm_head.weight[: len(specials) + 2] = 0.0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-qwen25-vl")
    build_tiny_qwen25_vl(path)
    return str(path)


def test_local_vlm_random_output_is_unparsed_not_guessed(tiny_vlm):
    judge = VLMLocalJudge(config={"model_path": tiny_vlm, "mode": "cot", "max_new_tokens": 6, "batch_size": 2})
    # batches [t2i, edit] (left padding: the edit sends two images) and [t2i]
    samples = [t2i_sample(4), edit_sample(), t2i_sample(10)]
    out = judge(samples)
    assert len(out) == 3
    for j in out:
        assert j.score is None and j.judge == judge.name
        assert "no score" in j.rationale and "Raw answer:" in j.rationale
    assert judge.metrics["unparsed"] == 3 and judge.metrics["requests"] == 3
    # The random answer is the model's own greedy output, kept verbatim.
    raw = judge.generate(samples[2:])[0]
    assert raw.strip() and out[2].rationale.endswith(raw)
    # Batching and padding do not change a sample's greedy answer.
    assert judge.generate(samples[:2])[0] == judge.generate(samples[:1])[0]


def test_local_vlm_score_line_is_read(tiny_vlm, monkeypatch):
    judge = VLMLocalJudge(config={"model_path": tiny_vlm, "mode": "cot", "max_new_tokens": 4})
    monkeypatch.setattr(judge, "decode", lambda ids: ["The circle is red and round.\nScore: 7/10"] * len(ids))
    [j] = judge([t2i_sample()])
    assert j.score == pytest.approx(0.7)
    assert "7/10" in j.rationale and judge.metrics["scored"] == 1


def test_local_vlm_in_a_composite_from_yaml_dict(tiny_vlm, monkeypatch):
    reward = load_reward({
        "task": "t2i",
        "components": {
            "alignment": {"judge": "shapes_alignment", "weight": 0.5},
            "vlm": {"judge": "vlm_local", "weight": 0.5, "config": {"model_path": tiny_vlm, "max_new_tokens": 4}},
        },
    })
    [j] = reward([t2i_sample()])
    # The VLM's random answer is unparseable: it is left out and the rationale says so.
    assert j.score == 1.0 and "vlm" not in j.parts
    assert "[vlm] no score" in j.rationale and "Left out: vlm" in j.rationale
    assert reward.metrics["vlm/unparsed"] == 1


def test_local_vlm_needs_a_model_folder(tmp_path):
    with pytest.raises(RewardConfigError, match="not a local model folder"):
        VLMLocalJudge(config={"model_path": str(tmp_path)})
    with pytest.raises(RewardConfigError, match="model_path is required"):
        VLMLocalJudge(config={})


# ---------------------------------------------------------------------------------------
# The served judge against a loopback server
# ---------------------------------------------------------------------------------------


def served(server, **config):
    judge = VLMServedJudge(config={"base_url": server.url, "model": "fake-vl", "backoff_s": 0.01, **config})
    return judge


def test_served_success_sends_images_inline():
    with FakeChatServer(answer="The circle is red.\nScore: 8/10") as server:
        judge = served(server)
        out = judge([t2i_sample(), edit_sample()])
        judge.close()
    assert [j.score for j in out] == [pytest.approx(0.8), pytest.approx(0.8)]
    t2i_req, edit_req = sorted(server.requests, key=lambda r: len(r["messages"][0]["content"]))  # sent concurrently
    assert t2i_req["model"] == "fake-vl" and t2i_req["temperature"] == 0.0
    content = t2i_req["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[-1]["type"] == "text" and '"a red circle"' in content[-1]["text"]
    assert [c["type"] for c in edit_req["messages"][0]["content"]] == ["image_url", "image_url", "text"]


def test_served_retries_after_server_errors_with_backoff():
    answers = iter([(500, "boom"), (503, "busy"), "Score: 6/10"])
    with FakeChatServer(respond=lambda payload, n: next(answers)) as server:
        judge = served(server, backoff_s=0.5)
        waits = []
        judge.sleep = waits.append
        [j] = judge([t2i_sample()])
    assert j.score == pytest.approx(0.6)
    assert waits == [0.5, 1.0]  # exponential backoff
    assert judge.metrics["retries"] == 2 and judge.metrics["requests"] == 3


def test_served_gives_up_and_marks_the_judgement_transient():
    with FakeChatServer(respond=lambda payload, n: (500, "down")) as server:
        judge = served(server, max_retries=2)
        [j] = judge([t2i_sample()])
    assert j.score is None and j.transient
    assert "HTTP 500 (after 3 tries)" in j.rationale
    assert judge.metrics["failed"] == 1


def test_served_does_not_retry_a_client_error():
    with FakeChatServer(respond=lambda payload, n: (400, "bad model")) as server:
        judge = served(server)
        [j] = judge([t2i_sample()])
    assert j.score is None and "HTTP 400" in j.rationale and len(server.requests) == 1


def test_served_timeout_is_retried_then_reported():
    def slow(payload, n):
        time.sleep(0.6)
        return "Score: 5/10"

    with FakeChatServer(respond=slow) as server:
        judge = served(server, timeout_s=0.15, max_retries=1)
        t0 = time.perf_counter()
        [j] = judge([t2i_sample()])
        took = time.perf_counter() - t0
    assert j.score is None and j.transient and "timed out after 0.15 s (after 2 tries)" in j.rationale
    assert took < 1.5


def test_served_transient_failures_are_not_cached_but_answers_are():
    state = {"fail": True}

    def flaky(payload, n):
        return (503, "busy") if state["fail"] else "Score: 9/10"

    with FakeChatServer(respond=flaky) as server:
        reward = load_reward(
            {"task": "t2i", "components": {"v": {"judge": "vlm_served", "config": {
                "base_url": server.url, "model": "m", "max_retries": 0, "mode": "pointwise"}}}},
            cache=RewardCache(),
        )
        assert reward([t2i_sample()])[0].score is None
        state["fail"] = False
        assert reward([t2i_sample()])[0].score == pytest.approx(0.9)
        n = len(server.requests)
        assert reward([t2i_sample()])[0].score == pytest.approx(0.9)
        assert len(server.requests) == n  # answered from the cache


@pytest.mark.parametrize("answer, pass_at, expected", [("Score: 10/10", 10, 1.0), ("Score: 9/10", 10, 0.0), ("Score: 7/10", 7, 1.0), ("Score: 6.5/10", 7, 0.0)])
def test_pass_at_turns_the_score_into_pass_or_fail(answer, pass_at, expected):
    with FakeChatServer(answer=f"(1) met (2) met.\n{answer}") as server:
        [j] = served(server, pass_at=pass_at)([t2i_sample()])
        [plain] = served(server)([t2i_sample()])
    assert j.score == expected and j.parts["score"] == plain.score  # the answer's own score kept as a part
    assert ("passes" if expected else "fails") + f" (pass at {pass_at:g}/10)" in j.rationale and answer in j.rationale


def test_pass_at_out_of_range_is_refused():
    with pytest.raises(RewardConfigError, match="pass_at is 11"):
        VLMServedJudge(config={"base_url": "http://127.0.0.1:9/v1", "model": "m", "pass_at": 11})


def test_served_unparseable_answer_counts_as_unparsed():
    with FakeChatServer(answer="It looks fine to me.") as server:
        judge = served(server, mode="pointwise")
        [j] = judge([t2i_sample()])
    assert j.score is None and not j.transient and "It looks fine to me." in j.rationale
    assert judge.metrics["unparsed"] == 1


def test_served_requests_run_concurrently():
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(payload, n):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return "Score: 5/10"

    with FakeChatServer(respond=slow) as server:
        judge = served(server, concurrency=8)
        t0 = time.perf_counter()
        out = judge([t2i_sample(x) for x in range(2, 18)])
        took = time.perf_counter() - t0
    assert all(j.score == pytest.approx(0.5) for j in out)
    assert state["peak"] >= 6
    assert took < 16 * 0.2 / 2  # well under the sequential 3.2 s


def test_served_config_errors():
    with pytest.raises(RewardConfigError, match="model is required"):
        VLMServedJudge(config={})
    with pytest.raises(RewardConfigError, match="base_url must start with http"):
        VLMServedJudge(config={"model": "m", "base_url": "localhost:8000"})
    with pytest.raises(RewardConfigError, match="unknown option"):
        VLMServedJudge(config={"model": "m", "temprature": 0})
    with pytest.raises(RewardConfigError, match="unknown mode"):
        VLMServedJudge(config={"model": "m", "mode": "listwise"})
