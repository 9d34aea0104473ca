"""The arena store: schema, migrations, the vote path and every way a vote can be refused."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from arena import io as vote_io
from arena.ratings import leaderboard
from arena.store import (
    MIGRATIONS,
    AlreadyVoted,
    ArenaStore,
    ImportConflict,
    InvalidOutcome,
    StoreError,
    UnknownBattle,
    VoteError,
    WrongVoter,
)


@pytest.fixture
def store(tmp_path):
    with ArenaStore(tmp_path / "arena.db") as s:
        yield s


def populate(store: ArenaStore, models=("base", "grpo", "distill"), prompts=2) -> dict[str, list[int]]:
    """Register models and prompts; returns each model's sample ids, one per prompt."""
    store.register_model("base", tasks=["t2i", "edit"], source="data/models/shapes-base", kind="base")
    for name in models[1:]:
        store.register_model(name, tasks=["t2i"], parent="base", kind="grpo")
    prompt_ids = [store.add_prompt("t2i", f"a red circle number {k}", family="count") for k in range(prompts)]
    return {
        name: [store.add_sample(name, pid, seed=0, image_path=f"images/{name}-{pid}.png", content_hash=f"h{pid}")
               for pid in prompt_ids]
        for name in models
    }


def new_battle(store, samples, a="base", b="grpo", k=0, voter=None):
    return store.create_battle(samples[a][k], samples[b][k], voter=voter)


def test_schema_migrations_and_wal(tmp_path):
    path = tmp_path / "arena.db"
    every = [m.name for m in MIGRATIONS]
    assert every[:2] == ["m001_initial", "m002_vote_flags"]
    with ArenaStore(path) as store:
        assert store.applied_migrations() == every
    with ArenaStore(path) as store:  # reopening applies nothing twice
        assert store.applied_migrations() == every
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"_migrations", "models", "prompts", "samples", "judgements", "battles", "votes", "jobs"} <= tables


def test_models_prompts_samples_and_judgements(store):
    samples = populate(store)
    assert [m["name"] for m in store.list_models()] == ["base", "grpo", "distill"]
    assert [m["name"] for m in store.list_models(task="edit")] == ["base"]
    store.register_model("grpo@300", tasks=["t2i"], parent="grpo", meta={"step": 300})
    assert store.lineage("grpo@300") == ["base", "grpo", "grpo@300"]
    assert store.get_model("grpo@300")["meta"] == {"step": 300}
    store.register_model("grpo@300", tasks=["t2i", "edit"], parent="grpo")  # re-registering updates
    assert store.get_model("grpo@300")["tasks"] == ["edit", "t2i"]
    first_prompt = store.list_prompts(task="t2i")[0]
    assert store.add_prompt("t2i", "a red circle number 0", family="count") == first_prompt["id"]
    assert store.add_prompt("edit", "make it blue", source_image="src/1.png") != store.add_prompt(
        "edit", "make it blue", source_image="src/2.png")
    assert store.add_sample("base", 1, seed=0, image_path="elsewhere.png") == samples["base"][0]
    assert len(store.list_samples(model="base")) == 2 and store.get_sample(samples["grpo"][1])["task"] == "t2i"
    judgement = store.add_judgement(samples["base"][0], "t2i-composite", 0.75, parts={"count": 1.0},
                                    rationale="three circles, as asked")
    store.add_judgement(samples["base"][0], "t2i-composite", 0.5, parts={"count": 0.5}, rationale="second look")
    rows = store.judgements(sample_id=samples["base"][0])
    assert len(rows) == 1 and rows[0]["id"] == judgement and rows[0]["parts"] == {"count": 0.5}
    with pytest.raises(StoreError, match="unknown model"):
        store.add_sample("nobody", 1, seed=0, image_path="x.png")
    with pytest.raises(StoreError, match="unknown prompt"):
        store.add_sample("base", 999, seed=0, image_path="x.png")
    with pytest.raises(StoreError, match="unknown sample"):
        store.add_judgement(999, "j", 0.1)


def test_battles(store):
    samples = populate(store)
    battle = new_battle(store, samples, voter="session-1")
    assert len(battle["id"]) >= 22 and battle["model_a"] == "base" and battle["task"] == "t2i"
    ids = {new_battle(store, samples)["id"] for _ in range(50)}
    assert len(ids) == 50  # random, not sequential
    stored = store.get_battle(battle["id"])
    assert stored["voter"] == "session-1" and stored["vote"] is None
    with pytest.raises(StoreError, match="unknown sample"):
        store.create_battle(samples["base"][0], 12345)
    with pytest.raises(StoreError, match="different prompts"):
        store.create_battle(samples["base"][0], samples["grpo"][1])
    reseeded = store.add_sample("base", store.get_sample(samples["base"][0])["prompt_id"], seed=1, image_path="b.png")
    with pytest.raises(StoreError, match="both by 'base'"):
        store.create_battle(samples["base"][0], reseeded)


