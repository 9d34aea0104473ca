"""Ratings from arena votes: pure functions of a vote table.

A vote table is a pandas DataFrame, or a list of dicts, with the columns ``model_a``,
``model_b``, ``winner`` (one of :data:`OUTCOMES`) and optionally ``tstamp``. Nothing here
reads a database or keeps state: the studio calls these functions on the votes it has and
caches what they return.

A **K-way vote** (K images, one battle) is a row with ``models`` (the K names in display
order), ``best`` and ``worst`` (a name or None) instead of ``model_a``, ``model_b`` and
``winner``. Every method rates the comparisons it implies (:func:`kway_comparisons`): the best
beats each other, each other beats the worst; no mark at all ("all bad") ties every pair, as
"tie (bothbad)" does for two images. The bootstrap resamples votes, not comparisons, so the
comparisons of one K-way vote are always drawn together, and the sandwich intervals sum each
vote's comparisons before squaring.

Conventions, compatible with FastChat's leaderboard code:

- Ratings are on the Elo scale ``400·θ + 1000``, θ being base-10 log-odds of winning.
- A tie ("tie" or "tie (bothbad)") counts as half a win and half a loss.
- Online Elo and TrueSkill process votes in ``tstamp`` order; equal (or missing) timestamps
  keep the order of the table.
- Bradley–Terry is fitted on the outcome counts of each pair of models, to convergence
  (Newton's method), not stopped after a fixed number of iterations. Without an anchor the
  ratings of a connected group of models average 1000, which is where FastChat's own
  optimiser (L-BFGS started at zero) heads.
- Models whose comparison graph is disconnected cannot share one scale: each connected
  component gets its own ratings, and a warning says so.

Entry point for the studio and the CLI: :func:`leaderboard`.
"""

from __future__ import annotations

import ctypes
import functools
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
import trueskill

from arena._quick import lazy_module, native_library

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick

OUTCOMES: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")
"""The four verdicts of an arena vote: A better, B better, tie, both bad."""

# Outcome codes, from model_a's side: the score of model_a is code / 2.
B_WINS, TIE, A_WINS = 0, 1, 2
_OUTCOME_CODE = np.array([A_WINS, B_WINS, TIE, TIE], dtype=np.int8)  # indexed like OUTCOMES

LN10 = math.log(10.0)
SCALE = 400.0
INIT_RATING = 1000.0
Z95 = 1.959963984540054

FALLBACK_L2 = 0.1
"""Penalty used when the Bradley–Terry maximum-likelihood estimate does not exist (a model
that never lost or never won inside its component) and no ``l2`` was given. In θ units it is a
Gaussian prior with standard deviation √10 ≈ 3.2, i.e. about 1265 Elo points: weak enough not
to move well-measured models, strong enough to keep an undefeated model finite."""

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------
# Encoding a vote table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedVotes:
    """Votes as integer arrays of comparisons in time order; what every rating function works on.

    ``a[k]`` and ``b[k]`` index :attr:`models`; ``outcome[k]`` is 2 when model_a won, 1 for a
    tie of either kind and 0 when model_b won. With K-way votes, ``unit[k]`` is the vote that
    comparison ``k`` comes from (non-decreasing) and ``appearances[i]`` the number of votes
    model ``i`` took part in; for pairwise votes both are None (a vote is a comparison).
    """

    models: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    unit: np.ndarray | None = None
    appearances: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.a)

    @property
    def n_votes(self) -> int:
        """Votes (K-way ones counting once), as opposed to comparisons."""
        if self.unit is None:
            return len(self.a)
        return int(self.unit[-1]) + 1 if len(self.unit) else 0

    def votes_per_model(self) -> np.ndarray:
        m = len(self.models)
        if self.appearances is not None:
            return self.appearances
        return np.bincount(self.a, minlength=m) + np.bincount(self.b, minlength=m)


def kway_comparisons(models: list[str], best: str | None, worst: str | None) -> list[tuple[str, str, str]]:
    """The comparisons a K-way vote implies, as ``(model_a, model_b, winner)``: the best beats
    each other (in display order), then each other but the best beats the worst; with neither
    mark ("all bad"), every pair is a "tie (bothbad)"."""
    if best is None and worst is None:
        return [(models[i], models[j], "tie (bothbad)") for i in range(len(models)) for j in range(i + 1, len(models))]
    out = [(best, m, "model_a") for m in models if best is not None and m != best]
    out += [(m, worst, "model_a") for m in models if worst is not None and m not in (best, worst)]
    return out


def kway_problem(models: Any, best: Any, worst: Any) -> str | None:
    """What is wrong with a K-way vote's fields, or None."""
    if not isinstance(models, (list, tuple)) or len(models) < 3:
        return "models must list three or more models (a two-model vote uses model_a, model_b and winner)"
    if not all(isinstance(m, str) and m.strip() for m in models):
        return "models must be non-empty strings"
    if len(set(models)) != len(models):
        return "models names a model twice"
    for name, mark in (("best", best), ("worst", worst)):
        if mark is not None and mark not in models:
            return f"{name} is {mark!r}, which is not one of the models"
    if best is not None and best == worst:
        return "best and worst are the same model"
    return None


Votes = Union["pd.DataFrame", Iterable[Mapping[str, Any]], EncodedVotes]


def encode_votes(votes: Votes) -> EncodedVotes:
    """Validate a vote table and encode it; raises ``ValueError`` naming the first bad row."""
    if isinstance(votes, EncodedVotes):
        return votes
    frame = votes if isinstance(votes, pd.DataFrame) else pd.DataFrame.from_records(list(votes))
    if len(frame) == 0:
        return EncodedVotes((), *(np.zeros(0, dtype=np.int64) for _ in range(2)), np.zeros(0, np.int8))
    if "models" in frame.columns:
        kway = frame["models"].notna().to_numpy(bool)  # a list is never NA; None and NaN are
        if kway.any():
            return _encode_with_kway(frame, kway)
    missing = [c for c in ("model_a", "model_b", "winner") if c not in frame.columns]
    if missing:
        raise ValueError(f"the vote table has no column {', '.join(missing)}")

    winner = pd.Categorical(frame["winner"], categories=OUTCOMES)
    bad = np.flatnonzero(winner.codes < 0)
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"row {row}: winner is {frame['winner'].iloc[row]!r}, expected one of {', '.join(OUTCOMES)}"
        )
    outcome = _OUTCOME_CODE[winner.codes]

    codes, models = _factorize_models(frame["model_a"], frame["model_b"])
    n = len(frame)
    a, b = codes[:n], codes[n:]
    if (a < 0).any() or (b < 0).any():
        row = int(np.flatnonzero((a < 0) | (b < 0))[0])
        raise ValueError(f"row {row}: model_a or model_b is missing")
    same = np.flatnonzero(a == b)
    if len(same):
        row = int(same[0])
        raise ValueError(f"row {row}: model_a and model_b are both {models[a[row]]!r}")

    if "tstamp" in frame.columns:
        tstamp = pd.to_numeric(frame["tstamp"], errors="coerce").to_numpy(dtype=np.float64)
        # Stable sort: equal timestamps keep table order; missing ones go last, in table order.
        if not _is_sorted(tstamp):
            order = np.argsort(tstamp, kind="stable")
            a, b, outcome = a[order], b[order], outcome[order]
    return EncodedVotes(tuple(models), a.astype(np.int64), b.astype(np.int64), outcome)


