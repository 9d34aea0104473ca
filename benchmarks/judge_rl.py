"""RL against a judge that can be fooled: the learned judge's verdict and the strict checker's,
step by step, for GRPO runs trained against one and watched by the other.

Each run folder is a GRPO run whose reward (or ``monitor_reward``) contains a component named
``judge`` (the learned judge, ``training/configs/rewards/shapes_t2i_vlm_strict.yaml``) and one
named ``strict`` (the exact checker). Read from its ``metrics.jsonl``:

* held out, at each evaluation: the checker's accuracy (``eval/accuracy``) and the judge's pass
  rate on the same samples (``eval/rewards/judge/mean``, or ``eval/monitor/rewards/judge/mean``
  when the judge was only watched);
* training batches, every step: the judge's and the checker's pass rates on the samples the
  update learned from, in windows of ``--window`` steps (the reward that was trained on rises
  first; a gap that opens between them is the judge being gamed).

    python benchmarks/judge_rl.py "learned judge=runs/judge-rl/learned" "checker=runs/judge-rl/checker" \\
        --out docs/images/judge_rl.png

``--final-samples K`` also samples each run's last checkpoint and the model it started from K
times per test prompt (the seeds ``qwenrl bench`` uses) and reports the gain with its standard
error over prompts, since one image per prompt moves an evaluation by about ±3 points.

Prints markdown tables, writes benchmarks/results/judge_rl.json (or --json) and, with --out, a
plotly PNG (kaleido with Chromium: ``pip install -e '.[bench]'``; ``BROWSER_PATH`` defaults to /usr/bin/chromium).

``--fooled CHECKPOINT --grid PNG`` instead samples a checkpoint on the text-to-image test split
(one image per prompt, the seeds ``qwenrl bench`` uses), judges it with the learned judge and the
checker, and writes a grid of the images the judge passes and the checker fails, with their
prompts and the judge's answers beside it in a JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from app.charts import save_png
from app.jobs import labelled, run_metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "judge_rl.json"


def first(row: dict[str, Any], *keys: str) -> float | None:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def read_run(run: Path, window: int) -> dict[str, Any]:
    """Held-out points and windowed training-batch pass rates of one run folder."""
    held_out, batches = [], []
    for row in run_metrics(run):
        judge = first(row, "eval/rewards/judge/mean", "eval/monitor/rewards/judge/mean")
        if row.get("eval/accuracy") is not None:
            if judge is None:
                raise SystemExit(f"{run}: step {row['step']} has no judge verdict held out; train or monitor with a reward "
                                 "that has a 'judge' component (training/configs/rewards/shapes_t2i_vlm_strict.yaml)")
            held_out.append({"step": row["step"], "checker": row["eval/accuracy"], "judge": judge})
        if row.get("rewards/strict/mean") is not None and row.get("rewards/judge/mean") is not None:
            batches.append((row["step"], row["rewards/judge/mean"], row["rewards/strict/mean"]))
    if not held_out:
        raise SystemExit(f"{run}: no held-out evaluation in metrics.jsonl")
    windows = []
    for start in range(0, len(batches), window):
        chunk = batches[start:start + window]
        windows.append({"steps": [chunk[0][0], chunk[-1][0]], "judge": float(np.mean([c[1] for c in chunk])),
                        "checker": float(np.mean([c[2] for c in chunk]))})
    return {"held_out": held_out, "training_batches": windows}


def held_out_gains(data: dict[str, dict[str, Any]], reference: str | None) -> dict[str, dict[str, Any]]:
    """Each run's held-out checker gain from its first to its last evaluation, and its share of
    the reference run's gain (None without a reference or when the reference did not gain)."""
    if reference is not None and reference not in data:
        raise SystemExit(f"--reference {reference!r} is not one of the runs: {sorted(data)}")
    out = {}
    for label, r in data.items():
        first, last = r["held_out"][0], r["held_out"][-1]
        out[label] = {"steps": [first["step"], last["step"]], "gain": last["checker"] - first["checker"]}
    ref = out[reference]["gain"] if reference else None
    for g in out.values():
        g["of_reference"] = g["gain"] / ref if ref and ref > 0 else None
    return out


def last_checkpoint(run: Path) -> Path:
    """The run's checkpoint of the highest step (SystemExit when it has none)."""
    found = sorted((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[-1]))
    if not found:
        raise SystemExit(f"{run}: no checkpoints/step-* folder to benchmark")
    return found[-1]


def paired_gain(before: list[bool], after: list[bool], samples: int) -> dict[str, float]:
    """The pass-rate gain from ``before`` to ``after`` (prompt-major, ``samples`` per prompt, the
    same prompts and seeds) and its standard error over prompts (the per-prompt differences)."""
    if len(before) != len(after) or not before or len(before) % samples:
        raise ValueError("before and after must be equally long, prompt-major, a whole number of prompts")
    diff = np.asarray(after, float).reshape(-1, samples).mean(1) - np.asarray(before, float).reshape(-1, samples).mean(1)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return {"before": float(np.mean(before)), "after": float(np.mean(after)), "gain": float(diff.mean()), "se": se}


