"""Ballot stuffing over REST (issue 20): new voters per address, votes of voters created in a burst
flagged and left out of the default board, and no battles for clients that never vote back;
a team of 32 clients behind one address that keeps its cookies still votes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import VOTER_COOKIE, create_api
from app.auth import AdminAuth
from app.service import ArenaService
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401


@pytest.fixture
def studio(filled_workspace):
    service = ArenaService(filled_workspace, rate=1000, burst=1000, seed=0, rounds=20, min_votes=0)
    return create_api(service, None, AdminAuth(None)), service


def battle_and_vote(client) -> tuple[int, int]:
    b = client.get("/api/v1/battle", params={"task": "edit"})
    if b.status_code != 200:
        return b.status_code, 0
    return 200, client.post("/api/v1/vote", json={"battle_id": b.json()["battle_id"], "winner": "model_a"}).status_code


def test_dropping_the_cookie_does_not_stuff_the_ballot(studio):
    """100 battle-and-vote loops, each with a new cookie, were all accepted in 16 s, and the board
    said "people have voted 104 time(s)"."""
    app, service = studio
    limit, burst = service.limits.new_voters, service.limits.burst_voters
    assert (limit, burst) == (120, 16)  # the defaults
    before = len(service.votes("edit", "human"))
    codes = [battle_and_vote(TestClient(app)) for _ in range(limit + 10)]
    assert codes[:limit] == [(200, 200)] * limit and {c[0] for c in codes[limit:]} == {429}
    refused = TestClient(app).get("/api/v1/battle", params={"task": "edit"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 60
    assert "keep your cookie" in refused.json()["detail"]
    # the voters created in the burst voted, but their votes are flagged and the default board leaves them out
    counted = len(service.votes("edit", "human")) - before
    every = service.votes("edit", "human", include_flagged=True)
    assert counted == burst
    assert (every["flags"] == "burst").sum() >= limit - burst
    board = TestClient(app).get("/api/v1/leaderboard", params={"task": "edit", "votes": "human"}).json()
    assert board["n_votes"] == len(service.votes("edit", "human"))
    assert board["flagged"].get("burst", 0) >= limit - burst
    switched = TestClient(app).get("/api/v1/leaderboard", params={"task": "edit", "votes": "human",
                                                                  "include_flagged": True}).json()
    assert switched["n_votes"] == board["n_votes"] + board["flagged"]["burst"]


def test_cookieless_battles_are_capped(studio):
    """300 cookie-less GET /battle created 300 battle rows in 2.5 s."""
    app, service = studio
    battles = len(service.ws.store._query("SELECT id FROM battles"))
    codes = [TestClient(app).get("/api/v1/battle").status_code for _ in range(300)]
    created = len(service.ws.store._query("SELECT id FROM battles")) - battles
    # at most 100 battles served to one address and not voted on (and 120 new voters in 10 minutes)
    assert created == codes.count(200) == service.limits.open_per_address == 100 and codes.count(429) == 200


def test_a_client_that_never_votes_back_gets_no_more_battles(studio):
    app, service = studio
    c = TestClient(app)
    codes = [c.get("/api/v1/battle").status_code for _ in range(25)]
    assert codes[:20] == [200] * 20 and set(codes[20:]) == {429}
    r = c.get("/api/v1/battle")
    assert "have no vote yet" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
    # voting on one of them opens room for one more
    open_battle = service.ws.store._query("SELECT id FROM battles WHERE voter = ? ORDER BY created DESC LIMIT 1",
                                          [c.cookies.get(VOTER_COOKIE)])[0]["id"]
    assert c.post("/api/v1/vote", json={"battle_id": open_battle, "winner": "tie"}).status_code == 200
    assert c.get("/api/v1/battle").status_code == 200


def test_a_team_behind_one_address_that_keeps_its_cookies_votes(studio):
    app, service = studio
    before = service.votes("edit", "human", include_flagged=True)
    team = [TestClient(app) for _ in range(32)]
    for _ in range(5):
        for member in team:
            assert battle_and_vote(member) == (200, 200)
    # all 160 votes are stored; the members who arrived after the first 16 within the same minute
    # carry the burst flag (a team that arrives over a few minutes carries none)
    every = service.votes("edit", "human", include_flagged=True)
    assert len(every) - len(before) == 32 * 5
    assert (every["flags"] == "burst").sum() - (before["flags"] == "burst").sum() == (32 - 16) * 5


def test_a_reloaded_page_gets_its_open_battle_back(studio):
    """The UI opens a battle per arena on every page load: a reload must not pile up open battles
    (which would soon hit the cap on battles not voted on)."""
    app, service = studio
    first = service.open_or_new_battle("edit", "reloader", address="9.9.9.9")
    for _ in range(30):
        again = service.open_or_new_battle("edit", "reloader", address="9.9.9.9")
        assert again.battle_id == first.battle_id and again.image_a == first.image_a and again.source == first.source
    service.vote(first.battle_id, "tie", "reloader")
    assert service.open_or_new_battle("edit", "reloader", address="9.9.9.9").battle_id != first.battle_id
    live_like = service.new_battle("t2i", "reloader", address="9.9.9.9")
    assert service.open_or_new_battle("t2i", "reloader").battle_id == live_like.battle_id
    three = service.open_or_new_battle("t2i", "reloader", k=3)  # the K-image tab: the same on a reload
    assert service.open_or_new_battle("t2i", "reloader", k=3).battle_id == three.battle_id != live_like.battle_id
    assert len(three.images) == 3
