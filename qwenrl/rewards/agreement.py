"""How often a judge prefers the image people preferred in arena votes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .base import Judgement

HUMAN_TIES = ("tie", "tie (bothbad)")


def judge_human_agreement(
    votes: Iterable[Mapping[str, Any]],
    judgements: Mapping[str, float | Judgement | None],
    tie_tolerance: float = 0.0,
) -> dict[str, Any]:
    """Agreement of a judge with people on pairwise votes.

    ``votes``: rows with ``model_a``, ``model_b``, ``winner`` (``model_a``, ``model_b``,
    ``tie`` or ``tie (bothbad)``), ``sample_a`` and ``sample_b`` (sample ids).
    ``judgements``: sample id → score (or a Judgement, or None).

    A vote counts when people chose a side, both samples have a score and the judge's
    scores differ by more than ``tie_tolerance``; people's ties, the judge's ties and
    samples without a score are excluded and counted. Returns ``{"overall": {...},
    "per_pair": {"A vs B": {...}}}``, each with ``votes``, ``compared``, ``agree``,
    ``agreement`` (agree / compared, None when nothing was compared), ``human_ties``,
    ``judge_ties`` and ``missing``. Pairs are named with the two models in sorted order.
    """
    overall = _counts()
    per_pair: dict[str, dict[str, Any]] = {}
    for v in votes:
        a, b = str(v["model_a"]), str(v["model_b"])
        pair = " vs ".join(sorted((a, b)))
        rows = (overall, per_pair.setdefault(pair, _counts()))
        outcome = _outcome(v, judgements, tie_tolerance)
        for r in rows:
            r["votes"] += 1
            r[outcome] += 1
            if outcome in ("agree", "disagree"):
                r["compared"] += 1
    for r in (overall, *per_pair.values()):
        r["agreement"] = r["agree"] / r["compared"] if r["compared"] else None
    return {"overall": overall, "per_pair": dict(sorted(per_pair.items()))}


def _counts() -> dict[str, Any]:
    return {"votes": 0, "compared": 0, "agree": 0, "disagree": 0, "human_ties": 0, "judge_ties": 0, "missing": 0}


def _score(x: float | Judgement | None) -> float | None:
    return x.score if isinstance(x, Judgement) else x


def _outcome(vote: Mapping[str, Any], judgements: Mapping[str, Any], tol: float) -> str:
    winner = vote["winner"]
    if winner in HUMAN_TIES:
        return "human_ties"
    if winner not in ("model_a", "model_b"):
        raise ValueError(f"unknown winner {winner!r}; expected model_a, model_b, tie or tie (bothbad)")
    sa, sb = _score(judgements.get(vote["sample_a"])), _score(judgements.get(vote["sample_b"]))
    if sa is None or sb is None:
        return "missing"
    if abs(sa - sb) <= tol:
        return "judge_ties"
    judge_winner = "model_a" if sa > sb else "model_b"
    return "agree" if judge_winner == winner else "disagree"