def final_gains(runs: dict[str, str], samples: int, reference: str | None) -> dict[str, dict[str, Any]]:
    """Each run's last checkpoint against the model it started from, ``samples`` images per test
    prompt on the seeds ``qwenrl bench`` uses: a gain with its standard error, and its share of
    the reference run's (an evaluation of one image per prompt moves by about ±3 points)."""
    import yaml

    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy

    def passed(model: Path, task: str) -> list[bool]:
        result = evaluate(load_policy(model).eval(), task, "test", samples_per_prompt=samples, progress=True)
        return [r["passed"] for r in result["records"]]

    if reference is not None and reference not in runs:
        raise SystemExit(f"--reference {reference!r} is not one of the runs: {sorted(runs)}")
    starts: dict[tuple[str, str], list[bool]] = {}
    out = {}
    for label, run in runs.items():
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        key = (str(REPO / config["model"]) if not Path(config["model"]).is_absolute() else config["model"], config["task"])
        if key not in starts:
            starts[key] = passed(Path(key[0]), key[1])
        checkpoint = last_checkpoint(Path(run))
        out[label] = {"checkpoint": str(checkpoint), "samples_per_prompt": samples,
                      **paired_gain(starts[key], passed(checkpoint, key[1]), samples)}
    ref = out[reference]["gain"] if reference else None
    for g in out.values():
        g["of_reference"] = g["gain"] / ref if ref and ref > 0 else None
    return out


