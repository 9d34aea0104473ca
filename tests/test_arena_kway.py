"""K-way votes: stored as themselves, expanded for every rating method, resampled whole."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from arena import io as vote_io
from arena.ratings import (
    _BootstrapPlan,
    _fit_components,
    _component_patterns,
    bradley_terry,
    encode_votes,
    kway_comparisons,
    kway_patterns,
    leaderboard,
    online_elo,
    pair_counts,
    trueskill_ratings,
)
from arena.store import AlreadyVoted, ArenaStore, InvalidOutcome, RevealedBattle, WrongVoter
from tests.test_arena_store import populate


def test_the_expansion_of_hand_made_votes():
    models = ["a", "b", "c", "d"]
    assert kway_comparisons(models, "c", None) == [("c", "a", "model_a"), ("c", "b", "model_a"), ("c", "d", "model_a")]
    assert kway_comparisons(models, "c", "a") == [
        ("c", "a", "model_a"), ("c", "b", "model_a"), ("c", "d", "model_a"),  # the best beats each other
        ("b", "a", "model_a"), ("d", "a", "model_a"),  # each other beats the worst (best > worst once)
    ]
    assert kway_comparisons(models, None, "b") == [("a", "b", "model_a"), ("c", "b", "model_a"), ("d", "b", "model_a")]
    assert kway_comparisons(["a", "b", "c"], None, None) == [  # all bad: a tie of every pair, as "both bad"
        ("a", "b", "tie (bothbad)"), ("a", "c", "tie (bothbad)"), ("b", "c", "tie (bothbad)")]


KWAY = [
    {"models": ["a", "b", "c", "d"], "best": "a", "worst": "d", "tstamp": 1.0},
    {"models": ["d", "c", "b", "a"], "best": "b", "worst": None, "tstamp": 2.0},
    {"models": ["b", "c", "d"], "best": None, "worst": None, "tstamp": 4.0},
    {"models": ["c", "a", "b", "d"], "best": "c", "worst": "a", "tstamp": 5.0},
]
PAIRS = [{"model_a": "a", "model_b": "b", "winner": "model_b", "tstamp": 3.0},
         {"model_a": "d", "model_b": "c", "winner": "tie", "tstamp": 6.0}]


def expanded(votes):
    out = []
    for v in sorted(votes, key=lambda v: v["tstamp"]):
        if "models" in v:
            out += [{"model_a": x, "model_b": y, "winner": w, "tstamp": v["tstamp"]}
                    for x, y, w in kway_comparisons(v["models"], v["best"], v["worst"])]
        else:
            out.append(v)
    return out


def test_every_method_rates_the_implied_comparisons():
    votes = (KWAY + PAIRS) * 5
    flat = expanded(votes)
    assert bradley_terry(votes) == pytest.approx(bradley_terry(flat), abs=1e-9)
    assert online_elo(votes) == pytest.approx(online_elo(flat), abs=1e-9)
    ours, theirs = trueskill_ratings(votes).sort_index(), trueskill_ratings(flat).sort_index()
    assert np.allclose(ours.to_numpy(), theirs.to_numpy()) and list(ours.index) == list(theirs.index)
    ev = encode_votes(votes)
    assert ev.n_votes == 30 and len(ev) == len(flat)
    board = leaderboard(votes, rounds=20)
    assert board.votes == 30  # votes, not comparisons
    rows = {r["model"]: r for r in board.rows}
    assert rows["a"]["votes"] == 5 * 4  # a appears in three K-way votes and one pair
    assert rows["a"]["wins"] + rows["a"]["losses"] + rows["a"]["ties"] == sum(
        1 for c in flat if "a" in (c["model_a"], c["model_b"]))


def test_the_bootstrap_resamples_votes_so_a_kway_vote_counts_once():
    rng = np.random.default_rng(0)
    votes = []
    for k in range(300):  # four models, every vote a 4-image battle in random order
        order = list(rng.permutation(["a", "b", "c", "d"]))
        best = "a" if rng.random() < 0.6 else order[0]
        votes.append({"models": order, "best": best, "worst": None, "tstamp": float(k)})
    ev = encode_votes(votes)
    pc = pair_counts(ev)
    [fit] = _fit_components(pc, 0.0, None, [])
    pairwise, patterns, first = kway_patterns(ev, pc)
    plan = _BootstrapPlan.build(fit, pairwise.restrict(fit.members), _component_patterns(fit, pc, patterns, first))
    assert plan.draw_counts.sum() == 300  # the resampling draws 300 votes, not 900 comparisons
    draws = plan.resample(np.random.default_rng(1), 200)
    assert (draws.sum(axis=1) == 900).all()  # every resample has 3 comparisons per drawn vote
    # comparisons of one vote come together: when half the votes rank a first (the others b), a's
    # wins over b, c and d are the same count in every resample (as independent pairs they would differ)
    only_a = [{**v, "best": "a" if k % 2 else "b"} for k, v in enumerate(votes)]
    ev_a = encode_votes(only_a)
    pc_a = pair_counts(ev_a)
    [fit_a] = _fit_components(pc_a, 0.1, None, [])
    pairwise_a, patterns_a, first_a = kway_patterns(ev_a, pc_a)
    plan_a = _BootstrapPlan.build(fit_a, pairwise_a.restrict(fit_a.members),
                                  _component_patterns(fit_a, pc_a, patterns_a, first_a))
    draws_a = plan_a.resample(np.random.default_rng(2), 100)
    a_index = ev_a.models.index("a")
    a_pairs = np.flatnonzero((pc_a.i == a_index) | (pc_a.j == a_index))
    side = {q: 0 if pc_a.i[q] == a_index else 2 for q in a_pairs}  # the cell of a's win: first or last
    wins = [draws_a[:, plan_a.cell_pair == q][:, side[q] and -1] for q in a_pairs]
    assert len(wins) == 3 and np.array_equal(wins[0], wins[1]) and np.array_equal(wins[1], wins[2])
    assert wins[0].std() > 0  # and the count itself varies from resample to resample
    # resampling votes gives wider intervals for the model that wins its votes whole than
    # resampling their comparisons as if they were independent pairs would
    whole = {r["model"]: r["ci_high"] - r["ci_low"] for r in leaderboard(votes, rounds=300).rows}
    pairs = {r["model"]: r["ci_high"] - r["ci_low"] for r in leaderboard(expanded(votes), rounds=300).rows}
    assert whole["a"] > pairs["a"]
    sandwich_whole = {r["model"]: r["ci_high"] - r["ci_low"] for r in leaderboard(votes, ci="sandwich").rows}
    assert sandwich_whole["a"] == pytest.approx(whole["a"], rel=0.25)


@pytest.fixture
def store(tmp_path):
    with ArenaStore(tmp_path / "arena.db") as s:
        yield s


def kway_samples(store):
    samples = populate(store, models=("base", "grpo", "distill", "extra"))
    return [samples[m][0] for m in ("base", "grpo", "distill", "extra")]


def test_a_kway_vote_is_stored_as_itself_and_round_trips(store, tmp_path):
    ids = kway_samples(store)
    covariates = [{"aesthetics": 0.1 * k, "objects": k} for k in range(4)]
    battle = store.create_kway_battle(ids, voter="v", meta={"covariates": covariates})
    assert battle["models"] == ["base", "grpo", "distill", "extra"] and battle["samples"] == ids
    vote = store.record_ranking(battle["id"], "distill", "base", voter="v", tstamp=10.0)
    assert vote["models"] == battle["models"] and (vote["best"], vote["worst"]) == ("distill", "base")
    stored = store.get_battle(battle["id"])
    assert stored["vote"]["outcome"] == "ranked" and stored["vote"]["best"] == "distill" and stored["revealed"] == 10.0
    all_bad = store.create_kway_battle(ids[::-1], voter="v")
    store.record_ranking(all_bad["id"], None, None, voter="v", tstamp=11.0)
    pair = store.create_battle(ids[0], ids[1], voter="v")
    store.record_vote(pair["id"], "model_b", voter="v", tstamp=12.0)
    records = list(store.vote_records())
    assert [(r["models"], r["best"], r["worst"], r["winner"]) for r in records] == [
        (["base", "grpo", "distill", "extra"], "distill", "base", None),
        (["extra", "distill", "grpo", "base"], None, None, None),
        (None, None, None, "model_b"),
    ]
    assert records[0]["samples"] == ids and records[0]["covariates"] == covariates and records[0]["category"] == "count"
    for name in ("votes.jsonl", "votes.csv"):
        path = tmp_path / name
        vote_io.write_votes(records, path)
        with ArenaStore(tmp_path / f"{name}.db") as other:
            assert other.import_votes(vote_io.read_votes(path)) == 3
            assert list(other.vote_records()) == records
        offline = leaderboard(vote_io.read_votes(path), rounds=30).rows
        assert offline == leaderboard(store.votes_frame(), rounds=30).rows


def test_refused_kway_votes_store_nothing(store):
    ids = kway_samples(store)
    battle = store.create_kway_battle(ids, voter="v")
    refused = [
        (InvalidOutcome, lambda: store.record_vote(battle["id"], "model_a", voter="v")),
        (InvalidOutcome, lambda: store.record_ranking(battle["id"], "nobody", voter="v")),
        (InvalidOutcome, lambda: store.record_ranking(battle["id"], "base", "base", voter="v")),
        (WrongVoter, lambda: store.record_ranking(battle["id"], "base", voter="mallory")),
    ]
    for error, attempt in refused:
        with pytest.raises(error):
            attempt()
        assert store.vote_count() == 0
    pair = store.create_battle(ids[0], ids[1], voter="v")
    with pytest.raises(InvalidOutcome, match="shows two images"):
        store.record_ranking(pair["id"], "base", voter="v")
    store.record_ranking(battle["id"], "grpo", voter="v")
    with pytest.raises(AlreadyVoted, match="revealed"):
        store.record_ranking(battle["id"], "base", voter="v")
    skipped = store.create_kway_battle(ids, voter="v")
    assert store.reveal_battle(skipped["id"], voter="v")["revealed"] is not None
    with pytest.raises(RevealedBattle, match="would not be blind"):
        store.record_ranking(skipped["id"], "base", voter="v")
    assert store.vote_count() == 1
    with pytest.raises(Exception, match="three or more"):
        store.create_kway_battle(ids[:2])


def test_pairwise_readers_get_the_expansion_with_a_warning(tmp_path):
    records = [{"battle_id": "k1", "task": "t2i", "models": ["a", "b", "c", "d"], "best": "c", "worst": "a",
                "tstamp": 1.0, "samples": [1, 2, 3, 4]},
               {"battle_id": "p1", "task": "t2i", "model_a": "a", "model_b": "b", "winner": "tie", "tstamp": 2.0}]
    path = tmp_path / "fastchat.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert vote_io.write_votes(records, path, pairwise=True) == 6
    assert [w.category for w in caught] == [vote_io.KwayExpandedWarning]
    assert "1 K-way vote(s) as the 5 pairwise comparisons" in str(caught[0].message)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["model_a"], r["model_b"], r["winner"]) for r in lines[:5]] == [
        ("c", "a", "model_a"), ("c", "b", "model_a"), ("c", "d", "model_a"), ("b", "a", "model_a"), ("d", "a", "model_a")]
    assert lines[0]["sample_a"] == 3 and lines[0]["sample_b"] == 1 and "models" not in lines[0]
    assert lines[5]["battle_id"] == "p1"


def test_malformed_kway_records_name_their_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"models": ["a", "b", "b"], "best": "a"},
        {"models": ["a", "b", "c"], "best": "z"},
        {"models": ["a", "b", "c"], "best": "a", "winner": "model_a"},
        {"models": ["a", "b"], "best": "a"},
        {"models": ["a", "b", "c"], "best": "a", "covariates": [{"aesthetics": 1}]},
    ]) + "\n")
    with pytest.raises(vote_io.VoteFileError) as caught:
        vote_io.read_votes(path)
    assert str(caught.value).splitlines() == [
        f"{path}:1: models names a model twice",
        f"{path}:2: best is 'z', which is not one of the models",
        f"{path}:3: a K-way vote (models) has no model_a, model_b or winner",
        f"{path}:4: models must list three or more models (a two-model vote uses model_a, model_b and winner)",
        f"{path}:5: covariates has 1 entries for 3 models",
    ]
