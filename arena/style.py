"""Style control for images: Bradley–Terry with covariates, so looks are rated apart from adherence.

Each vote's images carry covariates (``covariates`` in a vote table: one object of numbers per
image, in side order; the studio records ``aesthetics`` and ``objects``, and any numeric field
of a battle's meta rides along). The controlled model is

    P(i beats j) = σ(ln 10 · (θ_i − θ_j) + Σ_f β_f · z_f),   z_f = (x_f,i − x_f,j) / sd_f

where ``sd_f`` is the standard deviation of that covariate's difference over the comparisons.
θ is then what voters reward once looks are accounted for (adherence, on the Shapes world);
β_f is how much they reward one standard deviation more of covariate ``f``. This is the
arena's "style control" (covariates as extra terms in the regression), built for images.

K-way votes enter as the comparisons they imply; the bootstrap resamples votes, as in
:mod:`arena.ratings`. Votes without covariates are left out of the controlled fit (and counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from arena._quick import lazy_module
from arena.ratings import INIT_RATING, LN10, SCALE, bradley_terry, kway_comparisons

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick

_SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


@dataclass
class StyleBoard:
    """Ratings with and without control, and the covariates' coefficients."""

    rows: list[dict[str, Any]]  # model, elo (controlled), ci_low, ci_high, elo_uncontrolled, shift
    coefficients: list[dict[str, Any]]  # covariate, beta, elo_per_sd, ci_low, ci_high, sd
    votes: int = 0  # votes in the fit
    left_out: int = 0  # votes without covariates
    rounds: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Design:
    models: tuple[str, ...]
    names: tuple[str, ...]
    i: np.ndarray
    j: np.ndarray
    y: np.ndarray
    z: np.ndarray  # (comparisons × covariates), standardised differences
    unit: np.ndarray
    sd: np.ndarray
    n_units: int
    left_out: int


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def design(votes: pd.DataFrame | list[dict[str, Any]]) -> _Design:
    """The comparisons of the votes that carry covariates, with their standardised differences."""
    frame = votes if isinstance(votes, pd.DataFrame) else pd.DataFrame.from_records(list(votes))
    records = frame.to_dict("records")
    if "tstamp" in frame.columns:
        order = np.argsort(pd.to_numeric(frame["tstamp"], errors="coerce").to_numpy(float), kind="stable")
        records = [records[k] for k in order]
    comparisons: list[tuple[str, str, float, dict, dict, int]] = []
    names: set[str] = set()
    left_out = units = 0
    for record in records:
        covariates = record.get("covariates")
        models = record.get("models")
        kway = isinstance(models, (list, tuple))
        sides = list(models) if kway else [record.get("model_a"), record.get("model_b")]
        if not isinstance(covariates, (list, tuple)) or len(covariates) != len(sides) or not all(
                isinstance(c, dict) for c in covariates):
            left_out += 1
            continue
        side = dict(zip(sides, covariates))
        if kway:
            best, worst = (None if _missing(record.get(k)) else record.get(k) for k in ("best", "worst"))
            pairs = [(a, b, _SCORE[w]) for a, b, w in kway_comparisons(list(models), best, worst)]
        else:
            pairs = [(sides[0], sides[1], _SCORE[record["winner"]])]
        for a, b, y in pairs:
            comparisons.append((a, b, y, side[a], side[b], units))
            names.update(k for k, v in {**side[a], **side[b]}.items() if isinstance(v, (int, float)))
        units += 1
    covariate_names = tuple(sorted(names))
    # a covariate some compared image lacks is treated as no difference for that comparison
    models = tuple(dict.fromkeys(x for c in comparisons for x in c[:2]))
    index = {m: k for k, m in enumerate(models)}
    diff = np.array([[float(c[3].get(f, 0.0)) - float(c[4].get(f, 0.0)) if f in c[3] and f in c[4] else 0.0
                      for f in covariate_names] for c in comparisons]).reshape(len(comparisons), len(covariate_names))
    sd = diff.std(axis=0) if len(diff) else np.zeros(len(covariate_names))
    keep = sd > 0  # a covariate that never differs cannot be estimated
    diff, sd, covariate_names = diff[:, keep], sd[keep], tuple(n for n, k in zip(covariate_names, keep) if k)
    return _Design(
        models, covariate_names,
        np.array([index[c[0]] for c in comparisons], dtype=np.int64),
        np.array([index[c[1]] for c in comparisons], dtype=np.int64),
        np.array([c[2] for c in comparisons]), diff / np.where(sd > 0, sd, 1.0),
        np.array([c[5] for c in comparisons], dtype=np.int64), sd, units, left_out,
    )