def figure(runs: dict[str, dict[str, Any]], title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("held-out test prompts", "training batches (judged by both)"))
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, (label, r) in enumerate(runs.items()):
        c = colours[k % len(colours)]
        steps = [p["step"] for p in r["held_out"]]
        fig.add_trace(go.Scatter(x=steps, y=[100 * p["checker"] for p in r["held_out"]], mode="lines+markers",
                                 line={"color": c}, name=f"{label}: strict checker"), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[100 * p["judge"] for p in r["held_out"]], mode="lines+markers",
                                 line={"color": c, "dash": "dash"}, name=f"{label}: learned judge"), row=1, col=1)
        if r["training_batches"]:
            mid = [(w["steps"][0] + w["steps"][1]) / 2 for w in r["training_batches"]]
            fig.add_trace(go.Scatter(x=mid, y=[100 * w["checker"] for w in r["training_batches"]], mode="lines+markers",
                                     line={"color": c}, showlegend=False), row=1, col=2)
            fig.add_trace(go.Scatter(x=mid, y=[100 * w["judge"] for w in r["training_batches"]], mode="lines+markers",
                                     line={"color": c, "dash": "dash"}, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="GRPO step")
    fig.update_yaxes(title_text="pass rate (%)", range=[0, 100])
    fig.update_layout(title=title, width=1200, height=520, legend={"x": 0.01, "y": -0.25, "orientation": "h"})
    return fig


def fooled(checkpoint: Path, grid_png: Path, limit: int | None, count: int, judge: Path | None = None,
           reward: Path | None = None) -> dict[str, Any]:
    """The checkpoint's held-out images that the learned judge passes and the checker fails
    (``judge``: another judge folder than the reward's, e.g. an earlier judge; ``reward``: a reward
    YAML with ``judge`` and ``strict`` components, default ``shapes_t2i_vlm_strict.yaml``)."""
    import yaml

    from qwenrl.evaluation import generate_for, policy_sampling_defaults
    from qwenrl.imageio import grid, save_png
    from qwenrl.models import load_policy
    from qwenrl.rewards import Sample, load_reward
    from qwenrl.world.prompt_sets import load_prompt_set

    policy = load_policy(checkpoint).eval()
    items = load_prompt_set("t2i", "test", limit=limit)
    d = policy_sampling_defaults(policy)
    images = generate_for(policy, items, seeds=list(range(len(items))), num_steps=d["num_steps"],
                          guidance_scale=d["guidance_scale"], batch_size=64, progress=True, desc=checkpoint.name)
    path = reward or REPO / "training" / "configs" / "rewards" / "shapes_t2i_vlm_strict.yaml"
    spec = yaml.safe_load(path.read_text())
    options = spec["components"]["judge"]["config"]
    folder = Path(judge) if judge else (path.parent / options["model_path"]).resolve()
    options.update(model_path=str(folder), rubric_dir=str(folder / "rubrics"))
    reward = load_reward(spec, cache=False)
    judged = reward([Sample.from_spec(img, it) for img, it in zip(images, items)])
    picked = [k for k, j in enumerate(judged) if j.parts.get("judge") == 1.0 and j.parts.get("strict") == 0.0]
    families: dict[str, int] = {}
    for k in picked:
        families[items[k].family] = families.get(items[k].family, 0) + 1
    shown = picked[:count]
    if shown:
        save_png(grid(images[shown], cols=8), grid_png, scale=4)
    out = {
        "checkpoint": str(checkpoint), "judge": str(folder), "n": len(items), "judge_passes": sum(j.parts.get("judge") == 1.0 for j in judged),
        "checker_passes": sum(j.parts.get("strict") == 1.0 for j in judged), "fooled": len(picked), "fooled_by_family": families,
        "shown": [{"prompt": items[k].text, "family": items[k].family, "rationale": judged[k].rationale} for k in shown],
    }
    grid_png.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", metavar="LABEL=RUN", help="a label and a GRPO run folder")
    ap.add_argument("--fooled", type=Path, metavar="CHECKPOINT", help="grid the checkpoint's images the judge passes and the checker fails")
    ap.add_argument("--grid", type=Path, help="with --fooled: the PNG to write (its prompts and answers go to the same name .json)")
    ap.add_argument("--limit", type=int, default=None, help="with --fooled: test prompts (default all 250)")
    ap.add_argument("--count", type=int, default=16, help="with --fooled: images in the grid")
    ap.add_argument("--judge", type=Path, default=None, help="with --fooled: the judge folder (default the reward's)")
    ap.add_argument("--reward", type=Path, default=None,
                    help="with --fooled: the reward YAML to judge with (default training/configs/rewards/shapes_t2i_vlm_strict.yaml)")
    ap.add_argument("--reference", default=None, metavar="LABEL",
                    help="the run whose held-out gain the others are measured against (e.g. the checker-trained one)")
    ap.add_argument("--final-samples", type=int, default=0, metavar="K",
                    help="also sample each run's last checkpoint and its start model K times per test prompt and report "
                         "the gain with its standard error (0: off)")
    ap.add_argument("--window", type=int, default=5, help="training steps averaged per point (batches swing by ±0.15)")
    ap.add_argument("--title", default="Text to image: trained against the learned judge or the checker")
    ap.add_argument("--out", type=Path, help="PNG to write (plotly + kaleido)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.window < 1:
        raise SystemExit("--window must be at least 1")
    if args.fooled:
        if not args.grid:
            raise SystemExit("--fooled needs --grid PNG")
        got = fooled(args.fooled, args.grid, args.limit, args.count, args.judge, args.reward)
        print(f"{got['fooled']} of {got['n']} images pass the judge and fail the checker ({got['fooled_by_family']}); "
              f"judge passes {got['judge_passes']}, checker {got['checker_passes']} -> {args.grid}")
        return
    if not args.runs:
        raise SystemExit("give LABEL=RUN folders, or --fooled CHECKPOINT --grid PNG")
    runs = labelled(args.runs, "a run")
    data = {label: read_run(Path(run), args.window) for label, run in runs.items()}
    for label, r in data.items():
        print(f"\n{label} ({runs[label]}), held out:\n\n| step | strict checker | learned judge | judge − checker |\n|---|---|---|---|")
        for p in r["held_out"]:
            print(f"| {p['step']} | {100 * p['checker']:.1f}% | {100 * p['judge']:.1f}% | {100 * (p['judge'] - p['checker']):+.1f} |")
        if r["training_batches"]:
            print(f"\ntraining batches, {args.window}-step windows:\n\n| steps | strict checker | learned judge |\n|---|---|---|")
            for w in r["training_batches"]:
                print(f"| {w['steps'][0]}–{w['steps'][1]} | {100 * w['checker']:.1f}% | {100 * w['judge']:.1f}% |")
    gains = held_out_gains(data, args.reference)
    if gains:
        print("\n| run | held-out checker gain (last − first) | of the reference's gain |\n|---|---|---|")
        for label, g in gains.items():
            share = "—" if g["of_reference"] is None else f"{100 * g['of_reference']:.0f}%"
            print(f"| {label} | {100 * g['gain']:+.1f} points (step {g['steps'][0]} → {g['steps'][1]}) | {share} |")
    final = final_gains(runs, args.final_samples, args.reference) if args.final_samples > 0 else None
    if final:
        print(f"\n| run | last checkpoint, {args.final_samples} samples per prompt | gain ± s.e. | of the reference's gain |\n|---|---|---|---|")
        for label, g in final.items():
            share = "—" if g["of_reference"] is None else f"{100 * g['of_reference']:.0f}%"
            print(f"| {label} | {100 * g['before']:.1f} → {100 * g['after']:.1f}% | {100 * g['gain']:+.1f} ± {100 * g['se']:.1f} | {share} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"title": args.title, "runs": runs, "window": args.window, "curves": data,
                                     "reference": args.reference, "gains": gains, "final": final}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    if args.out:
        print(f"wrote {save_png(figure(data, args.title), args.out)}")


if __name__ == "__main__":
    main()
