"""The learned judge's automatic arena in the studio: its votes get their own leaderboard view
("learned", in the service, over REST and in the Leaderboard tab), and the reward inspector lists
its battles with the judge's answer, the exact checker's verdict on each image, and how often the
judge agrees with the checker and with people on the same pairs.

The workspace is filled with tiny random models; tiny-a's text-to-image arena images are then
replaced by scenes that satisfy their prompts (so it passes the checker where the others fail),
and the pairwise judge is a stand-in that writes the checker's own answer, the same answer with
the sides swapped, a tie, or an unreadable line, in turn (the model is never run)."""

from __future__ import annotations


import gradio as gr
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import inspector
from app.api import create_api
from app.auth import AdminAuth
from app.autojudge import run_auto_arena
from app.errors import ArenaError
from app.service import VOTE_FILTERS, ArenaService
from app.tabs.common import Studio
from app.tabs import inspector as inspector_tab
from app.tabs.inspector import ADMIN_ONLY, pairwise_layout
from app.tabs.leaderboard import chosen_text, vote_choices
from qwenrl.imageio import save_png
from qwenrl.world.grammar import scene_for_prompt
from qwenrl.world.scene import render
from tests.studio_support import REPO, filled_workspace, tiny_models  # noqa: F401

LEARNED_BATTLES = 16  # every fourth answer is unreadable: 12 votes
ORACLE_BATTLES = 5
READER_BATTLES = 6  # the reader's stand-in writes the checker's own answer: 6 votes
PASSWORD = "pairwise-admin"


def swapped(text: str) -> tuple[str, str]:
    """A pairwise answer with its A and B lines swapped, and the winner that follows."""
    lines = text.splitlines()
    a, b, better = lines[1], lines[2], lines[3].split(":", 1)[1].strip()
    winner = {"A": "B", "B": "A"}.get(better, better)
    return "\n".join([lines[0], "A:" + b[2:], "B:" + a[2:], f"Better: {winner}"]), winner