def _fit(d: _Design, weight: np.ndarray, start: np.ndarray | None = None, l2: float = 1e-6,
         max_iter: int = 50) -> np.ndarray:
    """Newton's method on the penalised negative log-likelihood; θ sums to zero."""
    m, f = len(d.models), d.z.shape[1]
    params = np.zeros(m + f) if start is None else start.copy()
    pin = np.zeros((m + f, m + f))
    pin[:m, :m] = 1.0 / m
    for _ in range(max_iter):
        logit = LN10 * (params[d.i] - params[d.j]) + d.z @ params[m:]
        p = 0.5 * (1.0 + np.tanh(0.5 * logit))
        r = weight * (p - d.y)
        grad = np.zeros(m + f)
        grad[:m] = LN10 * (np.bincount(d.i, r, m) - np.bincount(d.j, r, m))
        grad[m:] = d.z.T @ r
        grad += l2 * params
        w = weight * p * (1.0 - p)
        hess = np.zeros((m + f, m + f))
        ww = LN10 * LN10 * w
        np.add.at(hess, (d.i, d.i), ww)
        np.add.at(hess, (d.j, d.j), ww)
        np.add.at(hess, (d.i, d.j), -ww)
        np.add.at(hess, (d.j, d.i), -ww)
        cross = LN10 * w[:, None] * d.z  # θ–β block
        np.add.at(hess[:m, m:], d.i, cross)
        np.add.at(hess[:m, m:], d.j, -cross)
        hess[m:, :m] = hess[:m, m:].T
        hess[m:, m:] = d.z.T @ (w[:, None] * d.z)
        hess += l2 * np.eye(m + f)
        step = np.linalg.solve(hess + pin, -grad)
        step[:m] -= step[:m].mean()
        largest = np.abs(step).max() if len(step) else 0.0
        if largest > 2.0:
            step *= 2.0 / largest
        params += step
        if largest < 1e-9:
            break
    return params


def style_control(votes: pd.DataFrame | list[dict[str, Any]], *, rounds: int = 200, seed: int = 0,
                  l2: float = 1e-6) -> StyleBoard:
    """Ratings controlled for the votes' covariates, beside the uncontrolled Bradley–Terry ratings
    of the same votes, with 95% bootstrap intervals (votes resampled) for both θ and β."""
    d = design(votes)
    warnings = []
    if d.left_out:
        warnings.append(f"{d.left_out} vote(s) carry no covariates (battles from before they were recorded, or "
                        "imported without them) and are left out of the controlled ratings")
    if len(d.i) == 0:
        return StyleBoard([], [], 0, d.left_out, 0, warnings)
    if not d.names:
        warnings.append("no covariate differs between the compared images: nothing to control for")
    m = len(d.models)
    ones = np.ones(len(d.i))
    params = _fit(d, ones, l2=l2)
    rng = np.random.default_rng(seed)
    boots = np.empty((rounds, len(params)))
    for r in range(rounds):
        counts = rng.multinomial(d.n_units, np.full(d.n_units, 1.0 / d.n_units))
        boots[r] = _fit(d, counts[d.unit].astype(float), start=params, l2=max(l2, 1e-4), max_iter=20)
    uncontrolled = bradley_terry([{"model_a": d.models[a], "model_b": d.models[b],
                                   "winner": "model_a" if y == 1.0 else "model_b" if y == 0.0 else "tie"}
                                  for a, b, y in zip(d.i.tolist(), d.j.tolist(), d.y.tolist())], l2=1e-4)
    elo = SCALE * params[:m] + INIT_RATING
    low, high = (SCALE * np.quantile(boots[:, :m], q, axis=0) + INIT_RATING for q in (0.025, 0.975))
    rows = [{"model": name, "elo": float(elo[k]), "ci_low": float(low[k]), "ci_high": float(high[k]),
             "elo_uncontrolled": float(uncontrolled[name]), "shift": float(elo[k] - uncontrolled[name])}
            for k, name in enumerate(d.models)]
    rows.sort(key=lambda r: (-r["elo"], r["model"]))
    to_elo = SCALE / LN10
    coefficients = []
    for k, name in enumerate(d.names):
        beta = params[m + k]
        lo, hi = np.quantile(boots[:, m + k], [0.025, 0.975])
        coefficients.append({"covariate": name, "beta": float(beta), "elo_per_sd": float(to_elo * beta),
                             "ci_low": float(to_elo * lo), "ci_high": float(to_elo * hi), "sd": float(d.sd[k])})
    return StyleBoard(rows, coefficients, d.n_units, d.left_out, rounds, warnings)
