"""Rating maths: closed forms, invariances, reference implementations, intervals."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import trueskill
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import expit

from arena import ratings
from arena.ratings import (
    bradley_terry,
    components,
    confidence_intervals,
    leaderboard,
    online_elo,
    pair_counts,
    parse_anchor,
    trueskill_ratings,
    win_rate_matrix,
    battle_count_matrix,
)
from tests.arena_fixtures import synthetic_votes, votes_from_counts

STRENGTHS = {"alpha": 150.0, "beta": 60.0, "gamma": 0.0, "delta": -40.0, "eps": -170.0}


# -- plain reference implementations --------------------------------------------------------------


def reference_online_elo(votes, k=4, scale=400, base=10, init=1000):
    """FastChat's original loop, verbatim in spirit."""
    rating = defaultdict(lambda: init)
    for vote in votes:
        ra, rb = rating[vote["model_a"]], rating[vote["model_b"]]
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        sa = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}[vote["winner"]]
        rating[vote["model_a"]] += k * (sa - ea)
        rating[vote["model_b"]] += k * (1 - sa - (1 - ea))
    return dict(rating)


def reference_bt_mm(votes, iterations=20000):
    """Zermelo / Hunter's MM iteration on scores (ties as halves), centred, Elo scale."""
    models = sorted({v["model_a"] for v in votes} | {v["model_b"] for v in votes})
    index = {m: k for k, m in enumerate(models)}
    n = np.zeros((len(models), len(models)))
    score = np.zeros(len(models))
    for v in votes:
        a, b = index[v["model_a"]], index[v["model_b"]]
        s = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}[v["winner"]]
        n[a, b] += 1
        n[b, a] += 1
        score[a] += s
        score[b] += 1 - s
    gamma = np.ones(len(models))
    for _ in range(iterations):
        new = score / (n / (gamma[:, None] + gamma[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        if np.abs(new - gamma).max() < 1e-14:
            break
        gamma = new
    theta = np.log10(gamma)
    return {m: 400 * (theta[index[m]] - theta.mean()) + 1000 for m in models}


def fastchat_objective_optimum(votes):
    """FastChat's compute_bt objective (weighted unique (a, b, outcome) rows, ties as 0.5),
    minimised by L-BFGS with a far tighter stopping rule than FastChat's own."""
    frame = pd.DataFrame(votes)
    codes, models = pd.factorize(pd.concat([frame["model_a"], frame["model_b"]]))
    rows = np.column_stack([codes[: len(frame)], codes[len(frame):],
                            frame["winner"].map({"model_a": 2, "model_b": 0}).fillna(1).to_numpy(int)])
    unique, weights = np.unique(rows, axis=0, return_counts=True)
    outcome = unique[:, 2] / 2.0
    alpha = math.log(10)

    def loss_and_grad(r):
        p = expit(alpha * (r[unique[:, 0]] - r[unique[:, 1]]))
        loss = -((np.log(p) * outcome + np.log(1 - p) * (1 - outcome)) * weights).sum()
        g = -alpha * (outcome - p) * weights
        grad = np.bincount(unique[:, 0], g, len(models)) - np.bincount(unique[:, 1], g, len(models))
        return loss, grad

    result = minimize(loss_and_grad, np.zeros(len(models)), jac=True, method="L-BFGS-B",
                      options={"maxiter": 100000, "gtol": 1e-12, "ftol": 1e-16, "maxcor": 50})
    theta = result.x - result.x.mean()
    return {m: 400 * theta[k] + 1000 for k, m in enumerate(models)}


# -- Bradley–Terry: closed forms and invariances ---------------------------------------------------


def test_two_models_closed_form():
    votes = votes_from_counts({("a", "b", "model_a"): 30, ("a", "b", "model_b"): 10})
    bt = bradley_terry(votes)
    assert bt["a"] - bt["b"] == pytest.approx(400 * math.log10(30 / 10), abs=1e-6)
    assert (bt["a"] + bt["b"]) / 2 == pytest.approx(1000, abs=1e-9)


def test_ties_count_as_half_a_win_each():
    votes = votes_from_counts({("a", "b", "model_a"): 10, ("b", "a", "model_a"): 5,
                               ("a", "b", "tie"): 6, ("b", "a", "tie (bothbad)"): 4})
    bt = bradley_terry(votes)
    # a scores 10 + 10/2 = 15, b scores 5 + 5 = 10
    assert bt["a"] - bt["b"] == pytest.approx(400 * math.log10(15 / 10), abs=1e-6)
    only_ties = votes_from_counts({("a", "b", "tie"): 3, ("b", "a", "tie (bothbad)"): 2})
    assert bradley_terry(only_ties) == pytest.approx({"a": 1000.0, "b": 1000.0}, abs=1e-9)


def test_swapping_sides_changes_nothing():
    votes = synthetic_votes(STRENGTHS, 800, seed=1, tie_rate=0.2)
    flip = {"model_a": "model_b", "model_b": "model_a", "tie": "tie", "tie (bothbad)": "tie (bothbad)"}
    swapped = votes.assign(model_a=votes["model_b"], model_b=votes["model_a"], winner=votes["winner"].map(flip))
    assert bradley_terry(swapped) == pytest.approx(bradley_terry(votes), abs=1e-8)
    assert online_elo(swapped) == pytest.approx(online_elo(votes), abs=1e-8)
    pd.testing.assert_frame_equal(trueskill_ratings(swapped).sort_index(), trueskill_ratings(votes).sort_index())


def test_renaming_models_changes_nothing_but_names():
    votes = synthetic_votes(STRENGTHS, 600, seed=2, tie_rate=0.1)
    rename = {name: f"x-{name[::-1]}" for name in STRENGTHS}
    renamed = votes.assign(model_a=votes["model_a"].map(rename), model_b=votes["model_b"].map(rename))
    before, after = bradley_terry(votes), bradley_terry(renamed)
    assert {rename[m]: r for m, r in before.items()} == pytest.approx(after, abs=1e-8)
    before, after = online_elo(votes), online_elo(renamed)
    assert {rename[m]: r for m, r in before.items()} == pytest.approx(after, abs=1e-8)


vote_lists = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 4), st.sampled_from(ratings.OUTCOMES)), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vote_lists)
def test_bt_matches_a_plain_mm_reference(raw):
    # A cycle with a win each way keeps the maximum-likelihood estimate finite.
    votes = [{"model_a": f"m{k}", "model_b": f"m{(k + 1) % 5}", "winner": w}
             for k in range(5) for w in ("model_a", "model_b")]
    votes += [{"model_a": f"m{a}", "model_b": f"m{(a + d) % 5}", "winner": w} for a, d, w in raw]
    ours, reference = bradley_terry(votes), reference_bt_mm(votes)
    assert ours == pytest.approx(reference, abs=1e-5)


