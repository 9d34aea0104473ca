"""A leaderboard that is never empty: bundled automatic votes in a new workspace, and the view
the leaderboard opens on (human votes once there are any, else the automatic ones)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.api import create_api
from app.auth import AdminAuth
from app.service import ArenaService
from app.workspace import SEED_VOTES, Workspace
from arena.io import VoteFileError, read_votes
from tests.studio_support import POOL_SIZE, tiny_models  # noqa: F401


def seed_file(path, extra=()):
    """Oracle votes among the tiny models, one naming a model no workspace has, one human vote."""
    records = []
    pairs = [("tiny-a", "tiny-b"), ("tiny-b", "tiny-c"), ("tiny-c", "tiny-a")]
    winners = ["model_a", "tie", "tie (bothbad)", "model_b"]
    for k in range(24):
        a, b = pairs[k % 3]
        records.append({"battle_id": f"seed-{k}", "task": "t2i" if k % 2 else "edit", "model_a": a, "model_b": b,
                        "winner": winners[k % 4], "judge": "oracle", "anony": True, "tstamp": 1.7e9 + k,
                        "prompt": "a red circle", "sample_a": 1000 + k, "sample_b": 2000 + k})
    records += [
        {"battle_id": "ghost-1", "task": "t2i", "model_a": "tiny-a", "model_b": "ghost", "winner": "model_b",
         "judge": "oracle", "tstamp": 1.8e9},
        {"battle_id": "person-1", "task": "t2i", "model_a": "tiny-a", "model_b": "tiny-b", "winner": "model_b",
         "judge": "human", "tstamp": 1.8e9 + 1},
        *extra,
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def fresh(tmp_path, tiny_models):
    ws = Workspace.open(tmp_path / "ws", models_dir=tiny_models, pool_size=POOL_SIZE, num_steps=2)
    yield ws
    ws.close()


def test_bundled_votes_between_known_models_are_imported_once(fresh, tmp_path):
    path = seed_file(tmp_path / "seed.jsonl")
    done = fresh.import_seed_votes(path)
    assert (done.imported, done.present) == (24, 0)
    assert done.unknown_models == {"ghost": 1} and done.left_out_human == 1 and done.judges == ["oracle"]
    assert done.by_task == {"t2i": 12, "edit": 12}
    assert "left out the votes naming models this workspace does not have: ghost (1)" in done.summary()
    again = fresh.import_seed_votes(path)  # a restart: nothing twice
    assert (again.imported, again.present) == (0, 24) and fresh.store.vote_count() == 24
    assert fresh.store.judge_counts() == {"oracle": 24}  # kept apart from human votes
    assert fresh.store.get_model("ghost") is None  # no rating for a model nobody can battle here
    exported = {r["battle_id"]: r for r in fresh.store.vote_records()}
    assert exported["seed-3"]["sample_a"] is None  # sample ids of another store are dropped
    assert exported["seed-3"]["prompt"] == "a red circle"
    assert fresh.store.get_battle("seed-3")["meta"]["source"] == str(path)


def test_a_model_that_joins_later_gets_its_bundled_votes(tmp_path, tiny_models):
    import shutil

    models = tmp_path / "models"
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(tiny_models / name, models / name)
    ws = Workspace.open(tmp_path / "ws", models_dir=models, pool_size=POOL_SIZE, num_steps=2)
    path = seed_file(tmp_path / "seed.jsonl")
    first = ws.import_seed_votes(path)
    assert first.imported == 8 and first.unknown_models == {"tiny-c": 16, "ghost": 1}
    shutil.copytree(tiny_models / "tiny-c", models / "tiny-c")
    assert ws.scan_checkpoints() == ["tiny-c"]
    later = ws.import_seed_votes(path)
    assert (later.imported, later.present) == (16, 8) and later.unknown_models == {"ghost": 1}
    ws.close()


def test_a_malformed_seed_file_adds_nothing(fresh, tmp_path):
    path = seed_file(tmp_path / "seed.jsonl", extra=[{"task": "t2i", "model_a": "tiny-a", "model_b": "tiny-b",
                                                      "winner": "maybe", "judge": "oracle"}])
    with pytest.raises(VoteFileError, match=r"seed.jsonl:27: winner is 'maybe'"):
        fresh.import_seed_votes(path)
    assert fresh.store.vote_count() == 0


def test_the_leaderboard_opens_on_the_view_that_has_votes(fresh, tmp_path):
    service = ArenaService(fresh, rounds=20, seed=0, min_votes=4)  # each model has 8 of the 12 bundled votes
    assert service.default_view("t2i") == ("human", "No text-to-image votes yet: vote in the Arena tab, or let "
                                                    "a program judge (qwenrl arena auto).")
    fresh.import_seed_votes(seed_file(tmp_path / "seed.jsonl"))
    view, why = service.default_view("t2i")
    assert view == "auto"
    assert why.startswith("Showing automatic votes: nobody has voted on text-to-image battles yet; these 12 were "
                          "judged by a program: oracle (12).")
    assert "12 of them come with the studio" in why and why.endswith("Human votes take over once people vote (4 per model).")
    board = service.leaderboard("t2i", view)
    assert {r["model"] for r in board.rows} == {"tiny-a", "tiny-b", "tiny-c"} and board.votes == 12
    assert service.leaderboard("t2i", "human").rows == []
    # REST: without ?votes= the same view, saying why; with it, what was asked
    c = TestClient(create_api(service, None, AdminAuth(None)))
    out = c.get("/api/v1/leaderboard", params={"task": "t2i"}).json()
    assert out["votes"] == "auto" and out["why"] == why and len(out["rows"]) == 3
    asked = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()
    assert asked["votes"] == "human" and asked["rows"] == [] and asked["why"] == ""
    # one human vote does not replace the board: human votes take over once every model has min_votes
    fresh.store.import_votes([{"battle_id": "h1", "task": "t2i", "model_a": "tiny-a", "model_b": "tiny-c",
                               "winner": "model_a", "judge": "human"}])
    view, why = service.default_view("t2i")
    assert view == "auto" and "human votes take over once every model has 4: 4 more for tiny-b, 3 more for tiny-a, 3 more for tiny-c needed" in why
    fresh.store.import_votes([{"battle_id": f"h{k}", "task": "t2i", "model_a": ("tiny-a", "tiny-b", "tiny-c")[k % 3],
                               "model_b": ("tiny-b", "tiny-c", "tiny-a")[k % 3], "winner": "model_a", "judge": "human"}
                              for k in range(2, 8)])
    assert service.default_view("t2i") == ("human", "Showing human votes: people have voted 7 time(s) on "
                                                    "text-to-image battles.")
    assert service.default_view("edit")[0] == "auto"


def test_a_fresh_workspace_of_the_bundled_models_has_a_leaderboard(tmp_path):
    """The real bundled models and votes (whatever the seed recipe last wrote)."""
    ws = Workspace.open(tmp_path / "ws", pool_size=2, num_steps=2)
    try:
        done = ws.import_seed_votes(SEED_VOTES)
        assert done.imported > 0 and done.left_out_human == 0
        file_votes = read_votes(SEED_VOTES)
        service = ArenaService(ws, rounds=20, seed=0)  # the bundled votes give every model far more than min_votes
        for task in sorted(set(file_votes["task"])):
            in_file = file_votes[file_votes.task == task]
            named = set(in_file["model_a"]) | set(in_file["model_b"])
            known = named & ws.arena_model_names(task)
            assert known, f"the bundled {task} votes name none of the bundled models"
            view, why = service.default_view(task)
            board = service.leaderboard(task, view)
            assert view == "auto" and "come with the studio" in why
            assert {r["model"] for r in board.rows} == known and board.votes == done.by_task[task]
    finally:
        ws.close()


def test_the_studio_imports_the_seed_votes_at_every_start(tmp_path, tiny_models):
    from app.server import StudioRuntime

    path = seed_file(tmp_path / "seed.jsonl")
    lines = []
    for start in range(2):
        runtime = StudioRuntime.open(tmp_path / "ws", models_dir=tiny_models, seed_votes=path, log=lines.append,
                                     workspace_settings={"pool_size": 2, "num_steps": 2}, min_votes=4)
        try:
            board = TestClient(runtime.app).get("/api/v1/leaderboard", params={"task": "edit"}).json()
            assert board["votes"] == "auto" and {r["model"] for r in board["rows"]} == {"tiny-a", "tiny-b", "tiny-c"}
            assert runtime.workspace.store.vote_count() == 24
        finally:
            runtime.stop()
    assert lines[0].startswith(f"bundled votes {path}: 24 imported, 0 already there (automatic, judge oracle)")
    assert lines[1].startswith(f"bundled votes {path}: 0 imported, 24 already there")
    off = StudioRuntime.open(tmp_path / "ws2", models_dir=tiny_models, seed_votes=None,
                             workspace_settings={"pool_size": 2, "num_steps": 2})
    try:
        assert off.workspace.store.vote_count() == 0
    finally:
        off.stop()