@pytest.fixture(scope="module")
def arena(filled_workspace):
    """The filled workspace after a learned-judge arena (t2i), an oracle arena, and human votes
    on three of the learned judge's pairs (one of them twice) and on one pair it never judged.
    Returns the workspace and what the stand-in judge answered, in order, with the checker's truth."""
    from qwenrl.rewards.pairwise import PairVerdict, PairwiseLocalJudge, pair_target

    ws = filled_workspace
    rng = np.random.default_rng(0)
    for s in ws.arena_samples("t2i"):
        if s["model"] == "tiny-a":  # tiny-a draws every prompt right
            save_png(render(scene_for_prompt(ws.pool_item(s["prompt_id"]).spec(), rng)), ws.root / s["image_path"])
    answers: list[dict] = []

    def compare(self, pairs):
        out = []
        for k, (a, b) in enumerate(pairs):
            if k % 4 == 3:
                out.append(PairVerdict(None, "Better: maybe", "learned"))
                continue
            t = pair_target(a, b)
            kind = ("checker", "swapped", "tie")[k % 4]
            if kind == "checker":  # the checker's own answer
                text, winner = t.text, t.winner
            elif kind == "swapped":  # the sides swapped: wrong wherever they differ
                text, winner = swapped(t.text)
            else:  # a tie, whatever the verdicts say
                text, winner = t.text.rsplit("Better:", 1)[0] + "Better: tie", "tie"
            answers.append({"text": text, "winner": winner, "passed": t.passed, "kind": kind})
            out.append(PairVerdict(winner, text, "learned"))
        return out

    folder = REPO / "data" / "models" / "shapes-judge"  # it has the pairwise rubrics (its model is never run here)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PairwiseLocalJudge, "compare", compare)
        run_auto_arena(ws, task="t2i", judge=f"learned:{folder}", battles=LEARNED_BATTLES, seed=3)
    run_auto_arena(ws, task="t2i", judge="oracle", battles=ORACLE_BATTLES, seed=5)

    def read_by_rules(self, pairs):  # the reader's stand-in: the rules on a perfect reading are the checker's
        return [PairVerdict(pair_target(a, b).winner, pair_target(a, b).text, "reader") for a, b in pairs]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PairwiseLocalJudge, "compare", read_by_rules)
        run_auto_arena(ws, task="t2i", judge=f"reader:{REPO / 'data' / 'models' / 'shapes-judge-positions'}",
                       battles=READER_BATTLES, seed=7)
    before_people = inspector.pairwise_agreement(ws, "t2i")

    battles = inspector.pairwise_battles(ws, "t2i")
    pair_count: dict[frozenset, int] = {}
    for b in battles:
        key = frozenset((b["sample_a"], b["sample_b"]))
        pair_count[key] = pair_count.get(key, 0) + 1
    decisive = [b for b in battles if b["winner"] in ("model_a", "model_b")
                and pair_count[frozenset((b["sample_a"], b["sample_b"]))] == 1]
    assert len(decisive) >= 3, "the stand-in judge picked a side on too few distinct pairs"
    loser = {"model_a": "model_b", "model_b": "model_a"}

    def human(a: int, b: int, winner: str) -> None:
        battle = ws.store.create_battle(a, b, voter="alice")
        ws.store.record_vote(battle["id"], winner, voter="alice")

    first, second, third = decisive[:3]
    human(first["sample_a"], first["sample_b"], first["winner"])  # agrees
    human(first["sample_a"], first["sample_b"], "tie")  # a human tie: not compared
    human(second["sample_b"], second["sample_a"], loser[second["winner"]])  # agrees, the sides the other way round
    human(third["sample_a"], third["sample_b"], loser[third["winner"]])  # disagrees
    judged = set(pair_count)
    by_prompt: dict[int, list[dict]] = {}
    for s in ws.arena_samples("t2i"):
        by_prompt.setdefault(s["prompt_id"], []).append(s)
    elsewhere = next((a, b) for group in by_prompt.values() for a in group for b in group
                     if a["model"] < b["model"] and frozenset((a["id"], b["id"])) not in judged)
    human(elsewhere[0]["id"], elsewhere[1]["id"], "model_a")  # a pair the judge never saw
    return ws, answers, before_people


def test_learned_votes_have_their_own_board(arena):
    ws, answers, _ = arena
    service = ArenaService(ws, seed=0, min_votes=0)
    learned = ws.votes_frame("t2i", "learned")
    assert len(learned) == len(answers) == 12 and set(learned["judge"]) == {"learned"}
    assert service.leaderboard("t2i", "learned").votes == 12
    assert service.leaderboard("t2i", "auto").votes == 12 + ORACLE_BATTLES + READER_BATTLES  # "auto": every automatic judge
    assert service.leaderboard("t2i", "human").votes == 5 and set(ws.votes_frame("t2i", "human")["judge"]) == {"human"}
    assert service.leaderboard("t2i", "all").votes == 12 + ORACLE_BATTLES + READER_BATTLES + 5
    assert service.leaderboard("t2i", "reader").votes == READER_BATTLES and set(ws.votes_frame("t2i", "reader")["judge"]) == {"reader"}
    assert ("reader judge", "reader") in vote_choices() and chosen_text("reader") == "Showing the reader judge's votes, as you chose."
    assert service.leaderboard("edit", "learned").votes == 0
    with pytest.raises(ArenaError, match="'learned'"):  # the message lists the filters
        service.leaderboard("t2i", "robots")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'learned'"):
        ws.votes_frame("t2i", "robots")
    assert "learned" in VOTE_FILTERS and ("learned judge", "learned") in vote_choices()
    assert ("auto", "auto") in vote_choices() and chosen_text("learned") == "Showing the learned judge's votes, as you chose."


