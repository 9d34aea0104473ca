"""Held-out accuracy against wall-clock minutes for GRPO runs of either objective, side by side.

Reads the ``metrics.jsonl`` of finished (or stopped) run folders and puts their held-out
evaluations (``eval/accuracy``: the strict checker on the test split) on one time axis:

* ``train minutes`` — the run's own training time, the sum of its ``charts/step_seconds`` up to the
  evaluation (evaluations themselves are left out: both objectives evaluate the same way);
* ``--step-seconds LABEL=S`` — or, where a run shared the machine with other work, its steps
  times a seconds-per-step figure measured on a quiet machine (``benchmarks/grpo.py`` times the
  shipped configs of both objectives side by side), which is the fairer axis.

    python benchmarks/objectives.py nft=runs/cal/B flow=runs/flow-t2i --title "text-to-image" \\
        --out docs/images/objectives_t2i.png [--step-seconds nft=26.1 --step-seconds flow=2.8]

Prints a markdown table (accuracy at each evaluation, with minutes), writes the points to
benchmarks/results/objectives.json (or --json) and a plotly PNG (needs kaleido and Chromium:
``pip install -e '.[bench]'``; ``BROWSER_PATH`` points kaleido at /usr/bin/chromium by default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.charts import save_png
from app.jobs import labelled, run_metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "objectives.json"


def curve(run: Path, step_seconds: float | None = None) -> list[dict[str, float]]:
    """(step, minutes, accuracy, per-family) at each evaluation of a run folder."""
    elapsed, points = 0.0, []
    for row in run_metrics(run):  # a stopped run's half-written last line is skipped
        elapsed += row.get("charts/step_seconds") or 0.0
        if row.get("eval/accuracy") is None:
            continue
        minutes = (row["step"] * step_seconds if step_seconds is not None else elapsed) / 60
        points.append({"step": row["step"], "minutes": minutes, "accuracy": row["eval/accuracy"],
                       "families": {k.removeprefix("eval/families/"): v for k, v in row.items() if k.startswith("eval/families/")}})
    if not points:
        raise SystemExit(f"{run}: no held-out evaluation in metrics.jsonl")
    return points


def figure(curves: dict[str, list[dict[str, float]]], title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, points in curves.items():
        fig.add_trace(go.Scatter(x=[p["minutes"] for p in points], y=[100 * p["accuracy"] for p in points],
                                 mode="lines+markers", name=label))
    fig.update_layout(title=title, xaxis_title="training minutes on 2 CPU cores", yaxis_title="held-out accuracy (%)",
                      yaxis_range=[0, 100], width=900, height=520, legend={"x": 0.01, "y": 0.99})
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and a GRPO run folder")
    ap.add_argument("--step-seconds", action="append", default=[], metavar="LABEL=S",
                    help="time a run's steps at S seconds each instead of its own charts/step_seconds")
    ap.add_argument("--title", default="Held-out accuracy against training time")
    ap.add_argument("--out", type=Path, help="PNG to write (plotly + kaleido)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    runs = labelled(args.runs, "a run")
    seconds = {k: float(v) for k, v in labelled(args.step_seconds, "--step-seconds").items()}
    unknown = set(seconds) - set(runs)
    if unknown:
        raise SystemExit(f"--step-seconds names runs that were not given: {sorted(unknown)}")
    curves = {label: curve(Path(run), seconds.get(label)) for label, run in runs.items()}
    for label, points in curves.items():
        print(f"\n{label} ({runs[label]}):\n\n| step | minutes | held-out accuracy |\n|---|---|---|")
        for p in points:
            print(f"| {p['step']} | {p['minutes']:.1f} | {100 * p['accuracy']:.1f}% |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": args.title, "runs": runs, "step_seconds": seconds, "curves": curves}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    if args.out:
        print(f"wrote {save_png(figure(curves, args.title), args.out)}")


if __name__ == "__main__":
    main()
