"""Plotly figures for the studio: rating intervals, win-rate heatmap, Elo over time, rewards.

Pure functions of tables; nothing here reads the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go


def _empty(title: str, note: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[{"text": note, "showarrow": False, "x": 0.5, "y": 0.5,
                                                 "xref": "paper", "yref": "paper"}],
                      xaxis={"visible": False}, yaxis={"visible": False}, height=360)
    return fig


def intervals_figure(rows: list[dict[str, Any]], title: str = "Bradley–Terry Elo, 95% interval") -> go.Figure:
    if not rows:
        return _empty(title, "no votes yet")
    frame = pd.DataFrame(rows).sort_values("elo")
    fig = go.Figure(go.Scatter(
        x=frame["elo"], y=frame["model"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": frame["ci_high"] - frame["elo"],
                 "arrayminus": frame["elo"] - frame["ci_low"]},
        hovertemplate="%{y}: %{x:.0f}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="Elo", height=max(300, 140 + 40 * len(frame)), margin={"l": 160},
                      yaxis={"type": "category", "automargin": True})
    return fig


def heatmap_figure(win_rates: pd.DataFrame | None, title: str = "Win rate of row model over column model") -> go.Figure:
    if win_rates is None or win_rates.empty:
        return _empty(title, "no votes yet")
    fig = go.Figure(go.Heatmap(
        z=win_rates.values, x=list(map(str, win_rates.columns)), y=list(map(str, win_rates.index)),
        zmin=0, zmax=1, colorscale="RdBu",
        text=win_rates.round(2).astype(object).where(win_rates.notna(), "").values, texttemplate="%{text}",
        hovertemplate="%{y} beats %{x}: %{z:.2f}<extra></extra>",
    ))
    # rows from the top and columns from the left in the same order, so the diagonal runs down-right
    fig.update_layout(title=title, height=max(300, 200 + 40 * len(win_rates)), margin={"l": 160},
                      xaxis={"type": "category", "side": "top"},
                      yaxis={"type": "category", "automargin": True, "autorange": "reversed"})
    return fig


def elo_history_figure(history: list[dict[str, Any]], title: str = "Online Elo over votes") -> go.Figure:
    if not history:
        return _empty(title, "no votes yet")
    frame = pd.DataFrame(history)
    fig = go.Figure()
    for model, part in frame.groupby("model", sort=True):
        fig.add_trace(go.Scatter(x=part["votes"], y=part["elo"], mode="lines+markers", name=str(model)))
    fig.update_layout(title=title, xaxis_title="votes", yaxis_title="online Elo", height=380)
    return fig


def reward_distribution_figure(frame: pd.DataFrame, title: str = "Reward per model") -> go.Figure:
    """Box plot of ``score`` per ``model`` (a table with those columns)."""
    if frame.empty:
        return _empty(title, "no scored samples yet")
    fig = go.Figure()
    for model, part in frame.groupby("model", sort=True):
        fig.add_trace(go.Box(y=part["score"], name=str(model), boxpoints="all", jitter=0.4, pointpos=0))
    fig.update_layout(title=title, yaxis_title="composite reward", yaxis_range=[0, 1], height=380, showlegend=False)
    return fig


def metrics_figure(rows: list[dict[str, Any]], title: str = "Training metrics") -> go.Figure:
    """Reward curves from ``metrics.jsonl`` rows (under the names of ``qwenrl.metrics``): the total
    and each judge's ``rewards/{name}/mean`` against ``step``."""
    rows = [r for r in rows if isinstance(r.get("step"), (int, float))]
    if not rows:
        return _empty(title, "no metrics yet")
    frame = pd.DataFrame(rows)
    numeric = [k for k in frame.columns if pd.api.types.is_numeric_dtype(frame[k])]
    keys = [k for k in numeric if k.startswith("rewards/") and k.count("/") == 2 and k.endswith("/mean")]
    keys = keys or [k for k in numeric if "reward" in k]
    keys = keys or [k for k in numeric if k != "step"][:4]
    fig = go.Figure()
    for key in keys[:8]:
        part = frame[["step", key]].dropna()
        fig.add_trace(go.Scatter(x=part["step"], y=part[key], mode="lines+markers", name=key))
    fig.update_layout(title=title, xaxis_title="step", height=360)
    return fig


def eval_figure(rows: list[dict[str, Any]], title: str = "Held-out accuracy (strict checker, test split)") -> go.Figure:
    """Held-out accuracy from ``metrics.jsonl`` rows against ``step``: ``eval/accuracy`` (GRPO) or
    ``eval/{task}/accuracy`` (distillation) as solid lines, the per-family ``…/families/*`` dotted."""
    rows = [r for r in rows if isinstance(r.get("step"), (int, float))
            and any(k.startswith("eval/") and k.endswith("accuracy") for k in r)]
    if not rows:
        return _empty(title, "no held-out evaluation yet")
    frame = pd.DataFrame(rows)
    overall = sorted(k for k in frame.columns if k.startswith("eval/") and k.endswith("/accuracy"))
    families = sorted(k for k in frame.columns if k.startswith("eval/") and "/families/" in k)
    fig = go.Figure()
    for key in overall + families:
        part = frame[["step", key]].dropna()
        name = key.removeprefix("eval/").removesuffix("/accuracy").replace("families/", "") or "overall"
        fig.add_trace(go.Scatter(x=part["step"], y=part[key], mode="lines+markers", name=name if key != "eval/accuracy" else "overall",
                                 line={"width": 4} if key in overall else {"dash": "dot"}))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="accuracy", yaxis_range=[0, 1], height=360)
    return fig


def save_png(fig: go.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (kaleido drives Chromium: ``BROWSER_PATH``, default /usr/bin/chromium)."""
    import os

    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise SystemExit("writing a PNG chart needs kaleido 1.x and Chromium: pip install -e '.[bench]'") from None
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_image(str(path))
    return path


def simulation_figure(settings: dict[str, list], tau: float = 0.9) -> go.Figure:
    """Learning curves of simulated arenas (``arena.simulate``): Kendall τ, interval width and
    top-1 error against votes, one colour per battle size, one dash per setting."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("Kendall τ to the true ranking", "mean 95% interval width (Elo)",
                                                        "top-1 error rate"))
    colours = {2: "#1f77b4", 3: "#2ca02c", 4: "#d62728"}
    dashes = ["solid", "dash", "dot", "dashdot"]
    for s, (setting, curves) in enumerate(settings.items()):
        for curve in curves:
            name = f"{'pairwise' if curve.k == 2 else f'{curve.k} images'} · {setting}"
            style = {"color": colours.get(curve.k, "#9467bd"), "dash": dashes[s % len(dashes)]}
            for col, values in enumerate((curve.kendall_tau, curve.ci_width, curve.top1_error), start=1):
                fig.add_trace(go.Scatter(x=curve.votes, y=values, mode="lines+markers", name=name, line=style,
                                         legendgroup=name, showlegend=col == 1, marker={"size": 4}), row=1, col=col)
    fig.add_hline(y=tau, line={"dash": "dot", "color": "gray"}, row=1, col=1)
    for col in (1, 2, 3):
        fig.update_xaxes(type="log", title_text="votes (human actions)", row=1, col=col)
    fig.update_layout(height=430, width=1400, legend={"orientation": "h", "y": -0.25},
                      margin={"t": 40, "b": 120})
    return fig