def test_rest_rates_and_exports_the_learned_votes_alone(arena):
    ws, _, _ = arena
    c = TestClient(create_api(ArenaService(ws, seed=0, min_votes=0), None, AdminAuth(None)))
    board = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "learned"}).json()
    assert board["votes"] == "learned" and board["n_votes"] == 12
    assert sum(r["votes"] for r in board["rows"]) == 2 * 12
    assert c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()["n_votes"] == 5
    assert c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "robots"}).status_code == 422
    assert c.get("/api/v1/categories", params={"task": "t2i", "votes": "learned"}).json()["votes"] == "learned"
    r = c.get("/api/v1/votes/export", params={"format": "jsonl", "task": "t2i", "votes": "learned"})
    assert 'filename="votes-t2i-learned.jsonl"' in r.headers["content-disposition"]
    lines = [ln for ln in r.text.splitlines() if ln.strip()]
    assert len(lines) == 12 and all('"judge": "learned"' in ln for ln in lines)
    params = {p["name"]: p for p in c.get("/api/v1/openapi.json").json()["paths"]["/api/v1/leaderboard"]["get"]["parameters"]}
    assert "learned" in params["votes"]["description"] and "learned judge" in params["votes"]["description"]
    assert "reader (only the reader judge's" in params["votes"]["description"]
    assert c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "reader"}).json()["n_votes"] == READER_BATTLES


def test_the_learned_judges_battles_with_their_answers(arena):
    ws, answers, _ = arena
    battles = inspector.pairwise_battles(ws, "t2i")
    assert [b["rationale"] for b in battles] == [a["text"] for a in answers]  # in the order it judged them
    outcome = {"A": "model_a", "B": "model_b"}
    for b, a in zip(battles, answers):
        assert b["winner"] == outcome.get(a["winner"]) or (a["winner"] == "tie" and b["winner"].startswith("tie"))
        sa, sb = ws.store.get_sample(b["sample_a"]), ws.store.get_sample(b["sample_b"])
        assert (sa["model"], sb["model"]) == (b["model_a"], b["model_b"]) and sa["prompt_id"] == sb["prompt_id"]
        assert b["prompt"] == ws.pool_item(sa["prompt_id"]).text
    labels = inspector.pairwise_choices(battles)
    assert [i for _, i in labels] == list(range(12))
    assert labels[0][0].startswith(f"1. {battles[0]['prompt']} · A {battles[0]['model_a']} vs B {battles[0]['model_b']}")


def test_a_battles_detail_reads_the_answer_and_checks_both_images(arena):
    ws, answers, _ = arena
    battles = inspector.pairwise_battles(ws, "t2i")
    seen = set()
    for b, a in zip(battles, answers):
        d = inspector.pairwise_detail(ws, b["battle_id"])
        assert d["rationale"] == a["text"] and d["image_a"] == ws.root / ws.store.get_sample(b["sample_a"])["image_path"]
        assert d["image_a"].is_file() and d["image_b"].is_file() and d["source"] is None  # text to image: no source
        assert (d["checker_a"]["passed"], d["checker_b"]["passed"]) == a["passed"]
        assert d["reading"]["winner"] == a["winner"] and len(d["reading"]["verdicts_a"]) == len(d["requirements"]) > 0
        read = (all(d["reading"]["verdicts_a"]), all(d["reading"]["verdicts_b"]))
        assert read == (a["passed"] if a["kind"] != "swapped" else a["passed"][::-1])  # the verdicts as written
        if a["kind"] != "tie":
            assert d["reading"]["consistent"] is True  # its pick follows from its verdicts
        one_passes = a["passed"][0] != a["passed"][1]
        if one_passes:
            passing = "A" if a["passed"][0] else "B"
            assert d["agrees_with_checker"] is (a["winner"] == passing)
            assert d["checker_a" if passing == "B" else "checker_b"]["reasons"]  # a fail says why
            seen.add(d["agrees_with_checker"])
        else:
            assert d["agrees_with_checker"] is None
        summary = inspector.pairwise_summary(d)
        assert f"A: {b['model_a']} · B: {b['model_b']}" in summary and "Exact checker, A: " in summary
    assert seen == {True, False}  # the stand-in judge is right on some battles and wrong on others
    right = next(inspector.pairwise_detail(ws, b["battle_id"]) for b, a in zip(battles, answers)
                 if a["passed"] == (True, False) and a["winner"] == "A")
    assert right["reading"]["verdicts_a"] == [True] * len(right["requirements"])  # the checker's own answer
    assert "Exact checker, A: passes" in inspector.pairwise_summary(right)
    assert "the judge agrees with the checker" in inspector.pairwise_summary(right)
    # a battle that is not the learned judge's (a human vote, an oracle vote), or no battle, has no detail
    human = ws.store.judged_battles(task="t2i", judge="human")[0]["battle_id"]
    oracle = ws.store.judged_battles(task="t2i", judge="oracle")[0]["battle_id"]
    assert inspector.pairwise_detail(ws, human) is None and inspector.pairwise_detail(ws, oracle) is None
    assert inspector.pairwise_detail(ws, "no-such-battle") is None


