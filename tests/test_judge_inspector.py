"""The learned judge in the studio: the gallery worker stores its verdicts beside the
programmatic ones, and the reward inspector shows both rationales, filters to where the judge
and the exact checker disagree, and counts judge–checker agreement next to judge–human."""

from __future__ import annotations

import pytest

from app import inspector
from app.learned_judge import judge_model, reward_name
from tests.studio_support import POOL_SIZE, filled_workspace, tiny_models  # noqa: F401


def composite_text(judge_score: float | None, strict: float) -> str:
    """A learned-judge composite rationale as ``CompositeReward`` writes it."""
    judge = ("[judge] no score, weight 0.6, left out: judge: no score (no 'Score: x/10' line). Raw answer:\n    Seen: nothing"
             if judge_score is None else
             f"[judge] {judge_score:.3f}, weight 0.6 (share 0.60): judge (cot, rubric t2i): {judge_score * 10:g}/10.\n"
             f"    Requirements: (1) one red circle (2) nothing else.\n    Score: {judge_score * 10:g}/10")
    return (f"shapes_t2i_vlm = 0.800, weighted mean of 3 of 4 components (default weights).\n{judge}\n"
            f"[aesthetics] 0.900, weight 0.2 (share 0.20): Colour purity 1.00.\n"
            f"[strict] {strict:.3f}, weight 0: Strict check: (1) exactly 1 red circle: met. The image passes.")


@pytest.fixture(scope="module")
def judged(filled_workspace):
    """tiny-a's four t2i samples given learned-judge verdicts of each kind (other tests in this
    module may judge tiny-b's, so the checks below look at tiny-a's)."""
    ws = filled_workspace
    samples = [s for s in ws.showcase_samples("t2i") if s["model"] == "tiny-a"]  # what the inspector shows
    assert len(samples) == POOL_SIZE == 4
    cases = [(1.0, 0.0), (0.4, 1.0), (1.0, 1.0), (None, 1.0)]  # (judge score, strict)
    for s, (score, strict) in zip(samples, cases):
        parts = {"strict": strict, "aesthetics": 0.9} | ({"judge": score} if score is not None else {})
        ws.store.add_judgement(s["id"], reward_name("t2i"), 0.8, parts=parts, rationale=composite_text(score, strict))
    return ws, [s["id"] for s in samples]


def test_disagreement_filters(judged):
    ws, ids = judged
    def found(which: str) -> set[int]:
        return {r["sample_id"] for r in inspector.samples_table(ws, "t2i", model="tiny-a", verdict=which, limit=1000)}

    assert found("judge passes, checker fails") == {ids[0]}
    assert found("judge fails, checker passes") == {ids[1], ids[3]}  # an unparsed answer does not pass
    assert found("judge and checker disagree") == {ids[0], ids[1], ids[3]}
    assert found("judge and checker agree") == {ids[2]}
    assert len(inspector.samples_table(ws, "t2i", limit=1000)) == 3 * POOL_SIZE  # unjudged ones show without the filter
    with pytest.raises(ValueError, match="unknown filter"):
        inspector.samples_table(ws, "t2i", verdict="judge is wrong")


def test_detail_shows_both_rationales(judged):
    ws, ids = judged
    d = inspector.sample_detail(ws, ids[0])
    assert d["learned_rationale"].startswith("1.000, weight 0.6") and "Requirements: (1) one red circle" in d["learned_rationale"]
    assert d["checker_rationale"].startswith("0.000, weight 0: Strict check")
    firmness = inspector.one_pixel(d)  # whether one rim pixel turns the checker's verdict over, shown under its rationale
    assert firmness.startswith("One pixel: ") and ("pass" in firmness) == inspector.checker_verdict(ws, ids[0])["passed"]
    assert inspector.one_pixel(None) is None and inspector.one_pixel({**d, "spec": None}) is None
    assert d["verdicts"] == {"judge_score": 1.0, "judge_pass": True, "checker_pass": False}
    assert d["rationale"].startswith("shapes_t2i =")  # the programmatic composite stays the main judgement
    unjudged = inspector.sample_detail(ws, next(s["id"] for s in ws.showcase_samples("t2i") if s["model"] == "tiny-c"))
    assert "has not judged this sample" in unjudged["learned_rationale"] and "Strict check" in unjudged["checker_rationale"]


def test_judge_checker_agreement_counts(judged):
    ws, _ = judged
    result = inspector.judge_checker_agreement(ws, "t2i")
    mine = result["tiny-a"]
    assert (mine["judged"], mine["agree"]) == (4, 1)
    assert mine["judge passes, checker fails"] == 1 and mine["judge fails, checker passes"] == 2
    rows = {r[0]: r for r in inspector.checker_agreement_rows(result)}
    assert rows["tiny-a"] == ["tiny-a", 4, 1, 1, 2, "25%"]
    assert rows["all models"][1] == sum(r[1] for name, r in rows.items() if name != "all models")


def test_the_gallery_worker_runs_the_committed_judge(filled_workspace):
    ws = filled_workspace
    n = judge_model(ws, "tiny-b", log=lambda m: None)
    assert n == 2 * 2 * POOL_SIZE  # both tasks, the arena's images and the inspector's showcase ones
    for task in ("t2i", "edit"):
        stored = {j["sample_id"]: j for j in ws.store.judgements(judge=reward_name(task))}
        mine = [s for s in ws.gallery_samples(task) if s["model"] == "tiny-b"]
        for s in mine:
            j = stored[s["id"]]
            assert "strict" in j["parts"] and "[judge]" in j["rationale"]
            v = inspector.verdicts_of(j)
            assert v is not None and v["checker_pass"] == (j["parts"]["strict"] == 1.0)
    assert judge_model(ws, "tiny-b", log=lambda m: None) == 0  # nothing left to judge
