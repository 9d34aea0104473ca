"""How fast each kind of battle learns: simulated arenas with a known true ranking.

The voter is the oracle judge (the strict Shapes checker): an image passes or fails, and the
vote follows from that. A model is its pass rate per prompt family — for the bundled models,
the rates measured on the test prompts (``benchmarks/results/seed_recipe.json``); for synthetic
ones, a known rate — so the true ranking is the ranking of the overall pass rates.

Pairwise battle: the passing image wins; both pass is a tie, both fail a tie (both bad).
K-way battle: the oracle marks what it can tell apart. One image passes: it is the best. One
fails: it is the worst. As many pass as fail (two of four): a passing image is the best and a
failing one the worst, each at random among equals. All pass or all fail: no mark, which the
arena rates as a tie of every pair (the format's "all bad"). With ``noise``, that share of
votes is cast at random (a random best and worst).
Battles are matched by :func:`arena.matchmaking.next_group` (information-seeking, intervals
refreshed at each checkpoint), rated by Bradley–Terry with vote-level sandwich intervals.

Measured against the number of votes (one submitted judgement each, the human actions an arena
asks for): Kendall τ to the true ranking, the mean width of the 95% intervals, and the top-1
error rate (the share of simulated arenas whose top model is not the truly best).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from arena.matchmaking import next_group
from arena.ratings import leaderboard


@dataclass(frozen=True)
class SimModel:
    """A model as the oracle sees it: its pass rate per prompt family (``"*"``: every family)."""

    name: str
    rates: Mapping[str, float]

    def rate(self, family: str) -> float:
        return float(self.rates.get(family, self.rates.get("*", 0.0)))

    def overall(self, families: Mapping[str, float]) -> float:
        """Its pass rate over the prompt mix: the quantity the true ranking orders."""
        total = sum(families.values())
        return sum(w * self.rate(f) for f, w in families.items()) / total


@dataclass
class Curve:
    """Averages over the simulated arenas at each checkpoint (number of votes)."""

    k: int
    noise: float
    votes: list[int] = field(default_factory=list)
    kendall_tau: list[float] = field(default_factory=list)
    ci_width: list[float] = field(default_factory=list)
    top1_error: list[float] = field(default_factory=list)

    def _at(self, values: list[float], n: int) -> float:
        return values[self.votes.index(n)]

    def tau_at(self, n: int) -> float:
        return self._at(self.kendall_tau, n)

    def width_at(self, n: int) -> float:
        return self._at(self.ci_width, n)

    def error_at(self, n: int) -> float:
        return self._at(self.top1_error, n)

    def votes_to_reach(self, tau: float) -> int | None:
        """The first checkpoint whose mean τ reaches ``tau`` (None: none within the budget)."""
        return next((n for n, t in zip(self.votes, self.kendall_tau) if t >= tau), None)


def kendall_tau(order: Sequence[str], truth: Sequence[str]) -> float:
    """Kendall τ between two rankings of the same models (1: the same order)."""
    rank = {name: k for k, name in enumerate(order)}
    concordant = discordant = 0
    for i in range(len(truth)):
        for j in range(i + 1, len(truth)):
            if rank[truth[i]] < rank[truth[j]]:
                concordant += 1
            else:
                discordant += 1
    pairs = concordant + discordant
    return (concordant - discordant) / pairs if pairs else 1.0


def oracle_vote(group: Sequence[str], passed: Sequence[bool], rng: np.random.Generator, noise: float) -> dict:
    """The oracle's vote on a battle among ``group`` whose images passed (or not)."""
    k = len(group)
    if k == 2:
        if rng.random() < noise:
            winner = ("model_a", "model_b", "tie", "tie (bothbad)")[int(rng.integers(4))]
        elif passed[0] != passed[1]:
            winner = "model_a" if passed[0] else "model_b"
        else:
            winner = "tie" if passed[0] else "tie (bothbad)"
        return {"model_a": group[0], "model_b": group[1], "winner": winner}
    if rng.random() < noise:
        best, worst = (int(x) for x in rng.choice(k, size=2, replace=False))
        return {"models": list(group), "best": group[best], "worst": group[worst]}
    good = [i for i in range(k) if passed[i]]
    bad = [i for i in range(k) if not passed[i]]
    best = worst = None
    if len(good) == 1 or (good and len(good) == len(bad)):
        best = group[int(rng.choice(good))]
    if len(bad) == 1 or (bad and len(good) == len(bad)):
        worst = group[int(rng.choice(bad))]
    return {"models": list(group), "best": best, "worst": worst}


