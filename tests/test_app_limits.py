"""Issue 20's refusals over REST (FastAPI TestClient): body sizes, short refusals, the admin lockout,
one prompt limit with one message; and the limit objects of app/limits.py on their own."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from app.api import create_api
from app.limits import AdminLockout, LimitExceeded, VoterLimits, excerpt
from app.auth import AdminAuth
from app.service import ArenaService
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401

PASSWORD = "correct horse"


class _NoLive:
    """A live generator that must not be reached (every request here is refused before)."""

    def generate(self, *args, **kwargs):
        raise AssertionError("the refused prompt reached the generator")


@pytest.fixture(scope="module")
def app(filled_workspace):
    service = ArenaService(filled_workspace, rate=1000, burst=1000, seed=0, live=_NoLive())
    return create_api(service, None, AdminAuth(PASSWORD))


def test_big_bodies_get_a_short_413_before_parsing(app):
    c = TestClient(app)
    for size in (1 << 20, 100 << 20):  # 1 MB and 100 MB prompts: 1,040,151 and 104,857,751 bytes back before
        r = c.post("/api/v1/battle/live", content=b'{"prompt": "' + b"a" * size + b'"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and len(r.content) < 200, (r.status_code, len(r.content))
        assert "too large" in r.json()["detail"]
    r = c.post("/api/v1/vote", json={"battle_id": "x" * (5 << 20), "winner": "tie"})  # 5 MB battle_id: 5.2 MB back before
    assert r.status_code == 413 and len(r.content) < 200
    # a body sent in chunks with no Content-Length is cut off at the limit too
    chunks = (b"x" * 4096 for _ in range(64))
    r = c.post("/api/v1/vote", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 200


def test_refusals_quote_only_an_excerpt(app):
    c = TestClient(app)
    r = c.post("/api/v1/vote", json={"battle_id": "y" * 10_000, "winner": "tie"})  # under the body limit
    assert r.status_code == 422 and len(r.content) < 600, len(r.content)
    assert "battle_id" in r.text and "10,000 characters" in r.text
    r = c.post("/api/v1/battle/live", json={"prompt": "z" * 12_000})
    assert r.status_code == 422 and len(r.content) < 300
    assert "zzzz" * 100 not in r.text and "unknown" not in r.text  # the length, not the words


def test_wrong_admin_passwords_lock_the_client_out(app, caplog):
    """300 wrong bearer tokens used to get 300 × 403 and never a 429."""
    c = TestClient(app)
    caplog.set_level(logging.WARNING, logger="qwenrl.studio")
    codes = [c.get("/api/v1/jobs", headers={"Authorization": f"Bearer guess-{k}"}).status_code for k in range(300)]
    assert codes[:4] == [403] * 4 and set(codes[5:]) == {429}, codes[:8]
    r = c.get("/api/v1/jobs", headers={"Authorization": f"Bearer {PASSWORD}"})  # even the right one, while locked
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 60
    r = c.post("/api/v1/admin/login", json={"password": PASSWORD})
    assert r.status_code == 429 and "wrong admin passwords" in r.json()["detail"]
    assert any("admin lockout" in rec.getMessage() and "testclient" in rec.getMessage() for rec in caplog.records)


def test_lockout_is_per_client_and_ends():
    lockout = AdminLockout(max_failures=3, window_s=60, lockout_s=30)
    for t in (0, 1, 2):
        lockout.failed("1.2.3.4", now=t)
    with pytest.raises(LimitExceeded) as exc:
        lockout.check("1.2.3.4", now=3)
    assert exc.value.retry_after == pytest.approx(29)
    lockout.check("5.6.7.8", now=3)  # another client is not locked
    lockout.check("1.2.3.4", now=33)  # over
    lockout.failed("9.9.9.9", now=0)
    lockout.failed("9.9.9.9", now=100)  # the first fell out of the window
    lockout.failed("9.9.9.9", now=101)
    lockout.check("9.9.9.9", now=102)


def test_new_voters_per_address_and_bursts():
    limits = VoterLimits(new_voters=5, new_voter_window_s=100, burst_voters=2, burst_window_s=10)
    for k in range(5):
        limits.admit(f"v{k}", "1.1.1.1", now=k)
    assert [limits.flags(f"v{k}") for k in range(5)] == ["", "", "burst", "burst", "burst"]
    with pytest.raises(LimitExceeded) as exc:
        limits.admit("v5", "1.1.1.1", now=5)
    assert exc.value.retry_after == pytest.approx(95) and "keep your cookie" in str(exc.value)
    limits.admit("v0", "1.1.1.1", now=6)  # a known voter is not new
    limits.admit("w0", "2.2.2.2", now=6)  # another address has its own count
    limits.admit("v5", "1.1.1.1", now=101)  # the window moved on
    assert limits.flags("v5") == ""  # and the burst is over
    known = VoterLimits(new_voters=1, known=lambda voter: voter.startswith("old"))
    known.admit("old-1", "3.3.3.3", now=0)
    known.admit("old-2", "3.3.3.3", now=0)  # voters of an earlier run are not new
    known.admit("new-1", "3.3.3.3", now=0)


def test_open_battles_per_voter_and_address():
    limits = VoterLimits(open_per_voter=2, open_per_address=3, open_ttl_s=100)
    limits.admit("a", "1.1.1.1", now=0)
    limits.served("a", "b1", now=0)
    limits.admit("a", "1.1.1.1", now=1)
    limits.served("a", "b2", now=1)
    with pytest.raises(LimitExceeded, match="no vote yet"):
        limits.admit("a", "1.1.1.1", now=2)
    limits.voted("a", "b1")
    limits.admit("a", "1.1.1.1", now=2)
    limits.served("a", "b3", now=2)
    limits.admit("b", "1.1.1.1", now=3)
    limits.served("b", "c1", now=3)
    with pytest.raises(LimitExceeded, match="your address"):
        limits.admit("c", "1.1.1.1", now=4)
    limits.admit("c", "1.1.1.1", now=102)  # b2 and b3 have aged out


def test_excerpt():
    assert excerpt("short") == "'short'"
    assert excerpt("x" * 1000).endswith("(1,000 characters)") and len(excerpt("x" * 1000)) < 90