@settings(max_examples=30, deadline=None)
@given(vote_lists)
def test_online_elo_matches_fastchats_loop(raw):
    votes = [{"model_a": f"m{a}", "model_b": f"m{(a + d) % 5}", "winner": w} for a, d, w in raw]
    assert online_elo(votes) == pytest.approx(reference_online_elo(votes), abs=1e-9)


def test_bt_agrees_with_an_independent_optimiser_of_fastchats_objective():
    strengths = {f"m{k:02d}": s for k, s in enumerate(np.linspace(-300, 300, 20))}
    votes = synthetic_votes(strengths, 20000, seed=3, tie_rate=0.15).to_dict("records")
    ours, reference = bradley_terry(votes), fastchat_objective_optimum(votes)
    assert max(abs(ours[m] - reference[m]) for m in ours) < 0.05


def test_online_elo_follows_timestamps_then_table_order():
    votes = synthetic_votes(STRENGTHS, 300, seed=4, tie_rate=0.1)
    shuffled = votes.sample(frac=1.0, random_state=0)
    assert online_elo(shuffled) == pytest.approx(online_elo(votes), abs=1e-9)
    same_time = votes.assign(tstamp=1.0)  # equal timestamps: the table order decides
    assert online_elo(same_time) == pytest.approx(reference_online_elo(votes.to_dict("records")), abs=1e-9)


def test_trueskill_matches_the_package_update():
    votes = synthetic_votes(STRENGTHS, 150, seed=5, tie_rate=0.25)
    env = trueskill.TrueSkill(backend="scipy")
    rating = defaultdict(env.create_rating)
    for v in votes.to_dict("records"):
        a, b = v["model_a"], v["model_b"]
        if v["winner"] == "model_b":
            rating[b], rating[a] = env.rate_1vs1(rating[b], rating[a])
        else:
            rating[a], rating[b] = env.rate_1vs1(rating[a], rating[b], drawn=v["winner"] != "model_a")
    ours = trueskill_ratings(votes, env=env)
    for name, r in rating.items():
        assert ours.loc[name, "mu"] == pytest.approx(r.mu, abs=1e-7)
        assert ours.loc[name, "sigma"] == pytest.approx(r.sigma, abs=1e-7)
    assert (ours["score"] == ours["mu"] - 3 * ours["sigma"]).all()


# -- anchors, penalties, components, bad input ----------------------------------------------------


