"""A board that waits for enough votes (issue 20's case 5): the minimum-votes rule of arena/boards.py,
and over REST, one human vote no longer replaces the board of 2,000 automatic ones."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.api import create_api
from app.auth import AdminAuth
from app.service import ArenaService
from arena.boards import needed_text, rank_apart, votes_needed, votes_per_model
from arena.ratings import leaderboard
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401

MODELS = ("tiny-a", "tiny-b", "tiny-c")


def frame(pairs):
    return pd.DataFrame([{"model_a": a, "model_b": b, "winner": w} for a, b, w in pairs])


def test_votes_needed_counts_each_model_of_the_view():
    votes = frame([("a", "b", "model_a"), ("a", "c", "tie"), ("a", "b", "model_b")])
    assert votes_per_model(votes) == {"a": 3, "b": 2, "c": 1}
    assert votes_needed(votes, 3) == {"b": 1, "c": 2}
    assert votes_needed(votes, 3, models=["d"]) == {"b": 1, "c": 2, "d": 3}  # a model nobody voted on yet
    assert votes_needed(votes, 1) == {} and votes_needed(frame([]), 2, models=["x"]) == {"x": 2}
    assert needed_text({"b": 1, "c": 2, "d": 3}) == "3 more for d, 2 more for c, 1 more for b"
    with pytest.raises(ValueError):
        votes_needed(votes, -1)


def test_models_with_too_few_votes_are_listed_apart():
    votes = frame([("a", "b", "model_a")] * 60 + [("b", "c", "model_b")] * 3 + [("a", "b", "model_b")] * 2)
    board = leaderboard(votes, rounds=50, seed=0)
    ranked, apart = rank_apart(board.rows, 10)
    assert [r["model"] for r in ranked] == ["a", "b"] and [r["rank_ub"] for r in ranked] == [1, 2]
    assert apart == [{**next(r for r in board.rows if r["model"] == "c"), "rank_ub": None, "needed": 7}]
    everyone, none = rank_apart(board.rows, 0)
    assert none == [] and [r["rank_ub"] for r in everyone] == [r["rank_ub"] for r in board.rows]


@pytest.fixture(scope="module")
def studio(filled_workspace):
    # the automatic arena, as the bundled votes give a new workspace: many oracle votes per model
    records = [{"battle_id": f"auto-{k}", "task": "edit", "model_a": MODELS[k % 3], "model_b": MODELS[(k + 1) % 3],
                "winner": ("model_a", "model_b", "tie")[k % 3], "judge": "oracle", "tstamp": 1.7e9 + k}
               for k in range(300)]
    filled_workspace.store.import_votes(records)
    service = ArenaService(filled_workspace, rate=1000, burst=1000, seed=0, rounds=50, min_votes=10)
    return TestClient(create_api(service, None, AdminAuth(None))), service


def test_one_human_vote_does_not_replace_the_board(studio):
    """After one editing vote, the board used to show two models with zero-width intervals
    (1295.8 and 704.2) instead of the automatic votes."""
    c, service = studio
    b = c.get("/api/v1/battle", params={"task": "edit"}).json()
    assert c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"}).status_code == 200
    board = c.get("/api/v1/leaderboard", params={"task": "edit"}).json()
    assert board["votes"] == "auto" and board["n_votes"] == 300 and len(board["rows"]) == 3
    assert "people have voted 1 time(s)" in board["why"] and "human votes take over once every model has 10" in board["why"]
    assert "9 more for" in board["why"] and "10 more for" in board["why"]
    human = c.get("/api/v1/leaderboard", params={"task": "edit", "votes": "human"}).json()
    assert human["rows"] == [] and human["min_votes"] == 10  # two models on one vote are not ranked…
    battle = service.ws.store.get_battle(b["battle_id"])
    assert sorted((r["model"], r["needed"], r["rank_ub"]) for r in human["unranked"]) == sorted(
        [(battle["model_a"], 9, None), (battle["model_b"], 9, None)])


def test_the_human_view_takes_over_once_every_model_has_enough(studio):
    c, service = studio
    for _ in range(40):
        b = c.get("/api/v1/battle", params={"task": "edit"}).json()
        c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_b"})
    counts = votes_per_model(service.votes("edit", "human"))
    board = c.get("/api/v1/leaderboard", params={"task": "edit"}).json()
    if min(counts.get(m, 0) for m in MODELS) >= 10:
        assert board["votes"] == "human" and len(board["rows"]) == 3 and board["unranked"] == []
    else:  # matchmaking left a model short: the page still says how many it needs
        assert board["votes"] == "auto" and "more for" in board["why"]


def test_the_rest_export_is_named_and_chosen_as_the_ui_download(studio):
    """The REST export was always named votes-t2i.jsonl and held every vote, while the UI's file
    named its votes and held the board's view."""
    from app.service import export_name

    c, service = studio
    view = service.default_view("edit")[0]
    r = c.get("/api/v1/votes/export", params={"task": "edit"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="{export_name("edit", view, "jsonl")}"'
    assert r.content == c.get("/api/v1/votes/export", params={"task": "edit", "votes": view}).content
    assert export_name("edit", view, "jsonl") == f"votes-edit-{view}.jsonl"
    every = c.get("/api/v1/votes/export", params={"format": "csv"})
    assert 'filename="votes-all-tasks-all.csv"' in every.headers["content-disposition"]
