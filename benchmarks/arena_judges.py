"""The bundled models in the automatic arena under three judges, and why the judges disagree.

For each task, ``--battles`` fresh battles per judge on one workspace (the whole 250-prompt test
split by default, one fixed seed per prompt and model):

* ``oracle`` — the strict checker: a pass beats a fail, two passes or two fails tie;
* ``humanlike`` — the checker when exactly one image passes, else the composite reward when the
  two scores differ by more than ``--margin``, else a tie;
* ``composite`` — the task's composite reward (``shapes_{task}.yaml``): the higher score wins,
  however small the difference.

It prints and writes (``benchmarks/results/arena_judges.{json,md}``) each judge's Bradley–Terry
Elo with 95% intervals, each model's Elo difference to the base with a vote-level bootstrap
interval of the difference (1,000 rounds), how the human-like judge decided its battles (by the
checker, by the composite, tie), and each model's mean composite parts on the arena images — the
numbers that explain a judge's verdict. The votes of every judge are exported beside the
results (``--votes-dir``; the human-like judge's are the votes a new studio starts with), so
``qwenrl elo`` reproduces the tables.

    python benchmarks/arena_judges.py --workspace runs/arena-judges --battles 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402

BASE = "shapes-base"
JUDGES = ("oracle", "humanlike", "composite")


def difference_intervals(frame, base: str, rounds: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """Each model's Bradley–Terry Elo minus the base's, with a 95% interval from resampling votes."""
    from arena.ratings import bradley_terry

    point = bradley_terry(frame)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in point if m != base}
    for _ in range(rounds):
        sample = frame.iloc[rng.integers(len(frame), size=len(frame))]
        r = bradley_terry(sample)
        for m in draws:
            if m in r and base in r:
                draws[m].append(r[m] - r[base])
    return {m: (point[m] - point[base], *np.percentile(d, [2.5, 97.5]).tolist()) for m, d in draws.items()}


def own_votes(frame, started: float):
    """The votes of ``frame`` cast since ``started``: a rerun on the same workspace (which keeps its
    galleries) measures its own battles, not those of earlier runs, which stay in the store."""
    return frame[frame["tstamp"] >= started].reset_index(drop=True)


def component_means(ws, task: str) -> dict[str, dict[str, float]]:
    """Each model's mean composite score and parts over its arena images (stored judgements)."""
    parts: dict[str, dict[str, list[float]]] = {}
    for s in ws.arena_samples(task):
        judged = [j for j in ws.store.judgements(sample_id=s["id"]) if j["judge"] == f"shapes_{task}"]
        if not judged:
            continue
        row = parts.setdefault(s["model"], {})
        row.setdefault("total", []).append(judged[0]["score"])
        for name, value in judged[0]["parts"].items():
            if "/" not in name and isinstance(value, (int, float)):
                row.setdefault(name, []).append(float(value))
    return {m: {k: float(np.mean(v)) for k, v in row.items()} for m, row in sorted(parts.items())}


