"""The reader judge: a learned judge's Seen line with positions, judged by the world's rules
(``shapes_cot.rule_verdicts``, ``reader.ShapesReaderJudge``, pairwise ``verdicts="rules"``)."""

from pathlib import Path

import pytest

from qwenrl.rewards import RewardConfigError, Sample, build_judge, load_reward
from qwenrl.rewards.pairwise import PairwiseLocalJudge, pair_target
from qwenrl.rewards.reader import ShapesReaderJudge
from qwenrl.rewards.shapes_cot import read_answer, rule_verdicts, target_for
from qwenrl.world.prompt_sets import load_prompt_set
from qwenrl.world.scene import render
from tests.test_pairwise import ONLY_SQUARE, RED_LEFT, RED_RIGHT, RELATION

REPO = Path(__file__).resolve().parents[1]
JUDGE = REPO / "data" / "models" / "shapes-judge"


def _edit_samples(n=12):
    """Test-split edits, each rendered done right and left undone (the source image as the result)."""
    out = []
    for task in load_prompt_set("edit", "test", limit=n):
        out.append(Sample.from_spec(render(task.target), task))
        out.append(Sample.from_spec(render(task.source), task))
    return out


def test_rules_on_the_checkers_own_reading_give_the_checkers_verdicts():
    """An answer that reads the image exactly as the parser does (the training target with
    positions) gets the checker's verdicts back from the rules, pass or fail, for both tasks."""
    samples = [Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE)] + _edit_samples()
    for s in samples:
        t = target_for(s, positions=True)
        rules = rule_verdicts(read_answer(t.text), s.spec)
        assert rules is not None and rules.verdicts == t.verdicts and rules.passed == t.passed
        assert list(rules.requirements) == read_answer(t.text).requirements
    assert {s.spec.task for s in samples} == {"t2i", "edit"} and any(not target_for(s).passed for s in samples)


def test_an_answer_without_positions_has_no_reading_to_judge():
    t = target_for(Sample.from_spec(RED_LEFT, RELATION), positions=False)
    assert rule_verdicts(read_answer(t.text), RELATION) is None
    with pytest.raises(ValueError, match="T2IPrompt or EditTask"):
        rule_verdicts(read_answer(target_for(Sample.from_spec(RED_LEFT, RELATION), positions=True).text), {"text": "x"})


def _reader(monkeypatch, answer_for, **options):
    judge = build_judge("shapes_reader", name="reader", config={
        "model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics"), "rubric": "t2i", "mode": "cot", **options})
    asked = []

    def generate(self, samples):
        asked.append(len(samples))
        return [answer_for(s) for s in samples]

    monkeypatch.setattr(ShapesReaderJudge, "generate", generate)
    return judge, asked


def test_the_rules_decide_not_the_verdicts_the_answer_wrote(monkeypatch):
    """Right reading, wrong verdicts: the reader judge passes the image the rules pass and fails
    the one they fail, whatever the answer's own verdicts and score say; the answer's score is kept
    as a part, and failures rank by the share of requirements met, below every pass."""
    def contrary(s):
        t = target_for(s, positions=True)
        flipped = " ".join(f"({i}) {'not met' if v else 'met'}" for i, v in enumerate(t.verdicts, 1))
        lines = t.text.splitlines()
        return "\n".join(lines[:-2] + [flipped + ".", "Score: 3/10" if t.passed else "Score: 10/10"])

    judge, asked = _reader(monkeypatch, contrary, batch_size=2)
    left, right, square = (Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE))
    j_left, j_right, j_square = judge([left, right, square])
    assert asked == [2, 1]  # batched by batch_size
    assert j_left.score == 1.0 and j_left.parts == {"met": 1.0, "answer_score": pytest.approx(0.3)}
    assert "passes" in j_left.rationale and "(3) left of: met" in j_left.rationale and "Score: 3/10" in j_left.rationale
    # right of: the relation fails, 3 of 4 met; the square alone: the circle and the relation fail
    assert j_right.score == pytest.approx(0.9 * 3 / 4) and j_right.parts["answer_score"] == 1.0
    assert j_square.score == pytest.approx(0.9 * 2 / 4) and j_square.score < j_right.score < j_left.score
    assert judge.metrics["scored"] == 3


def test_unreadable_answers_and_samples_without_a_spec_get_no_score(monkeypatch):
    judge, _ = _reader(monkeypatch, lambda s: target_for(s, positions=False).text, fail_credit=0.0)
    no_spec = Sample(RED_LEFT, "a red circle left of a blue square")
    [unread, not_applicable] = judge([Sample.from_spec(RED_LEFT, RELATION), no_spec])
    assert unread.score is None and "no reading to judge" in unread.rationale and judge.metrics["unparsed"] == 1
    assert not_applicable.score is None and "does not apply" in not_applicable.rationale