def _encode_with_kway(frame: pd.DataFrame, kway: np.ndarray) -> EncodedVotes:
    """Encode a table holding K-way votes: every vote expanded into its comparisons, in time order."""
    n = len(frame)
    pair_rows = np.flatnonzero(~kway)
    if len(pair_rows):
        pairs = encode_votes(frame.iloc[pair_rows].drop(columns=["tstamp"], errors="ignore"))
    else:
        pairs = EncodedVotes((), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8))
    names = list(pairs.models)
    index = {name: k for k, name in enumerate(names)}
    best = frame["best"].tolist() if "best" in frame.columns else [None] * n
    worst = frame["worst"].tolist() if "worst" in frame.columns else [None] * n
    models_column = frame["models"].tolist()
    expanded: dict[int, tuple[list[int], list[int], list[int], list[int]]] = {}
    code = {"model_a": A_WINS, "tie (bothbad)": TIE}
    for row in np.flatnonzero(kway).tolist():
        marks = [None if _missing(v) else v for v in (best[row], worst[row])]
        problem = kway_problem(models_column[row], *marks)
        if problem:
            raise ValueError(f"row {row}: {problem}")
        for name in models_column[row]:
            if name not in index:
                index[name] = len(names)
                names.append(name)
        comparisons = kway_comparisons(list(models_column[row]), *marks)
        expanded[row] = ([index[x] for x, _, _ in comparisons], [index[y] for _, y, _ in comparisons],
                         [code[w] for _, _, w in comparisons], [index[x] for x in models_column[row]])
    order = np.arange(n)
    if "tstamp" in frame.columns:
        tstamp = pd.to_numeric(frame["tstamp"], errors="coerce").to_numpy(dtype=np.float64)
        if not _is_sorted(tstamp):
            order = np.argsort(tstamp, kind="stable")
    pair_slot = np.full(n, -1)
    pair_slot[pair_rows] = np.arange(len(pair_rows))
    a, b, outcome, unit = [], [], [], []
    appearances = np.zeros(len(names), dtype=np.int64)
    for u, row in enumerate(order.tolist()):
        if kway[row]:
            xa, xb, xo, members = expanded[row]
            appearances[members] += 1
        else:
            k = pair_slot[row]
            xa, xb, xo = [int(pairs.a[k])], [int(pairs.b[k])], [int(pairs.outcome[k])]
            appearances[xa[0]] += 1
            appearances[xb[0]] += 1
        a += xa
        b += xb
        outcome += xo
        unit += [u] * len(xa)
    return EncodedVotes(tuple(names), np.array(a, dtype=np.int64), np.array(b, dtype=np.int64),
                        np.array(outcome, dtype=np.int8), np.array(unit, dtype=np.int64), appearances)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _factorize_models(model_a: pd.Series, model_b: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Joint integer codes for the two model columns (categorical columns take a fast path)."""
    if isinstance(model_a.dtype, pd.CategoricalDtype) and isinstance(model_b.dtype, pd.CategoricalDtype):
        names = model_a.cat.categories.union(model_b.cat.categories, sort=False)
        codes = []
        for column in (model_a, model_b):
            lookup = np.append(names.get_indexer(column.cat.categories), -1)
            codes.append(lookup[column.cat.codes.to_numpy()])  # code -1 (missing) maps to -1
        joint = np.concatenate(codes)
        used = np.flatnonzero(np.bincount(joint[joint >= 0], minlength=len(names)))
        if len(used) < len(names):  # drop categories that no vote uses
            remap = np.full(len(names) + 1, -1)
            remap[used] = np.arange(len(used))
            joint = remap[joint]
            names = names[used]
        return joint, [str(x) for x in names]
    codes, uniques = pd.factorize(pd.concat([model_a, model_b], ignore_index=True))
    return codes, [str(x) for x in uniques]


def _is_sorted(x: np.ndarray) -> bool:
    return not np.isnan(x).any() and bool(np.all(x[1:] >= x[:-1]))


# ---------------------------------------------------------------------------------------------
# Online ratings: Elo and TrueSkill
# ---------------------------------------------------------------------------------------------


def online_elo(
    votes: Votes, *, k: float = 4.0, base: float = 10.0, scale: float = SCALE, init: float = INIT_RATING
) -> dict[str, float]:
    """FastChat's online Elo: one pass over the votes in time order, K=4 by default."""
    ev = encode_votes(votes)
    ratings = _online_elo_arrays(ev.a, ev.b, ev.outcome, len(ev.models), k, base, scale, init)
    return dict(zip(ev.models, ratings.tolist()))


def _online_elo_arrays(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int,
    k: float, base: float, scale: float, init: float,
) -> np.ndarray:
    alpha = math.log(base) / scale
    compiled = _compiled_passes()
    if compiled is not None:
        rating = np.full(n_models, float(init))
        a, b, outcome = _c_votes(a, b, outcome, n_models)
        compiled.online_elo(a, b, outcome, len(a), float(k), alpha, rating)
        return rating
    # Sequential by nature; without the C pass, a plain loop over Python numbers is fastest.
    exp = math.exp
    rating = [init] * n_models
    half_k = k / 2.0
    for i, j, o in zip(a.tolist(), b.tolist(), outcome.tolist()):
        ri = rating[i]
        rj = rating[j]
        delta = half_k * o - k / (1.0 + exp(alpha * (rj - ri)))
        rating[i] = ri + delta
        rating[j] = rj - delta
    return np.array(rating)


@functools.cache
def _compiled_passes() -> Any:
    """The C versions of the rating loops (``arena/_loops.c``), or None (see
    :func:`arena._quick.native_library`)."""
    library = native_library("_loops")
    if library is None:
        return None
    index, score, real = (np.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS") for dtype in (np.int64, np.int8, np.float64))
    n, number = ctypes.c_int64, ctypes.c_double
    library.online_elo.argtypes = [index, index, score, n, number, number, real]
    library.trueskill.argtypes = [index, index, score, n, number, number, number, real, real]
    library.poisson_table_draws.argtypes = [real, n, n, index, index, real, index, n, index]
    library.online_elo.restype = library.trueskill.restype = library.poisson_table_draws.restype = None
    return library


def _c_votes(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vote arrays as the C passes take them, checked first: C would not stop at an index
    out of range."""
    a, b = np.ascontiguousarray(a, dtype=np.int64), np.ascontiguousarray(b, dtype=np.int64)
    outcome = np.ascontiguousarray(outcome, dtype=np.int8)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_models
                   or outcome.min() < B_WINS or outcome.max() > A_WINS):
        raise ValueError("vote codes out of range")
    if not len(a) == len(b) == len(outcome):
        raise ValueError("a, b and outcome differ in length")
    return a, b, outcome


def trueskill_ratings(votes: Votes, *, env: trueskill.TrueSkill | None = None) -> pd.DataFrame:
    """TrueSkill μ, σ and the conservative score μ−3σ per model, ties counted as draws.

    Each vote is the update of ``trueskill.rate_1vs1`` (parameters and draw margin from
    ``env``, the package defaults unless given), written in closed form so that a million
    votes take seconds rather than minutes; it agrees with ``rate_1vs1`` under the package's
    exact-normal backend (``TrueSkill(backend="scipy")``) to rounding.
    """
    ev = encode_votes(votes)
    env = env or trueskill.TrueSkill()
    mu, sigma = _trueskill_arrays(ev.a, ev.b, ev.outcome, len(ev.models), _trueskill_params(env))
    return pd.DataFrame(
        {"mu": mu, "sigma": sigma, "score": mu - 3 * sigma}, index=pd.Index(ev.models, name="model")
    )


def _trueskill_params(env: trueskill.TrueSkill) -> tuple[float, float, float, float, float]:
    if callable(env.draw_probability):
        raise ValueError("a dynamic draw probability is not supported; give a number")
    margin = trueskill.calc_draw_margin(env.draw_probability, 2, env)
    return env.mu, env.sigma, env.beta, env.tau, margin


def _trueskill_arrays(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int,
    params: tuple[float, float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    mu0, sigma0, beta, tau, margin = params
    compiled = _compiled_passes()
    if compiled is not None:
        mu, var = np.full(n_models, float(mu0)), np.full(n_models, float(sigma0) ** 2)
        a, b, outcome = _c_votes(a, b, outcome, n_models)
        compiled.trueskill(a, b, outcome, len(a), float(beta), float(tau), float(margin), mu, var)
        return mu, np.sqrt(var)
    sqrt, exp, erfc = math.sqrt, math.exp, math.erfc
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    inv_sqrt2pi = 1.0 / math.sqrt(2.0 * math.pi)
    two_beta2, tau2 = 2.0 * beta * beta, tau * tau
    mu = [mu0] * n_models
    var = [sigma0 * sigma0] * n_models
    # The v and w functions of TrueSkill: the mean and variance corrections of a Gaussian
    # truncated to a win (or to the draw band), as in trueskill.TrueSkill.v_win etc.
    for i, j, o in zip(a.tolist(), b.tolist(), outcome.tolist()):
        if o == B_WINS:  # the winner goes first
            i, j = j, i
        vi = var[i] + tau2
        vj = var[j] + tau2
        c2 = two_beta2 + vi + vj
        c = sqrt(c2)
        t = (mu[i] - mu[j]) / c
        e = margin / c
        if o != TIE:
            x = t - e
            cdf = 0.5 * erfc(-x * inv_sqrt2)
            v = inv_sqrt2pi * exp(-0.5 * x * x) / cdf if cdf > 0.0 else -x
            w = v * (v + x)
        else:
            at = t if t >= 0.0 else -t
            hi, lo = e - at, -e - at
            denom = 0.5 * (erfc(-hi * inv_sqrt2) - erfc(-lo * inv_sqrt2))
            pdf_hi = inv_sqrt2pi * exp(-0.5 * hi * hi)
            pdf_lo = inv_sqrt2pi * exp(-0.5 * lo * lo)
            if denom > 0.0:
                v = (pdf_lo - pdf_hi) / denom
                w = v * v + (hi * pdf_hi - lo * pdf_lo) / denom
            else:  # both far apart yet drawn: the limit of the formulas above
                v, w = hi, 1.0
            if t < 0.0:
                v = -v
        if not 0.0 < w < 1.0:  # true mathematically; guard against rounding at the extremes
            w = 1e-12 if w <= 0.0 else 1.0 - 1e-12
        vc = v / c
        mu[i] += vi * vc
        mu[j] -= vj * vc
        wc = w / c2
        var[i] = vi * (1.0 - vi * wc)
        var[j] = vj * (1.0 - vj * wc)
    return np.array(mu), np.sqrt(np.array(var))


# ---------------------------------------------------------------------------------------------
# Outcome counts, matrices and components
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairCounts:
    """Outcome counts for each unordered pair of models ``i < j`` that met at least once."""

    models: tuple[str, ...]
    i: np.ndarray
    j: np.ndarray
    wins_i: np.ndarray
    ties: np.ndarray
    wins_j: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.wins_i + self.ties + self.wins_j

    @property
    def score_i(self) -> np.ndarray:
        """Wins of ``i`` with ties counted as half."""
        return self.wins_i + 0.5 * self.ties

    def restrict(self, members: np.ndarray) -> PairCounts:
        """The counts among ``members`` (model indices), re-indexed 0..len(members)-1."""
        index = np.full(len(self.models), -1)
        index[members] = np.arange(len(members))
        keep = (index[self.i] >= 0) & (index[self.j] >= 0)
        return PairCounts(
            tuple(self.models[m] for m in members), index[self.i[keep]], index[self.j[keep]],
            self.wins_i[keep], self.ties[keep], self.wins_j[keep],
        )


def pair_counts(votes: Votes) -> PairCounts:
    """Aggregate votes into win/tie/loss counts per pair (sides merged: BT ignores them)."""
    ev = encode_votes(votes)
    m = len(ev.models)
    lo = np.minimum(ev.a, ev.b)
    hi = np.maximum(ev.a, ev.b)
    outcome_lo = np.where(ev.a == lo, ev.outcome, 2 - ev.outcome).astype(np.int64)
    key = (lo * m + hi) * 3 + outcome_lo
    if m * m * 3 <= 8_000_000:
        cells = np.bincount(key, minlength=m * m * 3).reshape(m * m, 3)
        pairs = np.flatnonzero(cells.sum(axis=1))
        cells = cells[pairs]
    else:
        uniq, counts = np.unique(key, return_counts=True)
        pairs, slot = np.unique(uniq // 3, return_inverse=True)
        cells = np.zeros((len(pairs), 3), dtype=np.int64)
        cells[slot, uniq % 3] = counts
    cells = cells.astype(np.float64)
    return PairCounts(ev.models, pairs // m, pairs % m, cells[:, 2], cells[:, 1], cells[:, 0])


def battle_count_matrix(votes: Votes, order: Iterable[str] | None = None) -> pd.DataFrame:
    """Number of battles between each pair of models (symmetric), for heatmaps."""
    pc = pair_counts(votes)
    m = len(pc.models)
    counts = np.zeros((m, m))
    counts[pc.i, pc.j] = pc.n
    counts[pc.j, pc.i] = pc.n
    frame = pd.DataFrame(counts, index=pc.models, columns=pc.models)
    return _reorder(frame, order)


def win_rate_matrix(votes: Votes, order: Iterable[str] | None = None) -> pd.DataFrame:
    """Fraction of battles the row model won against the column model (ties count as battles,
    not wins, as in FastChat); NaN where two models never met."""
    pc = pair_counts(votes)
    m = len(pc.models)
    wins = np.zeros((m, m))
    battles = np.zeros((m, m))
    wins[pc.i, pc.j] = pc.wins_i
    wins[pc.j, pc.i] = pc.wins_j
    battles[pc.i, pc.j] = battles[pc.j, pc.i] = pc.n
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(battles > 0, wins / battles, np.nan)
    return _reorder(pd.DataFrame(rate, index=pc.models, columns=pc.models), order)


def _reorder(frame: pd.DataFrame, order: Iterable[str] | None) -> pd.DataFrame:
    if order is None:
        return frame
    names = list(order)
    return frame.loc[names, names]


def components(votes: Votes) -> list[list[str]]:
    """Connected components of the comparison graph, largest first (names sorted within)."""
    pc = pair_counts(votes)
    labels = _component_labels(pc)
    groups = [sorted(pc.models[k] for k in np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _component_labels(pc: PairCounts) -> np.ndarray:
    m = len(pc.models)
    linked = _adjacency(m, np.r_[pc.i, pc.j], np.r_[pc.j, pc.i])
    labels = np.full(m, -1)
    for node in range(m):
        if labels[node] < 0:
            labels[_reach(linked, node)] = labels.max() + 1
    return labels


def _adjacency(m: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    adjacency = np.zeros((m, m), dtype=bool)
    adjacency[src, dst] = True
    return adjacency


def _reach(adjacency: np.ndarray, start: int) -> np.ndarray:
    """Which nodes can be reached from ``start`` along the (directed) edges, breadth first."""
    seen = np.zeros(len(adjacency), dtype=bool)
    seen[start] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adjacency[frontier].any(axis=0) & ~seen
        seen |= frontier
    return seen


def _scored_against(pc: PairCounts) -> np.ndarray:
    """Directed graph with an edge i → j when i won or tied at least once against j."""
    won, lost = pc.score_i > 0, pc.n - pc.score_i > 0
    return _adjacency(len(pc.models), np.r_[pc.i[won], pc.j[lost]], np.r_[pc.j[won], pc.i[lost]])


def _has_finite_mle(pc: PairCounts) -> bool:
    """Whether the BT likelihood has a finite maximiser within this (connected) set of models:
    exactly when the directed graph "i scored against j" (a win or a tie) is strongly
    connected, i.e. no group of models never lost, or never won, against the rest."""
    if len(pc.models) < 2:
        return True
    graph = _scored_against(pc)
    return bool(_reach(graph, 0).all() and _reach(graph.T, 0).all())


def _unbounded_groups(pc: PairCounts) -> list[str]:
    """Descriptions of the groups whose BT ratings run off to ±∞ (empty when the MLE exists)."""
    if _has_finite_mle(pc):
        return []
    graph = _scored_against(pc)
    m = len(pc.models)
    group = np.full(m, -1)
    for node in range(m):  # strongly connected groups: reachable both ways
        if group[node] < 0:
            group[_reach(graph, node) & _reach(graph.T, node)] = group.max() + 1
    between = graph & (group[:, None] != group[None, :])
    out = []
    for g in range(group.max() + 1):
        members = group == g
        names = ", ".join(sorted(pc.models[k] for k in np.flatnonzero(members)))
        if not between[:, members].any():
            out.append(f"{names} never lost to the others")
        elif not between[members, :].any():
            out.append(f"{names} never beat the others")
    return out


# ---------------------------------------------------------------------------------------------
# Bradley–Terry
# ---------------------------------------------------------------------------------------------


def _bt_objective(theta: np.ndarray, pc: PairCounts, l2: float) -> float:
    """Negative log-likelihood FastChat's compute_bt minimises, plus (l2/2)·|θ|²."""
    d = LN10 * (theta[pc.i] - theta[pc.j])
    s = pc.score_i
    nll = s @ np.logaddexp(0.0, -d) + (pc.n - s) @ np.logaddexp(0.0, d)
    return float(nll + 0.5 * l2 * theta @ theta)


def _bt_grad_hess(theta: np.ndarray, pc: PairCounts, l2: float) -> tuple[np.ndarray, np.ndarray]:
    m = len(theta)
    p = _expit(LN10 * (theta[pc.i] - theta[pc.j]))
    r = LN10 * (pc.n * p - pc.score_i)
    grad = np.bincount(pc.i, r, m) - np.bincount(pc.j, r, m) + l2 * theta
    w = LN10 * LN10 * pc.n * p * (1.0 - p)
    hess = np.zeros((m, m))
    hess[pc.i, pc.j] = -w
    hess[pc.j, pc.i] = -w
    hess[np.diag_indices(m)] = np.bincount(pc.i, w, m) + np.bincount(pc.j, w, m) + l2
    return grad, hess


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _fit_bt(
    pc: PairCounts, l2: float, theta0: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 200
) -> np.ndarray:
    """Newton's method with backtracking for one connected set of models; θ averages zero.

    The likelihood is invariant to adding a constant to every θ, so the Hessian is singular
    along the all-ones direction; adding 11ᵀ/m fixes that direction without changing the
    steps (the gradient is orthogonal to it).
    """
    m = len(pc.models)
    theta = np.zeros(m) if theta0 is None else theta0 - theta0.mean()
    if m < 2:
        return theta
    pin = np.full((m, m), 1.0 / m)
    value = _bt_objective(theta, pc, l2)
    for _ in range(max_iter):
        grad, hess = _bt_grad_hess(theta, pc, l2)
        step = -np.linalg.solve(hess + pin, grad)
        step -= step.mean()
        largest = np.abs(step).max()
        if largest < 1e-6:  # inside the region of quadratic convergence: no line search
            theta = theta + step
            if largest < tol:
                break
            value = _bt_objective(theta, pc, l2)
            continue
        if largest > 4.0:  # keep early steps sane when the data are extreme
            step *= 4.0 / largest
        t = 1.0
        while True:
            candidate = theta + t * step
            new_value = _bt_objective(candidate, pc, l2)
            if new_value <= value + 1e-4 * t * (grad @ step) or t < 1e-8:
                break
            t *= 0.5
        theta, value = candidate, new_value
        if t * np.abs(step).max() < tol:
            break
    return theta


@dataclass(frozen=True)
class BTFit:
    """Bradley–Terry ratings of one connected component."""

    members: np.ndarray  # model indices into PairCounts.models
    counts: PairCounts  # restricted to the members
    theta: np.ndarray
    l2: float
    offset: float  # Elo-scale shift (anchor), 0 when not anchored
    anchor_index: int | None  # index within members

    def elo(self, theta: np.ndarray | None = None) -> np.ndarray:
        th = self.theta if theta is None else theta
        shift = self.offset
        if self.anchor_index is not None:  # the anchor keeps its rating in every replicate
            shift = self.offset + SCALE * (self.theta[self.anchor_index] - th[..., [self.anchor_index]])
        return SCALE * th + INIT_RATING + shift


def _fit_components(
    pc: PairCounts, l2: float, anchor: tuple[str, float] | None, warnings: list[str]
) -> list[BTFit]:
    labels = _component_labels(pc)
    order = sorted(np.unique(labels), key=lambda c: -int((labels == c).sum()))
    if len(order) > 1:
        groups = "; ".join(
            "{" + ", ".join(sorted(pc.models[k] for k in np.flatnonzero(labels == c))) + "}" for c in order
        )
        warnings.append(
            f"the comparison graph has {len(order)} disconnected components, rated separately "
            f"(ratings are comparable only within a component): {groups}"
        )
    if anchor is not None and anchor[0] not in pc.models:
        raise ValueError(f"anchor model {anchor[0]!r} has no votes")
    fits = []
    for c in order:
        members = np.flatnonzero(labels == c)
        sub = pc.restrict(members)
        penalty = l2
        unbounded = _unbounded_groups(sub) if l2 == 0.0 else []
        if unbounded:
            penalty = FALLBACK_L2
            warnings.append(
                "the Bradley–Terry maximum-likelihood ratings do not exist ("
                + "; ".join(unbounded)
                + f"): fitted with an L2 penalty of {FALLBACK_L2} (choose one with --l2), so treat those "
                "ratings as rough until more votes come in"
            )
        theta = _fit_bt(sub, penalty)
        offset, anchor_index = 0.0, None
        if anchor is not None and anchor[0] in sub.models:
            anchor_index = sub.models.index(anchor[0])
            offset = anchor[1] - (SCALE * theta[anchor_index] + INIT_RATING)
        fits.append(BTFit(members, sub, theta, penalty, offset, anchor_index))
    return fits


def bradley_terry(
    votes: Votes, *, anchor: tuple[str, float] | None = None, l2: float = 0.0
) -> dict[str, float]:
    """Bradley–Terry ratings on the Elo scale (see the module docstring for conventions).

    ``anchor=(model, rating)`` shifts the model's component so that ``model`` has ``rating``;
    ``l2`` adds ``(l2/2)·Σθ²`` to the negative log-likelihood (θ in base-10 log-odds).
    """
    pc = pair_counts(votes)
    ratings: dict[str, float] = {}
    for fit in _fit_components(pc, l2, anchor, []):
        ratings.update(zip(fit.counts.models, fit.elo().tolist()))
    return ratings


# ---------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------


BOOTSTRAP_BLOCK = 50
"""Bootstrap rounds per seeded block; blocks are what worker processes share out."""


@dataclass(frozen=True)
class KwayPatterns:
    """The K-way votes of one component, grouped by the comparisons they imply: pattern ``p``
    adds ``cells[p]`` (a 0/1 row per (pair, outcome) cell of the component, with multiplicity)
    and was cast ``counts[p]`` times."""

    cells: np.ndarray  # (patterns × cells of the component), dense
    counts: np.ndarray


@dataclass(frozen=True)
class _BootstrapPlan:
    """What every bootstrap block of one component needs; built once, shipped to workers.

    A resample draws votes: pairwise votes by (pair, outcome) cell, K-way votes by pattern, in
    one multinomial, so that the comparisons of a K-way vote always come together.
    """

    fit: BTFit
    cell_counts: np.ndarray  # comparisons per (pair, outcome) cell, cells sorted by pair
    cell_score: np.ndarray  # 1, 0.5 or 0: the score of the pair's first model in that cell
    cell_pair: np.ndarray
    starts: np.ndarray  # first cell of each pair
    hess0_inv: np.ndarray  # inverse of the full-data Hessian (+ 11ᵀ/m)
    draw_counts: np.ndarray  # votes per resampling category: pairwise cells, then K-way patterns
    pair_cells: np.ndarray | None = None  # the cell of each pairwise category (None: every cell, in order)
    patterns: np.ndarray | None = None  # K-way patterns × cells

    @classmethod
    def build(cls, fit: BTFit, pairwise: PairCounts | None = None, kway: KwayPatterns | None = None) -> _BootstrapPlan:
        """``pairwise`` and ``kway``: the component's votes apart (None: every vote pairwise)."""
        pc = fit.counts
        m = len(fit.theta)
        cell_counts = np.stack([pc.wins_i, pc.ties, pc.wins_j], axis=1).ravel()
        cell_score = np.tile([1.0, 0.5, 0.0], len(pc.i))
        cell_pair = np.repeat(np.arange(len(pc.i)), 3)
        keep = cell_counts > 0
        cell_pair = cell_pair[keep]
        starts = np.flatnonzero(np.r_[True, cell_pair[1:] != cell_pair[:-1]])
        _, hess0 = _bt_grad_hess(fit.theta, pc, fit.l2)
        hess0_inv = np.linalg.inv(hess0 + 1.0 / m)
        if kway is None:
            return cls(fit, cell_counts[keep], cell_score[keep], cell_pair, starts, hess0_inv, cell_counts[keep])
        single = np.stack([pairwise.wins_i, pairwise.ties, pairwise.wins_j], axis=1).ravel()[keep]
        pair_cells = np.flatnonzero(single > 0)
        draw = np.concatenate([single[pair_cells], kway.counts.astype(np.float64)])
        return cls(fit, cell_counts[keep], cell_score[keep], cell_pair, starts, hess0_inv, draw, pair_cells,
                   kway.cells[:, keep].astype(np.float64))

    @functools.cached_property
    def sampler(self) -> PoissonSampler:
        return PoissonSampler(self.draw_counts)

    @property
    def dense(self) -> bool:
        """Every vote pairwise and every pair with all three cells (win, tie, loss), in order."""
        return self.patterns is None and len(self.cell_counts) == 3 * len(self.starts)

    def resample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Comparisons per cell in ``size`` resamples of the votes (rows): integers where every
        vote is pairwise, else (K-way patterns spread over their cells) floats."""
        draws = resample_counts(rng, self.draw_counts, size, self.sampler)
        if self.patterns is None:
            return draws
        draws = draws.astype(np.float64)
        counts = np.zeros((size, len(self.cell_counts)))
        n_pair = len(self.pair_cells)
        counts[:, self.pair_cells] = draws[:, :n_pair]
        counts += draws[:, n_pair:] @ self.patterns
        return counts

    def pair_totals(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Comparisons per pair, and the pair's first model's score, in each resample (rows of
        :meth:`resample`). A dense plan sums three strided slices, several times faster than
        ``reduceat`` and with the same sums."""
        if self.dense:
            wins, ties, losses = counts[:, 0::3], counts[:, 1::3], counts[:, 2::3]
            return (wins + ties + losses).astype(np.float64), wins + 0.5 * ties
        return (np.add.reduceat(counts, self.starts, axis=1).astype(np.float64),
                np.add.reduceat(counts * self.cell_score, self.starts, axis=1))


def kway_patterns(ev: EncodedVotes, pc: PairCounts) -> tuple[PairCounts, dict[tuple[int, ...], int], np.ndarray]:
    """Split votes for the bootstrap: the pair counts of the pairwise votes (aligned with ``pc``),
    and the K-way votes as patterns ``{cells: count}``, a pattern being the sorted cell numbers
    ``3·pair + (0 win of i, 1 tie, 2 win of j)`` of its comparisons in ``pc``; plus each pattern's first model."""
    m = len(ev.models)
    lo, hi = np.minimum(ev.a, ev.b), np.maximum(ev.a, ev.b)
    slot = np.searchsorted(pc.i * m + pc.j, lo * m + hi)
    side = np.where(ev.a == lo, ev.outcome, 2 - ev.outcome)  # outcome from the lower index's side
    cell = 3 * slot + (2 - side)  # 2 (i won) → 0, tie → 1, 0 (j won) → 2
    sizes = np.bincount(ev.unit, minlength=ev.n_votes)
    single = sizes[ev.unit] == 1
    cells = np.zeros(3 * len(pc.i))
    np.add.at(cells, cell[single], 1.0)
    cells = cells.reshape(-1, 3)
    pairwise = PairCounts(pc.models, pc.i, pc.j, cells[:, 0], cells[:, 1], cells[:, 2])
    patterns: dict[tuple[int, ...], int] = {}
    first: dict[tuple[int, ...], int] = {}
    multi = np.flatnonzero(~single)
    if len(multi):
        bounds = np.flatnonzero(np.r_[True, ev.unit[multi][1:] != ev.unit[multi][:-1], True])
        for start, stop in zip(bounds[:-1], bounds[1:]):
            key = tuple(sorted(cell[multi[start:stop]].tolist()))
            patterns[key] = patterns.get(key, 0) + 1
            first.setdefault(key, int(ev.a[multi[start]]))
    return pairwise, patterns, np.array([first[k] for k in patterns], dtype=np.int64)


def _component_patterns(fit: BTFit, pc: PairCounts, patterns: dict[tuple[int, ...], int], first: np.ndarray
                        ) -> KwayPatterns:
    """The patterns of one component, as rows over its cells (in ``fit.counts`` numbering)."""
    member = np.zeros(len(pc.models), dtype=bool)
    member[fit.members] = True
    local = np.full(len(pc.i), -1)
    inside = member[pc.i] & member[pc.j]
    local[inside] = np.arange(int(inside.sum()))  # restrict() keeps the pairs in the same order
    keys = [key for key, f in zip(patterns, first.tolist()) if member[f]]
    rows = np.zeros((len(keys), 3 * int(inside.sum())))
    for r, key in enumerate(keys):
        for c in key:
            rows[r, 3 * local[c // 3] + c % 3] += 1.0
    return KwayPatterns(rows, np.array([patterns[k] for k in keys], dtype=np.float64))


def resample_counts(rng: np.random.Generator, counts: np.ndarray, size: int,
                    sampler: PoissonSampler | None = None) -> np.ndarray:
    """``size`` rows drawn from Multinomial(N, counts / N), N = counts.sum(): the counts of a
    resample of N votes drawn with replacement, exactly.

    Independent Poisson(counts) draws (:class:`PoissonSampler`; pass one built from the same
    ``counts`` to reuse its tables), given their total S, are Multinomial(S, p). Adding N − S
    further draws from p, or taking away S − N of the S drawn votes chosen uniformly, turns
    Multinomial(S, p) into Multinomial(N, p), whatever S is.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = int(round(counts.sum()))
    cdf = np.cumsum(counts) / counts.sum()
    cdf[-1] = 1.0
    rows = (sampler or PoissonSampler(counts)).draw(rng, size)
    excess = rows.sum(axis=1) - total
    short = np.flatnonzero(excess < 0)
    if len(short):  # the further draws of every short row at once
        need = -excess[short]
        extra = np.searchsorted(cdf, rng.random(int(need.sum())), side="right")
        np.add.at(rows, (np.repeat(short, need), extra), 1)
    for r in np.flatnonzero(excess > 0).tolist():
        removed = rng.choice(total + int(excess[r]), size=int(excess[r]), replace=False)
        rows[r] -= np.bincount(np.searchsorted(np.cumsum(rows[r]), removed, side="right"), minlength=len(counts))
    return rows


class PoissonSampler:
    """Rows of independent Poisson(counts[c]) draws, for counts of votes.

    A bootstrap draws one per (pair, outcome) cell per round, 15 million for 100 models and
    1,000 rounds; numpy's Poisson sampler made them the slowest part of the leaderboard. Vote
    counts are whole numbers with few distinct values, so each distinct count λ gets its CDF
    over λ ± (10√λ + 10) (the mass outside is below 1e-20) and a guide table, once; a draw is
    one uniform number inverted through them: the guide gives its bucket's first value, a few
    comparisons the exact one. This is the inverse-CDF method, exact up to the rounding of the
    CDF. Cells with counts above :data:`POISSON_TABLE_MAX`, fractional counts, or more distinct
    counts than :data:`POISSON_TABLES` use ``rng.poisson``.
    """

    def __init__(self, counts: np.ndarray):
        self.counts = counts = np.asarray(counts, dtype=np.float64)
        values, cell_value = np.unique(counts, return_inverse=True)
        tabled = (values > 0) & (values <= POISSON_TABLE_MAX) & (values == np.round(values))
        if tabled.sum() > POISSON_TABLES:
            tabled[:] = False
        self.table_cells = np.flatnonzero(tabled[cell_value])
        self.other_cells = np.flatnonzero(~tabled[cell_value] & (counts > 0))
        self.all_tabled = len(self.table_cells) == len(counts)
        lams = values[tabled]
        cell_table = (np.cumsum(tabled) - 1)[cell_value[self.table_cells]]
        if not len(lams):
            return
        spread = 10.0 * np.sqrt(lams) + 10.0
        first = np.maximum(0, np.floor(lams - spread)).astype(np.int64)
        self.width = width = int(np.ceil(lams + spread).max() - first.min()) + 2
        k = first[:, None] + np.arange(width)[None, :]
        log_factorial = np.cumsum(np.log(np.maximum(np.arange(k.max() + 1), 1)))
        cdf = np.cumsum(np.exp(k * np.log(lams)[:, None] - lams[:, None] - log_factorial[k]), axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = np.inf  # no uniform number reaches the last entry: every walk stops there
        self.cdf = cdf.ravel()
        guide = np.stack([np.searchsorted(row, np.arange(_GUIDE) / _GUIDE, side="right") for row in cdf])
        # The guide's answer as a position in the flat CDF, per (distinct count, bucket): small
        # enough to stay in cache, which a table per cell would not.
        self.guide = (guide + (np.arange(len(lams)) * width)[:, None]).astype(np.int64).ravel()
        self.guide_start = (cell_table * _GUIDE).astype(np.int64)
        self.offset = first[cell_table] - cell_table * width

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        counts = self.counts
        if self.all_tabled and size:
            return self._table_draws(rng, size)
        rows = np.zeros((size, len(counts)), dtype=np.int64)
        if len(self.table_cells) and size:
            rows[:, self.table_cells] = self._table_draws(rng, size)
        if len(self.other_cells) and size:
            rows[:, self.other_cells] = rng.poisson(np.broadcast_to(counts[self.other_cells], (size, len(self.other_cells))))
        return rows

    def _table_draws(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random((size, len(self.table_cells)))
        compiled = _compiled_passes()
        if compiled is not None:  # the same walk in one pass (arena/_loops.c)
            out = np.empty(u.shape, dtype=np.int64)
            compiled.poisson_table_draws(u, size, u.shape[1], self.guide, self.guide_start, self.cdf,
                                         self.offset, _GUIDE, out)
            return out
        bucket = (u * _GUIDE).astype(np.intp)
        bucket += self.guide_start
        pos = self.guide[bucket].ravel()
        flat_u = u.ravel()
        behind = np.flatnonzero(flat_u >= self.cdf[pos])
        while behind.size:  # walk each draw forward to the first CDF entry above its uniform number
            pos[behind] += 1
            behind = behind[flat_u[behind] >= self.cdf[pos[behind]]]
        pos = pos.reshape(size, -1)
        pos += self.offset
        return pos


POISSON_TABLE_MAX = 1000
"""Cells with at most this many votes are drawn by :class:`PoissonSampler` from tables."""
POISSON_TABLES = 1024
"""At most this many distinct counts are tabulated; beyond that, numpy's sampler draws."""
_GUIDE = 1024  # guide-table buckets per distinct count


def _bootstrap_block(plan: _BootstrapPlan, seed: np.random.SeedSequence, size: int) -> tuple[np.ndarray, int]:
    """θ for ``size`` multinomial resamples of one component's votes, and how many of them had
    no finite optimum (and were fitted with :data:`FALLBACK_L2`).

    Resampling the (pair, outcome) cells multinomially (:func:`resample_counts`) is the same
    as resampling votes with replacement. Each replicate starts from the full-data optimum and takes Newton steps with
    the full-data Hessian; replicates differ little, so a few steps reach 1e-7. Replicates
    that need more (sparse data) are refitted one by one with :func:`_fit_bt`.
    """
    fit = plan.fit
    pc, theta0, l2 = fit.counts, fit.theta, fit.l2
    m = len(theta0)
    rng = np.random.default_rng(seed)
    counts = plan.resample(rng, size)
    n, s = plan.pair_totals(counts)

    theta = np.repeat(theta0[None, :], size, axis=0)
    converged = np.zeros(size, dtype=bool)
    # Flat indices of (replicate, model) for the two sides of every pair, for bincount.
    rows = np.arange(size)[:, None] * m
    flat_i, flat_j = (rows + pc.i).ravel(), (rows + pc.j).ravel()
    p = _expit(LN10 * (theta0[pc.i] - theta0[pc.j]))  # every replicate starts here
    half_ln10 = 0.5 * LN10
    for iteration in range(30):
        if iteration:  # _expit(LN10 * (θ_i − θ_j)), in place: the same numbers, fewer arrays
            p = theta[:, pc.i]
            p -= theta[:, pc.j]
            p *= half_ln10
            np.tanh(p, out=p)
            p += 1.0
            p *= 0.5
        r = n * p
        r -= s
        r *= LN10
        r = r.ravel()
        grad = (np.bincount(flat_i, r, size * m) - np.bincount(flat_j, r, size * m)).reshape(size, m)
        grad += l2 * theta
        # A small product: einsum's own loop rather than BLAS, whose threads only contend here.
        step = -np.einsum("rm,mk->rk", grad, plan.hess0_inv)
        theta += step
        # 1e-7 in θ is 4e-5 Elo points, far below what a percentile interval can resolve.
        converged = np.abs(step).max(axis=1) < 1e-7
        if converged.all():
            break

    # A replicate that lost an edge of the full data may have no finite optimum (a model that
    # never lost, or a graph that fell apart); those, and any replicate the fixed-Hessian
    # steps did not settle, are refitted one by one.
    full_win, full_loss = pc.score_i > 0, pc.n - pc.score_i > 0
    lost_edge = ~(((s > 0) | ~full_win) & ((n - s > 0) | ~full_loss)).all(axis=1)
    penalised = 0
    for r in np.flatnonzero(~converged | lost_edge | ~np.isfinite(theta).all(axis=1)):
        sub = PairCounts(pc.models, pc.i, pc.j, *_split_cells(counts[r], plan.cell_pair, plan.cell_score, len(pc.i)))
        exists = l2 > 0 or _has_finite_mle(_nonempty(sub))
        if converged[r] and exists and np.isfinite(theta[r]).all():
            continue  # the iteration found the unique optimum
        theta[r] = _fit_bt(sub, l2 if exists else FALLBACK_L2, theta0)
        penalised += not exists
    return theta, penalised


def _split_cells(counts: np.ndarray, cell_pair: np.ndarray, cell_score: np.ndarray, n_pairs: int):
    wins_i = np.bincount(cell_pair[cell_score == 1.0], counts[cell_score == 1.0], n_pairs)
    ties = np.bincount(cell_pair[cell_score == 0.5], counts[cell_score == 0.5], n_pairs)
    wins_j = np.bincount(cell_pair[cell_score == 0.0], counts[cell_score == 0.0], n_pairs)
    return wins_i, ties, wins_j


def _nonempty(pc: PairCounts) -> PairCounts:
    keep = pc.n > 0
    return PairCounts(pc.models, pc.i[keep], pc.j[keep], pc.wins_i[keep], pc.ties[keep], pc.wins_j[keep])


def _sandwich_cov(fit: BTFit, pairwise: PairCounts | None = None, kway: KwayPatterns | None = None) -> np.ndarray:
    """Robust covariance of θ: H⁻¹ J H⁻¹, J summing the outer products of per-vote scores (a
    K-way vote's score is the sum of its comparisons' scores; ``pairwise`` and ``kway`` hold
    the component's votes apart, None when every vote is pairwise)."""
    pc, theta = fit.counts, fit.theta
    m = len(theta)
    p = _expit(LN10 * (theta[pc.i] - theta[pc.j]))
    votes = pc if kway is None else pairwise
    # Per-vote score of a pair is LN10·(y - p)·(e_i - e_j) with y = 1, 1/2 or 0.
    meat_w = LN10 * LN10 * (votes.wins_i * (1 - p) ** 2 + votes.ties * (0.5 - p) ** 2 + votes.wins_j * p**2)
    meat = np.zeros((m, m))
    meat[pc.i, pc.j] = -meat_w
    meat[pc.j, pc.i] = -meat_w
    meat[np.diag_indices(m)] = np.bincount(pc.i, meat_w, m) + np.bincount(pc.j, meat_w, m)
    if kway is not None and len(kway.counts):
        score = LN10 * (np.array([1.0, 0.5, 0.0])[None, :] - p[:, None])  # per (pair, outcome) cell
        per_cell = np.zeros((3 * len(p), m))
        rows = np.arange(3 * len(p))
        per_cell[rows, np.repeat(pc.i, 3)] = score.ravel()
        per_cell[rows, np.repeat(pc.j, 3)] = -score.ravel()
        g = kway.cells @ per_cell  # each pattern's score
        meat += g.T @ (g * kway.counts[:, None])
    _, hess = _bt_grad_hess(theta, pc, fit.l2)
    bread = np.linalg.inv(hess + 1.0 / m)
    return bread @ meat @ bread


def _intervals(fit: BTFit, method: str, thetas: np.ndarray | None, votes: tuple = (None, None)
               ) -> tuple[np.ndarray, np.ndarray]:
    """95% interval on the Elo scale for each member of the component (``votes``: the
    component's pairwise counts and K-way patterns apart, for the sandwich)."""
    if method == "bootstrap":
        elo = fit.elo(thetas)
        return np.quantile(elo, 0.025, axis=0), np.quantile(elo, 0.975, axis=0)
    cov = _sandwich_cov(fit, *votes)
    var = np.diag(cov).copy()
    if fit.anchor_index is not None:  # uncertainty of the difference to the anchor
        k = fit.anchor_index
        var = var + cov[k, k] - 2 * cov[:, k]
    half = Z95 * SCALE * np.sqrt(np.clip(var, 0.0, None))
    centre = fit.elo()
    return centre - half, centre + half


def confidence_intervals(
    votes: Votes, *, method: Literal["bootstrap", "sandwich"] = "bootstrap", rounds: int = 1000,
    seed: int = 0, anchor: tuple[str, float] | None = None, l2: float = 0.0,
    progress: Progress | None = None,
) -> dict[str, tuple[float, float]]:
    """95% intervals of the Bradley–Terry ratings: percentile bootstrap (seeded) or sandwich."""
    board = leaderboard(
        votes, ci=method, rounds=rounds, seed=seed, anchor=anchor, l2=l2, progress=progress,
        with_online=False,
    )
    return {row["model"]: (row["ci_low"], row["ci_high"]) for row in board.rows}


# ---------------------------------------------------------------------------------------------
# The leaderboard
# ---------------------------------------------------------------------------------------------


@dataclass
class Leaderboard:
    """Rows of the leaderboard (one dict per model) and what a reader must know about them."""

    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    components: list[list[str]] = field(default_factory=list)
    ci_method: str = "bootstrap"
    rounds: int = 0
    votes: int = 0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(ROW_FIELDS))


ROW_FIELDS: tuple[str, ...] = (
    "rank_ub", "model", "elo", "ci_low", "ci_high", "elo_online", "trueskill_mu", "trueskill_sigma",
    "trueskill_score", "votes", "wins", "losses", "ties", "win_rate", "component",
)


def leaderboard(
    votes: Votes,
    *,
    ci: Literal["bootstrap", "sandwich"] = "bootstrap",
    rounds: int = 1000,
    seed: int = 0,
    anchor: tuple[str, float] | None = None,
    l2: float = 0.0,
    min_votes: int = 0,
    trueskill_env: trueskill.TrueSkill | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    with_online: bool = True,
) -> Leaderboard:
    """Everything the leaderboard shows, from a vote table.

    Rows are sorted by component (largest first) then Bradley–Terry rating. ``rank_ub`` is
    1 + the number of models in the same component whose lower bound exceeds this model's
    upper bound. ``min_votes`` drops the battles of models with fewer votes before rating.
    ``workers`` > 1 shares the work (the sequential online ratings, blocks of bootstrap rounds)
    among that many threads, or processes where the C passes were not built (default: 2 on a
    multi-core machine for 200,000 votes or more, else 1); the result does not depend on it.
    ``progress(done, total)`` is called as bootstrap rounds complete.
    """
    if ci not in ("bootstrap", "sandwich"):
        raise ValueError(f"ci must be 'bootstrap' or 'sandwich', not {ci!r}")
    if ci == "bootstrap" and rounds < 1:
        raise ValueError("the bootstrap needs at least one round")
    if l2 < 0:
        raise ValueError("l2 must be non-negative")
    ev = encode_votes(votes)
    warnings: list[str] = []
    if min_votes > 0 and len(ev):
        ev = _drop_rare_models(ev, min_votes, warnings)
    if len(ev) == 0:
        return Leaderboard([], warnings, [], ci, 0, 0)

    m = len(ev.models)
    env = trueskill_env or trueskill.TrueSkill()
    online_args = (ev.a, ev.b, ev.outcome, m, _trueskill_params(env))
    pc = pair_counts(ev)
    fits = _fit_components(pc, l2, anchor, warnings)

    # K-way votes are resampled whole: split them from the pairwise ones, per component.
    split: list[tuple] = [(None, None)] * len(fits)
    if ev.unit is not None:
        pairwise, patterns, first = kway_patterns(ev, pc)
        split = [(pairwise.restrict(fit.members), _component_patterns(fit, pc, patterns, first)) for fit in fits]
    # The bootstrap runs in seeded blocks, so a block draws the same votes in whichever
    # process runs it: results do not depend on ``workers``.
    plans = [_BootstrapPlan.build(fit, *split[c]) for c, fit in enumerate(fits)] if ci == "bootstrap" else []
    blocks = []  # (component, first round, seed, size)
    for c, component_seed in enumerate(np.random.SeedSequence(seed).spawn(len(plans))):
        starts = range(0, rounds, BOOTSTRAP_BLOCK)
        for start, block_seed in zip(starts, component_seed.spawn(len(starts))):
            blocks.append((c, start, block_seed, min(BOOTSTRAP_BLOCK, rounds - start)))
    thetas = [np.empty((rounds, len(plan.fit.theta))) for plan in plans]
    total_rounds, done, penalised = rounds * len(plans), 0, 0

    def collect(block: tuple, result: tuple[np.ndarray, int]) -> None:
        nonlocal done, penalised
        c, start, _, size = block
        thetas[c][start : start + size] = result[0]
        penalised += result[1]
        done += size
        if progress is not None:
            progress(done, total_rounds)

    if workers is None:
        workers = 2 if len(ev) >= 200_000 and (os.cpu_count() or 1) > 1 else 1
    online = None
    if workers > 1:
        # With the C passes the online ratings take milliseconds and numpy, which does most of
        # the bootstrap, releases the GIL: threads share the work without starting processes.
        # Without them the online ratings are a long Python loop, which would hold the GIL.
        threads = _compiled_passes() is not None
        for plan in plans if threads else ():
            plan.sampler  # built here, once, not by two threads at a time
        with worker_pool(workers, threads) as pool:
            # The online ratings are one long sequential task: submit it first.
            pending = pool.submit(_online_ratings, *online_args) if with_online else None
            futures = {pool.submit(_bootstrap_block, plans[blk[0]], blk[2], blk[3]): blk for blk in blocks}
            for future in as_completed(futures):
                collect(futures[future], future.result())
            online = pending.result() if pending else None
    else:
        for blk in blocks:
            collect(blk, _bootstrap_block(plans[blk[0]], blk[2], blk[3]))
        online = _online_ratings(*online_args) if with_online else None
    if penalised:
        warnings.append(
            f"{penalised} of {total_rounds} bootstrap replicates have no finite Bradley–Terry optimum (in "
            f"the resampled votes some model never lost or never won) and were fitted with an L2 penalty of "
            f"{FALLBACK_L2}; the intervals of sparsely compared models are rough"
        )
    elo_online, ts_mu, ts_sigma = online if online else (np.full(m, np.nan),) * 3

    lows, highs, elo_bt, comp = np.empty(m), np.empty(m), np.empty(m), np.empty(m, dtype=np.int64)
    for c, fit in enumerate(fits):
        low, high = _intervals(fit, ci, thetas[c] if plans else None, split[c])
        lows[fit.members], highs[fit.members] = low, high
        elo_bt[fit.members] = fit.elo()
        comp[fit.members] = c + 1

    wins = np.bincount(ev.a[ev.outcome == A_WINS], minlength=m) + np.bincount(ev.b[ev.outcome == B_WINS], minlength=m)
    losses = np.bincount(ev.a[ev.outcome == B_WINS], minlength=m) + np.bincount(ev.b[ev.outcome == A_WINS], minlength=m)
    ties = np.bincount(ev.a[ev.outcome == TIE], minlength=m) + np.bincount(ev.b[ev.outcome == TIE], minlength=m)

    appearances = ev.votes_per_model()
    rows = []
    for k, name in enumerate(ev.models):
        n_votes = int(appearances[k])
        n_comparisons = int(wins[k] + losses[k] + ties[k])
        rows.append({
            "rank_ub": 1 + int(np.sum((comp == comp[k]) & (lows > highs[k]))),
            "model": name,
            "elo": float(elo_bt[k]),
            "ci_low": float(lows[k]),
            "ci_high": float(highs[k]),
            "elo_online": float(elo_online[k]),
            "trueskill_mu": float(ts_mu[k]),
            "trueskill_sigma": float(ts_sigma[k]),
            "trueskill_score": float(ts_mu[k] - 3 * ts_sigma[k]),
            "votes": n_votes,
            "wins": int(wins[k]),
            "losses": int(losses[k]),
            "ties": int(ties[k]),
            "win_rate": float(wins[k] / n_comparisons),
            "component": int(comp[k]),
        })
    rows.sort(key=lambda r: (r["component"], -r["elo"], r["model"]))
    groups = [sorted(fit.counts.models) for fit in fits]
    return Leaderboard(rows, warnings, groups, ci, rounds if ci == "bootstrap" else 0, ev.n_votes)


def _online_ratings(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int,
    ts_params: tuple[float, float, float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Online Elo (FastChat defaults) and TrueSkill; picklable so it can run in a worker."""
    elo = _online_elo_arrays(a, b, outcome, n_models, 4.0, 10.0, SCALE, INIT_RATING)
    mu, sigma = _trueskill_arrays(a, b, outcome, n_models, ts_params)
    return elo, mu, sigma


def worker_pool(workers: int, threads: bool) -> Executor:
    """``workers`` threads where the work releases the GIL (the C extensions, numpy), else
    ``workers`` processes, started as :func:`process_pool_context` says."""
    if threads:
        return ThreadPoolExecutor(workers)
    return ProcessPoolExecutor(workers, mp_context=process_pool_context())


def process_pool_context() -> multiprocessing.context.BaseContext:
    """How to start worker processes: fork, cheap and safe in a single-threaded process (the
    CLI); spawn in a threaded one (a server), where forking could copy a held lock."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _drop_rare_models(ev: EncodedVotes, min_votes: int, warnings: list[str]) -> EncodedVotes:
    m = len(ev.models)
    per_model = ev.votes_per_model()
    rare = per_model < min_votes
    if not rare.any():
        return ev
    keep = ~(rare[ev.a] | rare[ev.b])
    dropped = sorted(ev.models[k] for k in np.flatnonzero(rare))
    warnings.append(f"left out {len(dropped)} model(s) with fewer than {min_votes} votes: {', '.join(dropped)}")
    used = np.flatnonzero(~rare)
    remap = np.full(m, -1)
    remap[used] = np.arange(len(used))
    if ev.unit is None:
        return EncodedVotes(tuple(ev.models[k] for k in used), remap[ev.a[keep]], remap[ev.b[keep]], ev.outcome[keep])
    units, unit = np.unique(ev.unit[keep], return_inverse=True)
    return EncodedVotes(tuple(ev.models[k] for k in used), remap[ev.a[keep]], remap[ev.b[keep]], ev.outcome[keep],
                        unit.astype(np.int64), per_model[used])


def parse_anchor(text: str) -> tuple[str, float]:
    """Parse ``MODEL=RATING`` (the model name may itself contain '=')."""
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise ValueError(f"anchor must look like MODEL=RATING, not {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise ValueError(f"anchor rating {value!r} is not a number") from None
