"""Pairwise judging: the answer format, strict reading, the group win-rate reward, and the
expected score from the score token's probabilities."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from qwenrl.rewards import RewardConfigError, Sample
from qwenrl.rewards.cache import RewardCache, judge_cached
from qwenrl.rewards.pairwise import (
    PairVerdict,
    PairwiseLocalJudge,
    choose_pairs,
    group_key,
    pair_answer_text,
    pair_target,
    pair_winner,
    read_pairwise,
    win_rates,
)
from qwenrl.rewards.vlm import expected_score
from qwenrl.world.grammar import T2IPrompt
from qwenrl.world.scene import Obj, Scene, render

REPO = Path(__file__).resolve().parents[1]
RELATION = T2IPrompt("a red circle left of a blue square", "position", {
    "objects": [{"color": "red", "shape": "circle", "count": 1}, {"color": "blue", "shape": "square", "count": 1}],
    "relation": {"a": 0, "rel": "left of", "b": 1}, "background": None})
RED_LEFT = render(Scene("white", (Obj("circle", "red", "small", 3, 10), Obj("square", "blue", "large", 16, 8))))
RED_RIGHT = render(Scene("white", (Obj("circle", "red", "small", 20, 10), Obj("square", "blue", "large", 2, 8))))
ONLY_SQUARE = render(Scene("white", (Obj("square", "blue", "large", 16, 8),)))


def test_winner_rule():
    assert pair_winner([True, True], [True, False]) == "A"
    assert pair_winner([False, True, True], [True, True, True]) == "B"
    assert pair_winner([True, True], [True, True]) == "tie"
    assert pair_winner([False, True, False], [True, False, False]) == "tie"  # both fail, one met each
    assert pair_winner([False, True, True], [True, False, False]) == "A"  # both fail, more met wins


def test_pair_target_is_the_checkers_and_reads_back():
    right, wrong = Sample.from_spec(RED_LEFT, RELATION), Sample.from_spec(RED_RIGHT, RELATION)
    t = pair_target(wrong, right)
    assert t.winner == "B" and t.passed == (False, True)
    assert t.text.splitlines()[0] == "Requirements: (1) one red circle (2) one blue square (3) left of (4) nothing else."
    assert t.text.splitlines()[1:] == [
        "A: Seen: small red circle; large blue square; on white. (1) met (2) met (3) not met (4) met.",
        "B: Seen: small red circle; large blue square; on white. (1) met (2) met (3) met (4) met.",
        "Better: B"]
    r = read_pairwise(t.text)
    assert r.winner == "B" and r.verdicts_a == [True, True, False, True] and r.consistent
    assert pair_target(right, Sample.from_spec(RED_LEFT, RELATION)).winner == "tie"
    # both fail: the one missing an object has fewer requirements met
    assert pair_target(Sample.from_spec(ONLY_SQUARE, RELATION), wrong).winner == "B"


@pytest.mark.parametrize("text, problem", [
    ("", "no 'Better"),
    ("A: (1) met.\nB: (1) not met.", "no 'Better"),
    ("Better: A\nBetter: B", "2 'Better:' lines"),
    ("Better: A\nbecause it is nicer", "text after"),
    ("Better: C", "not A, B or tie"),
    ("Better: A or B", "no 'Better"),
])
def test_malformed_pairwise_answers_are_refused(text, problem):
    r = read_pairwise(text)
    assert r.winner is None and any(problem in p for p in r.problems), r.problems


def test_pairwise_answers_parse():
    assert read_pairwise("Better: tie").winner == "tie"
    assert read_pairwise("Requirements: (1) x.\nA: (1) met.\nB: (1) met.\nBetter: Tie\n").winner == "tie"
    r = read_pairwise(pair_answer_text(["one red circle", "nothing else"], [True, False], [True, True]))
    assert r.winner == "B" and r.consistent
    assert read_pairwise("A: (1) met.\nB: (1) not met.\nBetter: B").consistent is False  # read, but not what the verdicts say


def test_expected_score_by_hand():
    assert expected_score({7: 0.5, 9: 0.25, 10: 0.25}) == pytest.approx((3.5 + 2.25 + 2.5) / 10)
    assert expected_score({7: 0.2, 8: 0.2}) == pytest.approx(0.75)  # renormalised over the scores given
    assert expected_score({3: 0.0}) is None


def _samples(images, prompt=RELATION):
    return [Sample.from_spec(im, prompt) for im in images]


def _brightness_judge(calls):
    """A fake pairwise judge: the brighter image wins (ties when equal), counting its calls."""
    def compare(pairs):
        calls.append(len(pairs))
        out = []
        for a, b in pairs:
            ma, mb = float(a.image.mean()), float(b.image.mean())
            out.append(PairVerdict("A" if ma > mb else "B" if mb > ma else "tie", "fake", "fake"))
        return out
    return compare


def test_win_rates_are_group_relative():
    calls = []
    dark = (RED_LEFT * 0.5).astype(np.uint8)
    samples = _samples([RED_LEFT, dark, RED_RIGHT]) + _samples([ONLY_SQUARE, ONLY_SQUARE], T2IPrompt.from_dict(
        {"text": "a blue square", "family": "single", "spec": {"objects": [{"color": "blue", "shape": "square", "count": 1}],
                                                               "relation": None, "background": None}}))
    rates = win_rates(samples, _brightness_judge(calls), max_pairs=10)
    r = [x[0] for x in rates]
    assert r[1] == 0.0 and r[0] > 0 and r[2] > 0 and r[0] + r[1] + r[2] == pytest.approx(1.5)  # 3 pairs, one point each
    assert r[3] == r[4] == 0.5  # identical samples of one group: equal, and no call made for them
    assert calls == [6]  # the first group's 3 pairs in both orders; the second group asked nothing
    assert group_key(samples[0]) == group_key(samples[2]) != group_key(samples[3])


def test_identical_samples_get_equal_rewards_even_from_a_side_biased_judge():
    def always_a(pairs):
        return [PairVerdict("A", "A is first", "biased") for _ in pairs]
    imgs = [RED_LEFT, RED_RIGHT, ONLY_SQUARE, (RED_LEFT * 0.9).astype(np.uint8)]
    rates = [x[0] for x in win_rates(_samples(imgs), always_a, max_pairs=10, both_orders=True)]
    assert rates == [0.5] * 4  # each pair judged both ways: the side preference cancels
    one_way = [x[0] for x in win_rates(_samples(imgs), always_a, max_pairs=10, both_orders=False)]
    assert one_way != [0.5] * 4


def test_unreadable_verdicts_are_left_out_and_a_lone_sample_gets_none():
    def unreadable(pairs):
        return [PairVerdict(None, "garbled", "x") for _ in pairs]
    rates = win_rates(_samples([RED_LEFT, RED_RIGHT]), unreadable, max_pairs=4)
    assert [r[0] for r in rates] == [None, None] and "unreadable" in rates[0][2][0]
    assert win_rates(_samples([RED_LEFT]), unreadable, max_pairs=4)[0][0] is None


def test_pairs_are_capped_and_spread():
    assert len(choose_pairs(4, 100, 0)) == 6
    chosen = choose_pairs(8, 8, seed=3)
    assert len(chosen) == 8 and len(set(chosen)) == 8 and all(i < j for i, j in chosen)
    counts = np.bincount(np.array(chosen).ravel(), minlength=8)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 2
    assert chosen == choose_pairs(8, 8, seed=3)


def test_a_group_relative_judge_is_never_cached(monkeypatch):
    from qwenrl.rewards.pairwise import PairwiseWinRate

    judge = PairwiseWinRate.__new__(PairwiseWinRate)  # no model: only the caching rule is under test
    seen = []
    monkeypatch.setattr(PairwiseWinRate, "__call__", lambda self, samples: seen.append(len(samples)) or [None] * len(samples))
    batch = _samples([RED_LEFT, RED_LEFT, RED_RIGHT])
    judge_cached(judge, batch, RewardCache(max_items=10))
    judge_cached(judge, batch, RewardCache(max_items=10))
    assert seen == [3, 3]  # the whole batch, duplicates included, every time


def test_a_judge_without_pair_rubrics_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "old-judge"
    shutil.copytree(REPO / "data" / "models" / "shapes-judge", folder)
    for name in ("pair_t2i.txt", "pair_edit.txt", "format_pairwise.txt"):
        (folder / "rubrics" / name).unlink(missing_ok=True)
    with pytest.raises(RewardConfigError, match="trained before the pairwise mode"):
        PairwiseLocalJudge(folder)


def test_expected_score_reads_the_distribution_where_the_score_is_written(monkeypatch):
    """The judge's expected score comes from the score token's probabilities at the position of
    the written score: a forced generation with a known distribution gives the hand-computed mean."""
    import torch

    from qwenrl.rewards import vlm
    from qwenrl.rewards.base import build_judge

    folder = REPO / "data" / "models" / "shapes-judge"
    judge = build_judge("vlm_local", name="judge", config={
        "model_path": str(folder), "rubric_dir": str(folder / "rubrics"), "rubric": "t2i", "mode": "cot",
        "max_new_tokens": 112, "score_from": "expected", "dtype": "float32"})
    judge.load()
    tok = judge._processor.tokenizer
    answer = "Requirements: (1) one red square (2) nothing else.\nSeen: nothing on white.\n(1) not met (2) met.\nScore: 7/10"
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    values = vlm.score_token_values(tok)
    watch = sorted(values)
    at = vlm.score_position(tok, ids, values)
    assert tok.decode(ids[at:at + 1]).strip() == "7" and tok.decode(ids[:at]).endswith("Score:")
    probs = [np.zeros((1, len(watch))) for _ in ids]
    for v, p in {7: 0.5, 9: 0.25, 10: 0.25}.items():
        probs[at][0, watch.index(next(t for t in watch if values[t] == v))] = p * 0.8  # 0.2 elsewhere in the vocabulary
    monkeypatch.setattr(vlm, "generate_token_ids", lambda *a, **k: (torch.tensor([ids]), probs))
    image = render(Scene("white", ()))
    [j] = judge([Sample(image, "a red square")])
    assert j.parts["greedy"] == pytest.approx(0.7) and j.score == pytest.approx(0.825) == j.parts["expected"]
    assert "Expected score" in j.rationale
    # an answer without a score stays unscored, whatever the probabilities
    monkeypatch.setattr(vlm, "generate_token_ids", lambda *a, **k: (torch.tensor([ids[:at]]), probs[:at]))
    assert judge([Sample(image, "a red square")])[0].score is None
    with pytest.raises(RewardConfigError, match="score_from"):
        build_judge("vlm_local", name="judge", config={"model_path": str(folder), "score_from": "mean"})


def _composed_judge(tmp_path, monkeypatch, answer_for):
    """The bundled judge folder (with the pair rubrics) in composed mode, its model replaced by
    ``answer_for(images, text) -> answer``; returns the judge and the list of requests it got."""
    judge = PairwiseLocalJudge(REPO / "data" / "models" / "shapes-judge", mode="composed")
    asked = []

    def generate(self, requests, max_new_tokens):
        asked.extend(requests)
        return [answer_for(images, text) for images, text in requests]

    monkeypatch.setattr(PairwiseLocalJudge, "_generate", generate)
    monkeypatch.setattr(type(judge._local), "load", lambda self: None)
    return judge, asked


@pytest.mark.parametrize("positions", [False, True])
def test_composed_mode_writes_the_trained_comparison_from_two_pointwise_answers(tmp_path, monkeypatch, positions):
    """Composed: each image judged alone with the pointwise rubric, once per distinct image; when
    each answer is the checker's (with or without object positions), the comparison is exactly
    the pair target."""
    from qwenrl.rewards.shapes_cot import target_for

    samples = {im.tobytes(): Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE)}
    judge, asked = _composed_judge(tmp_path, monkeypatch,
                                   lambda images, text: target_for(samples[images[-1].tobytes()], positions).text)
    left, right, square = (Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE))
    verdicts = judge.compare([(right, left), (left, square), (square, right), (left, right)])
    assert len(asked) == 3 and all(text.startswith('Prompt: "a red circle left of a blue square"') for _, text in asked)
    for v, (a, b) in zip(verdicts, [(right, left), (left, square), (square, right), (left, right)]):
        t = pair_target(a, b, positions)
        assert v.winner == t.winner and v.rationale == t.text
        assert (" at " in t.text) == positions
    assert [v.winner for v in verdicts] == ["B", "A", "B", "A"]


def test_composed_mode_refuses_answers_it_cannot_line_up(tmp_path, monkeypatch):
    judge, _ = _composed_judge(tmp_path, monkeypatch, lambda images, text: "Score: 10/10")
    [v] = judge.compare([(Sample.from_spec(RED_LEFT, RELATION), Sample.from_spec(RED_RIGHT, RELATION))])
    assert v.winner is None and "cannot be compared" in v.rationale and judge.metrics["unparsed"] == 1
    with pytest.raises(RewardConfigError, match="mode must be one of"):
        PairwiseLocalJudge(REPO / "data" / "models" / "shapes-judge", mode="both")


def test_the_shipped_pairwise_reward_runs_the_bundled_judge_group_by_group():
    """training/configs/rewards/shapes_t2i_pairwise.yaml end to end with the bundled judge: every
    sample of a group gets a win rate, identical samples the same one, and a lone sample none."""
    from qwenrl.rewards import load_reward

    reward = load_reward(REPO / "training" / "configs" / "rewards" / "shapes_t2i_pairwise.yaml")
    group = _samples([RED_LEFT, RED_LEFT, RED_RIGHT, ONLY_SQUARE])
    alone = _samples([RED_LEFT], T2IPrompt.from_dict({"text": "a red circle", "family": "single", "spec": {
        "objects": [{"color": "red", "shape": "circle", "count": 1}], "relation": None, "background": None}}))
    judged = reward(group + alone)
    rates = [j.parts.get("pairwise") for j in judged]
    assert all(r is not None and 0.0 <= r <= 1.0 for r in rates[:4]) and rates[0] == rates[1]
    counted = [j.parts["pairwise/comparisons"] for j in judged[:4]]
    # every counted comparison hands out one point between its two samples (an unreadable one is left out)
    assert sum(r * n for r, n in zip(rates[:4], counted)) == pytest.approx(sum(counted) / 2) and sum(counted) > 0
    assert "win rate" in judged[2].rationale and judged[4].parts.get("pairwise") is None
    assert {"judge", "strict"} <= set(judged[0].parts)
