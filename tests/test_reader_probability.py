"""The reader's pass probability: the readings the judge nearly wrote, judged by the rules
(``reader.seen_word_choices``, ``reader.pass_probability``, ``pass_at_probability``) and the
pairwise preference built on it (``pairwise.probability_winner``, ``probability_margin``)."""

from pathlib import Path

import pytest

from qwenrl.rewards import RewardConfigError, Sample, build_judge
from qwenrl.rewards.pairwise import PairwiseLocalJudge, pair_winner, probability_winner, read_pairwise
from qwenrl.rewards.reader import SHAPE_WORDS, ShapesReaderJudge, WordChoice, pass_probability, seen_word_choices
from qwenrl.rewards.shapes_cot import target_for
from tests.test_pairwise import ONLY_SQUARE, RED_LEFT, RED_RIGHT, RELATION

REPO = Path(__file__).resolve().parents[1]
JUDGE = REPO / "data" / "models" / "shapes-judge"
READER = REPO / "data" / "models" / "shapes-judge-reader"


def test_seen_word_choices_keep_seen_line_words_with_a_rival_above_the_floor():
    """Two groups (shapes 1–4, sizes 5–6), probabilities concatenated in that order: a word of the
    Requirements line is never a choice, a word without a rival above ``min_p`` is certain, and
    the written word comes first with its share of its own group."""
    tokens = [("Requirements", 10), (":", 11), (" circle", 1), ("\n", 15),
              ("Seen", 16), (":", 11), (" small", 5), (" circle", 1), (";", 18), (" large", 6), (" square", 2), ("\n", 15)]
    pieces, ids = [p for p, _ in tokens], [i for _, i in tokens]
    probs = [[0.0] * 6 for _ in ids]
    probs[2] = [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]     # Requirements: not a reading
    probs[6] = [0.0, 0.0, 0.0, 0.0, 0.9, 0.1]     # small, large a 10% rival
    probs[7] = [0.3, 0.3, 0.0, 0.0, 0.0, 0.0]     # circle / square at even odds, renormalised to 0.5 each
    probs[9] = [0.0, 0.0, 0.0, 0.0, 0.01, 0.99]   # large, small under the floor: certain
    probs[10] = [0.05, 0.6, 0.01, 0.0, 0.0, 0.0]  # square; circle a rival, triangle under the floor
    choices = seen_word_choices(ids, pieces, probs, [[1, 2, 3, 4], [5, 6]], min_p=0.02)
    assert [c.position for c in choices] == [6, 7, 10]
    assert choices[0].options == ((5, pytest.approx(0.9)), (6, pytest.approx(0.1)))
    assert choices[1].options == ((1, pytest.approx(0.5)), (2, pytest.approx(0.5)))
    assert [t for t, _ in choices[2].options] == [2, 1]
    assert choices[2].options[1][1] == pytest.approx(0.05 / 0.66)
    assert seen_word_choices(ids, pieces, probs[:5], [[1, 2, 3, 4], [5, 6]], 0.02) == []  # no probabilities there


def test_pass_probability_sums_the_passing_readings_by_hand():
    """Words at positions 0 and 1; the rules pass only the reading (7, 9). P(pass) = 0.7 × 0.6 =
    0.42 over 4 readings; with room for 2 readings only the least sure word (0.6) is opened and the
    other keeps its written word: P = 0.6."""
    choices = [WordChoice(0, ((7, 0.7), (8, 0.3))), WordChoice(1, ((9, 0.6), (10, 0.4)))]
    seen = []

    def passes(ids):
        seen.append(tuple(ids))
        return ids == [7, 9]

    assert pass_probability([7, 9], choices, passes) == (pytest.approx(0.42), 4)
    assert sorted(seen) == [(7, 9), (7, 10), (8, 9), (8, 10)]
    assert pass_probability([7, 9], choices, passes, max_readings=2) == (pytest.approx(0.6), 2)
    assert pass_probability([7, 9], [], passes) == (1.0, 1)   # certain: the greedy reading's pass
    assert pass_probability([8, 9], [], passes) == (0.0, 1)


def test_probability_winner_prefers_the_likelier_pass_beyond_the_margin():
    both_pass, one_fails = (True, True), (True, False)
    assert probability_winner(0.95, 0.6, both_pass, both_pass) == "A"
    assert probability_winner(0.2, 0.9, both_pass, one_fails) == "B"  # the probabilities decide, not the greedy verdicts
    assert probability_winner(0.95, 0.9, both_pass, both_pass, margin=0.1) == "tie" == pair_winner(both_pass, both_pass)
    assert probability_winner(0.5, 0.5, both_pass, one_fails) == "A"


def _probed_reader(monkeypatch, circle_probs, **options):
    """The reader with its generation replaced: the training target of each sample, written as
    tokens, with the Seen line's circle at ``circle_probs`` over (circle, square, triangle, blob)."""
    judge = build_judge("shapes_reader", name="reader", config={
        "model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics"), "rubric": "t2i", "fail_credit": 0.0,
        "pass_probability": ["shape"], **options})
    ids_of = {w: 100 + k for k, w in enumerate(SHAPE_WORDS)}
    vocab, inverse = {}, {i: w for w, i in ids_of.items()}

    def encode(text):
        words = text.replace("\n", " \n ").split(" ")
        for w in words:
            if w not in ids_of and w not in vocab:
                vocab[w] = 200 + len(vocab)
                inverse[vocab[w]] = w
        ids = [ids_of.get(w, vocab.get(w)) for w in words]
        pieces = [w if w == "\n" else " " + w for w in words]
        probs = [[0.97 if w == shape else 0.01 for shape in SHAPE_WORDS] for w in words]
        seen = next(t for t, w in enumerate(words) if w == "circle" and "Seen:" in words[:t])
        probs[seen] = circle_probs
        return ids, pieces, probs

    monkeypatch.setattr(ShapesReaderJudge, "generate_with_word_probs",
                        lambda self, samples, groups: ([encode(target_for(s, positions=True).text) for s in samples],
                                                       [[ids_of[w] for w in SHAPE_WORDS]]))
    monkeypatch.setattr(ShapesReaderJudge, "decode_ids", lambda self, row: " ".join(inverse[i] for i in row).replace(" \n ", "\n"))
    return judge


