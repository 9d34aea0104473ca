"""Category leaderboards: a board per prompt family (text to image) or editing verb.

A vote's ``category`` is its prompt's family (``counting``, ``position``…; for editing, the
verb: ``recolor``, ``add``, ``move``…; ``user`` for a visitor's own prompt). A category with
fewer than ``minimum`` votes is not ranked: its board says how many it has and needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arena._quick import lazy_module

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick

CATEGORY_MIN_VOTES = 20
"""Votes a category needs before its board ranks models (the studio's --category-min-votes)."""


def category_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Votes per category in a vote table, most voted first (votes without one are left out)."""
    if "category" not in frame.columns or len(frame) == 0:
        return {}
    counts = frame["category"].dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def in_category(frame: pd.DataFrame, category: str) -> pd.DataFrame:
    """The votes of one category."""
    if "category" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["category"].astype(object) == category].reset_index(drop=True)


def category_too_small(category: str, votes: int, minimum: int = CATEGORY_MIN_VOTES) -> str | None:
    """Why a category is not ranked yet (too few votes), or None when it is ranked."""
    if votes >= minimum:
        return None
    return (f"category {category!r} has {votes} vote(s); it is ranked from {minimum} on "
            f"({minimum - votes} to go), so no ranking is shown yet")