def test_record_vote_reveals_the_models(store):
    samples = populate(store)
    battle = new_battle(store, samples, voter="session-1")
    vote = store.record_vote(battle["id"], "model_b", voter="session-1")
    assert vote["model_a"] == "base" and vote["model_b"] == "grpo" and vote["outcome"] == "model_b"
    assert store.get_battle(battle["id"])["vote"]["outcome"] == "model_b"
    unserved = new_battle(store, samples, b="distill")
    assert store.record_vote(unserved["id"], "tie (bothbad)", judge="oracle", anony=False)["judge"] == "oracle"
    assert store.vote_count() == 2 and store.vote_count(task="edit") == 0


def test_judged_battles_keep_their_meta_apart_from_the_export(store):
    """An automatic judge's answer stays with its battle (``meta``), read back per judge and task,
    in vote order; unvoted battles and other judges' votes are not listed."""
    samples = populate(store)
    first = store.create_battle(samples["base"][0], samples["grpo"][0], voter="learned",
                                meta={"judge_rationale": "Better: A"})
    second = store.create_battle(samples["distill"][1], samples["base"][1], voter="learned")
    store.record_vote(first["id"], "model_a", voter="learned", judge="learned")
    store.record_vote(second["id"], "tie", voter="learned", judge="learned")
    store.record_vote(new_battle(store, samples, voter="alice")["id"], "model_b", voter="alice")
    new_battle(store, samples, voter="learned")  # served, never voted
    rows = store.judged_battles(task="t2i", judge="learned")
    assert [r["battle_id"] for r in rows] == [first["id"], second["id"]]
    assert rows[0]["meta"] == {"judge_rationale": "Better: A"} and rows[1]["meta"] == {}
    assert (rows[0]["model_a"], rows[0]["model_b"], rows[0]["winner"]) == ("base", "grpo", "model_a")
    assert (rows[1]["sample_a"], rows[1]["sample_b"]) == (samples["distill"][1], samples["base"][1])
    assert rows[0]["prompt"] == "a red circle number 0" and rows[1]["judge"] == "learned"
    assert store.judged_battles(task="edit", judge="learned") == []
    assert [r["judge"] for r in store.judged_battles(task="t2i")] == ["learned", "learned", "human"]
    assert "meta" not in store.votes_frame(task="t2i").columns


def test_every_refused_vote_changes_nothing(store):
    samples = populate(store)
    battle = new_battle(store, samples, voter="alice")
    store.record_vote(battle["id"], "model_a", voter="alice")
    other = new_battle(store, samples, voter="alice")
    refused = [
        (UnknownBattle, lambda: store.record_vote("no-such-battle", "model_a")),
        (UnknownBattle, lambda: store.record_vote(123, "model_a")),
        (AlreadyVoted, lambda: store.record_vote(battle["id"], "model_b", voter="alice")),
        (InvalidOutcome, lambda: store.record_vote(other["id"], "draw", voter="alice")),
        (InvalidOutcome, lambda: store.record_vote(other["id"], None)),
        (WrongVoter, lambda: store.record_vote(other["id"], "model_a", voter="mallory")),
        (VoteError, lambda: store.record_vote(other["id"], "model_a", judge="")),
    ]
    for error, attempt in refused:
        with pytest.raises(error):
            attempt()
        assert store.vote_count() == 1
    assert store.get_battle(other["id"])["vote"] is None
    assert store.get_battle(battle["id"])["vote"]["outcome"] == "model_a"
    assert issubclass(WrongVoter, VoteError) and issubclass(VoteError, ValueError)


def test_the_database_itself_keeps_votes_unique_and_append_only(store):
    samples = populate(store)
    battle = new_battle(store, samples)
    store.record_vote(battle["id"], "tie")
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO votes (battle_id, outcome, judge, anony, tstamp) VALUES (?, 'tie', 'human', 1, 0)",
                      [battle["id"]])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE votes SET outcome = 'model_a'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM votes")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("INSERT INTO battles (id, task, model_a, model_b, created) VALUES ('x', 't2i', 'base', 'base', 0)")
    conn.rollback()
    conn.execute("PRAGMA foreign_keys = ON")  # per connection, outside a transaction, as the store does
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute("INSERT INTO votes (battle_id, outcome, judge, anony, tstamp) VALUES ('nope', 'tie', 'h', 1, 0)")
    conn.close()
    assert store.vote_count() == 1