def test_pairwise_agreement_against_hand_counts(arena):
    ws, answers, before_people = arena
    one_passes = [a for a in answers if a["passed"][0] != a["passed"][1]]
    agree = sum(a["winner"] == ("A" if a["passed"][0] else "B") for a in one_passes)
    ties = sum(a["winner"] == "tie" for a in one_passes)
    result = inspector.pairwise_agreement(ws, "t2i")
    c, h = result["checker"], result["human"]
    assert c["battles"] == 12 and (c["n"], c["agree"], c["judge_ties"]) == (len(one_passes), agree, ties)
    assert c["both_pass"] + c["both_fail"] + c["n"] + c["unchecked"] == 12 and c["unchecked"] == 0
    assert 0 < c["n"] and 0 < c["agree"] < c["n"]
    assert c["agreement"] == pytest.approx(agree / len(one_passes))
    # people: four votes on three of the judge's pairs (one a tie), one on a pair it never judged
    assert (h["votes"], h["pairs"], h["n"], h["agree"], h["human_ties"], h["judge_ties"]) == (4, 3, 3, 2, 1, 0)
    rows = inspector.pairwise_agreement_rows(result)
    assert rows[0][:4] == ["strict checker", len(one_passes), agree, f"{agree / len(one_passes):.0%}"]
    assert rows[1] == ["human votes on the same pair", 3, 2, "67%",
                       "4 human vote(s) on 3 of these pairs; ties left out: people's 1, the judge's 0"]
    # before anyone voted on these pairs, the table says so
    assert before_people["human"]["votes"] == 0 and before_people["human"]["agreement"] is None
    assert inspector.pairwise_agreement_rows(before_people)[1] == ["human votes on the same pair", 0, 0, "—",
                                                                  inspector.NO_HUMAN_VOTES]


def test_a_task_without_learned_battles_says_so(arena):
    ws, _, _ = arena
    assert inspector.pairwise_battles(ws, "edit") == [] and inspector.pairwise_choices([]) == []
    rows = inspector.pairwise_agreement_rows(inspector.pairwise_agreement(ws, "edit"))
    assert rows == [["strict checker", 0, 0, "—", "the learned judge has judged no battles of this task"],
                    ["human votes on the same pair", 0, 0, "—", inspector.NO_HUMAN_VOTES]]
    assert "qwenrl arena auto --task edit --judge learned" in inspector.pairwise_summary(None, "edit")


def test_the_tab_shows_the_battles_to_the_admin_only(arena):
    """The battles are over arena images and the public export lists them in order with their
    models, so a visitor gets the agreement table and no battle; the admin gets the battles."""
    ws, _, _ = arena
    studio = Studio(ArenaService(ws, seed=0, min_votes=0), None, AdminAuth(PASSWORD))
    with gr.Blocks():
        view = pairwise_layout(studio)
    visitor = view.shown(studio, "t2i", False, "learned")
    assert visitor[view.ids] == [] and visitor[view.status] == ADMIN_ONLY
    assert visitor[view.image_a] is None and visitor[view.rationale] == ""
    assert list(visitor[view.agreement]["compared with"]) == ["strict checker", "human votes on the same pair"]
    admin = view.shown(studio, "t2i", True, "learned")
    battles = inspector.pairwise_battles(ws, "t2i")
    assert admin[view.ids] == [b["battle_id"] for b in battles]
    assert admin[view.rationale] == battles[0]["rationale"] and admin[view.image_a] is not None
    assert admin[view.status].startswith("12 battle(s)")
    empty = view.shown(studio, "edit", True, "learned")
    assert empty[view.ids] == [] and "--task edit --judge learned" in empty[view.status]
    assert "--task edit --judge learned" in empty[view.summary]