def main(argv: list[str] | None = None) -> dict:
    from app.autojudge import HUMANLIKE_MARGIN, run_auto_arena
    from app.gallery import fill_model
    from app.pool import composite_reward, reward_path
    from app.workspace import Workspace
    from arena.io import write_votes
    from arena.ratings import leaderboard

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", default="runs/arena-judges")
    ap.add_argument("--battles", type=int, default=2000, help="battles per judge and task")
    ap.add_argument("--pool-size", type=int, default=250)
    ap.add_argument("--margin", type=float, default=HUMANLIKE_MARGIN)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "arena_judges"))
    ap.add_argument("--votes-dir", default=str(REPO / "benchmarks" / "results"),
                    help="where each judge's votes go: seed_recipe_votes.jsonl (human-like: the votes a new studio "
                         "starts with), seed_recipe_votes_oracle.jsonl, seed_recipe_votes_composite.jsonl")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    ws = Workspace.open(args.workspace, pool_size=args.pool_size)
    since: dict[tuple[str, str], float] = {}  # votes are append-only: a rerun on a workspace counts its own
    results: dict = {"battles": args.battles, "pool_size": args.pool_size, "margin": args.margin, "tasks": {}}
    try:
        for name in ws.pending_gallery_models():
            fill_model(ws, name, log=lambda msg: print(msg, file=sys.stderr))
        for task in ("t2i", "edit"):
            entry: dict = {"judges": {}, "components": component_means(ws, task)}
            for judge in JUDGES:
                spec = str(reward_path(composite_reward(task))) if judge == "composite" else judge
                started = time.time()
                summary = run_auto_arena(ws, task=task, judge=spec, battles=args.battles, seed=args.seed, margin=args.margin)
                since[(task, judge)] = started
                frame = own_votes(ws.store.votes_frame(task=task, judge=summary["judge"]), started)
                board = leaderboard(frame, rounds=args.rounds, seed=args.seed)
                diffs = difference_intervals(frame, BASE, args.rounds, args.seed) if BASE in summary["models"] else {}
                entry["judges"][judge] = {
                    "judge": summary["judge"],
                    "outcomes": summary["outcomes"],
                    "rows": [{k: r[k] for k in ("model", "elo", "ci_low", "ci_high", "votes", "win_rate")} for r in board.rows],
                    "vs_base": {m: {"elo": d, "low": lo, "high": hi} for m, (d, lo, hi) in diffs.items()},
                }
                print(f"{task} {judge}: " + ", ".join(f"{m} {d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for m, (d, lo, hi) in diffs.items()),
                      file=sys.stderr)
            entry["humanlike_decided_by"] = decided_by(ws, task, args.margin, since[(task, "humanlike")])
            results["tasks"][task] = entry
        for judge in JUDGES:
            path = Path(args.votes_dir) / ("seed_recipe_votes.jsonl" if judge == "humanlike" else f"seed_recipe_votes_{judge}.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_votes((r for t in ("t2i", "edit") for r in ws.store.vote_records(task=t, judge=results["tasks"][t]["judges"][judge]["judge"])
                         if r["tstamp"] >= since[(t, judge)]), path)
    finally:
        ws.close()
    results["seconds"] = time.perf_counter() - t0
    write_report(args.out, results, markdown(results))
    return results


def decided_by(ws, task: str, margin: float, started: float = 0.0) -> dict[str, int]:
    """How the human-like judge's battles of ``task`` were decided: by the checker (exactly one
    image passes), by the composite (both pass or both fail, scores apart by more than the
    margin), or a tie."""
    from app.autojudge import AutoJudge

    judge = AutoJudge(ws, "humanlike", task, margin=margin)
    counts: Counter = Counter()
    frame = own_votes(ws.store.votes_frame(task=task, judge="humanlike"), started)
    for a, b in zip(frame["sample_a"], frame["sample_b"]):
        (pa, sa), (pb, sb) = judge.score(ws.store.get_sample(int(a))), judge.score(ws.store.get_sample(int(b)))
        if pa != pb:
            counts["checker"] += 1
        elif sa is not None and sb is not None and abs(sa - sb) > margin:
            counts["composite (both pass)" if pa else "composite (both fail)"] += 1
        else:
            counts["tie"] += 1
    return dict(counts)


def markdown(results: dict) -> str:
    lines = []
    for task, entry in results["tasks"].items():
        lines += [f"### {task}", "", "| model | " + " | ".join(f"{j} Elo (Δ base, 95% CI)" for j in JUDGES) + " |",
                  "|---|" + "---|" * len(JUDGES)]
        models = [r["model"] for r in entry["judges"]["humanlike"]["rows"]]
        for m in models:
            cells = []
            for j in JUDGES:
                row = next((r for r in entry["judges"][j]["rows"] if r["model"] == m), None)
                d = entry["judges"][j]["vs_base"].get(m)
                cells.append("–" if row is None else f"{row['elo']:.0f}" + ("" if d is None else f" ({d['elo']:+.0f} [{d['low']:+.0f}, {d['high']:+.0f}])"))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "Human-like judge, battles decided by: " + ", ".join(f"{k} {v}" for k, v in entry["humanlike_decided_by"].items()),
                  "", "Mean composite parts of the arena images:", ""]
        names = sorted({k for row in entry["components"].values() for k in row})
        lines += ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {m} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in names) + " |" for m, row in entry["components"].items()]
        lines.append("")
    lines.append(f"{results['battles']} battles per judge and task, {results['pool_size']} prompts, margin {results['margin']}; "
                 f"{results['seconds'] / 60:.1f} min. Regenerate: `python benchmarks/arena_judges.py --battles {results['battles']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
