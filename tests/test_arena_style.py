"""Style control recovers a planted bias: voters who prefer the shinier image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from arena.ratings import bradley_terry
from arena.style import style_control

ADHERENCE = {"m0": 150.0, "m1": 90.0, "m2": 30.0, "m3": -30.0, "m4": -90.0, "m5": -150.0}  # Elo points
SHINE = {"m0": 0.2, "m1": 0.3, "m2": 0.5, "m3": 0.6, "m4": 0.75, "m5": 0.9}  # the worst models look best


def planted(n: int = 3000, bias: float = 5.0, kway_share: float = 0.3, seed: int = 0) -> list[dict]:
    """Votes whose log-odds are adherence plus ``bias`` per unit of aesthetics difference, with a
    random object count that voters ignore; some votes are 4-image battles (best and worst)."""
    rng = np.random.default_rng(seed)
    names = list(ADHERENCE)
    votes = []
    for k in range(n):
        kway = rng.random() < kway_share
        group = [names[x] for x in rng.choice(len(names), size=4 if kway else 2, replace=False)]
        looks = {m: float(np.clip(SHINE[m] + rng.normal(0, 0.15), 0, 1)) for m in group}
        covariates = [{"aesthetics": looks[m], "objects": float(rng.integers(1, 4))} for m in group]
        utility = {m: ADHERENCE[m] / 400 * np.log(10) + bias * looks[m] + rng.gumbel() for m in group}
        if kway:
            ranked = sorted(group, key=utility.get, reverse=True)
            votes.append({"models": group, "best": ranked[0], "worst": ranked[-1], "covariates": covariates,
                          "tstamp": float(k)})
        else:
            winner = "model_a" if utility[group[0]] > utility[group[1]] else "model_b"
            votes.append({"model_a": group[0], "model_b": group[1], "winner": winner, "covariates": covariates,
                          "tstamp": float(k)})
    return votes


def test_control_recovers_the_adherence_ranking_and_the_bias():
    votes = planted()
    plain = bradley_terry(votes)
    truth = list(ADHERENCE)
    plain_order = sorted(plain, key=plain.get, reverse=True)
    assert kendalltau([truth.index(m) for m in plain_order], range(6)).statistic < 0.5  # looks mislead the plain board
    board = style_control(votes, rounds=60, seed=0)
    assert [r["model"] for r in board.rows] == truth  # controlled: the adherence ranking
    coef = {c["covariate"]: c for c in board.coefficients}
    assert coef["aesthetics"]["elo_per_sd"] > 0 and coef["aesthetics"]["ci_low"] > 0  # voters reward shine
    assert coef["objects"]["ci_low"] < 0 < coef["objects"]["ci_high"]  # and ignore the object count
    rows = {r["model"]: r for r in board.rows}
    assert rows["m5"]["elo_uncontrolled"] > rows["m5"]["elo"] and rows["m0"]["elo_uncontrolled"] < rows["m0"]["elo"]
    for r in board.rows:
        assert r["ci_low"] <= r["elo"] <= r["ci_high"]
    assert board.votes == len(votes) and board.left_out == 0


def test_votes_without_covariates_are_left_out_and_counted():
    votes = planted(400, seed=1)
    votes += [{"model_a": "m0", "model_b": "m1", "winner": "model_a", "tstamp": 1e6}]
    board = style_control(votes, rounds=10)
    assert board.left_out == 1 and board.votes == 400 and "left out" in board.warnings[0]
    assert style_control([{"model_a": "a", "model_b": "b", "winner": "tie"}], rounds=5).rows == []