def test_anchor_and_l2():
    votes = synthetic_votes(STRENGTHS, 1000, seed=6)
    free = bradley_terry(votes)
    anchored = bradley_terry(votes, anchor=("gamma", 1200.0))
    assert anchored["gamma"] == pytest.approx(1200.0)
    shift = anchored["gamma"] - free["gamma"]
    assert {m: r - shift for m, r in anchored.items()} == pytest.approx(free, abs=1e-9)
    shrunk = bradley_terry(votes, l2=50.0)
    assert np.ptp(list(shrunk.values())) < np.ptp(list(free.values()))
    assert parse_anchor("mixtral-8x7b-instruct-v0.1=1114") == ("mixtral-8x7b-instruct-v0.1", 1114.0)
    assert parse_anchor("a=b=3") == ("a=b", 3.0)
    with pytest.raises(ValueError, match="MODEL=RATING"):
        parse_anchor("nothing")
    with pytest.raises(ValueError, match="no votes"):
        bradley_terry(votes, anchor=("unknown", 1000.0))


def test_disconnected_models_are_rated_per_component_with_a_warning():
    t2i = synthetic_votes({"a": 100, "b": 0, "c": -100}, 300, seed=7)
    edit = synthetic_votes({"x": 50, "y": -50}, 200, seed=8, start=1.8e9)
    votes = pd.concat([t2i, edit], ignore_index=True)
    assert components(votes) == [["a", "b", "c"], ["x", "y"]]
    board = leaderboard(votes, rounds=50)
    assert any("2 disconnected components" in w and "{x, y}" in w for w in board.warnings)
    rows = {row["model"]: row for row in board.rows}
    assert {rows[m]["component"] for m in "abc"} == {1} and {rows[m]["component"] for m in "xy"} == {2}
    for group in ("abc", "xy"):
        assert np.mean([rows[m]["elo"] for m in group]) == pytest.approx(1000.0)
    assert [row["component"] for row in board.rows] == sorted(row["component"] for row in board.rows)


def test_an_undefeated_model_gets_a_finite_rating_and_a_warning():
    votes = votes_from_counts({("a", "b", "model_a"): 5, ("b", "c", "model_a"): 3, ("c", "b", "model_a"): 2})
    board = leaderboard(votes, rounds=50)
    assert any("do not exist" in w and "a never lost to the others" in w and "L2 penalty" in w for w in board.warnings)
    assert all(np.isfinite(row["elo"]) for row in board.rows)
    assert board.rows[0]["model"] == "a"


def test_bad_vote_tables_are_refused():
    with pytest.raises(ValueError, match="winner is 'draw'"):
        bradley_terry([{"model_a": "a", "model_b": "b", "winner": "draw"}])
    with pytest.raises(ValueError, match="both 'a'"):
        online_elo([{"model_a": "a", "model_b": "a", "winner": "tie"}])
    with pytest.raises(ValueError, match="no column winner"):
        leaderboard(pd.DataFrame({"model_a": ["a"], "model_b": ["b"]}))
    with pytest.raises(ValueError, match="ci must be"):
        leaderboard(votes_from_counts({("a", "b", "tie"): 1}), ci="jackknife")


# -- intervals and the leaderboard ----------------------------------------------------------------


def test_bootstrap_is_deterministic_per_seed_and_independent_of_workers():
    votes = synthetic_votes(STRENGTHS, 600, seed=9, tie_rate=0.1)
    first = confidence_intervals(votes, rounds=120, seed=11)
    assert confidence_intervals(votes, rounds=120, seed=11) == first
    assert confidence_intervals(votes, rounds=120, seed=12) != first
    parallel = leaderboard(votes, rounds=120, seed=11, workers=2)
    assert {r["model"]: (r["ci_low"], r["ci_high"]) for r in parallel.rows} == first
    assert parallel.rows == leaderboard(votes, rounds=120, seed=11, workers=1).rows


@pytest.mark.parametrize("method", ["sandwich", "bootstrap"])
def test_intervals_cover_the_true_strengths(method):
    strengths = {f"m{k}": s for k, s in enumerate([200, 120, 60, 0, -30, -90, -140, -200])}
    truth = np.array(list(strengths.values())) - np.mean(list(strengths.values())) + 1000
    covered = total = 0
    for seed in range(30):
        votes = synthetic_votes(strengths, 1200, seed=100 + seed)
        board = leaderboard(votes, ci=method, rounds=100, seed=seed, with_online=False)
        rows = {row["model"]: row for row in board.rows}
        for name, true in zip(strengths, truth):
            covered += rows[name]["ci_low"] <= true <= rows[name]["ci_high"]
            total += 1
    assert 0.88 <= covered / total <= 0.995


def test_sandwich_and_bootstrap_agree_on_large_samples():
    votes = synthetic_votes(STRENGTHS, 5000, seed=13, tie_rate=0.2)
    boot = confidence_intervals(votes, method="bootstrap", rounds=300, seed=1)
    sand = confidence_intervals(votes, method="sandwich")
    for name in STRENGTHS:
        width_boot, width_sand = boot[name][1] - boot[name][0], sand[name][1] - sand[name][0]
        assert width_sand == pytest.approx(width_boot, rel=0.2)


