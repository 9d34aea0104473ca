"""Which models meet next: a pure, seeded choice from the history of battles.

:func:`next_pair` picks two models; :func:`next_group` picks K for a K-image battle, the same
way: the first two as a pair, then each further model with probability proportional to what
it would teach about the ones already chosen (the sum of its pair weights to them), so a
group gathers close, rarely compared models (and newcomers, while short of their minimum).

Two strategies:

- ``"random"``: every pair equally likely, as in the first public arenas.
- ``"info"`` (information-seeking, in the spirit of K-Sort Arena): while some model has fewer
  than ``min_votes`` votes, most battles (``new_model_share``) include one of those models,
  the one furthest from the minimum being likeliest; otherwise a pair is drawn with weight
  ``(overlap + 0.1) / (1 + battles so far)``, where ``overlap`` measures how much the two
  models' 95% intervals overlap (1 when no intervals are known). Close, rarely compared
  pairs are what move the leaderboard.

The sides are shuffled, so neither model is always on the left. Nothing is stored: the caller
passes the battle counts (see :func:`pair_counts`) and, if it has them, the intervals.

Example::

    counts = pair_counts(store.votes_frame(task="t2i"), models)
    model_a, model_b = next_pair(models, counts, strategy="info", seed=rng)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

Strategy = Literal["random", "info"]


def pair_counts(votes: pd.DataFrame | Sequence[Mapping[str, Any]], models: Sequence[str]) -> np.ndarray:
    """Symmetric matrix of battles between ``models`` (in that order) found in ``votes``;
    votes involving other models are ignored. A K-way vote counts as a meeting of every pair
    of its models."""
    frame = votes if isinstance(votes, pd.DataFrame) else pd.DataFrame.from_records(list(votes))
    m = len(models)
    counts = np.zeros((m, m), dtype=np.int64)
    if len(frame) == 0:
        return counts
    index = pd.Index(list(models))
    a = index.get_indexer(frame["model_a"].astype(object)) if "model_a" in frame else np.full(len(frame), -1)
    b = index.get_indexer(frame["model_b"].astype(object)) if "model_b" in frame else np.full(len(frame), -1)
    keep = (a >= 0) & (b >= 0) & (a != b)
    np.add.at(counts, (a[keep], b[keep]), 1)
    if "models" in frame.columns:
        for group in frame["models"].tolist():
            if isinstance(group, (list, tuple)):
                members = [k for k in index.get_indexer(list(group)).tolist() if k >= 0]
                for x in range(len(members)):
                    for y in range(x + 1, len(members)):
                        counts[members[x], members[y]] += 1
    return counts + counts.T


def next_pair(
    models: Sequence[str],
    counts: np.ndarray,
    *,
    strategy: Strategy = "info",
    seed: int | np.random.Generator | None = None,
    min_votes: int = 20,
    new_model_share: float = 0.75,
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[str, str]:
    """The next pair ``(left, right)`` among ``models`` for one task.

    ``counts[i, j]`` is the number of battles between ``models[i]`` and ``models[j]`` (see
    :func:`pair_counts`); ``intervals`` maps a model to its (low, high) rating interval.
    The same inputs and seed give the same pair.
    """
    m = len(models)
    if m < 2:
        raise ValueError("matchmaking needs at least two models")
    if len(set(models)) != m:
        raise ValueError("models must be distinct")
    counts = np.asarray(counts)
    if counts.shape != (m, m):
        raise ValueError(f"counts must be a {m}×{m} matrix, one row and column per model")
    if not 0.0 <= new_model_share <= 1.0:
        raise ValueError("new_model_share must lie in [0, 1]")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    if strategy == "random":
        i, j = rng.choice(m, size=2, replace=False)
    elif strategy == "info":
        i, j = _informative_pair(models, counts, rng, min_votes, new_model_share, intervals)
    else:
        raise ValueError(f"strategy must be 'random' or 'info', not {strategy!r}")
    if rng.random() < 0.5:
        i, j = j, i
    return models[int(i)], models[int(j)]


def next_group(
    models: Sequence[str],
    counts: np.ndarray,
    k: int,
    *,
    strategy: Strategy = "info",
    seed: int | np.random.Generator | None = None,
    min_votes: int = 20,
    new_model_share: float = 0.75,
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[str, ...]:
    """``k`` distinct models among ``models`` for a K-image battle, in display order (shuffled).

    ``"random"``: any ``k`` models, equally likely. ``"info"``: a first pair as :func:`next_pair`
    picks it, then each further model with probability proportional to the sum of its pair
    weights ``(overlap + 0.1) / (1 + battles so far)`` to the models already chosen. The same
    inputs and seed give the same group.
    """
    m = len(models)
    if k < 2:
        raise ValueError("a battle shows at least two models")
    if k > m:
        raise ValueError(f"a battle of {k} images needs {k} models; there are {m}")
    if k == 2:
        return next_pair(models, counts, strategy=strategy, seed=seed, min_votes=min_votes,
                         new_model_share=new_model_share, intervals=intervals)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    a, b = next_pair(models, counts, strategy=strategy, seed=rng, min_votes=min_votes,
                     new_model_share=new_model_share, intervals=intervals)
    chosen = [list(models).index(a), list(models).index(b)]
    if strategy == "random":
        rest = [i for i in range(m) if i not in chosen]
        chosen += [int(x) for x in rng.choice(rest, size=k - 2, replace=False)]
    else:
        weight = (_overlap(models, intervals) + 0.1) / (1.0 + np.asarray(counts))
        np.fill_diagonal(weight, 0.0)
        while len(chosen) < k:
            gain = weight[:, chosen].sum(axis=1)
            gain[chosen] = 0.0
            chosen.append(int(rng.choice(m, p=gain / gain.sum())))
    order = rng.permutation(k)
    return tuple(models[chosen[int(i)]] for i in order)


def _informative_pair(
    models: Sequence[str], counts: np.ndarray, rng: np.random.Generator, min_votes: int,
    new_model_share: float, intervals: Mapping[str, tuple[float, float]] | None,
) -> tuple[int, int]:
    m = len(models)
    weight = (_overlap(models, intervals) + 0.1) / (1.0 + counts)
    np.fill_diagonal(weight, 0.0)
    votes = counts.sum(axis=1)
    shortfall = np.clip(min_votes - votes, 0, None).astype(np.float64)
    if shortfall.any() and rng.random() < new_model_share:
        # A model still short of its minimum, then the partner that teaches most about it.
        i = rng.choice(m, p=shortfall / shortfall.sum())
        j = rng.choice(m, p=weight[i] / weight[i].sum())
        return int(i), int(j)
    upper = np.triu(weight, 1).ravel()
    flat = rng.choice(m * m, p=upper / upper.sum())
    return divmod(int(flat), m)


def _overlap(models: Sequence[str], intervals: Mapping[str, tuple[float, float]] | None) -> np.ndarray:
    """Overlap of two intervals as a fraction of the shorter one, in [0, 1]; 1 when unknown."""
    m = len(models)
    if not intervals:
        return np.ones((m, m))
    low = np.array([intervals.get(name, (-np.inf, np.inf))[0] for name in models], dtype=np.float64)
    high = np.array([intervals.get(name, (-np.inf, np.inf))[1] for name in models], dtype=np.float64)
    width = high - low
    shared = np.minimum(high[:, None], high[None, :]) - np.maximum(low[:, None], low[None, :])
    shorter = np.minimum(width[:, None], width[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(shorter > 0, shared / shorter, 1.0)
    fraction = np.where(np.isfinite(fraction), fraction, 1.0)  # unknown intervals overlap everything
    return np.clip(fraction, 0.0, 1.0)
