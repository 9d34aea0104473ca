"""The simulation behind docs/arena.md's table: the oracle's votes, Kendall τ, the curves."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from arena.simulate import SimModel, kendall_tau, learning_curves, oracle_vote, synthetic_models


def test_kendall_tau():
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert kendall_tau(["c", "b", "a"], ["a", "b", "c"]) == -1.0
    assert kendall_tau(["b", "a", "c", "d"], ["a", "b", "c", "d"]) == pytest.approx(4 / 6)


def test_the_oracle_marks_what_it_can_tell_apart():
    rng = np.random.default_rng(0)
    g = ["a", "b", "c", "d"]
    assert oracle_vote(g, [False, True, False, False], rng, 0.0) == {"models": g, "best": "b", "worst": None}
    assert oracle_vote(g, [True, True, False, True], rng, 0.0) == {"models": g, "best": None, "worst": "c"}
    assert oracle_vote(g, [True] * 4, rng, 0.0) == {"models": g, "best": None, "worst": None}  # all equal: ties
    half = oracle_vote(g, [True, False, True, False], rng, 0.0)
    assert half["best"] in ("a", "c") and half["worst"] in ("b", "d")
    assert oracle_vote(["a", "b"], [True, False], rng, 0.0)["winner"] == "model_a"
    assert oracle_vote(["a", "b"], [False, False], rng, 0.0)["winner"] == "tie (bothbad)"
    noisy = [oracle_vote(["a", "b"], [True, False], rng, 1.0)["winner"] for _ in range(400)]
    assert 0.15 < noisy.count("model_b") / 400 < 0.35  # random votes: a quarter each


def test_curves_learn_the_true_ranking():
    models = synthetic_models([0.05, 0.5, 0.95]) + [SimModel("bundled-like", {"easy": 0.9, "hard": 0.1})]
    curves = learning_curves(models, {"easy": 1, "hard": 1}, ks=(2, 3), votes=150, checkpoints=[20, 150],
                             noise=0.1, arenas=3)
    assert [c.k for c in curves] == [2, 3]
    for c in curves:
        assert c.votes == [20, 150] and c.kendall_tau[-1] > 0.6 and c.ci_width[-1] < c.ci_width[0]
        assert all(0 <= e <= 1 for e in c.top1_error)
    with pytest.raises(ValueError, match="4-image battles need 4 models"):
        learning_curves(synthetic_models([0.1, 0.2, 0.3]), {"*": 1}, ks=(2, 4), votes=20, arenas=1)


def test_the_simulate_command_prints_the_table(tmp_path):
    from app.cli import arena

    result = CliRunner().invoke(arena, ["simulate", "--no-bundled", "--synthetic", "0.1,0.5,0.9,0.7", "--votes", "60",
                                        "--arenas", "1", "--json", str(tmp_path / "sim.json")])
    assert result.exit_code == 0, result.output
    assert "| pairwise |" in result.stdout and "| 4 images |" in result.stdout and "True ranking" in result.stdout
    assert (tmp_path / "sim.json").is_file()
    bad = CliRunner().invoke(arena, ["simulate", "--synthetic", "0.1,2"])
    assert bad.exit_code != 0 and "between 0 and 1" in bad.output
