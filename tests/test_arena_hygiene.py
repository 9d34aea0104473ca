"""Vote hygiene in the store and the CLI: flags, the reversible exclusion of a voter, and the
default board that leaves both out, reproducible from the export."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from click.testing import CliRunner

from arena import io as vote_io
from arena.cli import elo, votes
from arena.hygiene import counted_votes, flag_counts, join_flags, left_out_message, split_flags
from arena.ratings import leaderboard
from arena.store import MIGRATIONS, ArenaStore, StoreError, VoteError
from tests.test_arena_store import new_battle, populate


@pytest.fixture
def store(tmp_path):
    with ArenaStore(tmp_path / "arena.db") as s:
        yield s


def test_flags_are_a_sorted_set_of_checked_names():
    assert join_flags(["fast", "burst", "fast"]) == "burst,fast"
    assert join_flags("named,excluded") == "excluded,named" and join_flags(()) == "" and join_flags(None) == ""
    assert split_flags("burst,fast") == ["burst", "fast"] and split_flags("") == []
    for bad in (["Fast"], ["a,b"], [""], [3]):
        with pytest.raises(ValueError, match="not a flag name"):
            join_flags(bad)


def test_a_vote_keeps_its_flags_and_a_bad_flag_stores_nothing(store):
    samples = populate(store)
    battle = new_battle(store, samples, voter="v1")
    with pytest.raises(VoteError, match="not a flag name"):
        store.record_vote(battle["id"], "model_a", voter="v1", flags=["Burst!"])
    assert store.vote_count() == 0
    vote = store.record_vote(battle["id"], "model_a", voter="v1", flags=["fast", "burst"])
    assert vote["flags"] == "burst,fast" and store.get_battle(battle["id"])["vote"]["flags"] == "burst,fast"
    plain = new_battle(store, samples, voter="v1")
    assert store.record_vote(plain["id"], "tie", voter="v1")["flags"] == ""


def test_a_vote_sooner_than_the_minimum_time_is_flagged_fast(store):
    samples = populate(store)
    quick, slow = new_battle(store, samples, voter="v"), new_battle(store, samples, voter="v")
    created = store.get_battle(quick["id"])["created"]
    assert store.record_vote(quick["id"], "model_a", voter="v", tstamp=created + 0.4, min_seconds=1.0)["flags"] == "fast"
    assert store.record_vote(slow["id"], "model_a", voter="v", tstamp=created + 1.5, min_seconds=1.0)["flags"] == ""


def cast(store, samples, voter, winner="model_a", **options):
    battle = new_battle(store, samples, voter=voter)
    return store.record_vote(battle["id"], winner, voter=voter, **options)


def test_records_say_which_votes_the_default_board_leaves_out(store):
    samples = populate(store)
    cast(store, samples, "alice")
    cast(store, samples, "alice", flags=["fast"])
    cast(store, samples, "bob", anony=False)  # cast with the names shown
    cast(store, samples, "mallory")
    assert [r["flags"] for r in store.vote_records()] == ["", "fast", "named", ""]
    store.exclude_voter("mallory", reason="a script")
    assert [r["flags"] for r in store.vote_records()] == ["", "fast", "named", "excluded"]
    frame = store.votes_frame()
    assert counted_votes(frame)["flags"].tolist() == [""]
    assert len(counted_votes(frame, include_flagged=True)) == 4
    assert flag_counts(frame) == {"excluded": 1, "fast": 1, "named": 1}
    assert left_out_message(frame) == "left out 3 flagged votes (excluded 1, fast 1, named 1); --include-flagged counts them"


def test_excluding_a_voter_deletes_nothing_and_reverses(store):
    samples = populate(store)
    for _ in range(3):
        cast(store, samples, "mallory")
    cast(store, samples, "alice")
    before = [{k: v for k, v in r.items() if k != "flags"} for r in store.vote_records()]
    assert store.exclude_voter("mallory", "100 votes a minute")["reason"] == "100 votes a minute"
    assert [r["voter"] for r in store.excluded_voters()] == ["mallory"]
    assert store.vote_count() == 4 and [{k: v for k, v in r.items() if k != "flags"} for r in store.vote_records()] == before
    rows = {r["voter"]: r for r in store.voters()}
    assert rows["mallory"]["votes"] == 3 and rows["mallory"]["excluded"] and not rows["alice"]["excluded"]
    assert len(counted_votes(store.votes_frame())) == 1
    assert store.include_voter("mallory") and not store.include_voter("mallory")
    assert store.excluded_voters() == [] and len(counted_votes(store.votes_frame())) == 4
    with pytest.raises(StoreError, match="no votes from voter 'nobody'"):
        store.exclude_voter("nobody")
    assert store.excluded_voters() == []


def test_an_older_database_gains_flags_and_keeps_its_votes(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    import sqlite_utils

    MIGRATIONS[0].apply(sqlite_utils.Database(conn))
    conn.execute("INSERT INTO _migrations VALUES ('m001_initial', 0)")
    conn.execute("INSERT INTO models (name, created) VALUES ('a', 0), ('b', 0)")
    conn.execute("INSERT INTO battles (id, task, model_a, model_b, voter, created) VALUES ('x', 't2i', 'a', 'b', 'v', 0)")
    conn.execute("INSERT INTO votes (battle_id, outcome, voter, judge, anony, tstamp) VALUES ('x', 'tie', 'v', 'human', 1, 5)")
    conn.commit()
    conn.close()
    with ArenaStore(path) as store:
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
        [record] = store.vote_records()
        assert record["winner"] == "tie" and record["flags"] == ""


def test_the_export_reproduces_the_default_board_and_the_switch(store, tmp_path):
    samples = populate(store)
    outcomes = ["model_a", "model_b", "tie", "model_a", "model_a", "model_b"] * 4
    for k, winner in enumerate(outcomes):
        b = "grpo" if k % 2 else "distill"
        battle = new_battle(store, samples, b=b, voter=f"v{k % 3}")
        store.record_vote(battle["id"], winner, voter=f"v{k % 3}", tstamp=1000.0 + k,
                          flags=["fast"] if k % 5 == 0 else ())
    store.exclude_voter("v2")
    path = tmp_path / "votes.jsonl"
    vote_io.write_votes(store.vote_records(), path)
    frame = store.votes_frame()
    counted = counted_votes(frame)
    assert 0 < len(counted) < len(frame)
    for args, table in ((["--bootstrap", "30"], counted), (["--bootstrap", "30", "--include-flagged"], frame)):
        result = CliRunner().invoke(elo, [str(path), "--format", "json", *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads(json.dumps(leaderboard(table, rounds=30).rows))
        assert ("left out" in result.stderr) == ("--include-flagged" not in args)
    # every vote flagged: a clear error, not an empty table
    only = tmp_path / "flagged.jsonl"
    vote_io.write_votes([r for r in store.vote_records() if r["flags"]], only)
    result = CliRunner().invoke(elo, [str(only)])
    assert result.exit_code != 0 and "every vote is flagged" in result.output


def test_files_without_flags_give_the_same_table(tmp_path):
    records = [{"model_a": "a", "model_b": "b", "winner": w, "tstamp": float(k)}
               for k, w in enumerate(["model_a", "model_b", "model_a", "tie"] * 5)]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(elo, [str(path), "--format", "json", "--bootstrap", "20"])
    assert result.exit_code == 0 and "left out" not in result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(leaderboard(pd.DataFrame(records), rounds=20).rows))


def test_a_malformed_flags_field_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "tie", "flags": "fast"}\n'
                    '{"model_a": "a", "model_b": "b", "winner": "tie", "flags": "FAST;x"}\n')
    with pytest.raises(vote_io.VoteFileError, match=r"bad.jsonl:2: flags is 'FAST;x', expected comma-separated"):
        vote_io.read_votes(path)


def test_the_admin_command_excludes_and_reverses(store, tmp_path):
    samples = populate(store)
    cast(store, samples, "mallory")
    cast(store, samples, "alice")
    path = store.path
    runner = CliRunner()
    listed = runner.invoke(votes, ["voters", "--store", path, "--json"])
    assert listed.exit_code == 0 and {r["voter"] for r in json.loads(listed.stdout)} == {"mallory", "alice"}
    done = runner.invoke(votes, ["exclude", "--store", path, "mallory", "--reason", "a script"])
    assert done.exit_code == 0 and "excluded voter mallory (1 votes" in done.stderr
    assert store.excluded_voters()[0]["reason"] == "a script"
    assert runner.invoke(votes, ["exclude", "--store", path, "mallory", "--undo"]).exit_code == 0
    assert store.excluded_voters() == []
    again = runner.invoke(votes, ["exclude", "--store", path, "mallory", "--undo"])
    assert again.exit_code != 0 and "is not excluded" in again.output
    typo = runner.invoke(votes, ["exclude", "--store", path, "malory"])
    assert typo.exit_code != 0 and "no votes from voter 'malory'" in typo.output
    assert store.vote_count() == 2
