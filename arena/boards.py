"""Which models a board may rank: the minimum-votes rule, as pure functions of the vote table.

A model with fewer than ``min_votes`` votes in a view (the votes a board rates: human,
automatic, a category…) is not ranked there: its interval is too wide to say anything, and one
vote would put it first or last. It is listed apart, with how many more votes it needs.

    needed = votes_needed(votes, min_votes=10, models=arena_models)   # {"shapes-base": 7, …}
    ranked, apart = rank_apart(board.rows, min_votes=10)

The studio also uses ``votes_needed`` to decide when the human votes take over the default
leaderboard: only once every shown model has ``min_votes`` human votes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

#: votes a model needs in a view before that view ranks it (the studio's default setting)
MIN_VOTES = 10


def votes_per_model(votes: pd.DataFrame) -> dict[str, int]:
    """How many votes each model of ``model_a``/``model_b`` appears in (self-battles count once)."""
    if votes is None or len(votes) == 0:
        return {}
    a = votes["model_a"].astype(str)
    b = votes["model_b"].astype(str)
    counts = pd.concat([a, b[b.to_numpy() != a.to_numpy()]]).value_counts()
    return {str(model): int(n) for model, n in counts.items()}


def votes_needed(votes: pd.DataFrame, min_votes: int = MIN_VOTES, models: Iterable[str] = ()) -> dict[str, int]:
    """Model → how many more votes it needs to reach ``min_votes``, for each model of the table
    (and of ``models``, which may have none yet) that has fewer; empty when every one has enough."""
    if min_votes < 0:
        raise ValueError("min_votes must be >= 0")
    counts = votes_per_model(votes)
    names = list(dict.fromkeys([*counts, *models]))
    return {m: min_votes - counts.get(m, 0) for m in sorted(names) if counts.get(m, 0) < min_votes}


def rank_apart(rows: Sequence[Mapping[str, Any]], min_votes: int = MIN_VOTES) -> tuple[list[dict], list[dict]]:
    """Leaderboard rows (``arena.ratings.leaderboard``) split into the ranked ones — models with
    at least ``min_votes`` votes, their ``rank_ub`` counted among themselves — and the ones
    listed apart, unranked (``rank_ub`` None, ``needed`` the votes they lack), fewest needed first.
    Ratings are left as they are: the table is the same one ``qwenrl elo`` prints."""
    ranked = [dict(r) for r in rows if r["votes"] >= min_votes]
    apart = [{**r, "rank_ub": None, "needed": min_votes - r["votes"]} for r in rows if r["votes"] < min_votes]
    for r in ranked:
        r["rank_ub"] = 1 + sum(1 for o in ranked if o.get("component") == r.get("component") and o["ci_low"] > r["ci_high"])
    apart.sort(key=lambda r: (r["needed"], r["model"]))
    return ranked, apart


def needed_text(needed: Mapping[str, int], shown: int = 4) -> str:
    """``7 more for shapes-base, 10 more for tiny-b…`` (the models furthest from the minimum first)."""
    items = sorted(needed.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{n} more for {m}" for m, n in items[:shown])
    return text + (f" and {len(items) - shown} more model(s)" if len(items) > shown else "")
