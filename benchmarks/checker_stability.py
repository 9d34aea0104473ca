"""How many verdicts of the strict checker hang on one pixel? A measure of what any image judge can match.

The learned judges are scored by agreement with the exact checker, and their last misses are
objects the checker names by a hair (docs/rewards.md). This benchmark asks the checker itself how
close to its own boundary the studio's images sit. For each of the four bundled models' test
samples (the images ``benchmarks/judge.py`` judges: one per prompt, seed 0), it makes ``--edits``
single-pixel changes, each on one parsed object's rim, and checks the image again
(``qwenrl.world.stability``, which the reward inspector uses for one sample):

* *shave*: one object pixel that touches the background turned to the background's colour;
* *grow*: one background pixel that touches the object (and no other object) turned to its colour.

A sample is *one pixel from the other verdict* when at least one of its edits flips the checker's
pass/fail; likewise for the shapes the parser names (the Seen line's shape words). An image judge
that reads shapes as people do cannot be expected to follow a verdict that one edge pixel
reverses: those samples bound its agreement from above, about half of them being a coin's toss.
The same for pairs: of the pairs of two models' samples of one prompt where the checker passes
exactly one (the pairwise target's battles), those holding an image one pixel from the other verdict.

With ``--judge`` a reader judge reads the same samples, and its agreement with the checker and its
Seen line are split by the samples' stability: where its misses lie. With ``--pair-judge`` the
same for a reader's pairwise pick on the decisive pairs (the likelier pass, as the automatic
arena's ``reader-probability`` judge picks).

    python benchmarks/checker_stability.py [--edits 64] [--limit N] [--tasks t2i edit] \
        [--judge data/models/shapes-judge-reader] [--pair-judge data/models/shapes-judge-reader-one-run]

Prints a markdown table and writes benchmarks/results/checker_stability.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results" / "checker_stability.json"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Shares of samples one pixel from the other verdict (or other shape names), overall and by
    whether the image holds a close call; the share of single edits that flip the verdict."""
    def share(group: list[dict], key: str) -> float | None:
        return float(np.mean([r[key] > 0 for r in group])) if group else None

    edits = sum(r["edits"] for r in rows)
    close = [r for r in rows if r["close_call"]]
    clear = [r for r in rows if not r["close_call"]]
    return {
        "samples": len(rows), "pass_rate": float(np.mean([r["passed"] for r in rows])) if rows else None,
        "verdict_one_pixel_away": share(rows, "flips"), "shapes_one_pixel_away": share(rows, "shape_flips"),
        "edits": edits, "edits_flipping_verdict": sum(r["flips"] for r in rows) / edits if edits else None,
        "with_close_call": len(close),
        "verdict_one_pixel_away_close_call": share(close, "flips"),
        "verdict_one_pixel_away_no_close_call": share(clear, "flips"),
    }