def test_the_reader_reports_p_pass_and_can_pass_by_it(monkeypatch):
    """The Seen line's circle at 60% circle / 40% square: P(pass) = 0.6 on the image that passes
    (the square reading fails 'one red circle'); the greedy reading decides by default, and
    ``pass_at_probability`` 0.7 fails it."""
    sample = Sample.from_spec(RED_LEFT, RELATION)
    [j] = _probed_reader(monkeypatch, [0.6, 0.4, 0.0, 0.0])([sample])
    assert j.score == 1.0 and j.parts["p_pass"] == pytest.approx(0.6)
    assert "Pass probability over the readings it nearly wrote: 0.600" in j.rationale
    [strict] = _probed_reader(monkeypatch, [0.6, 0.4, 0.0, 0.0], pass_at_probability=0.7)([sample])
    assert strict.score == 0.0 and strict.parts["p_pass"] == pytest.approx(0.6) and "fails" in strict.rationale
    # a failing image: no reading it nearly wrote passes
    [wrong] = _probed_reader(monkeypatch, [0.6, 0.4, 0.0, 0.0])([Sample.from_spec(RED_RIGHT, RELATION)])
    assert wrong.score == 0.0 and wrong.parts["p_pass"] == 0.0
    # probability_score: the score is P(pass) itself, the pass still the greedy reading's
    [soft] = _probed_reader(monkeypatch, [0.6, 0.4, 0.0, 0.0], probability_score=True)([sample])
    assert soft.score == pytest.approx(0.6) and "passes" in soft.rationale
    [surer] = _probed_reader(monkeypatch, [0.9, 0.1, 0.0, 0.0], probability_score=True)([sample])
    assert surer.score == pytest.approx(0.9) and surer.score > soft.score


@pytest.mark.parametrize("options, message", [
    ({"pass_probability": ["texture"]}, "unknown word group 'texture'"),
    ({"pass_at_probability": 0.5}, "needs pass_probability"),
    ({"pass_probability": ["shape"], "pass_at_probability": 1.5}, "pass_at_probability must be in"),
    ({"pass_probability": ["shape"], "blob_at": 0.3}, "set one of them"),
    ({"pass_probability": ["shape"], "probability_min": 0.7}, "probability_min must be in"),
    ({"probability_score": True, "fail_credit": 0.0}, "probability_score needs pass_probability"),
    ({"pass_probability": ["shape"], "probability_score": True}, "set fail_credit: 0"),
])
def test_pass_probability_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(RewardConfigError, match=message):
        build_judge("shapes_reader", config={"model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics"), "rubric": "t2i",
                                             **options})


def test_probability_margin_is_refused_where_it_cannot_apply():
    with pytest.raises(RewardConfigError, match="needs verdicts: rules"):
        PairwiseLocalJudge(JUDGE, probability_margin=0.0)
    with pytest.raises(RewardConfigError, match="probability_margin must be in"):
        PairwiseLocalJudge(JUDGE, verdicts="rules", probability_margin=1.0)
    with pytest.raises(RewardConfigError, match="unknown word group"):
        PairwiseLocalJudge(JUDGE, verdicts="rules", probability_margin=0.0, probability_words=("number",))


def test_the_shipped_reader_with_pass_probability_on_clean_renders():
    """The real transformers path: the shipped reader judge is sure of clean renders, so P(pass) is
    near 1 where the checker passes and near 0 where it fails; pairwise with a margin it picks the
    passing image and writes both probabilities in its answer."""
    judge = build_judge("shapes_reader", name="reader", config={
        "model_path": str(READER), "rubric_dir": str(READER / "rubrics"), "rubric": "t2i", "pass_probability": ["shape", "colour"]})
    left, right, square = (Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE))
    p = [j.parts["p_pass"] for j in judge([left, right, square])]
    assert p[0] > 0.9 and p[1] < 0.1 and p[2] < 0.1
    pairwise = PairwiseLocalJudge(READER, verdicts="rules", probability_margin=0.0, name="reader")
    verdicts = pairwise.compare([(right, left), (left, square)])
    assert [v.winner for v in verdicts] == ["B", "A"]
    assert all("Pass probability: A " in v.rationale and read_pairwise(v.rationale).winner == v.winner for v in verdicts)


def test_the_win_rate_reward_takes_the_probability_margin():
    """``pairwise_winrate`` with ``probability_margin``: in a group of one passing and two failing
    clean renders, the passing image wins both comparisons; between the two failures (both
    P(pass) near 0) the greedy verdicts decide: 3 of 4 requirements met beats 2 of 4."""
    reward = build_judge("pairwise_winrate", name="pair", config={
        "model_path": str(READER), "verdicts": "rules", "probability_margin": 0.0, "max_pairs": 3})
    left, right, square = (Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE))
    assert [j.score for j in reward([left, right, square])] == [1.0, 0.5, 0.0]
    with pytest.raises(RewardConfigError, match="needs verdicts: rules"):
        build_judge("pairwise_winrate", config={"model_path": str(READER), "probability_margin": 0.0})
