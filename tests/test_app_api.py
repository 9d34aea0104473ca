"""The REST API (FastAPI TestClient): battles, votes and their refusals, leaderboard, export, admin."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api import ADMIN_COOKIE, VOTER_COOKIE, create_api
from app.jobs import JobManager, JobQueue
from app.auth import AdminAuth
from app.limits import TokenBucket
from app.service import ArenaService
from arena.io import read_votes
from arena.ratings import ROW_FIELDS
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def api(filled_workspace, tmp_path_factory):
    configs = tmp_path_factory.mktemp("configs")
    (configs / "fake_grpo.yaml").write_text("steps: 1\n")
    jobs = JobManager(JobQueue(filled_workspace.store), filled_workspace.runs_dir, trainers={"grpo": "tests.fake_trainer"},
                      config_dir=configs, max_concurrent=1)
    # min_votes 0: every model is ranked, as in `qwenrl elo`, which these tests compare with
    service = ArenaService(filled_workspace, rate=1000, burst=1000, seed=0, min_votes=0)
    return create_api(service, jobs, AdminAuth(PASSWORD)), service, jobs


def client(app) -> TestClient:
    return TestClient(app)


def png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_battle_then_vote_reveals_the_models(api):
    app, service, _ = api
    c = client(app)
    for task in ("t2i", "edit"):
        r = c.get("/api/v1/battle", params={"task": task})
        assert r.status_code == 200
        b = r.json()
        assert set(b) >= {"battle_id", "task", "prompt", "image_a", "image_b", "source_png"}
        assert png(b["image_a"]).size == (32, 32) and png(b["image_b"]).size == (32, 32)
        assert (b["source_png"] is not None) == (task == "edit")
        assert "tiny" not in json.dumps(b)  # anonymous until the vote
        v = c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"})
        assert v.status_code == 200, v.text
        out = v.json()
        assert out["ok"] and out["task"] == task and {out["model_a"], out["model_b"]} <= {"tiny-a", "tiny-b", "tiny-c"}
        stored = service.ws.store.get_battle(b["battle_id"])
        assert stored["vote"]["outcome"] == "model_a" and stored["vote"]["judge"] == "human"
        assert stored["model_a"] == out["model_a"]


def test_vote_refusals(api):
    app, service, _ = api
    alice, bob = client(app), client(app)
    b = alice.get("/api/v1/battle").json()
    assert alice.cookies.get(VOTER_COOKIE) != bob.get("/api/v1/health").cookies.get(VOTER_COOKIE)
    # another client cannot vote on alice's battle
    r = bob.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"})
    assert r.status_code == 403
    # an outcome outside the four buttons
    r = alice.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_c"})
    assert r.status_code == 422
    r = alice.post("/api/v1/vote", json={"battle_id": b["battle_id"]})
    assert r.status_code == 422
    # an unknown battle
    r = alice.post("/api/v1/vote", json={"battle_id": "x" * 22, "winner": "tie"})
    assert r.status_code == 404
    # once is accepted, twice is refused
    assert alice.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "tie"}).status_code == 200
    r = alice.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_b"})
    assert r.status_code == 409
    assert service.ws.store.get_battle(b["battle_id"])["vote"]["outcome"] == "tie"
    # a forged, malformed voter cookie is replaced by a fresh one
    mallory = TestClient(app, cookies={VOTER_COOKIE: "../../etc/passwd"})
    r = mallory.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "tie"})
    assert r.status_code in (403, 409) and r.cookies.get(VOTER_COOKIE) != "../../etc/passwd"
    # unknown task
    assert alice.get("/api/v1/battle", params={"task": "../t2i"}).status_code == 422


def test_rate_limit_per_voter(filled_workspace):
    service = ArenaService(filled_workspace, rate=2, burst=3, seed=1)
    app = create_api(service, None, AdminAuth(None))
    c, other = client(app), client(app)
    codes = [c.get("/api/v1/battle").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    r = c.get("/api/v1/battle")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert other.get("/api/v1/battle").status_code == 200  # another voter has its own bucket


def test_token_bucket_refills():
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.take("v", now=0.0) == 0 and bucket.take("v", now=0.0) == 0
    assert bucket.take("v", now=0.0) == pytest.approx(0.1)
    assert bucket.take("v", now=0.1) == 0


def test_leaderboard_rows_have_the_elo_cli_fields(api):
    app, _, _ = api
    c = client(app)
    for _ in range(3):
        b = c.get("/api/v1/battle").json()
        c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_b"})
    board = c.get("/api/v1/leaderboard", params={"task": "t2i"}).json()
    assert board["task"] == "t2i" and board["n_votes"] >= 3 and board["rows"]
    cli_fields = set(ROW_FIELDS) - {"component", "win_rate"} | {"model", "elo", "ci_low", "ci_high", "rank_ub"}
    assert all(cli_fields <= set(row) for row in board["rows"])
    assert sum(r["votes"] for r in board["rows"]) == 2 * board["n_votes"]
    assert c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "robots"}).status_code == 422


def test_export_is_what_qwenrl_elo_reads(api, tmp_path):
    app, service, _ = api
    c = client(app)
    for fmt in ("jsonl", "csv"):
        r = c.get("/api/v1/votes/export", params={"format": fmt, "task": "t2i"})
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        path = tmp_path / f"votes.{fmt}"
        path.write_bytes(r.content)
        frame = read_votes(path)
        assert len(frame) == len(service.votes("t2i", "all")) > 0
        assert set(frame["winner"]) <= {"model_a", "model_b", "tie", "tie (bothbad)"}
    assert "voter" not in r.text.splitlines()[0]  # voters identify people: never exported


def test_admin_routes(api):
    app, _, jobs = api
    anonymous = client(app)
    body = {"kind": "grpo", "config": "fake_grpo.yaml", "overrides": {"steps": 1}}
    r = anonymous.post("/api/v1/jobs", json=body)
    assert r.status_code == 401
    assert anonymous.post("/api/v1/jobs", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert anonymous.post("/api/v1/jobs/1/cancel").status_code == 401
    assert anonymous.get("/api/v1/jobs").status_code == 401
    assert anonymous.post("/api/v1/admin/login", json={"password": "wrong"}).status_code == 403
    assert jobs.store.list_jobs() == []

    r = anonymous.post("/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {PASSWORD}"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["overrides"] == {"steps": "1"}

    admin = client(app)
    assert admin.post("/api/v1/admin/login", json={"password": PASSWORD}).status_code == 200
    assert admin.cookies.get(ADMIN_COOKIE)
    assert [j["id"] for j in admin.get("/api/v1/jobs").json()] == [job["id"]]
    detail = admin.get(f"/api/v1/jobs/{job['id']}").json()
    assert detail["progress"]["status"] == "queued" and "log_tail" in detail
    assert admin.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert admin.post("/api/v1/jobs", json={**body, "config": "../../etc/passwd"}).status_code == 400
    assert admin.get("/api/v1/jobs/999").status_code == 404
    forged = TestClient(app, cookies={ADMIN_COOKIE: "9999999999.deadbeef"})
    assert forged.post("/api/v1/jobs", json=body).status_code == 403


def test_admin_disabled_without_password(filled_workspace):
    app = create_api(ArenaService(filled_workspace), None, AdminAuth(None))
    c = client(app)
    r = c.post("/api/v1/jobs", json={"kind": "grpo", "config": "x.yaml"}, headers={"Authorization": "Bearer "})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_openapi_documents_the_routes(api):
    app, _, _ = api
    spec = client(app).get("/api/v1/openapi.json").json()
    for path in ("/api/v1/battle", "/api/v1/vote", "/api/v1/leaderboard", "/api/v1/votes/export", "/api/v1/jobs",
                 "/api/v1/jobs/{job_id}/cancel", "/api/v1/admin/login"):
        assert path in spec["paths"], path
    winner = spec["components"]["schemas"]["VoteIn"]["properties"]["winner"]
    assert set(winner["enum"]) == {"model_a", "model_b", "tie", "tie (bothbad)"}


def test_studio_serves_gradio_beside_the_api(tmp_path, tiny_models):
    from app.server import StudioRuntime

    runtime = StudioRuntime.open(tmp_path / "ws", admin_password=PASSWORD, models_dir=tiny_models,
                                 workspace_settings={"pool_size": 2, "num_steps": 2})
    try:
        c = client(runtime.app)
        assert c.get("/api/v1/health").json()["ok"]
        page = c.get("/")
        assert page.status_code == 200 and "QwenRL Studio" in page.text
        assert c.get("/gradio_api/info").status_code == 200
    finally:
        runtime.stop()


def test_battle_while_the_gallery_fills(tmp_path, tiny_models):
    from app.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws", models_dir=tiny_models, pool_size=2, num_steps=2)
    try:
        c = client(create_api(ArenaService(ws), None, AdminAuth(None)))
        r = c.get("/api/v1/battle", params={"task": "edit"})
        assert r.status_code == 503 and "filling" in r.json()["detail"]
        assert c.get("/api/v1/leaderboard", params={"task": "edit"}).json()["rows"] == []
        assert c.get("/api/v1/health").json()["models"] == {"t2i": 0, "edit": 0}
    finally:
        ws.close()


def test_leaderboard_is_reproduced_offline_by_qwenrl_elo(api, tmp_path):
    """The exported votes give the same table with `qwenrl elo` as the studio shows."""
    from click.testing import CliRunner

    from arena.cli import elo

    app, _, _ = api
    c = client(app)
    for winner in ("model_a", "model_b", "tie", "model_a", "tie (bothbad)", "model_b"):
        b = c.get("/api/v1/battle").json()
        c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": winner})
    path = tmp_path / "votes.jsonl"
    path.write_bytes(c.get("/api/v1/votes/export", params={"task": "t2i", "votes": "human"}).content)
    result = CliRunner().invoke(elo, [str(path), "--task", "t2i", "--format", "json"])
    assert result.exit_code == 0, result.output
    offline = {r["model"]: r for r in json.loads(result.output[result.output.index("["):])}
    board = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()
    assert set(offline) == {r["model"] for r in board["rows"]}
    for row in board["rows"]:
        for key in ("elo", "ci_low", "ci_high", "elo_online", "trueskill_mu", "votes", "rank_ub"):
            assert row[key] == pytest.approx(offline[row["model"]][key], abs=1e-6), key


def test_fast_votes_are_flagged_and_left_out_of_the_default_board(api):
    app, service, _ = api
    c = client(app)
    before = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()
    service.min_vote_s = 30.0  # nobody looks at two images for half a minute before this vote
    try:
        b = c.get("/api/v1/battle").json()
        assert c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"}).status_code == 200
    finally:
        service.min_vote_s = 0.0
    assert service.ws.store.get_battle(b["battle_id"])["vote"]["flags"] == "fast"
    default = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()
    assert default["n_votes"] == before["n_votes"] and default["flagged"]["fast"] >= 1 and not default["include_flagged"]
    counted = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human", "include_flagged": True}).json()
    assert counted["n_votes"] == before["n_votes"] + 1 and counted["include_flagged"]
    exported = c.get("/api/v1/votes/export", params={"task": "t2i", "votes": "human"}).text
    assert any(json.loads(line)["battle_id"] == b["battle_id"] and json.loads(line)["flags"] == "fast"
               for line in exported.splitlines())


def test_admin_excludes_a_voter_and_reverses_it(api):
    app, service, _ = api
    voter = client(app)
    for _ in range(2):
        b = voter.get("/api/v1/battle").json()
        voter.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_b"})
    who = voter.cookies.get(VOTER_COOKIE)
    n = client(app).get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()["n_votes"]
    stored = service.ws.store.vote_count()
    admin = {"Authorization": f"Bearer {PASSWORD}"}
    anonymous = client(app)
    assert anonymous.post("/api/v1/admin/voters/exclude", json={"voter": who}).status_code == 401
    listed = {r["voter"]: r for r in anonymous.get("/api/v1/admin/voters", headers=admin).json()}
    assert listed[who]["votes"] == 2 and not listed[who]["excluded"]
    r = anonymous.post("/api/v1/admin/voters/exclude", json={"voter": who, "reason": "test"}, headers=admin)
    assert r.status_code == 200 and r.json()["reason"] == "test"
    board = anonymous.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()
    assert board["n_votes"] == n - 2 and board["flagged"]["excluded"] == 2
    assert service.ws.store.vote_count() == stored  # nothing deleted
    r = anonymous.post("/api/v1/admin/voters/include", json={"voter": who}, headers=admin)
    assert r.status_code == 200
    assert anonymous.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human"}).json()["n_votes"] == n
    assert anonymous.post("/api/v1/admin/voters/include", json={"voter": who}, headers=admin).status_code == 404
    assert anonymous.post("/api/v1/admin/voters/exclude", json={"voter": "nobody"}, headers=admin).status_code == 404


def test_a_three_image_battle_over_rest(api):
    app, service, _ = api
    c = client(app)
    b = c.get("/api/v1/battle", params={"task": "t2i", "k": 3}).json()
    assert len(b["images"]) == 3 and b["images"][:2] == [b["image_a"], b["image_b"]] and "tiny" not in json.dumps(b)
    assert c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"}).status_code == 422
    assert c.post("/api/v1/vote/kway", json={"battle_id": b["battle_id"], "best": 3}).status_code == 422
    r = c.post("/api/v1/vote/kway", json={"battle_id": b["battle_id"], "best": 2, "worst": 0})
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(out["models"]) == ["tiny-a", "tiny-b", "tiny-c"]
    assert (out["best"], out["worst"]) == (out["models"][2], out["models"][0])
    stored = service.ws.store.get_battle(b["battle_id"])
    assert stored["models"] == out["models"] and stored["vote"]["best"] == out["best"]
    assert len(stored["meta"]["covariates"]) == 3 and "aesthetics" in stored["meta"]["covariates"][0]
    again = c.post("/api/v1/vote/kway", json={"battle_id": b["battle_id"], "best": 1})
    assert again.status_code == 409 and "already has a vote" in again.json()["detail"]
    # a battle revealed without a vote takes no vote afterwards, and stores nothing
    skipped = c.get("/api/v1/battle", params={"task": "edit", "k": 3}).json()
    shown = c.post("/api/v1/battle/reveal", json={"battle_id": skipped["battle_id"]}).json()
    assert sorted(shown["models"]) == ["tiny-a", "tiny-b", "tiny-c"] and not shown["voted"]
    late = c.post("/api/v1/vote/kway", json={"battle_id": skipped["battle_id"], "best": 0})
    assert late.status_code == 409 and "revealed without a vote" in late.json()["detail"]
    assert service.ws.store.get_battle(skipped["battle_id"])["vote"] is None
    pair = c.get("/api/v1/battle", params={"task": "t2i"}).json()
    c.post("/api/v1/battle/reveal", json={"battle_id": pair["battle_id"]})
    assert c.post("/api/v1/vote", json={"battle_id": pair["battle_id"], "winner": "tie"}).status_code == 409
    assert c.get("/api/v1/battle", params={"task": "t2i", "k": 4}).status_code == 503  # three models only


def test_the_personal_board_appears_after_the_nth_vote(api):
    app, service, _ = api
    me, other = client(app), client(app)
    service.personal_votes = 3
    try:
        assert me.get("/api/v1/leaderboard/personal", params={"task": "edit"}).json()["rows"] is None
        for n in range(1, 4):
            b = me.get("/api/v1/battle", params={"task": "edit"}).json()
            me.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"})
            mine = me.get("/api/v1/leaderboard/personal", params={"task": "edit"}).json()
            assert mine["votes_cast"] == n and (mine["rows"] is None) == (n < 3), mine
        assert "1 to go" not in mine["message"] and sum(r["votes"] for r in mine["rows"]) == 2 * 3
        theirs = other.get("/api/v1/leaderboard/personal", params={"task": "edit"}).json()
        assert theirs["rows"] is None and "3 votes" in theirs["message"] and "0, 3 to go" in theirs["message"]
    finally:
        service.personal_votes = 30


def test_category_boards_rank_only_categories_with_enough_votes(api):
    app, service, _ = api
    c = client(app)
    for _ in range(4):
        b = c.get("/api/v1/battle", params={"task": "t2i"}).json()
        c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_b"})
    listed = c.get("/api/v1/categories", params={"task": "t2i"}).json()
    assert listed["min_votes"] == service.category_min_votes and sum(listed["categories"].values()) >= 4
    family = next(iter(listed["categories"]))
    n = listed["categories"][family]
    small = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human", "category": family}).json()
    assert small["rows"] == [] and small["category"] == family
    assert f"category {family!r} has {n} vote(s); it is ranked from {service.category_min_votes} on" in small["warnings"][0]
    service.category_min_votes = 1
    try:
        ranked = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human", "category": family}).json()
    finally:
        service.category_min_votes = 20
    assert ranked["rows"] and ranked["n_votes"] == n and sum(r["votes"] for r in ranked["rows"]) == 2 * n
    controlled = c.get("/api/v1/leaderboard", params={"task": "t2i", "votes": "human", "control": True}).json()
    assert controlled["controlled"]["votes"] >= 4 and {co["covariate"] for co in controlled["controlled"]["coefficients"]} <= {"aesthetics", "objects"}