def decisive_pairs(rows: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Of ``pairs`` (indices into ``rows``: two models' samples of one prompt, ``reader_probability.pairs_of``),
    those where the checker passes exactly one, and how many hold an image one pixel from the
    other verdict: on those a pixel-blind pairwise judge is guessing."""
    decisive = [(a, b) for a, b in pairs if rows[a]["passed"] != rows[b]["passed"]]
    near = sum(bool(rows[a]["flips"] or rows[b]["flips"]) for a, b in decisive)
    return {"decisive_pairs": len(decisive), "one_pixel_away": near, "share": near / len(decisive) if decisive else None}


def judge_reads(task: str, items: list, images: np.ndarray, judge_path: Path) -> list[tuple[bool | None, bool]]:
    """A reader judge's (pass by the rules on its reading, Seen line right) per sample, judged as
    ``benchmarks/judge.py`` judges them (its ``judged_rows``)."""
    from judge import judged_rows

    rows, _, _ = judged_rows(task, items, [""] * len(items), images, judge_path)
    return [(r["rules_pass"], bool(r["seen_ok"])) for r in rows]


def judge_split(rows: list[dict[str, Any]], reads: list[tuple[bool | None, bool]]) -> dict[str, Any]:
    """The judge's agreement with the checker on samples whose verdict survives every edit tried
    and on those one pixel from flipping; its Seen line's rightness likewise by the shape names."""
    def part(keep: list[bool], values: list[bool]) -> dict[str, Any]:
        chosen = [v for k, v in zip(keep, values) if k]
        return {"n": len(chosen), "right": float(np.mean(chosen)) if chosen else None}

    agree = [rp == r["passed"] for r, (rp, _) in zip(rows, reads)]  # an unreadable answer disagrees
    seen = [ok for _, ok in reads]
    near = [r["flips"] > 0 for r in rows]
    near_shapes = [r["shape_flips"] > 0 for r in rows]
    return {
        "agreement": part([True] * len(rows), agree),
        "agreement_verdict_stable": part([not v for v in near], agree),
        "agreement_one_pixel_away": part(near, agree),
        "seen_right": part([True] * len(rows), seen),
        "seen_right_shapes_stable": part([not v for v in near_shapes], seen),
        "seen_right_shapes_one_pixel_away": part(near_shapes, seen),
    }


def pair_split(task: str, rows: list[dict[str, Any]], judge_path: Path, limit: int | None) -> dict[str, Any]:
    """A reader's pairwise pick on the decisive pairs (the likelier pass over shape, colour and size
    words at margin 0, as ``benchmarks/reader_probability.py`` measures it on the same samples),
    split by whether either image of the pair is one pixel from the other verdict."""
    from judge import MODELS
    from reader_calibration import reader
    from reader_probability import judged, pairs_of, probability_picks

    from qwenrl.rewards.pairwise import pair_winner

    data = judged(task, "test", reader(task, judge_path), MODELS, limit, 0)  # the samples ``rows`` were made from
    checker = data["checker"]
    assert len(checker) == len(rows)
    decisive = [(a, b) for a, b in pairs_of(data, 0) if all(checker[a]) != all(checker[b])]
    picks = probability_picks(data, "shape+colour+size", decisive, 0.0)
    groups: dict[str, list[bool]] = {"all": [], "stable": [], "one_pixel_away": []}
    for (a, b), pick in zip(decisive, picks):
        right = pick == pair_winner(checker[a], checker[b])
        groups["all"].append(right)
        groups["one_pixel_away" if rows[a]["flips"] or rows[b]["flips"] else "stable"].append(right)
    return {k: {"n": len(v), "right": float(np.mean(v)) if v else None} for k, v in groups.items()}


def print_split(title: str, results: dict[str, Any], key: str, columns: dict[str, str]) -> None:
    """A markdown table of one judge's split per task; ``columns`` maps each header to its part."""
    print(f"\n{title}\n")
    print("| task | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for task, s in results.items():
        parts = [s[key][k] for k in columns.values()]
        print(f"| {task} | " + " | ".join("—" if v["right"] is None else f"{100 * v['right']:.1f}% of {v['n']}" for v in parts) + " |")


def main(argv: list[str] | None = None) -> None:
    from judge import MODELS, sample_models
    from reader_probability import pairs_of

    from qwenrl.rewards import Sample
    from qwenrl.world.stability import verdict_stability

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=64,
                    help="single-pixel edits tried per sample (more than an image has: every one of them)")
    ap.add_argument("--limit", type=int, default=None, help="test prompts per task (default all)")
    ap.add_argument("--tasks", nargs="+", default=["t2i", "edit"], choices=["t2i", "edit"])
    ap.add_argument("--judge", type=Path, default=None,
                    help="a reader judge folder: also split its agreement and Seen line by the samples' stability")
    ap.add_argument("--pair-judge", type=Path, default=None,
                    help="a reader judge folder: also split its pairwise pick on decisive pairs by their stability")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.edits < 1:
        raise SystemExit("--edits must be at least 1")
    for flag, folder in (("--judge", args.judge), ("--pair-judge", args.pair_judge)):
        if folder is not None and not (folder / "config.json").is_file():  # refused before the minutes of sampling
            raise SystemExit(f"{flag} {folder}: not a judge folder (no config.json); e.g. data/models/shapes-judge-reader")
    results: dict[str, Any] = {}
    for task in args.tasks:
        items, _, images = sample_models(task, MODELS, args.limit, seed=0)
        rng = np.random.default_rng(0)
        rows = [verdict_stability(item, image, args.edits, rng) for item, image in zip(items, images)]
        pairs = pairs_of({"samples": [Sample.from_spec(image, item) for item, image in zip(items, images)]}, 0)
        results[task] = {**summarise(rows), "pairs": decisive_pairs(rows, pairs)}
        if args.judge is not None:
            results[task]["judge"] = judge_split(rows, judge_reads(task, items, images, args.judge))
        if args.pair_judge is not None:
            results[task]["pair_judge"] = pair_split(task, rows, args.pair_judge, args.limit)
    print("\n| task | samples | checker pass rate | verdict one pixel from flipping | shape names one pixel from changing "
          "| of single edits, flipping the verdict | samples with a close call | their verdict one pixel away | the others' "
          "| decisive pairs | with an image one pixel away |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for task, s in results.items():
        def pct(v: float | None) -> str:
            return "—" if v is None else f"{100 * v:.1f}%"

        print(f"| {task} | {s['samples']} | {pct(s['pass_rate'])} | {pct(s['verdict_one_pixel_away'])} | "
              f"{pct(s['shapes_one_pixel_away'])} | {pct(s['edits_flipping_verdict'])} | {s['with_close_call']} | "
              f"{pct(s['verdict_one_pixel_away_close_call'])} | {pct(s['verdict_one_pixel_away_no_close_call'])} | "
              f"{s['pairs']['decisive_pairs']} | {pct(s['pairs']['share'])} |")
    if args.judge is not None:
        print_split(f"{args.judge}: agreement with the checker and Seen line right, by the samples' stability", results, "judge", {
            "agreement": "agreement", "verdict stable": "agreement_verdict_stable", "verdict one pixel away": "agreement_one_pixel_away",
            "Seen right": "seen_right", "shapes stable": "seen_right_shapes_stable",
            "shapes one pixel away": "seen_right_shapes_one_pixel_away"})
    if args.pair_judge is not None:
        print_split(f"{args.pair_judge}: the likelier pass picked right on decisive pairs, by the pairs' stability", results,
                    "pair_judge", {"all": "all", "neither image one pixel away": "stable", "an image one pixel away": "one_pixel_away"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    judges = {k: None if v is None else str(v) for k, v in (("judge", args.judge), ("pair_judge", args.pair_judge))}
    args.out.write_text(json.dumps({"edits_per_sample": args.edits, **judges, "models": list(MODELS), "tasks": results},
                                   indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