@pytest.mark.parametrize("options, message", [
    ({"score_from": "expected"}, "score_from does not apply"),
    ({"pass_at": 10}, "pass_at does not apply"),
    ({"fail_credit": 1.0}, "fail_credit must be in"),
    ({"mode": "pointwise"}, "needs mode: cot"),
])
def test_reader_options_that_cannot_apply_are_refused(options, message):
    with pytest.raises(RewardConfigError, match=message):
        build_judge("shapes_reader", config={"model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics"), "rubric": "t2i",
                                             **options})


def test_the_bundled_judge_writes_no_positions_so_the_shipped_reader_yaml_needs_a_positions_judge(tmp_path):
    """The real transformers path end to end: the reader reward YAML pointed at the bundled judge
    (trained without positions) scores nothing and says why, rather than guessing."""
    import yaml

    cfg = yaml.safe_load((REPO / "training" / "configs" / "rewards" / "shapes_t2i_reader.yaml").read_text())
    cfg["components"]["judge"]["config"].update(model_path=str(JUDGE), rubric_dir=str(JUDGE / "rubrics"))
    path = tmp_path / "reader.yaml"
    path.write_text(yaml.safe_dump(cfg))
    reward = load_reward(path, cache=False)
    [j] = reward([Sample.from_spec(RED_LEFT, RELATION)])
    assert "judge" not in j.parts and "no reading to judge" in j.rationale
    assert j.parts["strict"] == 1.0 and j.score is not None  # the other parts still score


def _composed(monkeypatch, answer_for, verdicts):
    judge = PairwiseLocalJudge(JUDGE, mode="composed", verdicts=verdicts)
    monkeypatch.setattr(PairwiseLocalJudge, "_generate", lambda self, requests, n: [answer_for(im, text) for im, text in requests])
    monkeypatch.setattr(type(judge._local), "load", lambda self: None)
    return judge


def test_pairwise_rules_compare_the_two_readings_not_the_written_verdicts(monkeypatch):
    """Composed pairs with ``verdicts="rules"``: answers that read right but write every verdict
    'met' still give the pair target's winner; with ``verdicts="answer"`` they tie."""
    samples = {im.tobytes(): Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE)}

    def all_met(images, text):
        t = target_for(samples[images[-1].tobytes()], positions=True)
        lines = t.text.splitlines()
        return "\n".join(lines[:-2] + [" ".join(f"({i}) met" for i in range(1, len(t.verdicts) + 1)) + ".", "Score: 10/10"])

    left, right, square = (Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE))
    pairs = [(right, left), (left, square), (square, right)]
    by_rules = _composed(monkeypatch, all_met, "rules").compare(pairs)
    assert [v.winner for v in by_rules] == [pair_target(a, b, True).winner for a, b in pairs] == ["B", "A", "B"]
    assert all(v.rationale == pair_target(a, b, True).text for v, (a, b) in zip(by_rules, pairs))
    assert [v.winner for v in _composed(monkeypatch, all_met, "answer").compare(pairs)] == ["tie"] * 3


def test_pairwise_rules_refuse_what_they_cannot_judge(monkeypatch):
    no_positions = _composed(monkeypatch, lambda im, text: target_for(Sample.from_spec(im[-1], RELATION)).text, "rules")
    [v] = no_positions.compare([(Sample.from_spec(RED_LEFT, RELATION), Sample.from_spec(RED_RIGHT, RELATION))])
    assert v.winner is None and "no reading with positions" in v.rationale
    with pytest.raises(ValueError, match="Shapes-world spec"):
        no_positions.compare([(Sample(RED_LEFT, "a red circle"), Sample(RED_RIGHT, "a red circle"))])
    with pytest.raises(RewardConfigError, match="needs mode: composed"):
        PairwiseLocalJudge(JUDGE, mode="trained", verdicts="rules")
    with pytest.raises(RewardConfigError, match="verdicts must be one of"):
        PairwiseLocalJudge(JUDGE, verdicts="checker")