def test_anchored_intervals_pin_the_anchor():
    votes = synthetic_votes(STRENGTHS, 800, seed=14)
    for method in ("sandwich", "bootstrap"):
        ci = confidence_intervals(votes, method=method, rounds=60, anchor=("gamma", 1100.0))
        assert ci["gamma"] == pytest.approx((1100.0, 1100.0))


def test_leaderboard_rows():
    votes = synthetic_votes(STRENGTHS, 2000, seed=15, tie_rate=0.1)
    board = leaderboard(votes, rounds=100, seed=0)
    assert [row["model"] for row in board.rows] == list(STRENGTHS)  # strongest first
    assert board.votes == 2000 and board.rounds == 100 and board.ci_method == "bootstrap"
    for row in board.rows:
        assert set(ratings.ROW_FIELDS) <= set(row)
        assert row["votes"] == row["wins"] + row["losses"] + row["ties"]
        assert row["ci_low"] <= row["elo"] <= row["ci_high"]
        assert row["win_rate"] == pytest.approx(row["wins"] / row["votes"])
        assert row["trueskill_score"] == pytest.approx(row["trueskill_mu"] - 3 * row["trueskill_sigma"])
    assert sum(row["votes"] for row in board.rows) == 2 * 2000
    assert board.rows[0]["rank_ub"] == 1
    assert board.rows[-1]["rank_ub"] > 1  # eps is clearly below alpha
    lows = {row["model"]: row["ci_low"] for row in board.rows}
    for row in board.rows:
        assert row["rank_ub"] == 1 + sum(low > row["ci_high"] for low in lows.values())
    assert set(board.to_frame().columns) == set(ratings.ROW_FIELDS)


def test_min_votes_leaves_rare_models_out():
    votes = pd.concat([
        synthetic_votes(STRENGTHS, 500, seed=16),
        pd.DataFrame([{"model_a": "rare", "model_b": "alpha", "winner": "model_a", "tstamp": 2e9}]),
    ], ignore_index=True)
    board = leaderboard(votes, rounds=20, min_votes=5)
    assert "rare" not in {row["model"] for row in board.rows}
    assert any("fewer than 5 votes: rare" in w for w in board.warnings)
    assert leaderboard([], rounds=10).rows == []


def test_matrices():
    votes = votes_from_counts({("a", "b", "model_a"): 3, ("b", "a", "model_a"): 1, ("a", "b", "tie"): 1,
                               ("b", "c", "model_b"): 2})
    counts = battle_count_matrix(votes, order=["a", "b", "c"])
    assert counts.loc["a", "b"] == counts.loc["b", "a"] == 5 and counts.loc["a", "c"] == 0
    rates = win_rate_matrix(votes, order=["a", "b", "c"])
    assert rates.loc["a", "b"] == pytest.approx(3 / 5) and rates.loc["b", "a"] == pytest.approx(1 / 5)
    assert rates.loc["c", "b"] == pytest.approx(1.0) and np.isnan(rates.loc["a", "c"])
    pc = pair_counts(votes)
    assert pc.n.sum() == 7


def test_categorical_columns_take_the_fast_path():
    votes = synthetic_votes(STRENGTHS, 400, seed=17, tie_rate=0.1)
    categorical = votes.assign(model_a=votes["model_a"].astype("category"),
                               model_b=votes["model_b"].astype("category"))
    assert bradley_terry(categorical) == pytest.approx(bradley_terry(votes), abs=1e-9)


def test_resampled_counts_follow_the_multinomial_exactly():
    from collections import Counter
    from math import factorial

    counts = np.array([1.0, 2.0, 1.0])  # N = 4 votes in three cells
    rows = ratings.resample_counts(np.random.default_rng(0), counts, 20000)
    assert (rows.sum(axis=1) == 4).all() and (rows >= 0).all()
    seen = Counter(map(tuple, rows.tolist()))
    p = counts / counts.sum()
    for outcome, k in seen.items():
        pmf = factorial(4) / np.prod([factorial(x) for x in outcome]) * np.prod(p ** np.array(outcome))
        assert k / len(rows) == pytest.approx(pmf, abs=4 * math.sqrt(pmf * (1 - pmf) / len(rows)) + 1e-4)
    assert len(seen) == 15  # every composition of 4 into 3 cells appears
    big = ratings.resample_counts(np.random.default_rng(1), np.array([50.0, 30.0, 20.0]), 4000)
    assert big.mean(axis=0) == pytest.approx([50, 30, 20], abs=0.5)
    assert big.var(axis=0) == pytest.approx([25.0, 21.0, 16.0], rel=0.1)  # N p (1 - p)