def test_concurrent_votes_one_per_battle(store):
    samples = populate(store)
    battles = [new_battle(store, samples)["id"] for _ in range(20)]
    accepted, refused = [], []
    lock = threading.Lock()

    def vote(worker: int) -> None:
        for battle_id in battles:
            try:
                store.record_vote(battle_id, "model_a", voter=f"v{worker}")
                result = accepted
            except AlreadyVoted:
                result = refused
            with lock:
                result.append(battle_id)

    threads = [threading.Thread(target=vote, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == sorted(battles) and len(refused) == 5 * 20
    assert store.vote_count() == 20


def test_export_import_round_trip(tmp_path, store):
    samples = populate(store)
    for k, outcome in enumerate(["model_a", "model_b", "tie", "tie (bothbad)"]):
        battle = new_battle(store, samples, b="grpo" if k % 2 else "distill", k=k % 2)
        store.record_vote(battle["id"], outcome, tstamp=1000.0 + k, judge="human" if k < 3 else "oracle")
    exported = list(store.vote_records())
    assert [r["winner"] for r in exported] == ["model_a", "model_b", "tie", "tie (bothbad)"]
    assert all("voter" not in r for r in exported) and exported[0]["prompt"] == "a red circle number 0"
    assert [r["judge"] for r in store.vote_records(judge="oracle")] == ["oracle"]
    path = tmp_path / "votes.jsonl"
    vote_io.write_votes(exported, path)
    with ArenaStore(tmp_path / "other.db") as other:
        assert other.import_votes(vote_io.read_votes(path)) == 4
        assert list(other.vote_records()) == exported
        assert {m["name"]: m["kind"] for m in other.list_models()} == {
            "base": "imported", "distill": "imported", "grpo": "imported"}
        # the same file again: every battle is already there, and nothing is added
        with pytest.raises(ImportConflict) as caught:
            other.import_votes(vote_io.read_votes(path))
        assert str(caught.value).splitlines()[0] == f"{path}:1: battle {exported[0]['battle_id']!r} is already in the store"
        assert other.vote_count() == 4
    frame = store.votes_frame(task="t2i")
    assert list(frame.columns)[:6] == ["battle_id", "task", "model_a", "model_b", "winner", "judge"]
    assert len(leaderboard(frame, rounds=20).rows) == 3


def test_import_is_all_or_nothing(tmp_path, store):
    records = [
        {"model_a": "a", "model_b": "b", "winner": "model_a", "task": "t2i", "battle_id": "x1"},
        {"model_a": "a", "model_b": "b", "winner": "tie", "battle_id": "x2"},  # no task, no default
        {"model_a": "a", "model_b": "b", "winner": "model_b", "task": "t2i", "battle_id": "x1"},  # repeated
        {"model_a": "a", "model_b": "a", "winner": "model_b", "task": "t2i"},
    ]
    with pytest.raises(ImportConflict) as caught:
        store.import_votes(records)
    assert str(caught.value).splitlines() == [
        "record 2: no task: the record has none and no default task was given",
        "record 3: battle 'x1' appears twice (also at record 1)",
        "record 4: model_a and model_b are both 'a'",
    ]
    assert store.vote_count() == 0 and store.list_models() == []
    assert store.import_votes(records[:2], task="edit") == 2
    assert {r["task"] for r in store.vote_records()} == {"t2i", "edit"}


def test_fastchat_voters_become_human_votes(tmp_path, store):
    path = tmp_path / "clean_battle.json"
    path.write_text('[{"question_id": "q1", "model_a": "SDXL", "model_b": "LCM", "winner": "model_a",'
                    ' "judge": "arena_user_::1", "anony": true, "tstamp": 1707700514.3}]')
    store.import_votes(vote_io.read_votes(path), task="t2i")
    battle = store.get_battle("q1")
    assert battle["vote"]["judge"] == "human" and battle["vote"]["voter"] == "arena_user_::1"


def test_in_memory_store():
    with ArenaStore() as store:
        samples = populate(store)
        battle = new_battle(store, samples)
        store.record_vote(battle["id"], "model_a")
        assert store.vote_count() == 1


def test_import_can_skip_battles_already_in_the_store(store):
    records = [
        {"battle_id": "s1", "task": "t2i", "model_a": "a", "model_b": "b", "winner": "model_a", "judge": "oracle"},
        {"battle_id": "s2", "task": "t2i", "model_a": "b", "model_b": "c", "winner": "tie", "judge": "oracle"},
    ]
    assert store.import_votes(records[:1], source="seed.jsonl") == 1
    assert store.import_votes(records, skip_existing=True, source="seed.jsonl") == 1  # s1 is skipped
    assert store.import_votes(records, skip_existing=True) == 0  # idempotent
    assert [r["battle_id"] for r in store.vote_records()] == ["s1", "s2"]
    assert store.get_battle("s2")["meta"] == {"source": "seed.jsonl"}
    assert {m["name"] for m in store.list_models()} == {"a", "b", "c"}
    with pytest.raises(ImportConflict, match="appears twice"):  # repeats within the input are still refused
        store.import_votes([records[1], {**records[1], "battle_id": "s3"}, {**records[1], "battle_id": "s3"}],
                           skip_existing=True)
    assert store.vote_count() == 2
