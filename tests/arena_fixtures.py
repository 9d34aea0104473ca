"""Synthetic votes with known strengths, shared by the arena tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_votes(
    strengths: dict[str, float], n: int, *, seed: int = 0, tie_rate: float = 0.0, start: float = 1.7e9
) -> pd.DataFrame:
    """``n`` votes between random pairs; model_a wins with probability 1/(1+10^(θb−θa)) where
    θ = strength/400, and a fraction ``tie_rate`` of the votes are ties of either kind."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    theta = np.array([strengths[name] / 400.0 for name in names])
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    p_a = 1.0 / (1.0 + 10.0 ** (theta[b] - theta[a]))
    tie = rng.random(n) < tie_rate
    a_wins = rng.random(n) < p_a
    winner = np.where(tie, np.where(rng.random(n) < 0.5, "tie", "tie (bothbad)"),
                      np.where(a_wins, "model_a", "model_b"))
    return pd.DataFrame({
        "model_a": [names[k] for k in a],
        "model_b": [names[k] for k in b],
        "winner": winner,
        "tstamp": start + np.arange(n, dtype=np.float64),
    })


def votes_from_counts(counts: dict[tuple[str, str, str], int]) -> list[dict]:
    """Votes from ``{(model_a, model_b, winner): how many}``, in a fixed order."""
    votes = []
    for (a, b, winner), k in counts.items():
        votes += [{"model_a": a, "model_b": b, "winner": winner, "tstamp": float(len(votes) + i)} for i in range(k)]
    return votes
