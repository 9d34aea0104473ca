"""Matchmaking: seeded, fair to both sides, and quick to bring a new model up to speed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from arena.matchmaking import next_pair, pair_counts

MODELS = [f"m{k}" for k in range(10)]


def settled_counts(models, per_pair=10):
    counts = np.full((len(models), len(models)), per_pair)
    np.fill_diagonal(counts, 0)
    return counts


def battles_until_minimum(strategy: str, min_votes: int = 20, seed: int = 0) -> int:
    """Battles served until a newcomer joining ten settled models has ``min_votes`` votes."""
    models = MODELS + ["new"]
    counts = np.zeros((11, 11), dtype=np.int64)
    counts[:10, :10] = settled_counts(MODELS)
    rng = np.random.default_rng(seed)
    for served in itertools.count(1):
        a, b = next_pair(models, counts, strategy=strategy, seed=rng, min_votes=min_votes)
        i, j = models.index(a), models.index(b)
        counts[i, j] += 1
        counts[j, i] += 1
        if counts[10].sum() >= min_votes:
            return served
    raise AssertionError("unreachable")


def test_a_new_model_reaches_its_minimum_far_sooner_than_under_uniform_pairing():
    informed = [battles_until_minimum("info", seed=s) for s in range(5)]
    uniform = [battles_until_minimum("random", seed=s) for s in range(5)]
    assert np.mean(informed) < 0.35 * np.mean(uniform)
    assert max(informed) < 40 and min(uniform) > 60


def test_same_seed_same_pair_and_sides_are_shuffled():
    counts = settled_counts(MODELS)
    first = [next_pair(MODELS, counts, seed=s) for s in range(30)]
    assert first == [next_pair(MODELS, counts, seed=s) for s in range(30)]
    assert len(set(first)) > 10
    rng = np.random.default_rng(0)
    two = [next_pair(["a", "b"], np.zeros((2, 2)), seed=rng) for _ in range(200)]
    assert 60 < two.count(("a", "b")) < 140 and set(two) == {("a", "b"), ("b", "a")}


def test_random_pairing_covers_every_pair():
    rng = np.random.default_rng(1)
    seen = {frozenset(next_pair(MODELS[:5], np.zeros((5, 5)), strategy="random", seed=rng)) for _ in range(300)}
    assert len(seen) == 10


def test_information_seeking_prefers_close_rarely_compared_pairs():
    models = ["a", "b", "c", "d"]
    intervals = {"a": (1200, 1260), "b": (1190, 1250), "c": (900, 950), "d": (700, 760)}
    counts = settled_counts(models, per_pair=30)
    counts[2, 3] = counts[3, 2] = 0  # c and d never met
    rng = np.random.default_rng(2)
    picks = [frozenset(next_pair(models, counts, seed=rng, min_votes=0, intervals=intervals)) for _ in range(2000)]
    share = {pair: picks.count(pair) / len(picks) for pair in set(picks)}
    assert share[frozenset("ab")] > 0.15  # overlapping intervals
    assert share[frozenset("cd")] > 0.3  # never compared
    assert share.get(frozenset("ad"), 0) < 0.05  # disjoint and well measured


def test_pair_counts_from_votes():
    votes = [{"model_a": "a", "model_b": "b"}, {"model_a": "b", "model_b": "a"},
             {"model_a": "a", "model_b": "c"}, {"model_a": "a", "model_b": "zz"}]
    counts = pair_counts(votes, ["a", "b", "c"])
    assert counts.tolist() == [[0, 2, 1], [2, 0, 0], [1, 0, 0]]
    assert pair_counts([], ["a", "b"]).sum() == 0


def test_bad_requests():
    with pytest.raises(ValueError, match="at least two models"):
        next_pair(["a"], np.zeros((1, 1)))
    with pytest.raises(ValueError, match="2×2 matrix"):
        next_pair(["a", "b"], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="strategy"):
        next_pair(["a", "b"], np.zeros((2, 2)), strategy="elo")
    with pytest.raises(ValueError, match="distinct"):
        next_pair(["a", "a"], np.zeros((2, 2)))


def test_a_group_of_four_is_distinct_seeded_and_shuffled():
    from arena.matchmaking import next_group

    counts = settled_counts(MODELS)
    groups = [next_group(MODELS, counts, 4, seed=s) for s in range(200)]
    assert all(len(set(g)) == 4 and set(g) <= set(MODELS) for g in groups)
    assert next_group(MODELS, counts, 4, seed=7) == groups[7]
    assert len({g[0] for g in groups}) == len(MODELS)  # any model may be shown first
    with pytest.raises(ValueError, match="needs 12 models"):
        next_group(MODELS, counts, 12)


def test_groups_gather_close_rarely_compared_models():
    from arena.matchmaking import next_group

    counts = settled_counts(MODELS, per_pair=50)
    close = ["m0", "m1", "m2", "m3"]  # never met each other
    for x in close:
        for y in close:
            counts[MODELS.index(x), MODELS.index(y)] = 0
    intervals = {m: (1000 + 100 * k, 1040 + 100 * k) for k, m in enumerate(MODELS)}
    for m in close:  # the four overlap; the rest are far apart
        intervals[m] = (990, 1010)
    info = [len(set(next_group(MODELS, counts, 4, seed=s, intervals=intervals)) & set(close)) for s in range(100)]
    uniform = [len(set(next_group(MODELS, counts, 4, seed=s, strategy="random")) & set(close)) for s in range(100)]
    assert np.mean(info) > 3.0 and np.mean(uniform) < 2.0


def test_pair_counts_see_every_pair_of_a_kway_vote():
    votes = [{"models": ["m0", "m1", "m2", "m3"], "best": "m0", "worst": None},
             {"model_a": "m0", "model_b": "m1", "winner": "tie", "models": None}]
    counts = pair_counts(votes, MODELS)
    assert counts[0, 1] == 2 and counts[2, 3] == 1 and counts[0, 4] == 0 and counts.sum() == 2 * 7