def test_the_bundled_positions_judge_reads_clean_renders_and_the_rules_decide():
    """The shipped reader YAMLs with the bundled positions judge, through transformers: on clean
    renders its reading is the parser's, so the rules pass what the checker passes and fail the
    rest, for text to image and for editing."""
    t2i = load_reward(REPO / "training" / "configs" / "rewards" / "shapes_t2i_reader.yaml", cache=False)
    samples = [Sample.from_spec(im, RELATION) for im in (RED_LEFT, RED_RIGHT, ONLY_SQUARE)]
    judged = t2i(samples)
    assert [j.parts["judge"] == 1.0 for j in judged] == [True, False, False]
    assert [j.parts["strict"] for j in judged] == [1.0, 0.0, 0.0]
    assert "Rules on what it saw" in judged[1].rationale and "left of: not met" in judged[1].rationale
    edit = load_reward(REPO / "training" / "configs" / "rewards" / "shapes_edit_reader.yaml", cache=False)
    edits = _edit_samples(6)
    judged = edit(edits)
    agree = [(j.parts["judge"] == 1.0) == bool(j.parts["strict"]) for j in judged]
    assert sum(agree) >= len(agree) - 1 and {j.parts["strict"] for j in judged} == {0.0, 1.0}


def test_reread_shapes_decides_blob_from_the_probabilities_in_scene_lines_only():
    from qwenrl.rewards.reader import reread_shapes

    ids_of = {"circle": 1, "square": 2, "triangle": 3, "blob": 4}
    tokens = [("Requirements", 10), (":", 11), (" one", 12), (" red", 13), (" circle", 1), (".", 14), ("\n", 15),
              ("Seen", 16), (":", 11), (" small", 17), (" red", 13), (" circle", 1), (";", 18), (" large", 19), (" blue", 20),
              (" blob", 4), (".", 14), ("\n", 15), ("(1)", 21), (" met", 22)]
    pieces, ids = [p for p, _ in tokens], [i for _, i in tokens]
    probs = [[0.0, 0.0, 0.0, 0.0]] * len(ids)
    probs[4] = [0.1, 0.0, 0.0, 0.9]    # the Requirements line: never re-read
    probs[11] = [0.5, 0.1, 0.1, 0.3]   # Seen: a circle, blob a 30% share
    probs[15] = [0.2, 0.4, 0.1, 0.3]   # Seen: a blob, blob a 30% share, square the likeliest shape
    assert reread_shapes(ids, pieces, probs, ids_of, 0.25) == ids[:11] + [4] + ids[12:]
    assert reread_shapes(ids, pieces, probs, ids_of, 0.5) == ids[:15] + [2] + ids[16:]
    assert reread_shapes(ids, pieces, probs[:10], ids_of, 0.25) == ids  # no probabilities there: as written


def test_blob_at_rereads_the_answers_before_the_rules(monkeypatch):
    """``blob_at``: the reader re-reads the Seen line from the judge's shape probabilities, so a
    shape the judge barely preferred over ``blob`` fails the prompt that needs it."""
    from qwenrl.rewards.reader import SHAPE_WORDS

    text = target_for(Sample.from_spec(RED_LEFT, RELATION), positions=True).text
    words = text.replace("\n", " \n ").split(" ")
    ids_of = {w: 100 + k for k, w in enumerate(SHAPE_WORDS)}
    vocab = {w: ids_of.get(w, 200 + k) for k, w in enumerate(dict.fromkeys(words))}
    inverse = {i: w for w, i in {**vocab, **ids_of}.items()}
    ids = [vocab[w] for w in words]
    pieces = [w if w == "\n" else " " + w for w in words]
    seen_circle = next(t for t, w in enumerate(words) if w == "circle" and "Seen:" in words[:t])
    probs = [[0.85 if w == shape else 0.05 for shape in SHAPE_WORDS] for w in words]  # sure of each word as written
    probs[seen_circle] = [0.6, 0.0, 0.0, 0.4]
    judge = build_judge("shapes_reader", name="reader", config={
        "model_path": str(JUDGE), "rubric_dir": str(JUDGE / "rubrics"), "rubric": "t2i", "blob_at": 0.35, "fail_credit": 0.0})
    monkeypatch.setattr(ShapesReaderJudge, "generate_with_shape_probs",
                        lambda self, samples: ([(ids, pieces, probs)] * len(samples), ids_of))
    monkeypatch.setattr(ShapesReaderJudge, "decode_ids", lambda self, row: " ".join(inverse[i] for i in row).replace(" \n ", "\n"))
    [j] = judge([Sample.from_spec(RED_LEFT, RELATION)])
    assert j.score == 0.0 and "small red blob" in j.rationale and "one red circle: not met" in j.rationale
    with pytest.raises(RewardConfigError, match="blob_at must be in"):
        build_judge("shapes_reader", config={"model_path": str(JUDGE), "rubric": "t2i", "blob_at": 1.0})