def simulate_arena(
    models: Sequence[SimModel], families: Mapping[str, float], *, k: int, votes: int, checkpoints: Sequence[int],
    noise: float, seed: int,
) -> list[tuple[int, float, float, bool]]:
    """One simulated arena: ``(votes, τ, mean CI width, top-1 right)`` at each checkpoint."""
    rng = np.random.default_rng(seed)
    names = [m.name for m in models]
    truth = sorted(names, key=lambda n: -next(m for m in models if m.name == n).overall(families))
    fam_names = list(families)
    fam_p = np.array([families[f] for f in fam_names], dtype=float)
    fam_p /= fam_p.sum()
    counts = np.zeros((len(models), len(models)), dtype=np.int64)
    intervals: dict[str, tuple[float, float]] | None = None
    log: list[dict] = []
    out = []
    marks = sorted(set(checkpoints))
    for n in range(1, votes + 1):
        group = next_group(names, counts, k, strategy="info", seed=rng, intervals=intervals, min_votes=5)
        family = fam_names[int(rng.choice(len(fam_names), p=fam_p))]
        by_name = {m.name: m for m in models}
        passed = [bool(rng.random() < by_name[g].rate(family)) for g in group]
        log.append({**oracle_vote(group, passed, rng, noise), "tstamp": float(n)})
        idx = [names.index(g) for g in group]
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                counts[idx[x], idx[y]] += 1
                counts[idx[y], idx[x]] += 1
        if n in marks:
            board = leaderboard(log, ci="sandwich", with_online=False, workers=1)
            ranked = [r["model"] for r in board.rows]
            missing = [m for m in names if m not in ranked]  # not voted on yet: last
            order = ranked + missing
            widths = [r["ci_high"] - r["ci_low"] for r in board.rows]
            out.append((n, kendall_tau(order, truth), float(np.mean(widths)) if widths else math.inf,
                        order[0] == truth[0]))
            intervals = {r["model"]: (r["ci_low"], r["ci_high"]) for r in board.rows}
    return out


def learning_curves(
    models: Sequence[SimModel], families: Mapping[str, float], *, ks: Sequence[int] = (2, 4), votes: int = 2000,
    checkpoints: Sequence[int] | None = None, noise: float = 0.1, arenas: int = 20, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Curve]:
    """Mean curves over ``arenas`` simulated arenas for each battle size in ``ks``."""
    if len(models) < max(ks):
        raise ValueError(f"{max(ks)}-image battles need {max(ks)} models; there are {len(models)}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError("noise is a share of votes, between 0 and 1")
    marks = sorted(set(checkpoints or _default_checkpoints(votes)))
    curves = []
    done, total = 0, arenas * len(ks)
    for k in ks:
        runs = []
        for a in range(arenas):
            runs.append(simulate_arena(models, families, k=k, votes=votes, checkpoints=marks, noise=noise,
                                       seed=seed * 1000 + a))
            done += 1
            if progress is not None:
                progress(done, total)
        curve = Curve(k, noise)
        for c, n in enumerate(marks):
            curve.votes.append(n)
            curve.kendall_tau.append(float(np.mean([r[c][1] for r in runs])))
            curve.ci_width.append(float(np.mean([r[c][2] for r in runs])))
            curve.top1_error.append(float(np.mean([not r[c][3] for r in runs])))
        curves.append(curve)
    return curves


def _default_checkpoints(votes: int) -> list[int]:
    """About 16 checkpoints, spaced evenly on a log scale from 20 votes."""
    grid = np.unique(np.round(np.geomspace(20, votes, 16)).astype(int))
    return [int(x) for x in grid]


def synthetic_models(rates: Sequence[float], prefix: str = "synthetic") -> list[SimModel]:
    """Synthetic models with a known pass rate each, the same in every family."""
    return [SimModel(f"{prefix}-{k + 1} ({rate:.2f})", {"*": float(rate)}) for k, rate in enumerate(rates)]