def test_the_tab_logs_the_admin_in_with_the_studio_password(arena):
    """The whole tab builds; its login handler refuses a wrong password and lists the battles
    for the right one (the handlers, called as the page would call them)."""
    ws, _, _ = arena
    studio = Studio(ArenaService(ws, seed=0, min_votes=0), None, AdminAuth(PASSWORD))
    with gr.Blocks() as blocks:
        tab = inspector_tab.build(studio)
    assert any(loader.fn.__name__ == "show" for loader in tab.on_open)
    handlers = {f.fn.__name__: f.fn for f in blocks.fns.values() if f.fn is not None}
    outputs = {f.fn.__name__: f.outputs for f in blocks.fns.values() if f.fn is not None}
    admin, ids = outputs["log_in"][0], outputs["log_in"][3]  # [admin, password, status, ids, ...]
    wrong = handlers["log_in"]("guess", "t2i", "learned", None)
    assert wrong[admin] is False and ids not in wrong
    right = handlers["log_in"](PASSWORD, "t2i", "learned", None)
    assert right[admin] is True and right[ids] == [b["battle_id"] for b in inspector.pairwise_battles(ws, "t2i")]
    picked = handlers["pick"]("t2i", True, "learned", right[ids], 1)
    assert inspector.pairwise_battles(ws, "t2i")[1]["rationale"] in picked.values()
    refused = handlers["pick"]("t2i", False, "learned", right[ids], 1)  # no admin, no battle
    assert inspector.pairwise_battles(ws, "t2i")[1]["rationale"] not in refused.values()


def test_the_readers_battles_show_beside_the_learned_judges(arena):
    """The reader's votes (``--judge reader``) are listed, read and counted apart from the learned
    judge's, and the tab switches between the two; an unknown judge is refused."""
    ws, _, _ = arena
    learned, reader = inspector.pairwise_battles(ws, "t2i"), inspector.pairwise_battles(ws, "t2i", "reader")
    assert len(reader) == READER_BATTLES and not {b["battle_id"] for b in reader} & {b["battle_id"] for b in learned}
    d = inspector.pairwise_detail(ws, reader[0]["battle_id"], "reader")
    assert d["judge"] == "reader" and d["rationale"] == reader[0]["rationale"]
    assert inspector.pairwise_detail(ws, reader[0]["battle_id"]) is None  # not a learned-judge battle
    assert inspector.pairwise_detail(ws, learned[0]["battle_id"], "reader") is None
    assert inspector.pairwise_summary(d).splitlines()[1].startswith("Reader judge: ")
    result = inspector.pairwise_agreement(ws, "t2i", "reader")
    assert result["checker"]["battles"] == READER_BATTLES and result["checker"]["agree"] == result["checker"]["n"]  # the checker's answers
    assert "--judge reader" in inspector.no_pairwise_text("edit", "reader")
    assert inspector.pairwise_agreement_rows(inspector.pairwise_agreement(ws, "edit", "reader"))[0][4] == \
        "the reader judge has judged no battles of this task"
    with pytest.raises(ValueError, match="judge must be one of"):
        inspector.pairwise_battles(ws, "t2i", "oracle")
    studio = Studio(ArenaService(ws, seed=0, min_votes=0), None, AdminAuth(PASSWORD))
    with gr.Blocks():
        view = pairwise_layout(studio)
    shown = view.shown(studio, "t2i", True, "reader")
    assert shown[view.ids] == [b["battle_id"] for b in reader] and shown[view.status].startswith(f"{READER_BATTLES} battle(s) judged by the reader judge")
    assert view.shown(studio, "t2i", True, "robots")[view.ids] == [b["battle_id"] for b in learned]  # a forged value falls back
